"""Exact under concurrency: two engines with their own connection pools (as two daemons have) decide orders of
one buyer at once on PostgreSQL; the per-identity advisory lock keeps them from both slipping under a limit.

The stores here count slowly (a short sleep after each count, inside the decision's transaction) so that
decisions overlap. The control run, with the lock switched off and the two engines made to meet between
counting and writing, shows the limit is then exceeded: the test can fail, and what makes it pass is the lock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import datetime

import pytest
from riskkit import Shop, order, risk_config
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.config import RiskConfig
from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from fulfil.risk.rules import Figures, OrderFacts, Query
from fulfil.storage import Store

pytestmark = pytest.mark.pg

# Odd on purpose: two engines that happen to run in lockstep then both read 10 of 11 and both pass (12).
MAX = 11
LIMIT = {"name": "eleven", "kind": "velocity", "per": "contact", "window": 3600.0, "max_orders": MAX}
ORDERS = 60


Snapshot = tuple[dict[str, Figures], bool, bool]


class SlowCounting(Store):
    async def _snapshot(
        self, conn: AsyncConnection, facts: OrderFacts, wanted: Sequence[Query], now: datetime, locks: list[int]
    ) -> Snapshot:
        figures = await super()._snapshot(conn, facts, wanted, now, locks)
        # Widen the window between reading the count and committing the decision, by varying amounts.
        await asyncio.sleep(random.uniform(0.002, 0.008))
        return figures


RENDEZVOUS = asyncio.Barrier(2)


class Unlocked(Store):
    """The control: no lock, and both engines' decisions meet after counting and before writing (a barrier
    in this one process), which is the interleaving the lock exists to prevent."""

    def _locks(self, facts: OrderFacts, risk: RiskConfig) -> list[int]:
        return []

    async def _snapshot(
        self, conn: AsyncConnection, facts: OrderFacts, wanted: Sequence[Query], now: datetime, locks: list[int]
    ) -> Snapshot:
        figures = await super()._snapshot(conn, facts, wanted, now, locks)
        try:
            await asyncio.wait_for(RENDEZVOUS.wait(), 0.2)
        except (TimeoutError, asyncio.BrokenBarrierError):
            await RENDEZVOUS.reset()  # the other engine ran out of orders: go on alone
        return figures


async def _race(url: str, cipher: CardCipher, store_type: type[Store], prefix: str) -> int:
    config = risk_config([LIMIT])
    stores = [await store_type.open(url, cipher) for _ in range(2)]
    try:
        shops = [Shop(s, cipher, config, owner=f"daemon-{i}") for i, s in enumerate(stores)]
        buyer = f"{prefix}@example.com"
        await shops[0].add(*(order(f"{prefix}-{i:03d}", contact=buyer) for i in range(ORDERS)))
        await asyncio.gather(*(shop.drain(batch=5) for shop in shops))
        views = [v for v in await stores[0].list_orders() if v.order.ref.startswith(f"{prefix}-")]
        assert len(views) == ORDERS
        assert {v.order.status for v in views} <= {OrderStatus.DELIVERED, OrderStatus.REVIEW}
        through = sum(1 for v in views if v.order.status is OrderStatus.DELIVERED)
        assert sum(len(shop.supplier.ledger) for shop in shops) == through  # bought exactly what went through
        assert all(shop.supplier.ledger for shop in shops), "both engines should have decided some orders"
        return through
    finally:
        for s in stores:
            await s.close()


async def test_two_engines_on_postgresql_let_exactly_the_limit_through(pg_url: str, cipher: CardCipher) -> None:
    Store.upgrade(pg_url)
    for run in range(2):
        assert await _race(pg_url, cipher, SlowCounting, f"locked{run}") == MAX


async def test_control_without_the_lock_the_limit_is_exceeded(pg_url: str, cipher: CardCipher) -> None:
    Store.upgrade(pg_url)
    assert await _race(pg_url, cipher, Unlocked, "unlocked") > MAX
