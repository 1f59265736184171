"""Worker tests: a real store (fixtures from tests/conftest.py), configs with short intervals, and a
working fake processor that delivers from local stock the way the engine does for a `stock` offer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from fulfil.config import Config, config_from_data
from fulfil.domain import NewOrder, Order, OrderStatus
from fulfil.storage import Store
from fulfil.worker import Lease, Worker
from suppliers.taxonomy import Card

SKU = "steam-100"


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_config(*, query_interval: str = "1s", **daemon: Any) -> Config:
    """A valid config as from a file, with intervals short enough for tests."""
    settings: dict[str, Any] = {
        "poll_interval": "20ms",
        "batch_size": 10,
        "concurrency": 4,
        "lease": "3s",
        "shutdown_timeout": "2s",
    }
    settings.update(daemon)
    return config_from_data(
        {
            "daemon": settings,
            "ambiguity": {"query_interval": query_interval},
            "suppliers": [{"name": "shelf", "type": "stock"}],
            "products": {SKU: {"offers": [{"supplier": "shelf"}]}},
        },
        environ={},
    )


async def add_orders(store: Store, count: int, prefix: str = "R") -> list[str]:
    refs = [f"{prefix}{i}" for i in range(count)]
    results = await store.add_orders([NewOrder(ref=ref, sku=SKU, qty=1) for ref in refs], utcnow())
    assert all(r.status == "accepted" for r in results)
    return refs


async def add_stock(store: Store, count: int, prefix: str = "K") -> None:
    cards = [Card(password=f"{prefix}{i:015d}") for i in range(count)]
    imported = await store.import_stock(SKU, cards, utcnow())
    assert imported.added == count


async def statuses(store: Store) -> dict[str, str]:
    """ref -> status of every order."""
    return {view.order.ref: view.order.status.value for view in await store.list_orders()}


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 2.0) -> None:
    """Wait until `check()` is true; fail the test (TimeoutError) after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


class StockProcessor:
    """A working fake engine: each order gets an attempt and is delivered from stock in one transaction.

    `delay` (seconds) or a per-ref gate in `gates` holds an order in flight; everything seen is recorded."""

    def __init__(self, store: Store, *, delay: float = 0.0) -> None:
        self.store = store
        self.delay = delay
        self.gates: dict[str, asyncio.Event] = {}
        self.gate_all: asyncio.Event | None = None
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.leases: dict[str, Lease] = {}
        self.active = 0
        self.max_active = 0
        self.recoveries = 0
        self.ticks: list[datetime] = []
        self.configs: list[Config] = []

    async def process(self, order: Order, lease: Lease) -> None:
        assert order.status == OrderStatus.PROCESSING and order.lease_owner == lease.owner
        self.started.append(order.ref)
        self.leases[order.ref] = lease
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            gate = self.gates.get(order.ref) or self.gate_all
            if gate is not None:
                await gate.wait()
            await deliver(self.store, order, lease.owner)
            self.finished.append(order.ref)
        except asyncio.CancelledError:
            self.cancelled.append(order.ref)
            raise
        finally:
            self.active -= 1

    async def recover(self) -> None:
        self.recoveries += 1

    async def periodic(self, now: datetime) -> None:
        self.ticks.append(now)

    def reconfigure(self, config: Config) -> None:
        self.configs.append(config)


async def deliver(store: Store, order: Order, owner: str) -> None:
    now = utcnow()
    attempt = await store.open_attempt(order.id, owner, "shelf", 0, order.qty, None, now)
    cards = await store.deliver_from_stock(order.id, owner, attempt.id, order.sku, order.qty, now)
    assert cards is not None, "the test put too little stock in"


async def run_once(worker: Worker, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        await worker.run(once=True)


class Running:
    """A worker running in the background of a test; `stop()` waits for it and returns what run() raised."""

    def __init__(self, worker: Worker, *, once: bool = False) -> None:
        self.worker = worker
        self.task = asyncio.create_task(worker.run(once=once))

    async def stop(self) -> None:
        self.worker.stop()
        async with asyncio.timeout(5):
            await self.task


@pytest.fixture(autouse=True)
def _log_info(caplog: pytest.LogCaptureFixture) -> None:
    """The worker's events are INFO; without `fulfil run` setting up logging, the default would hide them."""
    caplog.set_level(logging.INFO, logger="fulfil")


@pytest.fixture
async def running() -> Any:
    """Start workers with `running(worker)`; any still running at the end are stopped."""
    started: list[Running] = []

    def start(worker: Worker, *, once: bool = False) -> Running:
        handle = Running(worker, once=once)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if not handle.task.done():
            await handle.stop()


def events(
    caplog: pytest.LogCaptureFixture, name: str, level: int = logging.DEBUG
) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name and r.levelno >= level]
