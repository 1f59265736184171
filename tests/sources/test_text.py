"""What fulfil reads from a shop row's text and writes back into it (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulfil.sources import text
from suppliers.taxonomy import Card


def test_info_lines_are_label_colon_value() -> None:
    info = "充值账号:user:1\r\n备注: 快 \n no colon here\n充值账号:second\n:empty label"
    assert text.info_fields(info) == {"充值账号": "user:1", "备注": "快"}
    assert text.account_from_info(info, "充值账号") == "user:1"  # split at the first colon only
    assert text.account_from_info(info, "QQ") is None
    assert text.account_from_info("充值账号:   ", "充值账号") is None
    assert text.account_from_info(None, "充值账号") is None
    with pytest.raises(text.RowProblem, match="larger than 65535 bytes"):
        text.account_from_info("充" * 30_000, "充值账号")


@pytest.mark.parametrize(
    ("widget", "expected"),
    [
        ('{"account": {"value": "user1", "cn": "充值账号"}}', "user1"),
        ('{"account": {"value": 10086, "cn": "QQ"}}', "10086"),
        ('{"account": "bare"}', "bare"),
        ('{"other": {"value": "x"}}', None),
        ('{"account": {"value": null}}', None),
        ("[]", None),
        ("", None),
        (None, None),
    ],
)
def test_widget_values(widget: str | None, expected: str | None) -> None:
    assert text.account_from_widget(widget, "account") == expected


@pytest.mark.parametrize(
    ("widget", "problem"),
    [
        ("{not json", "widget is not JSON"),
        ('"a string"', "widget is JSON but not an object"),
        ('{"account": {"value": [1]}}', "widget.account.value is not text"),
        ("[" * 200 + "]" * 200, "widget is not JSON"),
    ],
)
def test_widget_garbage_is_a_problem(widget: str, problem: str) -> None:
    with pytest.raises(text.RowProblem, match=problem):
        text.account_from_widget(widget, "account")


def test_key_lines_use_the_shops_format_and_refuse_line_breaks() -> None:
    cards = [Card(password="ABCDEFGH12345678", number="123456789012"), Card(password=" QWERTY ")]
    assert text.key_lines(cards) == ["123456789012----ABCDEFGH12345678", "QWERTY"]
    for bad in (Card(password="AB\nCD"), Card(password="AB", number="1\r2"), Card(password="  ")):
        with pytest.raises(ValueError, match="line break"):
            text.key_lines([bad])


def test_appended_keeps_the_inputs_and_holds_recognises_it() -> None:
    lines = ["K1", "K2"]
    assert text.appended("充值账号:a\n备注:b\n\n", lines) == "充值账号:a\n备注:b\nK1\nK2"
    assert text.appended(None, lines) == text.appended("  \n", lines) == "K1\nK2"
    assert text.holds("充值账号:a\nK1\nK2", lines, after_inputs=True)
    assert text.holds("K1\nK2", lines, after_inputs=False)
    assert not text.holds("充值账号:a\nK1\nK2", lines, after_inputs=False)
    assert not text.holds("xK1\nK2", lines, after_inputs=True)
    assert not text.holds(None, lines, after_inputs=True)


@given(st.text(max_size=200), st.lists(st.text(alphabet="ABCDEF0123456789-", min_size=1, max_size=20), min_size=1))
def test_whatever_the_inputs_the_written_text_holds_exactly_the_keys(inputs: str, lines: list[str]) -> None:
    written = text.appended(inputs, lines)
    assert text.holds(written, lines, after_inputs=True)
    assert written.split("\n")[-len(lines):] == lines
    assert written.startswith(inputs.rstrip("\r\n")) or not inputs.strip()
