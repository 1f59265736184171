"""Stale-while-revalidate for the console's costly figures: the first ask computes, later ones get the last value
at once, one past its ttl starts exactly one background recomputation, and a failed one keeps the old value."""

from __future__ import annotations

import asyncio

from fulfil.web.cache import Revalidating


async def test_served_stale_while_one_recomputation_runs() -> None:
    cache = Revalidating(ttl=0.05)
    calls: list[int] = []
    gate = asyncio.Event()

    async def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            await gate.wait()
        return len(calls)

    assert await cache.get("k", compute) == 1
    assert await cache.get("k", compute) == 1 and len(calls) == 1  # fresh: no recomputation
    await asyncio.sleep(0.06)
    assert await cache.get("k", compute) == 1  # stale: served at once ...
    assert await cache.get("k", compute) == 1
    await asyncio.sleep(0)
    assert len(calls) == 2  # ... and recomputed once, not once per ask
    gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k", compute) == 2
    await cache.aclose()


async def test_a_failed_recomputation_keeps_the_last_value() -> None:
    cache = Revalidating(ttl=0.0)
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the database is away")
        return 1

    assert await cache.get("k", compute) == 1
    assert await cache.get("k", compute) == 1
    await asyncio.sleep(0.01)
    assert len(calls) == 2 and await cache.get("k", compute, ttl=3600) == 1
    cache.clear()
    await cache.aclose()
