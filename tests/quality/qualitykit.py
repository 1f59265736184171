"""Quality tests: helpers that write a supplier's record through the real Store API, fake suppliers for the
balance and stock watch, and a real engine and worker over fulu simulators for the acceptance tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fulfil.app import build_suppliers
from fulfil.config import Config, config_from_data
from fulfil.crypto import CardCipher
from fulfil.domain import AttemptRecord, AttemptState, ClaimReason, NewOrder, OrderStatus
from fulfil.engine import Engine
from fulfil.quality import SupplierQuality
from fulfil.storage import Store
from fulfil.worker import Worker
from suppliers.base import Balance, PlaceRequest, StockCheck, Supplier
from suppliers.sim.server import Simulator
from suppliers.taxonomy import Outcome

OWNER = "quality-test"
_refs = itertools.count(1)


async def attempt(
    store: Store,
    supplier: str,
    started: datetime,
    *,
    seconds: float = 1.0,
    state: AttemptState = AttemptState.SUCCEEDED,
    error_class: str | None = None,
    sku: str = "steam-100",
    offer_index: int = 0,
    qty: int = 1,
    cost: Decimal | None = Decimal("10.00"),
) -> AttemptRecord:
    """One order with one attempt that started at `started` and ended `seconds` later in `state`."""
    ref = f"Q{next(_refs):06d}"
    added = await store.add_order(NewOrder(ref, sku, qty), started)
    claimed = await store.claim_orders(OWNER, 1, 3600, started)
    assert [o.id for o in claimed] == [added.order_id]
    record = await store.open_attempt(added.order_id, OWNER, supplier, offer_index, qty, cost, started)
    await store.mark_attempt(record.id, AttemptState.SENT, started)
    if state in (AttemptState.SENT, AttemptState.AMBIGUOUS):
        return record
    ended = started + timedelta(seconds=seconds)
    marked = await store.mark_attempt(record.id, state, ended, error_class=error_class)
    await store.finish_order(added.order_id, OWNER, OrderStatus.FAILED, "quality test", ended)  # out of the way
    return marked


async def invalid_keys(
    store: Store, supplier: str, started: datetime, *, qty: int = 1, amount: str = "10.00", offer_index: int = 0
) -> None:
    """An attempt that delivered keys which failed validation: succeeded/invalid_key, with its claim."""
    record = await attempt(store, supplier, started, error_class="invalid_key", qty=qty, offer_index=offer_index)
    await store.open_claim(record.id, ClaimReason.INVALID_KEY, Decimal(amount), qty, {}, started + timedelta(seconds=2))


class FakeSupplier(Supplier):
    """A supplier whose balance and stock answers the test sets; counts how often it was asked."""

    type_name = "fake"

    def __init__(self, name: str) -> None:
        super().__init__(name, {})
        self.balance_answer: Balance | None | Exception = None
        self.stock_answer: StockCheck | None | Exception = None
        self.stock_gate: asyncio.Event | None = None
        self.balance_gate: asyncio.Event | None = None
        self.balance_calls = 0
        self.stock_calls: list[tuple[str, int]] = []

    async def place(self, request: PlaceRequest) -> Outcome:  # pragma: no cover - not used here
        raise NotImplementedError

    async def query(self, request: PlaceRequest) -> Outcome:  # pragma: no cover - not used here
        raise NotImplementedError

    async def balance(self) -> Balance | None:
        self.balance_calls += 1
        if self.balance_gate is not None:
            await self.balance_gate.wait()
        if isinstance(self.balance_answer, Exception):
            raise self.balance_answer
        return self.balance_answer

    async def check_stock(self, product_id: str, qty: int) -> StockCheck | None:
        self.stock_calls.append((product_id, qty))
        if self.stock_gate is not None:
            await self.stock_gate.wait()
        if isinstance(self.stock_answer, Exception):
            raise self.stock_answer
        return self.stock_answer


class LocalFake(FakeSupplier):
    """Like our own stock: no network."""

    local = True


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0) -> None:
    """Wait until `check()` is true; TimeoutError (the test fails) after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


