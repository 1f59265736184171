"""Operator decisions on orders in review: retry, refund, resolve; anything not in review is refused. And hold:
a pending order taken into review by a person, which no claim can then take."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil.domain import AttemptState, NewOrder, OrderStatus
from fulfil.storage import MANUAL_SUPPLIER, DuplicateCard, InvalidTransition, NotFound, Store
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw


async def _in_review(store: Store, now: datetime, claimed: Claimed, ref: str = "r1") -> int:
    order = await claimed(ref)
    await store.finish_order(order.id, "w1", OrderStatus.REVIEW, "supplier said our_bug", now)
    return order.id


async def test_retry_puts_the_order_back_in_the_queue(store: Store, now: datetime, claimed: Claimed) -> None:
    order_id = await _in_review(store, now, claimed)
    order = await store.review_retry("r1", "alice", now)
    assert (order.status, order.reason, order.lease_owner) == (OrderStatus.PENDING, None, None)
    [event] = await store.events(name="review.retry")
    expected = {"reason": "supplier said our_bug", "after_attempt": 0}  # no attempt before the retry
    assert (event.order_id, event.operator, event.data) == (order_id, "alice", expected)
    assert [o.id for o in await store.claim_orders("w2", 10, 60, now + timedelta(seconds=1))] == [order_id]


async def test_refund_fails_the_order_and_keeps_the_reason(store: Store, now: datetime, claimed: Claimed) -> None:
    await _in_review(store, now, claimed)
    order = await store.review_refund("r1", "bob", now)
    assert (order.status, order.reason) == (OrderStatus.FAILED, "supplier said our_bug")
    assert [e.operator for e in await store.events(name="review.refund")] == ["bob"]


async def test_resolve_delivers_under_a_manual_attempt(store: Store, now: datetime, claimed: Claimed) -> None:
    order_id = await _in_review(store, now, claimed)
    order = await store.review_resolve("r1", [Card("HAND-1", "N1")], "carol", now)
    assert (order.status, order.delivered_at, order.reason) == (OrderStatus.DELIVERED, now, None)
    view = await store.get_order("r1")
    assert view is not None
    assert [(c.number, c.password) for c in view.cards] == [("N1", "HAND-1")]
    [attempt] = view.attempts
    assert (attempt.supplier, attempt.state, attempt.qty) == (MANUAL_SUPPLIER, AttemptState.SUCCEEDED, 1)
    assert attempt.number.startswith("F" + store.install_id)
    [event] = await store.events(name="review.resolve", order_id=order_id)
    assert (event.operator, event.data["cards"]) == ("carol", 1)


async def test_resolve_refuses_a_key_delivered_before(store: Store, now: datetime, claimed: Claimed) -> None:
    first = await claimed("r0")
    attempt = await store.open_attempt(first.id, "w1", "fulu", 0, 1, None, now)
    await store.deliver(first.id, "w1", attempt.id, [Card("SOLD")], now)
    await _in_review(store, now, claimed)
    with pytest.raises(DuplicateCard):
        await store.review_resolve("r1", [Card("NEW"), Card("SOLD")], "carol", now)
    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.status, view.cards, view.attempts) == (OrderStatus.REVIEW, (), ())


async def test_review_actions_refuse_orders_not_in_review(store: Store, now: datetime, claimed: Claimed) -> None:
    await claimed("r1")
    with pytest.raises(InvalidTransition, match="r1 is processing, not in review"):
        await store.review_retry("r1", "ops", now)
    with pytest.raises(InvalidTransition, match="r1 is processing, not in review"):
        await store.review_refund("r1", "ops", now)
    with pytest.raises(InvalidTransition, match="r1 is processing, not in review"):
        await store.review_resolve("r1", [Card("X")], "ops", now)
    with pytest.raises(NotFound):
        await store.review_retry("missing", "ops", now)
    view = await store.get_order("r1")
    assert view is not None and (view.order.status, view.cards) == (OrderStatus.PROCESSING, ())
    assert await store.events(name="review.retry") == []


async def test_hold_takes_a_waiting_order_into_review_and_no_claim_takes_it(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    order = await claimed("r1")
    await store.park_for(order.id, "w1", 0, "waiting for a supplier: main#0 breaker open", now)
    held = await store.review_hold("r1", "dana", now)
    assert held.status is OrderStatus.REVIEW
    assert held.reason == "held by dana (was: waiting for a supplier: main#0 breaker open)"
    assert held.lease_owner is None
    assert await raw("SELECT not_before, lease_expires FROM orders") == [{"not_before": None, "lease_expires": None}]
    assert await store.claim_orders("w2", 10, 60, now + timedelta(seconds=5)) == []
    [event] = await store.events(name="review.hold")
    assert (event.order_id, event.operator) == (order.id, "dana")
    assert event.data == {"reason": "waiting for a supplier: main#0 breaker open"}
    # From review the usual decisions: here a refund.
    refunded = await store.review_refund("r1", "dana", now)
    assert (refunded.status, refunded.reason) == (OrderStatus.FAILED, held.reason)


async def test_hold_with_a_note_puts_the_why_in_the_reason_and_the_event(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    order = await claimed("r1")
    await store.park_for(order.id, "w1", 0, "waiting for a supplier: main#0 breaker open", now)
    held = await store.review_hold("r1", "dana", now, "buyer cancelled in chat")
    assert held.reason == "held by dana: buyer cancelled in chat (was: waiting for a supplier: main#0 breaker open)"
    [event] = await store.events(name="review.hold")
    assert event.data == {"reason": "waiting for a supplier: main#0 breaker open", "note": "buyer cancelled in chat"}


async def test_a_long_or_many_line_note_is_one_short_line_in_the_reason_and_whole_in_the_event(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    order = await claimed("r1")
    await store.park_for(order.id, "w1", 0, "waiting", now)
    note = "buyer cancelled\nticket 4711\n" + "x" * 900
    held = await store.review_hold("r1", "dana", now, note)
    assert held.reason is not None and "\n" not in held.reason
    assert held.reason.startswith("held by dana: buyer cancelled ticket 4711 xxx")
    assert held.reason.endswith("… (was: waiting)")
    assert len(held.reason) < 400
    [event] = await store.events(name="review.hold")
    assert event.data["note"] == note


async def test_hold_refuses_what_a_worker_holds_or_what_is_settled(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    order = await claimed("r1")
    with pytest.raises(InvalidTransition, match="r1 is being worked on right now"):
        await store.review_hold("r1", "dana", now)
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now)
    await store.deliver(order.id, "w1", attempt.id, [Card("K1")], now)
    with pytest.raises(InvalidTransition, match="r1 is delivered, not pending: nothing to hold"):
        await store.review_hold("r1", "dana", now)
    with pytest.raises(NotFound, match="no order nope"):
        await store.review_hold("nope", "dana", now)
    assert await store.events(name="review.hold") == []
    view = await store.get_order("r1")
    assert view is not None and view.order.status is OrderStatus.DELIVERED


async def test_a_claim_and_a_hold_of_the_same_order_never_both_win(store: Store, now: datetime) -> None:
    """Race them, order by order: each ends claimed (and the hold refused) or held (and never claimed)."""
    refs = [f"race-{i}" for i in range(40)]
    await store.add_orders([NewOrder(ref, "steam-100", 1, amount=Decimal("1.00")) for ref in refs], now)

    async def hold(ref: str) -> bool:
        try:
            await store.review_hold(ref, "dana", now)
        except InvalidTransition:
            return False
        return True

    async def claim() -> list[int]:
        found: list[int] = []
        for _ in range(8):
            found += [o.id for o in await store.claim_orders("w1", 5, 60, now)]
            await asyncio.sleep(0)
        return found

    results = await asyncio.gather(claim(), *(hold(ref) for ref in refs))
    claimed_ids, held = set(results[0]), dict(zip(refs, results[1:], strict=True))
    for ref in refs:
        view = await store.get_order(ref)
        assert view is not None
        if held[ref]:
            assert view.order.status is OrderStatus.REVIEW and view.order.id not in claimed_ids, ref
        else:
            assert view.order.status is OrderStatus.PROCESSING and view.order.id in claimed_ids, ref
    assert any(held.values()) or claimed_ids  # something happened either way
    assert len(await store.events(name="review.hold")) == sum(held.values())


async def test_hold_refuses_an_after_sales_reissue(store: Store, now: datetime, claimed: Claimed) -> None:
    """A reissue is decided on its case (which knows what was bought already), not held on its own."""
    from sqlalchemy import update

    from fulfil.storage.schema import orders

    first = await claimed("r1")
    child = await store.add_order(NewOrder("r1-reissue", "steam-100", 1), now)
    async with store._write() as conn:  # noqa: SLF001 - the link an after-sales reissue carries
        await conn.execute(update(orders).where(orders.c.id == child.order_id).values(reissue_of=first.id))
    with pytest.raises(InvalidTransition, match="r1-reissue is an after-sales reissue: act on its case instead"):
        await store.review_hold("r1-reissue", "dana", now)
    view = await store.get_order("r1-reissue")
    assert view is not None and view.order.status is OrderStatus.PENDING
