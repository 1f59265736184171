"""Stock file parsing and the card_pattern check."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulfil.stockfile import StockFileError, parse_stock_text, read_stock_file, repeated_lines
from suppliers.taxonomy import Card

PATTERN = r"^[A-Z0-9]{16}$"


def test_lines_comments_and_both_shapes() -> None:
    text = (
        "number,password\n"  # header, skipped
        "# a batch from the wholesaler\n"
        "\n"
        "0000111122223333,AAAABBBBCCCCDDDD\n"
        "  EEEEFFFFGGGGHHHH  \n"
        "4444555566667777 , IIIIJJJJKKKKLLLL\n"
    )
    parsed = parse_stock_text(text, PATTERN)
    assert parsed.cards == (
        Card("AAAABBBBCCCCDDDD", "0000111122223333"),
        Card("EEEEFFFFGGGGHHHH"),
        Card("IIIIJJJJKKKKLLLL", "4444555566667777"),
    )
    assert parsed.lines == (4, 5, 6)
    assert parsed.invalid == ()


def test_invalid_lines_are_reported_without_the_key() -> None:
    text = "short\n0000111122223333,\n,AAAABBBBCCCCDDDD\nsn-lower,AAAABBBBCCCCDDDD\nAAAABBBBCCCCDDDD\n"
    parsed = parse_stock_text(text, PATTERN)
    assert parsed.invalid == (
        (1, "password does not match the product's card_pattern"),
        (2, "empty password"),
        (3, "empty number before the comma"),
        (4, "number does not match the product's card_pattern"),
    )
    assert parsed.lines == (5,)
    assert all("short" not in reason and "AAAA" not in reason for _, reason in parsed.invalid)


def test_without_a_pattern_anything_printable_goes() -> None:
    parsed = parse_stock_text("password\nabc def\nx\ty\n", None)
    assert parsed.cards == (Card("abc def"),)
    assert parsed.invalid == ((3, "password contains control characters"),)


def test_pattern_must_match_the_whole_key() -> None:
    parsed = parse_stock_text("AAAABBBBCCCCDDDDEXTRA\n", "[A-Z0-9]{16}")
    assert parsed.cards == ()
    assert len(parsed.invalid) == 1


def test_repeated_lines_within_the_file() -> None:
    parsed = parse_stock_text("A1\nB2\nA1\nN,A1\nB2\n", None)
    assert repeated_lines(parsed) == [(3, 1), (5, 2)]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(StockFileError, match="cannot read"):
        read_stock_file(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(StockFileError, match="not UTF-8"):
        read_stock_file(bad)


def test_numbers_follow_number_pattern_when_given() -> None:
    text = "123456789012,ABCD1234\nABCDEFGHIJKL,ABCD1234\n"
    parsed = parse_stock_text(text, r"[A-Z0-9]{8}", r"[0-9]{12}")
    assert len(parsed.cards) == 1
    assert parsed.invalid == ((2, "number does not match the product's number_pattern"),)
