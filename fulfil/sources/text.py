"""What fulfil reads out of a shop's row and writes back into it, as pure functions of text.

Reading: the recharge account from dujiaoka's `info` (`label:value` lines, one per `other_ipu_cnf` field) or from
acg-faka's `widget` (JSON `{"<name>": {"value": ..., "cn": ...}}`). Writing: one key per line, `number----password`
where a number exists (the line format both shops' buyers already know), plain text with `\\n` line ends, so
nothing fulfil writes can break the shop's own pages.
"""

from __future__ import annotations

from collections.abc import Sequence

from suppliers import values
from suppliers.taxonomy import Card

# dujiaoka's `info` is a TEXT column (65,535 bytes); anything larger was not written by the shop.
MAX_INFO_BYTES = 65_535
# acg-faka's `widget` is a TEXT column too; a buyer's few inputs are a few hundred bytes.
MAX_WIDGET_BYTES = 65_535
KEY_SEPARATOR = "----"


class RowProblem(ValueError):
    """The shop row cannot be read as an order (garbage in a buyer's inputs); the message says what."""


def info_fields(info: str) -> dict[str, str]:
    """dujiaoka's buyer inputs: `label:value` per line (split at the first colon), the first of a label wins."""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        label, sep, value = line.partition(":")
        if sep and label.strip():
            fields.setdefault(label.strip(), value.strip())
    return fields


def account_from_info(info: str | None, label: str | None) -> str | None:
    """The recharge account the buyer typed, from the `info` line labelled `label`; None when there is none."""
    if info is None or label is None:
        return None
    if len(info.encode("utf-8", "surrogatepass")) > MAX_INFO_BYTES:
        raise RowProblem(f"info is larger than {MAX_INFO_BYTES} bytes")
    value = info_fields(info).get(label.strip())
    return value or None


def account_from_widget(widget: str | None, name: str | None) -> str | None:
    """The buyer's input `name` from acg-faka's widget JSON; None when absent. Garbage JSON is a RowProblem."""
    if name is None or widget is None or not widget.strip():
        return None
    if len(widget.encode("utf-8", "surrogatepass")) > MAX_WIDGET_BYTES:
        raise RowProblem(f"widget is larger than {MAX_WIDGET_BYTES} bytes")
    try:
        data = values.load_json(widget)
    except values.JsonError as exc:
        raise RowProblem(f"widget is not JSON ({exc})") from None
    if data in ([], None):  # PHP's json_encode of an empty array
        return None
    if not isinstance(data, dict):
        raise RowProblem(f"widget is JSON but not an object (a {type(data).__name__})")
    entry = data.get(name)
    if entry is None:
        return None
    value = entry.get("value") if isinstance(entry, dict) else entry
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowProblem(f"widget.{name}.value is not text (a {type(value).__name__})")
    text = str(value).strip()
    return text or None


def key_lines(cards: Sequence[Card]) -> list[str]:
    """One line per key: `number----password`, or the password alone. A key that cannot be one line of plain
    text (a line break inside, empty) is refused: the write-back would corrupt the buyer's view."""
    lines = []
    for card in cards:
        number, password = (card.number or "").strip(), card.password.strip()
        line = f"{number}{KEY_SEPARATOR}{password}" if number else password
        if not password or any(ch in line for ch in "\r\n\x00"):
            raise ValueError("a delivered key is empty or holds a line break: it cannot be written as one line")
        lines.append(line)
    return lines


def appended(base: str | None, lines: Sequence[str]) -> str:
    """The buyer's inputs kept, the keys after them on lines of their own."""
    block = "\n".join(lines)
    head = (base or "").rstrip("\r\n")
    return f"{head}\n{block}" if head.strip() else block


def holds(text: str | None, lines: Sequence[str], *, after_inputs: bool) -> bool:
    """Whether `text` is exactly what writing `lines` leaves (a write that landed before a crash): the keys as
    the whole text, or (`after_inputs`) as the text's last lines after the buyer's inputs."""
    if text is None:
        return False
    block = "\n".join(lines)
    if text == block:
        return True
    return after_inputs and text.endswith("\n" + block)


def size_ok(text: str, limit: int = MAX_INFO_BYTES) -> bool:
    return len(text.encode("utf-8")) <= limit
