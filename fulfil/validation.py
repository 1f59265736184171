"""Card validation before delivery: a pure function of the batch, the product and what was delivered before.

A supplier saying "success" is not enough: empty keys, keys off the product's pattern, repeats within the
batch, keys this system already delivered, and missing units are all losses the supplier owes for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from suppliers.taxonomy import Card


@dataclass(frozen=True)
class CardVerdict:
    valid: tuple[Card, ...]
    invalid: tuple[tuple[Card, str], ...]  # (card, reason)
    missing: int  # units charged for but not in the batch
    surplus: tuple[Card, ...] = ()  # more keys than ordered: kept, never dropped
    qty: int = 0

    @property
    def bad_units(self) -> int:
        """Ordered units without a valid key: what the supplier owes for. Junk beyond `qty` costs nothing."""
        return max(0, self.qty - len(self.valid))

    @property
    def ok(self) -> bool:
        return self.bad_units == 0

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.invalid:
            counts[reason] = counts.get(reason, 0) + 1
        if self.missing:
            counts["missing"] = self.missing
        return counts


def check_cards(
    cards: Sequence[Card],
    *,
    qty: int,
    pattern: str | None,
    delivered_before: Collection[str],
    fingerprint: Callable[[Card], str],
    number_pattern: str | None = None,
) -> CardVerdict:
    """`pattern` applies to the password, and to the number too unless `number_pattern` is given."""
    compiled = re.compile(pattern) if pattern else None
    for_numbers = re.compile(number_pattern) if number_pattern else compiled
    valid: list[Card] = []
    invalid: list[tuple[Card, str]] = []
    seen: set[str] = set()
    for card in cards:
        reason = _reason(card, compiled, for_numbers, seen, delivered_before, fingerprint)
        if reason is None:
            valid.append(card)
        else:
            invalid.append((card, reason))
        seen.add(fingerprint(card))
    surplus = tuple(valid[qty:])
    valid = valid[:qty]
    missing = max(0, qty - len(valid) - len(invalid))
    return CardVerdict(tuple(valid), tuple(invalid), missing, surplus, qty)


def _reason(
    card: Card,
    pattern: re.Pattern[str] | None,
    number_pattern: re.Pattern[str] | None,
    seen: set[str],
    delivered_before: Collection[str],
    fingerprint: Callable[[Card], str],
) -> str | None:
    if not card.password.strip():
        return "empty"
    if pattern is not None and not pattern.fullmatch(card.password.strip()):
        return "pattern"
    if number_pattern is not None and card.number.strip() and not number_pattern.fullmatch(card.number.strip()):
        return "pattern"
    mark = fingerprint(card)
    if mark in seen:
        return "duplicate_in_batch"
    if mark in delivered_before:
        return "delivered_before"
    return None
