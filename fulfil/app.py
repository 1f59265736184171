"""The composition root: config + store + card cipher → suppliers, engine, admin server, worker.

`fulfil run`, `fulfil demo` and the acceptance tests build the daemon here, so they run the same parts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from fulfil.admin import AdminServer
from fulfil.clock import Clock, SystemClock
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.engine import Engine
from fulfil.quality import SupplierQuality
from fulfil.storage import Store
from fulfil.worker import Worker
from suppliers.base import Supplier
from suppliers.registry import build_supplier


@dataclass
class Daemon:
    store: Store
    engine: Engine
    worker: Worker
    suppliers: dict[str, Supplier]
    admin: AdminServer | None


def build_suppliers(config: Config, store: Store) -> dict[str, Supplier]:
    return {cfg.name: build_supplier(cfg, store=store) for cfg in config.suppliers if cfg.enabled}


def build_engine(
    config: Config,
    store: Store,
    cipher: CardCipher,
    suppliers: Mapping[str, Supplier],
    clock: Clock | None = None,
) -> Engine:
    # The quality object follows the engine's config, so a reload (SIGHUP) reaches breakers and scoring too.
    quality = SupplierQuality(store, lambda: engine.config, suppliers)
    engine = Engine(
        store, config, suppliers, fingerprint=cipher.fingerprint, clock=clock or SystemClock(), health=quality
    )
    return engine


@contextlib.asynccontextmanager
async def daemon(
    config: Config,
    store: Store,
    cipher: CardCipher,
    *,
    owner: str | None = None,
    serve_http: bool | None = None,
) -> AsyncIterator[Daemon]:
    """Everything `fulfil run` needs, started; suppliers' connections and the HTTP listener closed on exit."""
    suppliers = build_suppliers(config, store)
    engine = build_engine(config, store, cipher, suppliers)
    worker = Worker(store, engine, config, owner=owner)
    admin: AdminServer | None = None
    try:
        if config.http.enabled if serve_http is None else serve_http:
            admin = AdminServer(store, engine, lambda: worker.config, on_intake=worker.wake)
            await admin.start(config.http.listen)
        yield Daemon(store, engine, worker, suppliers, admin)
    finally:
        if admin is not None:
            await admin.stop()
        if isinstance(engine.health, SupplierQuality):
            await engine.health.aclose()  # flush the last call counts
        for supplier in suppliers.values():
            await supplier.aclose()
