"""What operators see: orders and claims as JSON-ready dicts, CSV, and plain text tables.

Card keys are masked (`fulfil.crypto.mask`) unless the caller asks to reveal them. Money is a string
("98.50"), never a float; times are ISO 8601 in UTC.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from fulfil.crypto import mask
from fulfil.domain import AttemptRecord, ClaimRecord, OrderView
from fulfil.logs import redact
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from fulfil.storage.types import HeldCard

ORDER_FIELDS = ("ref", "sku", "qty", "account", "amount", "status", "reason", "created_at", "delivered_at")
CLAIM_FIELDS = (
    "claim_no",
    "supplier",
    "order_ref",
    "supplier_order_no",
    "supplier_order_id",
    "reason",
    "amount",
    "qty",
    "status",
    "created_at",
    "updated_at",
    "note",
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def card_to_dict(card: Card, *, reveal: bool = False) -> dict[str, Any]:
    show = (lambda text: text) if reveal else mask
    return {
        "number": show(card.number) if card.number else None,
        "password": show(card.password),
        "expires": card.expires,
    }


def attempt_to_dict(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "supplier": attempt.supplier,
        "supplier_order_no": attempt.number,
        "state": str(attempt.state),
        "error_class": attempt.error_class,
        "started_at": _time(attempt.started_at),
        "finished_at": _time(attempt.finished_at),
    }


def claim_to_dict(claim: ClaimRecord, *, evidence: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "claim_no": claim.claim_no,
        "supplier": claim.supplier,
        "order_ref": claim.order_ref,
        "supplier_order_no": claim.supplier_order_no,
        "supplier_order_id": claim.supplier_order_id,
        "reason": str(claim.reason),
        "amount": _money(claim.amount),
        "qty": claim.qty,
        "status": str(claim.status),
        "created_at": _time(claim.created_at),
        "updated_at": _time(claim.updated_at),
        "note": claim.note,
    }
    if evidence:
        # Evidence is stored redacted already; this is the belt to that pair of braces.
        out["evidence"] = redact(claim.evidence)
    return out


def held_to_dict(held: HeldCard, *, reveal: bool = False) -> dict[str, Any]:
    """A held key with its purchase and the claims of that purchase; the key masked unless revealed."""
    return {
        "id": held.id,
        "order_ref": held.order_ref,
        "sku": held.sku,
        "attempt_id": held.attempt_id,
        "supplier_order_no": held.attempt_number,
        "supplier": held.supplier,
        "reason": held.reason,
        "held_at": _time(held.created_at),
        "released_at": _time(held.released_at),
        "released_to": held.released_to,
        "card": card_to_dict(held.card, reveal=reveal),
        "claims": [
            {"claim_no": c.claim_no, "reason": str(c.reason), "amount": _money(c.amount), "status": str(c.status)}
            for c in held.claims
        ],
    }


def order_to_dict(view: OrderView, *, reveal: bool = False) -> dict[str, Any]:
    order = view.order
    return {
        "ref": order.ref,
        "sku": order.sku,
        "qty": order.qty,
        "account": order.account,
        "amount": _money(order.amount),
        "status": str(order.status),
        "reason": order.reason,
        "created_at": _time(order.created_at),
        "delivered_at": _time(order.delivered_at),
        "cards": [_order_card(view, i, card, reveal) for i, card in enumerate(view.cards)],
        "attempts": [attempt_to_dict(attempt) for attempt in view.attempts],
        "claims": [claim_to_dict(claim) for claim in view.claims],
    }


def _order_card(view: OrderView, index: int, card: Card, reveal: bool) -> dict[str, Any]:
    out = card_to_dict(card, reveal=reveal)
    if index < len(view.replaced) and view.replaced[index]:
        out["replaced"] = True  # reported invalid, and a reissue delivered its replacement
    if index < len(view.reissued) and view.reissued[index]:
        out["reissued"] = True  # a replacement bought by an after-sales reissue
    return out


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# --- CSV ------------------------------------------------------------------------------------------------


def write_claims_csv(claims: Iterable[ClaimRecord], stream: TextIO, *, evidence: bool = False) -> int:
    """Write a header and one row per claim (evidence as compact JSON when asked); returns the row count."""
    columns = [*CLAIM_FIELDS, "evidence"] if evidence else list(CLAIM_FIELDS)
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    count = 0
    for claim in claims:
        row = claim_to_dict(claim, evidence=evidence)
        if evidence:
            row["evidence"] = json.dumps(row["evidence"], ensure_ascii=False, sort_keys=True, default=str)
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
        count += 1
    return count


# --- text -----------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    raw_rows = [list(row) for row in cells]
    widths = [len(header) for header in headers]
    for row in raw_rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [
        all(row[i].replace(".", "", 1).isdigit() for row in raw_rows) and bool(raw_rows)
        for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in raw_rows)])


def orders_table(views: Iterable[OrderView]) -> str:
    rows = [
        (
            v.order.ref,
            v.order.sku,
            v.order.qty,
            v.order.status,
            v.order.reason,
            v.order.created_at,
            v.order.delivered_at,
        )
        for v in views
    ]
    return table(("REF", "SKU", "QTY", "STATUS", "REASON", "CREATED (UTC)", "DELIVERED (UTC)"), rows)


def review_table(views: Iterable[OrderView]) -> str:
    rows = [
        (
            v.order.ref,
            v.order.sku,
            v.order.qty,
            v.order.account,
            v.order.reason,
            v.order.created_at,
            len(v.attempts),
            len(v.claims),
        )
        for v in views
    ]
    return table(("REF", "SKU", "QTY", "ACCOUNT", "REASON", "CREATED (UTC)", "ATTEMPTS", "CLAIMS"), rows)


def claims_table(claims: Iterable[ClaimRecord]) -> str:
    rows = [
        (c.claim_no, c.supplier, c.order_ref, c.reason, c.amount, c.qty, c.status, c.updated_at, c.note)
        for c in claims
    ]
    return table(
        ("CLAIM", "SUPPLIER", "ORDER", "REASON", "AMOUNT", "QTY", "STATUS", "UPDATED (UTC)", "NOTE"), rows
    )


def held_table(held: Iterable[HeldCard], *, reveal: bool = False) -> str:
    rows = []
    for h in held:
        card = card_to_dict(h.card, reveal=reveal)
        claims = ", ".join(f"{c.claim_no} {c.reason} {_cell(c.amount)}" for c in h.claims) or None
        rows.append(
            (h.id, h.order_ref, h.sku, h.attempt_number, h.supplier, h.reason, h.created_at, claims,
             card["number"], card["password"])
        )  # fmt: skip
    return table(
        ("ID", "ORDER", "SKU", "SUPPLIER ORDER NO", "SUPPLIER", "REASON", "HELD (UTC)", "CLAIMS", "NUMBER", "KEY"),
        rows,
    )


def stock_table(counts: Mapping[str, tuple[int, int]]) -> str:
    rows = [(sku, available, used) for sku, (available, used) in sorted(counts.items())]
    return table(("SKU", "AVAILABLE", "USED"), rows)


def order_text(view: OrderView, *, reveal: bool = False) -> str:
    """One order in full, for `fulfil orders show`."""
    data = order_to_dict(view, reveal=reveal)
    lines = []
    for name in ORDER_FIELDS:
        value = getattr(view.order, name)
        lines.append(f"{name + ':':<14}{_cell(value)}{' UTC' if isinstance(value, datetime) else ''}")
    lines.append("")
    if view.cards:
        lines.append(f"cards ({len(view.cards)}{'' if reveal else ', masked: --reveal to show'}):")
        lines.append(
            table(
                ("NUMBER", "PASSWORD", "EXPIRES"),
                [(c["number"], c["password"], c["expires"]) for c in data["cards"]],
            )
        )
    else:
        lines.append("cards: none")
    lines.append("")
    if view.attempts:
        lines.append("attempts:")
        lines.append(
            table(
                ("SUPPLIER", "SUPPLIER ORDER NO", "STATE", "ERROR", "STARTED (UTC)", "FINISHED (UTC)"),
                [
                    (a.supplier, a.number, a.state, a.error_class, a.started_at, a.finished_at)
                    for a in view.attempts
                ],
            )
        )
    else:
        lines.append("attempts: none")
    if view.claims:
        lines.append("")
        lines.append("claims:")
        lines.append(claims_table(view.claims))
    return "\n".join(lines)
