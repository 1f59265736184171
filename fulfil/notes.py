"""An operator's note on an action (why an order was held, a case rejected): optional, bounded, plain text.

The console and the CLI take it the same way, so a note refused in one is refused in the other.
"""

from __future__ import annotations

from typing import Final

MAX_NOTE: Final = 1000


def clean_note(raw: str | None) -> str | None:
    """The note trimmed, None when blank; ValueError naming what is wrong when it is too long or holds control
    characters other than line breaks and tabs (it is shown in the console and written to the log)."""
    note = (raw or "").strip()
    if not note:
        return None
    if len(note) > MAX_NOTE:
        raise ValueError(f"note is {len(note)} characters long; at most {MAX_NOTE}")
    bad = next((c for c in note if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"note holds a control character ({ord(bad):#04x}); plain text only")
    return note
