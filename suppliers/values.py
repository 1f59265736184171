"""Reading loosely typed values out of supplier answers (numbers as strings, floats, or junk)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def amount(value: object) -> Decimal | None:
    """A finite Decimal from a number or numeric string; None for anything else (never a guess)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        parsed = Decimal(str(value))
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None
