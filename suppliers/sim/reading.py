"""Reading parsed YAML with paths: every error is collected with its field's path; none stops the read."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from fulfil.durations import parse_duration


class ScenarioError(Exception):
    """The scenario is invalid."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Reader:
    """Collects every error with its path instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)

    def mapping(self, value: Any, path: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.error(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if str(key) not in allowed:
                self.error(join(path, str(key)), f"unknown field (allowed: {', '.join(sorted(allowed))})")
        return {str(k): v for k, v in value.items()}

    def text(self, value: Any, path: str, *, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
            self.error(path, f"expected a non-empty string, got {value!r}")
            return default or ""
        return str(value)

    def integer(self, value: Any, path: str, *, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"expected an integer, got {value!r}")
            return low
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            self.error(path, f"must be {bound}, got {value}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {value!r}")
            return False
        return value

    def money(self, value: Any, path: str) -> Decimal:
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise InvalidOperation
            amount = Decimal(str(value))
        except InvalidOperation:
            self.error(path, f"expected an amount such as '95.00', got {value!r}")
            return Decimal(0)
        if not amount.is_finite() or amount < 0:
            self.error(path, f"must be a non-negative amount, got {value!r}")
        return amount

    def duration(self, value: Any, path: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return 0.0

    def choice(self, value: Any, path: str, options: tuple[str, ...]) -> str:
        if value not in options:
            self.error(path, f"expected one of {', '.join(options)}, got {value!r}")
            return options[0]
        return str(value)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
