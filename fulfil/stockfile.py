"""Stock files: card keys an operator imports (or hands over to resolve an order by hand).

One key per line, `number,password` or just `password`. Blank lines and `#` comments are skipped, and so is a
header line `number,password` or `password`. Each key is checked against the product's `card_pattern`
(applied to the password, and to the number where given). Reasons never quote the key itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from suppliers.taxonomy import Card

_HEADERS = ("number,password", "password")
_LINE_END = re.compile(r"\r\n|\r|\n")


class StockFileError(Exception):
    """The stock file cannot be read as a whole."""


@dataclass(frozen=True)
class StockFile:
    cards: tuple[Card, ...]  # the well-formed keys, in file order
    lines: tuple[int, ...]  # lines[i] is the 1-based line number of cards[i]
    invalid: tuple[tuple[int, str], ...]  # (line number, reason)

    def line_of(self, index: int) -> int:
        return self.lines[index]


def check_card(
    card: Card, pattern: re.Pattern[str] | None, number_pattern: re.Pattern[str] | None = None
) -> str | None:
    """Why the card is not acceptable, or None. Numbers follow `number_pattern` when given, else `pattern`."""
    if not card.password:
        return "empty password"
    checks = (
        ("password", card.password, pattern, "card_pattern"),
        ("number", card.number, number_pattern or pattern, "number_pattern" if number_pattern else "card_pattern"),
    )
    for name, value, rule, rule_name in checks:
        if value and not value.isprintable():
            return f"{name} contains control characters"
        if value and rule is not None and rule.fullmatch(value) is None:
            return f"{name} does not match the product's {rule_name}"
    return None


def parse_stock_text(text: str, card_pattern: str | None = None, number_pattern: str | None = None) -> StockFile:
    pattern = re.compile(card_pattern) if card_pattern else None
    numbers = re.compile(number_pattern) if number_pattern else None
    cards: list[Card] = []
    lines: list[int] = []
    invalid: list[tuple[int, str]] = []
    seen_content = False
    # Lines end where an editor ends them: str.splitlines() would also split at a form feed, \x1c-\x1e, \x85
    # or \u2028 inside a line, making two wrong keys of one (and every later line number wrong).
    for number, raw in enumerate(_LINE_END.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not seen_content and line.replace(" ", "").lower() in _HEADERS:
            seen_content = True
            continue
        seen_content = True
        if "," in line:
            card_number, password = (part.strip() for part in line.split(",", 1))
            if not card_number:
                invalid.append((number, "empty number before the comma"))
                continue
            card = Card(password=password, number=card_number)
        else:
            card = Card(password=line)
        reason = check_card(card, pattern, numbers)
        if reason is not None:
            invalid.append((number, reason))
            continue
        cards.append(card)
        lines.append(number)
    return StockFile(tuple(cards), tuple(lines), tuple(invalid))


def read_stock_file(path: Path, card_pattern: str | None = None, number_pattern: str | None = None) -> StockFile:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StockFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise StockFileError(f"{path}: cannot read ({exc.strerror})") from exc
    return parse_stock_text(text, card_pattern, number_pattern)


def repeated_lines(stock: StockFile) -> list[tuple[int, int]]:
    """(line, earlier line) for every key that appears twice in the file."""
    first: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for card, line in zip(stock.cards, stock.lines, strict=True):
        key = (card.number, card.password)
        if key in first:
            repeats.append((line, first[key]))
        else:
            first[key] = line
    return repeats
