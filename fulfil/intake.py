"""Order intake: is this order acceptable under the configuration, and reading import files.

Everything here is pure: `validate_order` judges one order against the `Config`; `parse_import` turns a file's
text into numbered lines, each an order or the reason it is not one; `plan_import` sorts those lines into
what to write, what is a repeat inside the file, and what to refuse. The CLI writes the plan.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from fulfil.config import MAX_SKU_LENGTH, Config
from fulfil.domain import NewOrder
from fulfil.risk.identity import ip_error
from suppliers import values

FIELDS = ("ref", "sku", "qty", "account", "amount", "contact", "ip", "user", "device")
REQUIRED = ("ref", "sku", "qty")
# The orders table's columns (fulfil/storage/schema.py): a longer value would fail the write on PostgreSQL.
MAX_REF_LENGTH = 128
MAX_ACCOUNT_LENGTH = 256
MAX_CONTACT_LENGTH = 256  # an e-mail address or a phone number (encrypted at rest, so no column bounds it)
MAX_IDENTITY_LENGTH = 256  # the shop's user id, a device fingerprint, an IP address
# Far above any max_qty, far below what prints or stores badly.
MAX_QTY = 1_000_000
# An amount paid: below 10^15 (a Money column, and a sum people can read), at most 8 decimal places.
MAX_AMOUNT_DIGITS = 15
MAX_AMOUNT_PLACES = 8
# How much of a refused value is shown back (an error message is no place for 10,000 characters).
SHOWN = 40

FileFormat = Literal["jsonl", "csv"]


class ImportFileError(Exception):
    """The import file cannot be read as a whole (missing, not text, no usable header)."""


class FieldError(ValueError):
    """One field of an order is missing or not a value of its kind; `field` names it."""

    def __init__(self, field: str, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.missing = missing


def validate_order(order: NewOrder, config: Config) -> list[str]:
    """Every reason the order is refused; empty when it is acceptable."""
    reasons: list[str] = []
    if not order.ref:
        reasons.append("ref is empty")
    elif len(order.ref) > MAX_REF_LENGTH:
        reasons.append(f"ref is longer than {MAX_REF_LENGTH} characters")
    elif not order.ref.isprintable():
        reasons.append("ref contains control characters")
    product = config.products.get(order.sku)
    if len(order.sku) > MAX_SKU_LENGTH:
        reasons.append(f"sku is longer than {MAX_SKU_LENGTH} characters")
    elif product is None:
        reasons.append(f"unknown sku '{order.sku}'")
    if order.qty < 1:
        reasons.append(f"qty {order.qty} is below 1")
    elif product is not None and order.qty > product.max_qty:
        reasons.append(f"qty {order.qty} is above max_qty {product.max_qty} for {order.sku}")
    if product is not None and product.kind == "direct" and not order.account:
        reasons.append(f"account is required for direct top-up product '{order.sku}'")
    reasons.extend(_text_reasons("account", order.account, MAX_ACCOUNT_LENGTH))
    reasons.extend(_text_reasons("contact", order.contact, MAX_CONTACT_LENGTH))
    for name in ("ip", "user", "device"):
        reasons.extend(_text_reasons(name, getattr(order, name), MAX_IDENTITY_LENGTH))
    if order.ip is not None and len(order.ip) <= MAX_IDENTITY_LENGTH and ip_error(order.ip):
        reasons.append(f"ip {shown(order.ip)!r} is not an IPv4 or IPv6 address")
    if order.amount is not None:
        reasons.extend(_amount_reasons(order.amount))
    return reasons


def _text_reasons(name: str, value: str | None, longest: int) -> list[str]:
    if value is None:
        return []
    if len(value) > longest:
        return [f"{name} is longer than {longest} characters"]
    if not value.isprintable():
        return [f"{name} contains control characters"]  # a NUL cannot even be stored on PostgreSQL
    return []


def _amount_reasons(amount: Decimal) -> list[str]:
    if not amount.is_finite() or amount < 0:
        return [f"amount {shown(str(amount))} is not a non-negative number"]
    if amount != 0 and amount.adjusted() >= MAX_AMOUNT_DIGITS:
        return [f"amount {shown(str(amount))} is too large (below 10^{MAX_AMOUNT_DIGITS})"]
    if _decimal_places(amount) > MAX_AMOUNT_PLACES:
        return [f"amount {shown(str(amount))} has more than {MAX_AMOUNT_PLACES} decimal places"]
    return []


def _decimal_places(amount: Decimal) -> int:
    """Places after the point, trailing zeros not counted (exactly: `normalize()` would round at 28 digits)."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - zeros)


