"""Reading loosely typed values out of supplier answers (numbers as strings, floats, or junk), and bounding them.

Everything a supplier (or a caller on our HTTP side) sends is untrusted input: JSON nested deep enough to
exhaust the parser's recursion, integers too long for `int()`, lone surrogates that no database can store,
strings longer than the column they end up in. The helpers here turn each of those into either a plain
`ValueError` (`JsonError`) at the parse, or a value that fits, so no adapter has to remember them one by one.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from typing import Any, Final

# Deeper than any answer a supplier protocol has (fulu's is 3 levels, acg-faka's 2); far below the
# interpreter's recursion limit, so nothing that walks a parsed answer recursively can hit it either.
MAX_JSON_DEPTH: Final = 64

# Column sizes of fulfil/storage/schema.py that supplier-supplied values land in.
MAX_SUPPLIER_ORDER_ID: Final = 128  # attempts/receipts.supplier_order_id String(128)
MAX_EXPIRES: Final = 64  # cards' expires String(64)
# Evidence is JSON text (no column limit), but it is shown to people and kept forever: bounded too.
MAX_CODE: Final = 64
MAX_MESSAGE: Final = 1000
MAX_EXCERPT: Final = 8000  # what was sent / received

CUT_MARKER: Final = " …[cut]… "
_HASH_CHARS: Final = 16

_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}
# A surrogate escape (`\ud800`) or a raw surrogate: the parse may hold a lone one, which cannot be encoded.
_MAYBE_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
# NUL (PostgreSQL text refuses it), other C0 controls but tab/newline, and lone surrogates.
_UNSTORABLE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


class JsonError(ValueError):
    """Not JSON we accept: malformed, nested too deep, a number too long, or a lone surrogate.

    The message says which, without the text itself (callers put it in their own sentence).
    """


def load_json(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """`json.loads` that only ever raises `JsonError`, and refuses nesting deeper than `max_depth`.

    The depth is checked on the text before parsing: Python's json recurses once per level and raises
    RecursionError (not ValueError) around 1,000 levels, and anything walking the result recursively fails
    even earlier. `kwargs` go to `json.loads` (e.g. `parse_float=Decimal`).
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
        except (UnicodeDecodeError, LookupError) as exc:
            raise JsonError(f"not text in a JSON encoding ({exc})") from None
    else:
        text = data
    if too_deep(text, max_depth):
        raise JsonError(f"nested deeper than {max_depth} levels")
    try:
        parsed = json.loads(text, **kwargs)
    except RecursionError:  # belt and braces: too_deep should have caught it
        raise JsonError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer longer than int() accepts
        raise JsonError(str(exc)) from None
    if _MAYBE_SURROGATE.search(text):
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonError("a lone surrogate (\\ud800-\\udfff) in a string") from None
        except (ValueError, TypeError):  # a parse hook returned something dumps cannot write: not our check
            pass
    return parsed


def too_deep(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when the brackets of `text` (outside its strings) nest deeper than `max_depth`.

    Exact for valid JSON; for invalid text any answer is fine, the parse refuses it anyway.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot nest deeper than it has openers: the common case, no scan
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth


# --- fitting values into their columns ----------------------------------------------------------------


def storable(text: str) -> str:
    """`text` with what a database text column refuses (NUL, other C0 controls, lone surrogates) replaced."""
    return _UNSTORABLE.sub("\ufffd", text)


def clip(text: str, limit: int, *, marker: str = CUT_MARKER) -> str:
    """`text` made storable and at most `limit` characters.

    A longer one loses its middle, replaced by `marker`: the start is what the supplier said, the end is
    where adapters append their own notes ("answer signature does not verify"), and both should survive.
    """
    text = storable(text)
    if len(text) <= limit:
        return text
    room = limit - len(marker)
    if room < 2:
        return text[:limit]
    head = room - room // 4  # three quarters of the room for the start
    return text[:head] + marker + text[len(text) - (room - head) :]


def clip_optional(text: str | None, limit: int) -> str | None:
    return None if text is None else clip(text, limit)


def supplier_order_id(value: str | None) -> str | None:
    """The supplier's order id, fit for its String(128) column, still unique and findable.

    Up to 128 characters it is kept as it is (less unstorable characters). A longer one keeps its first
    characters and ends in `#` + 16 hex characters of the SHA-256 of the whole id, so two long ids that
    share a prefix stay apart, and an operator holding the supplier's full id finds ours with the same
    function.
    """
    if value is None:
        return None
    text = storable(value)
    if len(text) <= MAX_SUPPLIER_ORDER_ID:
        return text
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{text[: MAX_SUPPLIER_ORDER_ID - _HASH_CHARS - 1]}#{digest}"


def expires(value: str | None) -> str | None:
    """A card's expiry text cut to its String(64) column (it is shown, never computed with)."""
    return None if value is None else storable(value)[:MAX_EXPIRES]


# --- numbers ------------------------------------------------------------------------------------------


def amount(value: object) -> Decimal | None:
    """A finite Decimal from a number or numeric string; None for anything else (never a guess)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        parsed = Decimal(str(value))
    except (InvalidOperation, ValueError):  # ValueError: an int too long for str()
        return None
    return parsed if parsed.is_finite() else None

