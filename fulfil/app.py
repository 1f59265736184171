"""The composition root: config + store + card cipher → suppliers, engine, shop sources, admin server, worker.

`fulfil run`, `fulfil demo` and the acceptance tests build the daemon here, so they run the same parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fulfil.admin import AdminServer
from fulfil.aftersales import credit_book
from fulfil.aftersales.desk import Desk
from fulfil.clock import Clock, SystemClock
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.engine import Engine
from fulfil.loopwatch import LoopWatch, Stalls
from fulfil.notify import Dispatcher, build_routes
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
    notify: Dispatcher | None = None
    desk: Desk | None = None


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
    stalls: Stalls | None = None,
) -> Engine:
    # The quality object follows the engine's config, so a reload (SIGHUP) reaches breakers and scoring too.
    quality = SupplierQuality(store, lambda: engine.config, suppliers)
    engine = Engine(
        store,
        config,
        suppliers,
        fingerprint=cipher.fingerprint,
        clock=clock or SystemClock(),
        health=quality,
        stalls=stalls,
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
    notify: bool | None = None,
    config_dir: Path | None = None,
) -> AsyncIterator[Daemon]:
    """Everything `fulfil run` needs, started; suppliers' connections and the HTTP listener closed on exit."""
    # Changes write their outbox rows only for the event types some configured channel wants.
    store.notify_routes = build_routes(config.notify)
    suppliers = build_suppliers(config, store)
    watch = LoopWatch()  # the engine asks it before blaming a supplier for a call that failed in a stall
    engine = build_engine(config, store, cipher, suppliers, stalls=watch.stalls)
    sources = build_sources(config, store)
    services: list[Service] = [watch, *([sources] if sources is not None else [])]
    desk = Desk(
        store,
        lambda: worker.config,
        credit_book(store),
        suppliers=suppliers,
        clock=engine.clock,
        on_reissue=lambda: worker.wake(),
    )
    jobs = {"aftersales": (lambda c: c.aftersales.interval, desk.tick)}
    worker = Worker(store, engine, config, owner=owner, services=services, jobs=jobs)
    if sources is not None:
        sources.config = lambda: worker.config
        sources.on_taken = worker.wake  # orders just taken from a shop are claimed at once
    admin: AdminServer | None = None
    sender: _Sender | None = None
    try:
        # Started even with no channel configured: a SIGHUP that adds the first one must find a dispatcher
        # (with none it reads nothing; its only cost is an idle task and a second connection pool).
        if notify if notify is not None else True:
            sender = await _Sender.start(store, worker, config_dir)
        if config.http.enabled if serve_http is None else serve_http:
            admin = AdminServer(
                store, engine, lambda: worker.config, on_intake=worker.wake, sources=sources, desk=desk
            )
            await admin.start(config.http.listen)
        notifier = sender.dispatcher if sender else None
        yield Daemon(store, engine, worker, suppliers, admin, sources=sources, notify=notifier, desk=desk)
    finally:
        if admin is not None:
            await admin.stop()
        if sources is not None:
            await sources.aclose()
        if sender is not None:
            await sender.stop()
        if isinstance(engine.health, SupplierQuality):
            await engine.health.aclose()  # flush the last call counts
        for supplier in suppliers.values():
            await supplier.aclose()


class _Sender:
    """The notification dispatcher as a companion of the worker: its own store (connection pool) and task;
    stopped after the worker (what it claimed is sent and recorded, or released; the rest waits in the outbox
    for the next start). If it dies, the worker is stopped: a daemon that no longer notifies must not look
    healthy. (With issue 9's `Worker(services=...)` this becomes one of the worker's services.)"""

    def __init__(self, dispatcher: Dispatcher, store: Store, task: asyncio.Task[None], stopping: asyncio.Event):
        self.dispatcher = dispatcher
        self.store = store
        self.task = task
        self.stopping = stopping

    @classmethod
    async def start(cls, store: Store, worker: Worker, config_dir: Path | None) -> _Sender:
        own = await store.sibling()
        dispatcher = Dispatcher(
            own,
            lambda: worker.config,
            owner=worker.owner,
            config_dir=config_dir,
            release_all_at_start=store.dialect == "sqlite",  # one daemon per SQLite file: rows leased are ours
            routes_for=[store],  # a reloaded notify: section changes what the engine's changes write
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(dispatcher.serve(stopping), name="notify")

        def died(done: asyncio.Task[None]) -> None:
            if done.cancelled() or stopping.is_set():
                return
            exc = done.exception()
            logging.getLogger("fulfil.notify").critical("worker.side_task_died", extra={"task": "notify"}, exc_info=exc)
            worker.stop()

        task.add_done_callback(died)
        worker.on_reload.append(lambda _config: dispatcher.reconfigure())
        return cls(dispatcher, own, task, stopping)

    async def stop(self) -> None:
        self.stopping.set()
        try:
            await self.task
        except Exception:
            logging.getLogger("fulfil.notify").error("notify.stop_failed", exc_info=True)
        finally:
            await self.store.close()
