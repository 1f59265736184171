"""The evidence file of an order (or of a case, by its order): for disputes with suppliers and appeals to
platforms. One JSON document — the order, its full timeline (intake, risk and review events, attempts with
their redacted requests and answers, deliveries with keys masked, notifications sent, the buyer's reports,
the actions taken and by whom), its claims, cases and reissues — and an HTML rendering of the same document.

Keys are masked and sensitive fields redacted; every key of the order (and of its reissues) is also scrubbed
from any free text the document carries, whatever a supplier's answer excerpt happened to contain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import jinja2

from fulfil import render
from fulfil.aftersales.ledger import entry_dict
from fulfil.aftersales.model import case_dict
from fulfil.crypto import mask
from fulfil.logs import redact
from fulfil.notify.events import mask_contact
from fulfil.storage import NotFound, Store
from fulfil.storage.store_reissues import LedgerFilter


async def build_evidence(store: Store, ref_or_case: str, now: datetime | None = None) -> dict[str, Any]:
    """The evidence document; NotFound for an unknown order ref or case number."""
    ref = ref_or_case
    case = await store.get_case(ref_or_case) if ref_or_case.startswith("AS-") else None
    if case is not None:
        ref = case.order_ref
    view = await store.get_order(ref)
    if view is None:
        raise NotFound(f"no order or case '{ref_or_case}'")
    order = view.order
    children = [v for r in await store.reissue_children(order.id) if (v := await store.get_order(r)) is not None]
    ids = [order.id, *(c.order.id for c in children)]
    secrets = {card.password for v in (view, *children) for card in v.cards if card.password}
    secrets |= {card.number for v in (view, *children) for card in v.cards if card.number and len(card.number) > 6}
    rows = await store.evidence_rows(ids)
    found = await store.order_for_proof(ref)
    contact = found[2] if found else None
    timeline: list[dict[str, Any]] = [
        {
            "at": order.created_at,
            "what": "order.taken",
            "order": order.ref,
            "detail": {"sku": order.sku, "qty": order.qty},
        }
    ]
    refs = {order.id: order.ref, **{c.order.id: c.order.ref for c in children}}
    for v in (view, *children):
        for attempt in v.attempts:
            timeline.append(
                {
                    "at": attempt.started_at,
                    "what": "attempt",
                    "order": v.order.ref,
                    "detail": {
                        **render.attempt_to_dict(attempt),
                        "supplier_order_id": attempt.supplier_order_id,
                        "cost": attempt.supplier_cost if attempt.supplier_cost is not None else attempt.cost,
                        "evidence": redact(attempt.evidence),
                    },
                }
            )
    for event in rows["events"]:
        timeline.append(
            {
                "at": event["at"],
                "what": event["name"],
                "order": refs.get(event["order_id"], ""),
                "operator": event["operator"],
                "supplier": event["supplier"],
                "detail": redact(event["data"]),
            }
        )
    for note in rows["notifications"]:
        timeline.append(
            {
                "at": note["created_at"],
                "what": "notification",
                "order": refs.get(note["order_id"], ""),
                "detail": {k: note[k] for k in ("type", "channel", "state", "attempts", "done_at", "last_status")},
            }
        )
    timeline.sort(key=lambda entry: (entry["at"], entry["what"]))
    cases = await store.list_cases(order_id=order.id)
    document = {
        "ref": order.ref,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "case": case.case_no if case else None,
        "order": {**render.order_to_dict(view), "contact": mask_contact(contact)},
        "reissue_orders": [render.order_to_dict(child) for child in children],
        "claims": [render.claim_to_dict(claim, evidence=True) for claim in view.claims],
        "cases": [case_dict(c) for c in cases],
        "reissues": [entry_dict(e) for e in await store.reissue_ledger(LedgerFilter(ref=order.ref))],
        "timeline": timeline,
    }
    scrubbed: dict[str, Any] = _scrub(_plain(document), secrets)
    return scrubbed


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO 8601, money as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _scrub(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, mask(secret))
        return value
    return value


def render_html(document: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("evidence.html").render(doc=document, to_json=render.to_json)


def _template(name: str) -> str:
    return resources.files("fulfil.aftersales").joinpath("templates", name).read_text(encoding="utf-8")
