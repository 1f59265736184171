"""Helpers for the storage tests: orders already claimed by a worker, and raw reads behind the store's back."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fulfil.domain import NewOrder, Order
from fulfil.storage import Store
from fulfil.storage.database import parse_url

OWNER = "w1"
Claimed = Callable[..., Awaitable[Order]]
Raw = Callable[[str], Awaitable[list[dict[str, Any]]]]
KillAt = Callable[[str, Sequence[str], Mapping[str, str], Path], Awaitable[None]]


async def raw_rows(url: str, sql: str) -> list[dict[str, Any]]:
    """Rows as the database holds them, read with a connection of our own (no Store, no decryption)."""
    _, parsed = parse_url(url)
    engine = create_async_engine(parsed, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


@pytest.fixture
def raw(db_url: str) -> Raw:
    """`await raw(sql)`: rows of `db_url` as stored, read past the Store."""

    async def read(sql: str) -> list[dict[str, Any]]:
        return await raw_rows(db_url, sql)

    return read


@pytest.fixture
def claimed(store: Store, now: datetime) -> Claimed:
    """Factory: add an order and claim it for OWNER; returns the claimed Order."""

    async def make(ref: str = "o-1", *, sku: str = "steam-100", qty: int = 1, owner: str = OWNER) -> Order:
        added = await store.add_order(NewOrder(ref, sku, qty, amount=Decimal("100.00")), now)
        assert added.status == "accepted"
        orders = await store.claim_orders(owner, 1000, 60, now)
        mine = [order for order in orders if order.id == added.order_id]
        assert mine, "the new order should have been claimable"
        return mine[0]

    return make


@pytest.fixture
def kill_9_at() -> KillAt:
    """`await kill_9_at(code, args, env, marker)`: run `python -c code *args`, and kill -9 it the moment it
    creates `marker` (the child creates it where the test wants the kill to land, then waits)."""

    async def run(code: str, args: Sequence[str], env: Mapping[str, str], marker: Path) -> None:
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", code, *args, env=dict(env))
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():  # noqa: ASYNC240 - one stat per 50 ms poll
                assert child.returncode is None, f"the child ended early ({child.returncode})"
                assert time.monotonic() < deadline, "the child never reached the moment"
                await asyncio.sleep(0.05)
            child.send_signal(signal.SIGKILL)
        finally:
            await asyncio.wait_for(child.wait(), 30)
        assert child.returncode == -signal.SIGKILL

    return run
