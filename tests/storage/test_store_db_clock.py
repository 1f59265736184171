"""One clock for leases and parking, the database's: daemons whose clocks disagree never take each other's
orders early. Daemon B's clock runs 40 s ahead of A's; both stores share one database."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, OrderStatus
from fulfil.storage import LeaseLost, Store
from tests.dbtime import let_time_pass

if TYPE_CHECKING:
    from tests.storage.conftest import Raw

SKEW = timedelta(seconds=40)


def clock_a() -> datetime:
    return datetime.now(UTC)


def clock_b() -> datetime:
    """Daemon B's host clock: 40 s fast."""
    return datetime.now(UTC) + SKEW


@pytest.fixture
async def other(store: Store, db_url: str, cipher: CardCipher) -> AsyncIterator[Store]:
    """Daemon B's store: a second Store (its own connections) on the same database."""
    opened = await Store.open(db_url, cipher)
    try:
        yield opened
    finally:
        await opened.close()


async def _one_order(store: Store) -> int:
    added = await store.add_order(NewOrder("r1", "sku", 1), clock_a())
    return added.order_id


async def _b_takes_nothing(b: Store) -> None:
    assert await b.claim_orders("B", 10, 60, clock_b()) == []
    assert await b.sweep_expired_leases(clock_b()) == 0


async def _b_takes_nothing_within(b: Store, renewed_at: float, lease: float) -> None:
    """As _b_takes_nothing, unless this process stalled past the lease (a loaded CI box can pause it for
    a second): then B may take the order, and the failure says how long the stall was."""
    claimed = await b.claim_orders("B", 10, 60, clock_b())
    swept = await b.sweep_expired_leases(clock_b())
    since = time.monotonic() - renewed_at
    assert (claimed, swept) == ([], 0), f"B took a lease renewed {since:.3f}s ago (lease {lease}s)"


async def test_a_fast_clock_never_takes_a_renewed_lease(store: Store, other: Store) -> None:
    """Real time on the database's clock: A renews a 2 s lease for more than two leases while B, 40 s fast,
    keeps trying; once A stops renewing, B gets the order only after the lease has run out. The lease is
    ten renewals long so a loaded machine pausing this process does not let it run out."""
    lease = 2.0
    order_id = await _one_order(store)
    [claimed] = await store.claim_orders("A", 1, lease, clock_a())
    assert claimed.id == order_id

    renewed_at = time.monotonic()
    until = renewed_at + 2.2 * lease
    while time.monotonic() < until:
        await _b_takes_nothing_within(other, renewed_at, lease)
        if time.monotonic() - renewed_at >= 0.2:
            renewed_at = time.monotonic()  # before the write: the lease runs from no earlier than this
            assert await store.renew_leases("A", [order_id], lease, clock_a()) == {order_id}
        await asyncio.sleep(0.03)

    # A stops renewing (a daemon that died). B, still 40 s fast, waits for the database to say it expired.
    tries = 0
    async with asyncio.timeout(3 * lease):
        while not (taken := await other.claim_orders("B", 10, 60, clock_b())):
            tries += 1
            await asyncio.sleep(0.02)
    waited = time.monotonic() - renewed_at
    assert tries > 0, "the lease had just been renewed: B must not get it at once"
    assert waited >= lease - 0.01, f"B took the order {waited:.3f}s after the last renewal of a {lease}s lease"
    assert [(o.id, o.lease_owner) for o in taken] == [(order_id, "B")]

    # A comes back: its lease is gone, and so is every write it tries.
    assert await store.renew_leases("A", [order_id], lease, clock_a()) == set()
    with pytest.raises(LeaseLost):
        await store.finish_order(order_id, "A", OrderStatus.FAILED, "late", clock_a())


async def test_skewed_clocks_do_not_move_a_lease(store: Store, other: Store, db_url: str) -> None:
    """The same, stepped: only time passing in the database moves a lease towards expiry."""
    order_id = await _one_order(store)
    await store.claim_orders("A", 1, 60, clock_a())
    await _b_takes_nothing(other)
    # Neither B's fast clock nor one a day ahead makes the lease look expired.
    assert await other.claim_orders("B", 10, 60, clock_b() + timedelta(days=1)) == []
    await let_time_pass(db_url, 59)
    await _b_takes_nothing(other)
    # A renews with its clock a minute slow: the lease is 60 s from the database's now all the same.
    assert await store.renew_leases("A", [order_id], 60, clock_a() - timedelta(minutes=1)) == {order_id}
    await let_time_pass(db_url, 59)
    await _b_takes_nothing(other)
    await let_time_pass(db_url, 1)
    assert [(o.id, o.lease_owner) for o in await other.claim_orders("B", 10, 60, clock_b())] == [(order_id, "B")]