# --- integration: a real engine and worker over a real store, fulu simulators on loopback -----------------

SIM_SECRET = "0123456789abcdef0123456789abcdef"
SKU = "steam-100"
PRODUCT = "10001"


def fulu_scenario(seed: int, faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "protocol": "fulu",
        "app_key": "quality-app",
        "secret": SIM_SECRET,
        "balance": "100000000.00",
        "seed": seed,
        "products": {
            PRODUCT: {"name": "Steam 100", "kind": "card", "price": "95.00", "card_pattern": "[A-Z0-9]{16}"}
        },
        "faults": faults or [],
    }


def two_fulu_config(
    db_url: str,
    sims: Mapping[str, Simulator],
    *,
    priorities: Mapping[str, int],
    supplier: Mapping[str, Any] | None = None,
    **sections: dict[str, Any],
) -> Config:
    """Fulu suppliers named after `sims`, one card product with an offer at each, intervals short for tests;
    `supplier` overrides settings of every supplier entry (its timeouts, say)."""
    fulu = {"type": "fulu", "app_key": "quality-app", "secret": SIM_SECRET, "timeout": "1s", "poll_interval": "20ms"}
    fulu.update(supplier or {})
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "daemon": {"poll_interval": "20ms", "batch_size": 20, "concurrency": 16, "lease": "30s"},
        "http": {"enabled": False},
        "retry": {"budget": "1s", "initial_backoff": "50ms", "max_backoff": "200ms"},
        # The engine's periodic (health included) runs at this interval.
        "ambiguity": {"query_interval": "200ms", "policy": "wait"},
        "scoring": {"interval": "500ms"},
        "suppliers": [{"name": name, "base_url": sim.gateway_url, **fulu} for name, sim in sims.items()],
        "products": {
            SKU: {
                "card_pattern": "^[A-Z0-9]{16}$",
                "offers": [
                    {"supplier": name, "product_id": PRODUCT, "cost": "95.00", "priority": priorities[name]}
                    for name in sims
                ],
            }
        },
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return config_from_data(data, environ={})


@dataclass
class Running:
    store: Store
    engine: Engine
    quality: SupplierQuality
    worker: Worker
    added: int = 0

    async def add(self, count: int) -> None:
        at = datetime.now(UTC)
        new = [NewOrder(f"R{self.added + i:06d}", SKU, 1) for i in range(count)]
        results = await self.store.add_orders(new, at)
        assert all(r.status == "accepted" for r in results)
        self.added += count

    async def feed(self, per_second: float, stop: asyncio.Event) -> None:
        """Add orders at a steady rate until `stop` is set."""
        step = 0.2
        while not stop.is_set():
            await self.add(max(1, round(per_second * step)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await stop.wait()

    async def settled(self) -> bool:
        counts = await self.store.count_by_status()
        return counts["pending"] + counts["processing"] == 0


@contextlib.asynccontextmanager
async def running(
    db_url: str,
    cipher: CardCipher,
    config: Config,
    quality_factory: Callable[[Store, Config, Mapping[str, Supplier]], SupplierQuality] = SupplierQuality,
) -> AsyncIterator[Running]:
    """Store, suppliers, engine with its quality object, and a worker running; all closed after."""
    await asyncio.to_thread(Store.upgrade, db_url)
    store = await Store.open(db_url, cipher)
    suppliers = build_suppliers(config, store)
    quality = quality_factory(store, config, suppliers)
    engine = Engine(store, config, suppliers, fingerprint=cipher.fingerprint, health=quality)
    worker = Worker(store, engine, config)
    task = asyncio.create_task(worker.run())
    try:
        yield Running(store, engine, quality, worker)
    finally:
        worker.stop()
        await task
        await quality.aclose()
        for supplier in suppliers.values():
            await supplier.aclose()
        await store.close()
