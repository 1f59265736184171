"""The ambiguity resolver: attempts still open at a supplier whose order no longer waits on them.

An order's own open attempts are settled by the engine before the order is tried anywhere else. What is left
here are attempts whose order moved on (failover policy, an operator's retry) or was handed to a person, and
answers on record (receipts) that nobody finished acting on. The resolver finishes from a receipt without
asking again; otherwise it keeps asking the supplier, each attempt on its own back-off schedule so that a few
that never settle cannot starve the others. When one turns out charged it keeps the goods (back to stock or
held on the claim) and writes the answer onto the claim. Runs on start and from a periodic job; a missed tick
only delays.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fulfil.domain import AttemptRecord, AttemptState, ClaimReason, Order, OrderStatus, Receipt
from fulfil.engine import place_request, receipt_kind
from fulfil.routing import offer_of
from fulfil.storage import StoreError
from suppliers.taxonomy import Evidence, OrderState, Outcome

if TYPE_CHECKING:
    from fulfil.engine import Engine

log = logging.getLogger("fulfil.resolver")

MAX_CHECK_INTERVAL = 600.0  # seconds: an attempt that never settles is still asked about every ten minutes


def next_check(attempt: AttemptRecord, now: datetime, base: float) -> datetime:
    """When to ask again: doubling from the query interval with each fruitless check, up to a cap."""
    wait = min(max(base, 1.0) * 2 ** min(attempt.checks, 20), MAX_CHECK_INTERVAL)
    return now + timedelta(seconds=wait)


async def resolve_orphans(engine: Engine, limit: int = 200) -> int:
    """One pass; returns how many attempts reached a final answer."""
    settled = await _finish_receipts(engine, limit)
    askable = [name for name, s in engine.suppliers.items() if s.can_query and not s.local]
    now = engine.clock.now()
    for attempt, order in await engine.store.orphan_attempts(limit, suppliers=askable, due=now):
        supplier = engine.suppliers[attempt.supplier]
        product = engine.config.products.get(order.sku)
        offer = offer_of(product, attempt) if product is not None else None
        request = place_request(order, product.kind if product else "card", attempt, offer)
        try:
            outcome = await supplier.query(request)
            if await _settle(engine, attempt, order, outcome):
                settled += 1
            else:
                at = next_check(attempt, engine.clock.now(), engine.config.ambiguity.query_interval)
                await engine.store.schedule_check(attempt.id, at)
        except Exception:  # one attempt's trouble must not stop the others being asked about
            log.exception("resolver.failed", extra={"order": order.ref, "number": attempt.number})
            try:  # ... nor keep it first in line
                at = next_check(attempt, engine.clock.now(), engine.config.ambiguity.query_interval)
                await engine.store.schedule_check(attempt.id, at)
            except Exception:
                log.exception("resolver.schedule_failed", extra={"number": attempt.number})
    return settled


async def _finish_receipts(engine: Engine, limit: int) -> int:
    """Answers on record whose attempt is still open and whose order no longer waits on it."""
    settled = 0
    for receipt, attempt in await engine.store.unapplied_receipts(limit):
        assert receipt.attempt_id == attempt.id, f"receipt {receipt.id} is not attempt {attempt.id}'s"
        for found, order in await engine.store.orphan_attempts(1, attempt_ids=[attempt.id]):
            try:
                if await _settle(engine, found, order, _as_outcome(receipt)):
                    settled += 1
            except Exception:
                log.exception("resolver.failed", extra={"order": order.ref, "number": attempt.number})
    return settled


def _as_outcome(receipt: Receipt) -> Outcome:
    return Outcome(
        OrderState.SUCCEEDED,
        cards=receipt.cards,
        supplier_order_id=receipt.supplier_order_id,
        cost=receipt.cost,
        evidence=Evidence(message=f"from receipt {receipt.id} ({receipt.kind.value})"),
    )


async def _settle(engine: Engine, attempt: AttemptRecord, order: Order, outcome: Outcome) -> bool:
    store, now = engine.store, engine.clock.now()
    # "Gone" counts from the latest send: a re-send may be answered "no such order" for a while.
    age = (now - (attempt.last_sent_at or attempt.sent_at or attempt.started_at)).total_seconds()
    if outcome.state is OrderState.SUCCEEDED:
        receipt = await store.receipt_for(attempt.id)
        if receipt is None or not receipt.settles:
            product = engine.config.products.get(order.sku)
            receipt = await store.record_receipt(
                attempt.id,
                receipt_kind(outcome, product.kind if product else None),
                now,
                cards=outcome.cards,
                supplier_order_id=outcome.supplier_order_id,
                cost=outcome.cost,
                evidence=outcome.evidence.as_dict(),
            )
        claims = await store.claims_for_attempt(attempt.id)
        set_aside = any(c.reason is ClaimReason.POSSIBLE_DOUBLE for c in claims)
        if order.status is OrderStatus.REVIEW and not set_aside and not await _reopened_before(engine, attempt):
            # The buyer is still waiting: hand the order back to the engine, which finishes from the receipt.
            # Once per attempt: an order that fails again stays with the person (no review/reopen loop).
            why = f"attempt {attempt.number} turned out charged"
            await store.reopen_order(order.id, why, now, attempt_id=attempt.id)
            log.info("resolver.reopened", extra={"order": order.ref, "number": attempt.number})
            return True
        # Goods and claim first (both idempotent), the final mark last: a crash in between is redone next tick.
        disposition = await _keep_goods(engine, attempt, order, receipt)
        if not claims and not receipt.cards:
            # Charged, nothing to keep, and no claim yet (e.g. a top-up that went through after the order was
            # refunded): the loss must be on record, not only in a log line.
            evidence = {
                "number": attempt.number,
                "found_at": now.isoformat(),
                "supplier_said": outcome.evidence.as_dict(),
            }
            amount = attempt.cost_of(attempt.qty)
            await store.open_claim(attempt.id, ClaimReason.CHARGED_NOT_DELIVERED, amount, attempt.qty, evidence, now)
        await _note(engine, attempt, {"resolution": "charged", "units": attempt.qty, "goods": disposition})
        await store.mark_attempt(
            attempt.id, AttemptState.SUCCEEDED, now, error_class="late", supplier_order_id=outcome.supplier_order_id
        )
        if engine.config.ambiguity.late_keys == "stock" and receipt.cards:
            await _release_to_stock(engine, attempt, order)
        log.warning(
            "resolver.late_success",
            extra={"order": order.ref, "number": attempt.number, "goods": disposition},
        )
        return True
    # A purchase the supplier acknowledged (or answered) exists: a stray "not found" never writes it off.
    known = bool(attempt.evidence.get("acknowledged")) or await store.receipt_for(attempt.id) is not None
    gone = outcome.state is OrderState.NOT_FOUND and not known and age >= engine.config.ambiguity.give_up_after
    if outcome.state is OrderState.FAILED or gone:
        await _note(engine, attempt, {"resolution": "not_charged", "supplier_said": outcome.evidence.as_dict()})
        await store.mark_attempt(attempt.id, AttemptState.FAILED, now, error_class=(outcome.error or "not_found"))
        log.info("resolver.not_charged", extra={"order": order.ref, "number": attempt.number})
        return True
    return False


async def _reopened_before(engine: Engine, attempt: AttemptRecord) -> bool:
    events = await engine.store.events(name="order.reopened", order_id=attempt.order_id, limit=1000)
    return any(e.data.get("attempt_id") == attempt.id for e in events)


async def _keep_goods(engine: Engine, attempt: AttemptRecord, order: Order, receipt: Receipt) -> str:
    store, now = engine.store, engine.clock.now()
    if not receipt.cards:
        return "none (direct top-up or no cards): the supplier owes a refund"
    # Held first in every case: from there they are released to stock (below, once the attempt is final) so that
    # the claim covering them asks for less in the same transaction; a crash in between leaves them held.
    await store.hold_cards(attempt.id, receipt.cards, "late_keys", now)
    if engine.config.ambiguity.late_keys == "stock":
        return f"{len(receipt.cards)} keys returned to stock"
    return f"{len(receipt.cards)} keys held"


async def _release_to_stock(engine: Engine, attempt: AttemptRecord, order: Order) -> None:
    store = engine.store
    held = [h.id for h in await store.held_cards(reason="late_keys", order_ref=order.ref) if h.attempt_id == attempt.id]
    if not held:
        return
    try:
        await store.release_held_to_stock(held, "resolver", engine.clock.now())
    except StoreError as exc:  # e.g. a key already in stock (resold): they stay held, listed by `fulfil held`
        log.warning("resolver.kept_held", extra={"order": order.ref, "number": attempt.number, "why": str(exc)})


async def _note(engine: Engine, attempt: AttemptRecord, resolution: dict[str, Any]) -> None:
    now = engine.clock.now()
    for claim in await engine.store.claims_for_attempt(attempt.id):
        if claim.reason is ClaimReason.POSSIBLE_DOUBLE:
            await engine.store.update_claim_evidence(
                claim.claim_no, {**claim.evidence, "resolved_at": now.isoformat(), **resolution}, now
            )
