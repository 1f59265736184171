"""The composition root: config + store + card cipher → suppliers, engine, shop sources, admin server, worker.

`fulfil run`, `fulfil demo` and the acceptance tests build the daemon here, so they run the same parts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fulfil.admin import AdminServer
from fulfil.clock import Clock, SystemClock
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.engine import Engine
from fulfil.quality import SupplierQuality
from fulfil.storage import Store
from fulfil.worker import Service, Worker
from suppliers.base import Supplier
from suppliers.registry import build_supplier

if TYPE_CHECKING:
    from fulfil.sources.runner import SourceRunner


@dataclass
class Daemon:
    store: Store
    engine: Engine
    worker: Worker
    suppliers: dict[str, Supplier]
    admin: AdminServer | None
    sources: SourceRunner | None = None


def build_sources(config: Config, store: Store, clock: Clock | None = None) -> SourceRunner | None:
    """The shop sources' runner when the config has enabled sources (importing their drivers only then)."""
    entries = [entry for entry in config.sources if entry.enabled]
    if not entries:
        return None
    from fulfil.sources import build_source
    from fulfil.sources.runner import SourceRunner

    sources = {entry.name: build_source(entry) for entry in entries}
    return SourceRunner(store, sources, lambda: config, clock=clock)


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
    sources = build_sources(config, store)
    services: list[Service] = [sources] if sources is not None else []
    worker = Worker(store, engine, config, owner=owner, services=services)
    if sources is not None:
        sources.config = lambda: worker.config
        sources.on_taken = worker.wake  # orders just taken from a shop are claimed at once
    admin: AdminServer | None = None
    try:
        if config.http.enabled if serve_http is None else serve_http:
            admin = AdminServer(store, engine, lambda: worker.config, on_intake=worker.wake, sources=sources)
            await admin.start(config.http.listen)
        yield Daemon(store, engine, worker, suppliers, admin, sources)
    finally:
        if admin is not None:
            await admin.stop()
        if sources is not None:
            await sources.aclose()
        if isinstance(engine.health, SupplierQuality):
            await engine.health.aclose()  # flush the last call counts
        for supplier in suppliers.values():
            await supplier.aclose()
