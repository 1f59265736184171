"""Properties of the stock file parser: whatever an operator's file holds, every line is accounted for (a key,
a refusal naming its line, or a blank, comment or header line), a key is exactly what its line says, no
refusal quotes a key, and a file that cannot be read is a `StockFileError` naming it, never anything else.

Line numbers are what an editor shows: lines end at a newline (\\n, \\r\\n or \\r), nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fulfil.stockfile import StockFile, StockFileError, parse_stock_text, read_stock_file

PROPERTY = settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PATTERN = "^[A-Z0-9]{16}$"
NUMBER_PATTERN = "^[0-9]{12}$"

keys = st.from_regex(r"\A[A-Z0-9]{16}\Z")
numbers = st.from_regex(r"\A[0-9]{12}\Z")
noise = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=40)
# Characters that end a line for str.splitlines() but not for an editor (or for Python's universal newlines).
odd_breaks = st.sampled_from(["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
lines = st.one_of(
    keys,
    st.builds(lambda n, k: f"{n},{k}", numbers, keys),
    st.builds(lambda k, b, j: f"{k}{b}{j}", keys, odd_breaks, keys),
    st.sampled_from(["", "  ", "# comment", "number,password", "password", ",", "a,", ",b", "x,y,z"]),
    noise,
)
texts = st.lists(lines, max_size=30).flatmap(
    lambda ls: st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(ls), max_size=len(ls)).map(
        lambda ends: "".join(line + end for line, end in zip(ls, ends, strict=True))
    )
)
patterns = st.sampled_from([(None, None), (PATTERN, None), (PATTERN, NUMBER_PATTERN), ("^.+$", None)])


def _editor_lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def _check(stock: StockFile, text: str) -> None:
    rows = _editor_lines(text)
    seen = list(stock.lines) + [line for line, _ in stock.invalid]
    assert len(seen) == len(set(seen)), "a line counted twice"
    assert list(stock.lines) == sorted(stock.lines)
    for card, line in zip(stock.cards, stock.lines, strict=True):
        row = rows[line - 1].strip()
        assert row in (card.password, f"{card.number},{card.password}") or (
            card.number and re.fullmatch(rf"{re.escape(card.number)}\s*,\s*{re.escape(card.password)}", row)
        ), f"line {line} is {row!r}, read as {card}"
        assert card.password and card.password.isprintable() and card.password == card.password.strip()
    for line, reason in stock.invalid:
        assert 1 <= line <= len(rows)
        row = rows[line - 1]
        for part in re.split(r"[,\s]+", row):
            if len(part) >= 6 and not re.fullmatch(r"[a-z_']+", part):  # plain words may be the reason's own
                assert part not in reason, f"the refusal of line {line} quotes it"
    content = {
        n for n, row in enumerate(rows, start=1) if row.strip() and not row.strip().startswith("#")
    }  # every line with content is a key, a refusal, or the (one, first) header
    unaccounted = content - set(seen)
    assert len(unaccounted) <= 1, unaccounted
    for n in unaccounted:
        assert rows[n - 1].replace(" ", "").strip().lower() in ("number,password", "password")


@PROPERTY
@given(text=texts, rules=patterns)
@example(text="ABCDEFGHIJKLMNOP\x0cQRSTUVWXYZ012345\n", rules=(None, None))  # one line, not two keys
@example(text="ABCDEFGHIJKLMNOP\u2028\n", rules=(PATTERN, None))
def test_every_line_is_a_key_a_refusal_or_skipped(text: str, rules: tuple[Any, Any]) -> None:
    _check(parse_stock_text(text, *rules), text)


@PROPERTY
@given(text=st.text(max_size=300), rules=patterns)
def test_any_text_parses(text: str, rules: tuple[Any, Any]) -> None:
    _check(parse_stock_text(text, *rules), text)


@PROPERTY
@given(cards=st.lists(st.tuples(st.none() | numbers, keys), max_size=20, unique=True))
def test_keys_written_one_a_line_read_back_the_same(cards: list[tuple[str | None, str]]) -> None:
    text = "number,password\n" + "".join(f"{n},{k}\n" if n else f"{k}\n" for n, k in cards)
    stock = parse_stock_text(text, PATTERN, NUMBER_PATTERN)
    assert [(c.number or None, c.password) for c in stock.cards] == cards and not stock.invalid
    assert list(stock.lines) == list(range(2, len(cards) + 2))


@PROPERTY
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfeA\x00")  # UTF-16
@example(data=b"\xef\xbb\xbfABCDEFGHIJKLMNOP\n")  # a byte order mark
def test_any_bytes_are_a_stock_file_or_a_stock_file_error(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("stock") / "keys.txt"
    path.write_bytes(data)
    try:
        stock = read_stock_file(path, PATTERN)
    except StockFileError as exc:
        assert str(exc).startswith(f"{path}: ")
        return
    assert isinstance(stock, StockFile)
    assert all(not c.password.startswith("\ufeff") for c in stock.cards)


def test_a_missing_file_is_a_stock_file_error(tmp_path: Path) -> None:
    try:
        read_stock_file(tmp_path / "nope.txt")
    except StockFileError as exc:
        assert "nope.txt" in str(exc)
    else:
        raise AssertionError("a missing file was read")
