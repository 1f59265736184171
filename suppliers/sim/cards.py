"""Card-key patterns: generate keys for a product, and keys that deliberately do not fit it.

A pattern is a small subset of regular-expression syntax, so the same text can sit in the daemon's product
config as a validation regex: literal characters (`\\` escapes one), character classes with ranges
(`[A-Z0-9]`), each optionally repeated `{n}` or `{m,n}`. Example: `[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{8}`.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

_MAX_REPEAT = 512


class PatternError(ValueError):
    """The card pattern is not in the supported syntax."""


@dataclass(frozen=True)
class _Part:
    alphabet: str
    low: int
    high: int


def _parse_class(source: str, start: int) -> tuple[str, int]:
    """The alphabet of the class opening at `source[start] == "["`, and the index after its `]`."""
    end = source.find("]", start + 1)
    if end == -1:
        raise PatternError(f"unclosed '[' at position {start}")
    body = source[start + 1 : end]
    if not body:
        raise PatternError(f"empty class at position {start}")
    if body.startswith("^"):
        raise PatternError("negated classes ([^...]) are not supported: list the allowed characters")
    chars: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if ord(low) > ord(high):
                raise PatternError(f"bad range {low}-{high} at position {start + 1 + i}")
            chars.extend(chr(c) for c in range(ord(low), ord(high) + 1))
            i += 3
        else:
            chars.append(body[i])
            i += 1
    return "".join(dict.fromkeys(chars)), end + 1


def _parse_repeat(source: str, start: int) -> tuple[int, int, int]:
    """`{n}` or `{m,n}` at `start` (if any): (low, high, index after it)."""
    if start >= len(source) or source[start] != "{":
        return 1, 1, start
    end = source.find("}", start)
    if end == -1:
        raise PatternError(f"unclosed '{{' at position {start}")
    match = re.fullmatch(r"(\d+)(?:,(\d+))?", source[start + 1 : end])
    if match is None:
        raise PatternError(f"bad repeat {source[start : end + 1]!r}: write {{n}} or {{m,n}}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if low > high or high > _MAX_REPEAT or high == 0:
        raise PatternError(f"bad repeat {source[start : end + 1]!r}: need 0 <= m <= n <= {_MAX_REPEAT}, n > 0")
    return low, high, end + 1


def _parse(source: str) -> tuple[_Part, ...]:
    parts: list[_Part] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char == "[":
            alphabet, i = _parse_class(source, i)
        elif char == "\\":
            if i + 1 >= len(source):
                raise PatternError("a trailing '\\' escapes nothing")
            alphabet, i = source[i + 1], i + 2
        elif char in "(){}*+?|.^$]":
            raise PatternError(f"{char!r} at position {i} is not supported (escape it with '\\' if literal)")
        else:
            alphabet, i = char, i + 1
        low, high, i = _parse_repeat(source, i)
        parts.append(_Part(alphabet, low, high))
    if not parts:
        raise PatternError("the pattern is empty")
    return tuple(parts)


def _regex(parts: tuple[_Part, ...]) -> str:
    out: list[str] = []
    for part in parts:
        atom = re.escape(part.alphabet) if len(part.alphabet) == 1 else "[" + _class_body(part.alphabet) + "]"
        if (part.low, part.high) != (1, 1):
            atom += f"{{{part.low}}}" if part.low == part.high else f"{{{part.low},{part.high}}}"
        out.append(atom)
    return "".join(out)


def _class_body(alphabet: str) -> str:
    return "".join("\\" + c if c in "\\]^-[" else c for c in alphabet)


@dataclass(frozen=True)
class CardPattern:
    """A parsed pattern: `generate` makes a fitting key, `mismatch` one that does not fit."""

    source: str
    parts: tuple[_Part, ...] = field(repr=False, compare=False)
    regex: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, source: str) -> CardPattern:
        parts = _parse(source)
        return cls(source=source, parts=parts, regex=re.compile(_regex(parts)))

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None

    def generate(self, rng: random.Random) -> str:
        return "".join(
            "".join(rng.choice(part.alphabet) for _ in range(rng.randint(part.low, part.high))) for part in self.parts
        )

    def mismatch(self, rng: random.Random) -> str:
        """A key that looks plausible but does not fit: one character short, one too many, or foreign."""
        good = self.generate(rng)
        foreign = next((c for c in string.ascii_letters + string.digits + "#~" if not self._anywhere(c)), "#")
        for candidate in (good[:-1], good + good[-1:], foreign + good[1:], good + foreign):
            if candidate and not self.matches(candidate):
                return candidate
        # Longer than the pattern's longest key: cannot match whatever the alphabet.
        return (good + foreign * (self.max_length + 1))[: self.max_length + 1]

    @property
    def max_length(self) -> int:
        return sum(part.high for part in self.parts)

    def _anywhere(self, char: str) -> bool:
        return any(char in part.alphabet for part in self.parts)
