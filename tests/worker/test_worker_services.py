"""Services beside the worker (the shop sources' runner): started with it, stopped with it, and a service that
dies stops the worker loudly; `wake()` makes the poll loop claim at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fulfil.storage import Store
from fulfil.worker import Worker, WorkerCrashed
from tests.worker.conftest import StockProcessor, add_orders, add_stock, eventually, make_config, statuses


class Companion:
    def __init__(self, *, fail_after: float | None = None) -> None:
        self.name = "companion"
        self.started = asyncio.Event()
        self.stopped = False
        self.fail_after = fail_after

    async def serve(self, stopping: asyncio.Event) -> None:
        self.started.set()
        if self.fail_after is not None:
            await asyncio.sleep(self.fail_after)
            raise RuntimeError("companion exploded")
        await stopping.wait()
        self.stopped = True


async def test_a_service_runs_while_the_worker_serves(store: Store) -> None:
    service = Companion()
    worker = Worker(store, StockProcessor(store), make_config(), services=[service])
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(service.started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert service.stopped


async def test_a_dying_service_stops_the_worker_loudly(store: Store) -> None:
    worker = Worker(store, StockProcessor(store), make_config(), services=[Companion(fail_after=0.05)])
    with pytest.raises(WorkerCrashed, match="companion.*companion exploded"):
        await asyncio.wait_for(worker.run(), 5)


async def test_run_once_starts_no_services(store: Store) -> None:
    service = Companion()
    worker = Worker(store, StockProcessor(store), make_config(), services=[service])
    await asyncio.wait_for(worker.run(once=True), 5)
    assert not service.started.is_set()


async def test_wake_claims_before_the_next_poll(store: Store, running: Any) -> None:
    await add_stock(store, 5)
    worker = Worker(store, StockProcessor(store), make_config(poll_interval="1h"))
    running(worker)
    await asyncio.sleep(0.2)  # the first (empty) poll is done; the next is an hour away
    await add_orders(store, 3)
    started = time.monotonic()
    worker.wake()

    async def delivered() -> bool:
        return set((await statuses(store)).values()) == {"delivered"}

    await eventually(delivered, within=5)
    assert time.monotonic() - started < 5