def shown(value: str) -> str:
    """A value as it appears in a message: cut when it is longer than anyone reads."""
    return value if len(value) <= SHOWN else f"{value[:SHOWN]}… ({len(value)} characters)"


# --- turning raw fields into an order -------------------------------------------------------------------


def _text(value: Any, name: str, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FieldError(name, f"missing {name}", missing=True)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldError(name, f"{name} must be text, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) >= 10**MAX_REF_LENGTH:
        raise FieldError(name, f"{name} is too long")  # str() of a huge int raises, and no column holds it
    return str(value).strip()


def _qty(value: Any) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError("qty", "missing qty", missing=True)
    if isinstance(value, bool):
        raise FieldError("qty", "qty must be a whole number")
    if isinstance(value, int):
        number = Decimal(value) if abs(value) <= MAX_QTY else Decimal(MAX_QTY + 1)
    elif isinstance(value, float):
        number = Decimal(str(value)) if math.isfinite(value) else Decimal("NaN")
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = Decimal("NaN")
    if not number.is_finite() or number != number.to_integral_value():
        raise FieldError("qty", f"qty '{shown(str(value).strip())}' is not a whole number")
    if abs(number) > MAX_QTY:
        raise FieldError("qty", f"qty is too large (at most {MAX_QTY})")
    return int(number)


def _amount(value: Any) -> Decimal | None:
    """A string, an integer, a Decimal or a finite float (converted by its shortest text: 10.5 is 10.5)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise FieldError("amount", f"amount must be a number, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) >= 10**MAX_AMOUNT_DIGITS:
        raise FieldError("amount", f"amount is too large (below 10^{MAX_AMOUNT_DIGITS})")
    text = str(value).strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise FieldError("amount", f"amount '{shown(text)}' is not a number") from None
    if not amount.is_finite():
        raise FieldError("amount", f"amount '{shown(text)}' is not a number")
    return amount


def order_from_fields(fields: Mapping[str, Any]) -> NewOrder:
    """Build a NewOrder from one record's fields.

    Raises `FieldError` (a ValueError) naming the field that is missing or not a value of its kind, and a
    plain ValueError for fields that are no order's. Lengths and ranges are `validate_order`'s.
    """
    unknown = sorted(shown(str(name)) for name in set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)} (expected {', '.join(FIELDS)})")
    ref = _text(fields.get("ref"), "ref", required=True)
    sku = _text(fields.get("sku"), "sku", required=True)
    assert ref is not None and sku is not None  # required=True
    return NewOrder(
        ref=ref,
        sku=sku,
        qty=_qty(fields.get("qty")),
        account=_text(fields.get("account"), "account", required=False),
        amount=_amount(fields.get("amount")),
        contact=_text(fields.get("contact"), "contact", required=False),
        ip=_text(fields.get("ip"), "ip", required=False),
        user=_text(fields.get("user"), "user", required=False),
        device=_text(fields.get("device"), "device", required=False),
    )


# --- import files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedLine:
    """One record of an import file: `order` when it could be read, else `error`."""

    line: int  # 1-based line number in the file where the record starts
    order: NewOrder | None = None
    error: str | None = None


@dataclass(frozen=True)
class ImportFile:
    format: FileFormat
    lines: tuple[ParsedLine, ...]


def detect_format(path: Path, text: str) -> FileFormat:
    """By extension when it says, else by content: a JSON object on the first line means JSON lines."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.startswith("{") else "csv"


def _parse_jsonl(text: str) -> Iterator[ParsedLine]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            # Decimal, not float, so "98.50" stays exactly 98.50.
            record = values.load_json(raw, parse_float=Decimal)
        except values.JsonError as exc:
            yield ParsedLine(number, error=f"not valid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            yield ParsedLine(number, error="expected a JSON object with ref, sku, qty, account, amount")
            continue
        try:
            yield ParsedLine(number, order=order_from_fields(record))
        except ValueError as exc:
            yield ParsedLine(number, error=str(exc))


def _parse_csv(text: str) -> Iterator[ParsedLine]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header: list[str] | None = None
    start = 1
    for row in _rows(reader):
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            _check_header(header)
            continue
        if len(row) != len(header):
            yield ParsedLine(line, error=f"expected {len(header)} columns, found {len(row)}")
            continue
        try:
            yield ParsedLine(line, order=order_from_fields(dict(zip(header, row, strict=True))))
        except ValueError as exc:
            yield ParsedLine(line, error=str(exc))
    if header is None:
        raise ImportFileError("the CSV file is empty: expected a header line ref,sku,qty,account,amount")


def _rows(reader: Any) -> Iterator[list[str]]:
    """The reader's rows; a row the csv module cannot read (a field over its size limit, a NUL) refuses the
    whole file, naming the line: the reader cannot resynchronise after it."""
    while True:
        try:
            row: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(f"line {reader.line_num}: {exc}") from exc
        yield row


def _delimiter(text: str) -> str:
    """Comma, unless the header line plainly uses tabs or semicolons (spreadsheet exports in some locales)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    for candidate in ("\t", ";"):
        if candidate in header and "," not in header:
            return candidate
    return ","


def _check_header(header: list[str]) -> None:
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in FIELDS]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}")
    if duplicated:
        problems.append(f"repeated column(s) {', '.join(duplicated)}")
    if problems:
        raise ImportFileError(
            f"CSV header: {'; '.join(problems)} (expected the header ref,sku,qty,account,amount)"
        )


def parse_import_text(text: str, fmt: FileFormat) -> ImportFile:
    parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
    return ImportFile(fmt, tuple(parse(text)))


def read_import_file(path: Path) -> ImportFile:
    """Read and parse a whole file; ImportFileError when it cannot be read at all."""
    try:
        # utf-8-sig: spreadsheet programs put a byte-order mark in front of CSV exports.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return parse_import_text(text, detect_format(path, text))
    except ImportFileError as exc:
        raise ImportFileError(f"{path}: {exc}") from exc


# --- the plan -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str
    ref: str | None = None


@dataclass
class ImportPlan:
    """What to write (in file order), what repeats an earlier line identically, and what is refused."""

    to_write: list[tuple[int, NewOrder]] = field(default_factory=list)
    repeated: list[tuple[int, int]] = field(default_factory=list)  # (line, the earlier identical line)
    rejected: list[Rejection] = field(default_factory=list)


def plan_import(lines: Iterable[ParsedLine], config: Config) -> ImportPlan:
    plan = ImportPlan()
    first_seen: dict[str, tuple[int, NewOrder]] = {}
    for parsed in lines:
        if parsed.order is None:
            plan.rejected.append(Rejection(parsed.line, parsed.error or "unreadable"))
            continue
        order = parsed.order
        reasons = validate_order(order, config)
        if reasons:
            plan.rejected.append(Rejection(parsed.line, "; ".join(reasons), shown(order.ref)))
            continue
        earlier = first_seen.get(order.ref)
        if earlier is None:
            first_seen[order.ref] = (parsed.line, order)
            plan.to_write.append((parsed.line, order))
        elif earlier[1] == order:
            plan.repeated.append((parsed.line, earlier[0]))
        else:
            plan.rejected.append(
                Rejection(
                    parsed.line,
                    f"ref {order.ref} is also on line {earlier[0]} with different content",
                    order.ref,
                )
            )
    return plan


def differences(new: NewOrder, existing: NewOrder) -> list[str]:
    """Which fields differ, for telling an operator why a reused ref was refused."""
    out = []
    for name in FIELDS[1:]:
        mine, theirs = getattr(new, name), getattr(existing, name)
        if mine != theirs:
            out.append(f"{name} {_shown(theirs)} -> {_shown(mine)}")
    return out


def _shown(value: object) -> str:
    return "(none)" if value is None else str(value)
