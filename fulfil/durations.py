"""Durations as operators write them: `500ms`, `30s`, `5m`, `2h`, `1d`. Parsed once, at the edge."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object, *, bare_numbers: bool = False) -> float:
    """Seconds from a duration string. In files bare numbers are refused: `10` could mean seconds or minutes;
    code constructing config objects may pass seconds (`bare_numbers=True`)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as '500ms', '30s', '5m', got {value!r}")
    if isinstance(value, int | float):
        if bare_numbers and value >= 0:
            return float(value)
        if value == 0:
            return 0.0
        raise ValueError(f"write a unit with the duration: '{value}s' or '{value}ms', not {value!r}")
    match = _PATTERN.match(value)
    if match is None:
        raise ValueError(f"expected a duration such as '500ms', '30s', '5m', '2h', got {value!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):  # 400 nines are digits, but no wait: a sleep or lease of inf breaks a loop
        raise ValueError(f"the duration {value[:20]!r}… is too long")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
