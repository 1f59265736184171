"""An operator's note on an action (why an order was held, a case rejected): optional, bounded, plain text.

The console and the CLI take it the same way, so a note refused in one is refused in the other.
"""

from __future__ import annotations

import unicodedata
from typing import Final

MAX_NOTE: Final = 1000


# Control characters (C0, DEL, C1: a terminal acts on some), format characters (bidi overrides that make a note
# read other than it is stored) and the Unicode line and paragraph separators.
_REFUSED: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


def clean_note(raw: str | None) -> str | None:
    """The note trimmed, None when blank; ValueError naming what is wrong when it is too long or holds control
    or format characters other than line breaks and tabs (it is shown in the console and terminals, and logged)."""
    note = (raw or "").strip()
    if not note:
        return None
    if len(note) > MAX_NOTE:
        raise ValueError(f"note is {len(note)} characters long; at most {MAX_NOTE}")
    bad = next((c for c in note if c not in "\n\t" and unicodedata.category(c) in _REFUSED), None)
    if bad is not None:
        raise ValueError(f"note holds a control character (U+{ord(bad):04X}); plain text only")
    return note


def one_line(note: str, limit: int) -> str:
    """The note on one line (an order's reason is a table cell and a chat line), cut to `limit` characters."""
    folded = " ".join(note.split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
