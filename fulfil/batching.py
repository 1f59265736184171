"""Coalesce the same read made by many order tasks at once into one call.

A claimed batch starts all its orders in one turn of the event loop; each asks for its own context, and the
first request schedules one load for every key asked for before the loop gets back to it. One read
transaction per batch instead of one per order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BatchLoader(Generic[K, V]):
    """`await loader.get(key)`: values for keys requested in the same loop turn come from one `load(keys)`.

    `load` must return a value for every key it is given; an exception reaches every waiter of that batch."""

    def __init__(self, load: Callable[[Sequence[K]], Awaitable[dict[K, V]]]) -> None:
        self._load = load
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        return await future

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, {}
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)  # a reference until done: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        try:
            values = await self._load(list(batch))
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in batch.items():
            for future in futures:
                if not future.done():
                    if key in values:
                        future.set_result(values[key])
                    else:
                        future.set_exception(KeyError(key))
