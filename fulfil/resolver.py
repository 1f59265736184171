"""The ambiguity resolver: attempts still open at a supplier whose order no longer waits on them.

An order's own open attempts are settled by the engine before the order is tried anywhere else. What is left
here are attempts whose order moved on (failover policy, an operator's retry) or was handed to a person: the
resolver keeps asking the supplier, and when one turns out charged it keeps the goods (back to stock or held
on the claim) and writes the answer onto the claim. Runs on start and from a periodic job; a missed tick
only delays.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fulfil.domain import AttemptRecord, AttemptState, ClaimReason, Order, OrderStatus
from fulfil.engine import place_request
from fulfil.routing import offer_of
from suppliers.taxonomy import OrderState, Outcome

if TYPE_CHECKING:
    from fulfil.engine import Engine

log = logging.getLogger("fulfil.resolver")


async def resolve_orphans(engine: Engine, limit: int = 200) -> int:
    """One pass; returns how many attempts reached a final answer."""
    settled = 0
    askable = [name for name, s in engine.suppliers.items() if s.can_query and not s.local]
    for attempt, order in await engine.store.orphan_attempts(limit, suppliers=askable):
        supplier = engine.suppliers[attempt.supplier]
        product = engine.config.products.get(order.sku)
        offer = offer_of(product, attempt) if product is not None else None
        request = place_request(order, product.kind if product else "card", attempt, offer)
        try:
            outcome = await supplier.query(request)
            if await _settle(engine, attempt, order, outcome):
                settled += 1
        except Exception:  # one attempt's trouble must not stop the others being asked about
            log.exception("resolver.failed", extra={"order": order.ref, "number": attempt.number})
    return settled


async def _settle(engine: Engine, attempt: AttemptRecord, order: Order, outcome: Outcome) -> bool:
    store, now = engine.store, engine.clock.now()
    age = (now - (attempt.sent_at or attempt.started_at)).total_seconds()
    if outcome.state is OrderState.SUCCEEDED:
        claims = await store.claims_for_attempt(attempt.id)
        set_aside = any(c.reason is ClaimReason.POSSIBLE_DOUBLE for c in claims)
        if order.status is OrderStatus.REVIEW and not set_aside:
            # The buyer is still waiting: hand the order back to the engine, which settles this attempt first.
            await store.reopen_order(order.id, f"attempt {attempt.number} turned out charged", now)
            log.info("resolver.reopened", extra={"order": order.ref, "number": attempt.number})
            return True
        # Goods and claim first (both idempotent), the final mark last: a crash in between is redone next tick.
        disposition = await _keep_goods(engine, attempt, order, outcome)
        if not claims and not outcome.cards:
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
        log.warning(
            "resolver.late_success",
            extra={"order": order.ref, "number": attempt.number, "goods": disposition},
        )
        return True
    gone = outcome.state is OrderState.NOT_FOUND and age >= engine.config.ambiguity.give_up_after
    if outcome.state is OrderState.FAILED or gone:
        await _note(engine, attempt, {"resolution": "not_charged", "supplier_said": outcome.evidence.as_dict()})
        await store.mark_attempt(attempt.id, AttemptState.FAILED, now, error_class=(outcome.error or "not_found"))
        log.info("resolver.not_charged", extra={"order": order.ref, "number": attempt.number})
        return True
    return False


async def _keep_goods(engine: Engine, attempt: AttemptRecord, order: Order, outcome: Outcome) -> str:
    store, now = engine.store, engine.clock.now()
    if not outcome.cards:
        return "none (direct top-up or no cards): the supplier owes a refund"
    if engine.config.ambiguity.late_keys == "stock":
        returned = await store.return_to_stock(order.sku, attempt.id, outcome.cards, now)
        return f"{returned} keys returned to stock"
    await store.hold_cards(attempt.id, outcome.cards, "late_keys", now)
    return f"{len(outcome.cards)} keys held on the claim"


async def _note(engine: Engine, attempt: AttemptRecord, resolution: dict[str, Any]) -> None:
    now = engine.clock.now()
    for claim in await engine.store.claims_for_attempt(attempt.id):
        if claim.reason is ClaimReason.POSSIBLE_DOUBLE:
            await engine.store.update_claim_evidence(
                claim.claim_no, {**claim.evidence, "resolved_at": now.isoformat(), **resolution}, now
            )
