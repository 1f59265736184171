"""Leases: claiming, renewing, releasing, expiry, and fencing of every order-scoped write."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, NewOrder, OrderStatus
from fulfil.storage import InvalidTransition, LeaseLost, Store
from suppliers.taxonomy import Card
from tests.dbtime import let_time_pass

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw


async def _add(store: Store, now: datetime, n: int) -> list[int]:
    results = await store.add_orders([NewOrder(f"r{i:04d}", "sku", 1) for i in range(n)], now)
    return [r.order_id for r in results]


async def test_claim_takes_oldest_pending_and_sets_the_lease(store: Store, now: datetime) -> None:
    ids = await _add(store, now, 5)
    before = await store.database_now()
    got = await store.claim_orders("w1", 3, 60, now)
    after = await store.database_now()
    assert [o.id for o in got] == ids[:3]
    assert {(o.status, o.lease_owner) for o in got} == {(OrderStatus.PROCESSING, "w1")}
    # Sixty seconds of the database's clock from the claim; the `now` passed in plays no part.
    minute = timedelta(seconds=60)
    for order in got:
        assert order.lease_expires is not None and before + minute <= order.lease_expires <= after + minute
    rest = await store.claim_orders("w2", 10, 60, now)
    assert [o.id for o in rest] == ids[3:]
    assert await store.claim_orders("w3", 10, 60, now) == []
    assert await store.claim_orders("w3", 0, 60, now) == []


async def test_expired_leases_are_claimable_again(store: Store, db_url: str, now: datetime) -> None:
    ids = await _add(store, now, 2)
    await store.claim_orders("w1", 10, 30, now)
    await let_time_pass(db_url, 29)
    assert await store.claim_orders("w2", 10, 30, now) == []
    await let_time_pass(db_url, 1)
    taken = await store.claim_orders("w2", 10, 30, now)
    assert [(o.id, o.lease_owner) for o in taken] == [(ids[0], "w2"), (ids[1], "w2")]


async def test_renew_reports_which_leases_are_still_held(store: Store, db_url: str, now: datetime) -> None:
    a, b, c = await _add(store, now, 3)
    await store.claim_orders("w1", 10, 30, now)
    # b's lease lapses and w2 takes it; a and c are renewed in time.
    await let_time_pass(db_url, 20)
    assert await store.renew_leases("w1", [a, c], 30, now) == {a, c}
    await let_time_pass(db_url, 11)
    taken = await store.claim_orders("w2", 10, 30, now)
    assert [o.id for o in taken] == [b]
    before = await store.database_now()
    assert await store.renew_leases("w1", [a, b, c], 30, now) == {a, c}
    after = await store.database_now()
    view = await store.get_order("r0000")
    assert view is not None and view.order.lease_expires is not None
    assert before + timedelta(seconds=30) <= view.order.lease_expires <= after + timedelta(seconds=30)


async def test_release_returns_orders_to_pending(store: Store, now: datetime) -> None:
    a, b = await _add(store, now, 2)
    await store.claim_orders("w1", 10, 60, now)
    assert await store.release_leases("w2", [a, b], now) == 0
    assert await store.release_leases("w1", [a], now) == 1
    again = await store.claim_orders("w2", 10, 60, now)
    assert [o.id for o in again] == [a]


async def test_sweep_frees_only_expired_leases(store: Store, db_url: str, now: datetime) -> None:
    await _add(store, now, 2)
    await store.claim_orders("w1", 1, 10, now)
    await store.claim_orders("w1", 1, 100, now)
    await let_time_pass(db_url, 5)
    assert await store.sweep_expired_leases(now) == 0
    await let_time_pass(db_url, 45)
    assert await store.sweep_expired_leases(now) == 1
    counts = await store.count_by_status()
    assert (counts["pending"], counts["processing"]) == (1, 1)


async def test_two_workers_claiming_at_once_never_share_an_order(
    store: Store, db_url: str, cipher: CardCipher, now: datetime
) -> None:
    ids = await _add(store, now, 300)
    other = await Store.open(db_url, cipher)
    try:
        seen: dict[str, list[int]] = {"a": [], "b": []}

        async def worker(name: str, s: Store) -> None:
            while got := await s.claim_orders(name, 7, 60, now):
                seen[name].extend(o.id for o in got)

        await asyncio.gather(*(worker(n, s) for n, s in (("a", store), ("b", other))))
    finally:
        await other.close()
    assert not set(seen["a"]) & set(seen["b"])
    assert sorted(seen["a"] + seen["b"]) == ids


async def test_every_order_write_is_fenced_by_the_lease(
    store: Store, db_url: str, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "sup", 0, 1, Decimal("1"), now)
    await store.import_stock("sku", [Card("k1")], now)
    await let_time_pass(db_url, 61)
    later = now + timedelta(seconds=61)
    assert [o.id for o in await store.claim_orders("w2", 10, 60, later)] == [order.id]

    with pytest.raises(LeaseLost):
        await store.open_attempt(order.id, "w1", "sup", 1, 1, None, later)
    with pytest.raises(LeaseLost):
        await store.deliver(order.id, "w1", attempt.id, [Card("k9")], later)
    with pytest.raises(LeaseLost):
        await store.deliver_from_stock(order.id, "w1", attempt.id, "sku", 1, later)
    with pytest.raises(LeaseLost):
        await store.finish_order(order.id, "w1", OrderStatus.FAILED, "gave up", later)

    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.status, view.order.lease_owner, view.cards) == (OrderStatus.PROCESSING, "w2", ())
    assert [(a.id, a.state) for a in view.attempts] == [(attempt.id, AttemptState.PLANNED)]
    assert (await store.stock_counts())["sku"].available == 1
    assert await raw("SELECT id FROM deliveries") == []
    # The new owner can write.
    await store.finish_order(order.id, "w2", OrderStatus.REVIEW, "needs a person", later)


async def test_finish_order_ends_the_order_and_frees_the_lease(store: Store, now: datetime, claimed: Claimed) -> None:
    order = await claimed("r1")
    await store.finish_order(order.id, "w1", OrderStatus.FAILED, "account rejected", now)
    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.status, view.order.reason, view.order.lease_owner) == (
        OrderStatus.FAILED,
        "account rejected",
        None,
    )
    assert [e.data for e in await store.events(name="order.failed")] == [{"reason": "account rejected"}]
    assert await store.claim_orders("w2", 10, 60, now + timedelta(hours=1)) == []
    with pytest.raises(LeaseLost):  # it is no longer processing
        await store.finish_order(order.id, "w1", OrderStatus.REVIEW, "again", now)


async def test_finish_order_refuses_other_statuses(store: Store, now: datetime, claimed: Claimed) -> None:
    order = await claimed("r1")
    with pytest.raises(InvalidTransition, match="failed or review"):
        await store.finish_order(order.id, "w1", OrderStatus.DELIVERED, "no", now)
    view = await store.get_order("r1")
    assert view is not None and view.order.status == OrderStatus.PROCESSING
