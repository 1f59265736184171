"""Operator decisions on orders in review: retry, refund, resolve; anything not in review is refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from fulfil.domain import AttemptState, OrderStatus
from fulfil.storage import MANUAL_SUPPLIER, DuplicateCard, InvalidTransition, NotFound, Store
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed


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
