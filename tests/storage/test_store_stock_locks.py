"""PostgreSQL stock picks skip locked keys: a pick that came up short only because another transaction holds
keys locked tries again for about a second; a stock that is too small says so at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from fulfil.storage import Store
from fulfil.storage.database import parse_url
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed

SKU = "steam-100"
pytestmark = [pytest.mark.pg, pytest.mark.parametrize("db_url", ["pg"], indirect=True)]


@asynccontextmanager
async def other_transaction(db_url: str) -> AsyncIterator[AsyncConnection]:
    """A transaction on a connection of its own (another worker); rolled back unless the test commits."""
    engine = create_async_engine(parse_url(db_url)[1], poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.begin()
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    await conn.rollback()
    finally:
        await engine.dispose()


async def _lock_newest(conn: AsyncConnection, count: int) -> list[int]:
    rows = await conn.execute(text("SELECT id FROM stock ORDER BY id DESC LIMIT :n FOR UPDATE"), {"n": count})
    return [row.id for row in rows]


async def _order_with_attempt(store: Store, claimed: Claimed, now: datetime, ref: str, qty: int) -> tuple[int, int]:
    order = await claimed(ref, qty=qty)
    attempt = await store.open_attempt(order.id, "w1", "shelf", 0, qty, None, now)
    return order.id, attempt.id


async def _import(store: Store, now: datetime, count: int) -> None:
    imported = await store.import_stock(SKU, [Card(f"K{i:015d}") for i in range(count)], now)
    assert imported.added == count


async def test_keys_locked_for_a_moment_are_waited_for(
    store: Store, db_url: str, claimed: Claimed, now: datetime
) -> None:
    order_id, attempt_id = await _order_with_attempt(store, claimed, now, "o-1", 3)
    await _import(store, now, 3)
    async with other_transaction(db_url) as conn:
        assert len(await _lock_newest(conn, 2)) == 2  # another worker holds the last two keys
        started = time.monotonic()
        delivery = asyncio.create_task(store.deliver_from_stock(order_id, "w1", attempt_id, SKU, 3, now))
        await asyncio.sleep(0.3)
        assert not delivery.done(), "short only because of locked keys: not out of stock yet"
        await conn.rollback()  # that worker let them go
        cards = await delivery
    assert cards is not None and len(cards) == 3
    assert 0.3 <= time.monotonic() - started < 1.5
    assert (await store.stock_counts())[SKU].available == 0


async def test_a_stock_too_small_says_none_at_once(store: Store, claimed: Claimed, now: datetime) -> None:
    order_id, attempt_id = await _order_with_attempt(store, claimed, now, "o-1", 3)
    started = time.monotonic()
    assert await store.deliver_from_stock(order_id, "w1", attempt_id, SKU, 3, now) is None  # empty
    await _import(store, now, 2)
    assert await store.deliver_from_stock(order_id, "w1", attempt_id, SKU, 3, now) is None  # two of three
    assert time.monotonic() - started < 0.5, "no waiting when no key is locked"
    assert (await store.stock_counts())[SKU].available == 2


async def test_keys_another_worker_takes_mean_none_once_it_commits(
    store: Store, db_url: str, claimed: Claimed, now: datetime
) -> None:
    order_id, attempt_id = await _order_with_attempt(store, claimed, now, "o-1", 2)
    _, rival_attempt = await _order_with_attempt(store, claimed, now, "o-2", 1)
    await _import(store, now, 2)
    async with other_transaction(db_url) as conn:
        [key] = await _lock_newest(conn, 1)
        await conn.execute(text("UPDATE stock SET used_by_attempt = :a WHERE id = :k"), {"a": rival_attempt, "k": key})
        delivery = asyncio.create_task(store.deliver_from_stock(order_id, "w1", attempt_id, SKU, 2, now))
        await asyncio.sleep(0.2)
        assert not delivery.done()
        await conn.commit()  # the key is gone for good
        started = time.monotonic()
        assert await delivery is None
    assert time.monotonic() - started < 0.5, "the next try sees the key taken and gives up"
    assert (await store.stock_counts())[SKU].available == 1


async def test_keys_locked_for_long_mean_none_after_about_a_second(
    store: Store, db_url: str, claimed: Claimed, now: datetime
) -> None:
    order_id, attempt_id = await _order_with_attempt(store, claimed, now, "o-1", 1)
    await _import(store, now, 1)
    async with other_transaction(db_url) as conn:
        await _lock_newest(conn, 1)
        started = time.monotonic()
        assert await store.deliver_from_stock(order_id, "w1", attempt_id, SKU, 1, now) is None
        waited = time.monotonic() - started
    assert 0.9 <= waited < 2.5
    # Nothing was written: the key is there for the next try.
    assert (await store.stock_counts())[SKU].available == 1
    assert await store.deliver_from_stock(order_id, "w1", attempt_id, SKU, 1, now) is not None
