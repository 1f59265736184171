"""The event log's retention: old events nothing reads any more are deleted in batches; the books never are."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fulfil.domain import AttemptState, NewOrder, OrderStatus
from fulfil.storage import Store
from fulfil.storage.database import parse_url

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw

OLD = timedelta(days=100)
CUTOFF = timedelta(days=90)


async def _execute(url: str, sql: str) -> None:
    _, parsed = parse_url(url)
    engine = create_async_engine(parsed, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _names_by_order(raw: Raw) -> dict[int | None, list[str]]:
    out: dict[int | None, list[str]] = {}
    for row in await raw("SELECT order_id, name FROM events ORDER BY id"):
        out.setdefault(row["order_id"], []).append(row["name"])
    return out


async def test_prunes_old_events_of_ended_orders_and_keeps_what_an_open_order_reads(
    store: Store, db_url: str, raw: Raw, now: datetime, claimed: Claimed
) -> None:
    old = now - OLD
    failed = await claimed("failed")
    await store.finish_order(failed.id, "w1", OrderStatus.FAILED, "rejected", old)
    delivered = await claimed("delivered")
    await _execute(db_url, f"UPDATE orders SET status = 'delivered' WHERE id = {delivered.id}")
    review = await claimed("review")
    await store.finish_order(review.id, "w1", OrderStatus.REVIEW, "a person decides", old)
    # Ended, but an attempt is still open: the resolver may still read (and write) its order.reopened.
    charged = await claimed("failed-open-attempt")
    attempt = await store.open_attempt(charged.id, "w1", "fulu", 0, 1, Decimal("9.50"), old)
    await store.mark_attempt(attempt.id, AttemptState.AMBIGUOUS, old)
    await store.finish_order(charged.id, "w1", OrderStatus.FAILED, "refunded", old)
    processing = await claimed("processing")
    pending = (await store.add_order(NewOrder("pending", "steam-100", 1, amount=Decimal("1.00")), old)).order_id
    for order_id in (failed.id, delivered.id, review.id, charged.id, processing.id, pending):
        await store.record_event("order.crashed", old, order_id=order_id, data={"error": "boom"})
        await store.record_event("review.retry", old, order_id=order_id, data={"after_attempt": 1})
        await store.record_event("order.recent", now, order_id=order_id)
    await store.record_event("supplier.alert", old, supplier="fulu")
    await store.record_event("supplier.alert.recent", now, supplier="fulu")
    before = await _names_by_order(raw)

    assert await store.prune_events(now - CUTOFF, 1000) == 3 + 2 + 1  # failed (and its order.failed), delivered, alert

    after = await _names_by_order(raw)
    assert after[failed.id] == after[delivered.id] == ["order.recent"]
    for kept in (review.id, charged.id, processing.id, pending):
        assert after[kept] == before[kept], kept
    assert after[None] == ["supplier.alert.recent"]
    assert await store.prune_events(now - CUTOFF, 1000) == 0
    # The books are untouched.
    [row] = await raw(f"SELECT state FROM attempts WHERE id = {attempt.id}")
    assert row["state"] == "ambiguous"


async def test_prunes_oldest_first_in_batches_of_the_size_given(store: Store, raw: Raw, now: datetime) -> None:
    for i in range(5):
        await store.record_event(f"e{i}", now - OLD + timedelta(minutes=i))
    await store.record_event("young", now)

    assert [await store.prune_events(now - CUTOFF, 2) for _ in range(4)] == [2, 2, 1, 0]
    assert [row["name"] for row in await raw("SELECT name FROM events")] == ["young"]


async def test_a_batch_takes_the_oldest_events(store: Store, raw: Raw, now: datetime) -> None:
    # Written out of time order (daemons' clocks differ): the oldest go first, whatever their id.
    await store.record_event("newer", now - OLD + timedelta(hours=1))
    await store.record_event("oldest", now - OLD)

    assert await store.prune_events(now - CUTOFF, 1) == 1
    assert [row["name"] for row in await raw("SELECT name FROM events")] == ["newer"]
