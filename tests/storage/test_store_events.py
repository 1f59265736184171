"""The event log, offer cool-downs, and listing orders."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil.domain import NewOrder, OrderStatus
from fulfil.storage import Store, StoreError
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed


async def test_events_newest_first_with_filters(store: Store, now: datetime) -> None:
    for i in range(5):
        await store.record_event(
            "a" if i % 2 == 0 else "b", now + timedelta(seconds=i), order_id=i, supplier="fulu", operator="op"
        )
    assert [e.order_id for e in await store.events()] == [4, 3, 2, 1, 0]
    assert [e.order_id for e in await store.events(name="a", limit=2)] == [4, 2]
    [event] = await store.events(order_id=3)
    assert (event.name, event.at, event.supplier, event.operator, event.data) == (
        "b",
        now + timedelta(seconds=3),
        "fulu",
        "op",
        {},
    )


async def test_event_data_is_json_and_never_a_card(store: Store, now: datetime) -> None:
    await store.record_event(
        "x", now, data={"cost": Decimal("1.10"), "at": now, "status": OrderStatus.REVIEW, "card": Card("PW-9")}
    )
    [event] = await store.events(name="x")
    assert event.data == {"cost": "1.10", "at": now.isoformat(), "status": "review", "card": "<card>"}
    with pytest.raises(StoreError, match="cannot store object as JSON"):
        await store.record_event("x", now, data={"bad": object()})


async def test_cooldowns_are_shared_and_expire(store: Store, now: datetime) -> None:
    until = now + timedelta(minutes=5)
    await store.set_cooldown("fulu", "P1", until, "out of stock", now)
    await store.set_cooldown("acg", "P2", now + timedelta(minutes=1), "maintenance", now)
    assert await store.active_cooldowns(now) == {("fulu", "P1"): until, ("acg", "P2"): now + timedelta(minutes=1)}
    assert await store.active_cooldowns(now + timedelta(minutes=2)) == {("fulu", "P1"): until}
    await store.set_cooldown("fulu", "P1", now, "lifted by operator", now)  # a later write replaces
    assert await store.active_cooldowns(now) == {("acg", "P2"): now + timedelta(minutes=1)}


async def test_list_and_count_orders(store: Store, now: datetime, claimed: Claimed) -> None:
    await store.add_orders([NewOrder("p1", "s", 1), NewOrder("p2", "s", 1)], now)
    order = await claimed("c1")
    await store.finish_order(order.id, "w1", OrderStatus.FAILED, "rejected", now)
    assert [v.order.ref for v in await store.list_orders(OrderStatus.PROCESSING)] == ["p1", "p2"]
    assert [v.order.ref for v in await store.list_orders(OrderStatus.FAILED)] == ["c1"]
    assert [v.order.ref for v in await store.list_orders(limit=2)] == ["p1", "p2"]
    assert await store.count_by_status() == {"pending": 0, "processing": 2, "delivered": 0, "failed": 1, "review": 0}
