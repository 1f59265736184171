"""Figures that are costly at scale, served stale while they are recomputed (stale-while-revalidate).

The first request for a key computes it; later ones get the last value at once, and one past its `ttl` starts
one background recomputation (never two for a key). A failed recomputation is logged and the old value stays.
So a page built from window aggregates answers in milliseconds at any database size, at most one `ttl` late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

log = logging.getLogger("fulfil.console")


class Revalidating:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]], ttl: float | None = None) -> Any:
        found = self._values.get(key)
        if found is None:
            value = await compute()
            self._values[key] = (time.monotonic(), value)
            return value
        at, value = found
        if time.monotonic() - at > (self.ttl if ttl is None else ttl) and key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._refresh(key, compute))
        return value

    async def _refresh(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> None:
        try:
            self._values[key] = (time.monotonic(), await compute())
        except Exception:
            log.exception("console.refresh_failed", extra={"key": str(key)})
        finally:
            self._tasks.pop(key, None)

    def clear(self) -> None:
        """Forget everything (after an action, so the next page shows it)."""
        self._values.clear()

    async def aclose(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