async def test_a_slow_clock_does_not_make_a_lease_short(store: Store, other: Store, db_url: str) -> None:
    """A daemon whose clock is behind claims with a full lease, not one that has already run out."""
    order_id = await _one_order(store)
    await store.claim_orders("A", 1, 60, clock_a() - timedelta(hours=1))
    await _b_takes_nothing(other)
    await let_time_pass(db_url, 60)
    assert [o.id for o in await other.claim_orders("B", 10, 60, clock_b())] == [order_id]


async def test_the_sweeper_goes_by_the_database_clock(store: Store, other: Store, db_url: str) -> None:
    order_id = await _one_order(store)
    await store.claim_orders("A", 1, 30, clock_a())
    assert await other.sweep_expired_leases(clock_b() + timedelta(days=1)) == 0
    await let_time_pass(db_url, 30)
    assert await other.sweep_expired_leases(clock_a() - timedelta(days=1)) == 1
    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.id, view.order.status, view.order.lease_owner) == (order_id, OrderStatus.PENDING, None)


async def test_a_parked_order_waits_on_the_database_clock(store: Store, other: Store, db_url: str) -> None:
    order_id = await _one_order(store)
    await store.claim_orders("A", 1, 60, clock_a())
    await store.park_for(order_id, "A", 30, "awaiting a supplier", clock_a())
    view = await store.get_order("r1")
    assert view is not None and view.order.status == OrderStatus.PENDING
    await _b_takes_nothing(other)
    await let_time_pass(db_url, 29)
    await _b_takes_nothing(other)
    await let_time_pass(db_url, 1)
    assert [o.id for o in await other.claim_orders("B", 10, 60, clock_b())] == [order_id]


async def test_park_order_takes_until_relative_to_now(store: Store, other: Store, db_url: str) -> None:
    """The engine's call: `until` and `now` from one daemon's clock, however wrong, mean `until - now`
    seconds of the database's clock."""
    order_id = await _one_order(store)
    await other.claim_orders("B", 1, 60, clock_b())
    b_now = clock_b() + timedelta(hours=3)  # wildly off
    await other.park_order(order_id, "B", b_now + timedelta(seconds=20), "awaiting a supplier", b_now)
    await let_time_pass(db_url, 19)
    assert await store.claim_orders("A", 10, 60, clock_a()) == []
    await let_time_pass(db_url, 1)
    assert [o.id for o in await store.claim_orders("A", 10, 60, clock_a())] == [order_id]


async def test_wake_makes_a_parked_order_claimable_at_once_whatever_the_clock(store: Store, other: Store) -> None:
    order_id = await _one_order(store)
    await store.claim_orders("A", 1, 60, clock_a())
    attempt = await store.open_attempt(order_id, "A", "sup", 0, 1, None, clock_a())
    await store.park_for(order_id, "A", 3600, "awaiting a supplier", clock_a())
    await _b_takes_nothing(other)
    # A callback handled by a daemon whose clock is 40 s slow still wakes it for a daemon 40 s fast.
    assert await store.wake_order(attempt.number, clock_a() - SKEW)
    assert [o.id for o in await other.claim_orders("B", 10, 60, clock_b())] == [order_id]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sqlite_deadlines_are_stored_in_the_one_text_format(store: Store, raw: Raw, db_url: str) -> None:
    """SQLite compares the stored text: deadlines the database writes have the shape Python's writes have."""
    order_id = await _one_order(store)
    await store.claim_orders("A", 1, 60.25, clock_a())
    [row] = await raw("SELECT created_at, lease_expires, not_before FROM orders")
    shape = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
    assert shape.fullmatch(row["created_at"]) and shape.fullmatch(row["lease_expires"])
    await store.park_for(order_id, "A", 0.5, "awaiting a supplier", clock_a())
    [row] = await raw("SELECT not_before FROM orders")
    assert shape.fullmatch(row["not_before"])
