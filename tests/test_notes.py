"""`fulfil.notes`: an operator's note, checked the same in the CLI and the console."""

from __future__ import annotations

import re

import pytest

from fulfil.notes import MAX_NOTE, clean_note, one_line


def test_a_note_is_trimmed_and_a_blank_one_is_none() -> None:
    assert clean_note("  buyer cancelled\n ticket 4711 \t") == "buyer cancelled\n ticket 4711"
    assert clean_note("买家要求取消") == "买家要求取消"
    assert clean_note(None) is None and clean_note(" \n ") is None
    assert clean_note("x" * MAX_NOTE) == "x" * MAX_NOTE


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x00b", "U+0000"),
        ("a\x1b[31mb", "U+001B"),
        ("a\x7fb", "U+007F"),
        ("a\x9bb", "U+009B"),  # C1 CSI: some terminals act on it
        ("refund \u202eeno", "U+202E"),  # a right-to-left override: reads other than it is stored
        ("a\u2028b", "U+2028"),
    ],
)
def test_control_and_format_characters_are_refused_by_name(text: str, shown: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"note holds a control character ({shown}); plain text only")):
        clean_note(text)


def test_a_note_too_long_is_refused_with_its_length() -> None:
    with pytest.raises(ValueError, match=f"note is {MAX_NOTE + 1} characters long; at most {MAX_NOTE}"):
        clean_note("x" * (MAX_NOTE + 1))


def test_one_line_folds_and_cuts() -> None:
    assert one_line("buyer\n  cancelled\tin chat", 300) == "buyer cancelled in chat"
    assert one_line("x" * 400, 300) == "x" * 299 + "…"
