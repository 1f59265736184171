"""Two workers on one database, one with its host clock 40 s fast: leases go by the database's clock, so the
fast one never takes an order the other is renewing, and takes it only once that lease has run out."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from fulfil.crypto import CardCipher
from fulfil.domain import Order
from fulfil.storage import Store
from fulfil.worker import Worker
from tests.worker.conftest import StockProcessor, add_orders, add_stock, eventually, make_config, statuses, utcnow


class StallingStore:
    """The real store, whose lease operations can be made to hang: a daemon cut off from the database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stalled = False
        self.renewed: list[float] = []  # monotonic time of each renewal that went through
        self._back = asyncio.Event()

    def resume(self) -> None:
        """The database is reachable again: the calls that hung go through."""
        self.stalled = False
        self._back.set()

    async def _stall(self) -> None:
        if self.stalled:
            await self._back.wait()

    async def claim_orders(self, owner: str, limit: int, lease: float, now: datetime) -> list[Order]:
        await self._stall()
        return await self.store.claim_orders(owner, limit, lease, now)

    async def renew_leases(self, owner: str, ids: list[int], lease: float, now: datetime) -> set[int]:
        await self._stall()
        started = time.monotonic()
        kept = await self.store.renew_leases(owner, ids, lease, now)
        self.renewed.append(started)
        return kept

    async def release_leases(self, owner: str, ids: list[int], now: datetime) -> int:
        return await self.store.release_leases(owner, ids, now)

    async def sweep_expired_leases(self, now: datetime) -> int:
        await self._stall()
        return await self.store.sweep_expired_leases(now)


LEASE = 1.5  # seconds; renewed every 0.5 s


def fast_clock() -> datetime:
    return utcnow() + timedelta(seconds=40)


@pytest.mark.slow  # outlives several leases
async def test_a_worker_with_a_fast_clock_waits_for_the_lease_on_the_database_clock(
    store: Store, db_url: str, cipher: CardCipher, running: Any
) -> None:
    await add_orders(store, 1)
    await add_stock(store, 1)
    config = make_config(lease=f"{int(LEASE * 1000)}ms")
    a_store = StallingStore(store)
    a_work = StockProcessor(store)
    a_work.gate_all = asyncio.Event()  # A holds the order in flight and renews its lease
    a = Worker(a_store, a_work, config, owner="host-a:1:aaaaaaaa")
    running(a)
    await eventually(lambda: a_work.started == ["R0"])

    b_store = await Store.open(db_url, cipher)
    b_work = StockProcessor(b_store)
    b = running(Worker(b_store, b_work, config, owner="host-b:2:bbbbbbbb", clock=fast_clock))
    try:
        # Over two leases B polls every 20 ms and sweeps every 0.75 s with its clock 40 s ahead: nothing.
        await asyncio.sleep(2 * LEASE)
        assert (b.worker.claimed, b_work.started) == (0, [])
        assert len(a_store.renewed) >= 4
        [view] = await store.list_orders()
        assert view.order.lease_owner == a.owner

        # A loses the database: its claims and renewals hang. B takes the order once the lease has run out, not sooner.
        a_store.stalled = True
        await eventually(lambda: b_work.finished == ["R0"], within=3 * LEASE)
        waited = time.monotonic() - a_store.renewed[-1]
        assert waited >= LEASE, f"B took the order {waited:.3f}s after A's last renewal of a {LEASE}s lease"

        # A is back, and its run, let go now, is fenced off: the order was delivered once, by B.
        a_store.resume()
        a_work.gate_all.set()
        await eventually(lambda: a.done == 1)
        assert a_work.finished == []
        assert await statuses(store) == {"R0": "delivered"}
    finally:
        a_store.resume()  # else A's shutdown would wait on the hung calls for ever
        await b.stop()
        await b_store.close()
