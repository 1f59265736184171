"""Intake: a ref is accepted once; the same content again is a duplicate, different content a conflict."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from fulfil.domain import NewOrder, OrderStatus
from fulfil.storage import Store, StoreError


async def test_accept_then_duplicate_then_conflict(store: Store, now: datetime) -> None:
    first = await store.add_order(NewOrder("r1", "steam-100", 2, "acc", Decimal("10.00")), now)
    again = await store.add_order(NewOrder("r1", "steam-100", 2, "acc", Decimal("10.0")), now)
    other = await store.add_order(NewOrder("r1", "steam-100", 3, "acc", Decimal("10.00")), now)

    assert (first.status, again.status, other.status) == ("accepted", "duplicate", "conflict")
    assert first.order_id == again.order_id == other.order_id
    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.qty, view.order.status, view.order.amount) == (2, OrderStatus.PENDING, Decimal("10.00"))
    assert await store.count_by_status() == {"pending": 1, "processing": 0, "delivered": 0, "failed": 0, "review": 0}


@pytest.mark.parametrize(
    "changed",
    [
        NewOrder("r1", "other-sku", 1, None, Decimal("5")),
        NewOrder("r1", "sku", 1, "someone", Decimal("5")),
        NewOrder("r1", "sku", 1, None, None),
        NewOrder("r1", "sku", 1, None, Decimal("5.01")),
    ],
)
async def test_any_field_differing_is_a_conflict(store: Store, now: datetime, changed: NewOrder) -> None:
    await store.add_order(NewOrder("r1", "sku", 1, None, Decimal("5")), now)
    assert (await store.add_order(changed, now)).status == "conflict"


async def test_batch_keeps_order_and_judges_repeats_within_it(store: Store, now: datetime) -> None:
    await store.add_order(NewOrder("old", "sku", 1), now)
    results = await store.add_orders(
        [
            NewOrder("a", "sku", 1),
            NewOrder("old", "sku", 1),
            NewOrder("a", "sku", 1),
            NewOrder("a", "sku", 9),
            NewOrder("old", "sku", 2),
            NewOrder("b", "sku", 1),
        ],
        now,
    )
    assert [(r.ref, r.status) for r in results] == [
        ("a", "accepted"),
        ("old", "duplicate"),
        ("a", "duplicate"),
        ("a", "conflict"),
        ("old", "conflict"),
        ("b", "accepted"),
    ]
    assert results[0].order_id == results[2].order_id != results[5].order_id
    views = await store.list_orders()
    assert [(v.order.ref, v.order.qty) for v in views] == [("old", 1), ("a", 1), ("b", 1)]


async def test_large_batch_crosses_chunks(store: Store, now: datetime) -> None:
    new = [NewOrder(f"r{i:05d}", "sku", 1) for i in range(1_203)]
    results = await store.add_orders(new, now)
    assert {r.status for r in results} == {"accepted"}
    assert len({r.order_id for r in results}) == 1_203
    again = await store.add_orders(new, now)
    assert {r.status for r in again} == {"duplicate"}
    assert (await store.count_by_status())["pending"] == 1_203


async def test_money_and_time_round_trip_exactly(store: Store) -> None:
    at = datetime(2026, 11, 21, 20, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))
    await store.add_order(NewOrder("r1", "sku", 1, None, Decimal("0.10")), at)
    view = await store.get_order("r1")
    assert view is not None
    assert str(view.order.amount) == "0.10"
    assert view.order.created_at == at
    assert view.order.created_at.utcoffset() == timedelta(0)


async def test_invalid_orders_and_naive_times_are_refused(store: Store, now: datetime) -> None:
    with pytest.raises(StoreError, match="qty"):
        await store.add_order(NewOrder("r1", "sku", 0), now)
    with pytest.raises(StoreError, match="ref and a sku"):
        await store.add_order(NewOrder("", "sku", 1), now)
    with pytest.raises(StoreError, match="naive datetime"):
        await store.add_order(NewOrder("r2", "sku", 1), now.replace(tzinfo=None))
    assert await store.list_orders() == []


async def test_unknown_ref_reads_as_none(store: Store) -> None:
    assert await store.get_order("nope") is None
