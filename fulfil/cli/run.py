"""`fulfil run [--once]`: the daemon.

Start-up refuses, before touching any order: an invalid config or no card key (exit 2), a second daemon on
the same SQLite database (exit 1, naming the PID that holds it), an out-of-date schema (exit 2, naming
`fulfil db upgrade`). Then the worker serves until SIGTERM/SIGINT (graceful, exit 0); SIGHUP re-reads the
config file and keeps the running one if the new one is invalid. A worker that crashed exits 1, so
systemd's `Restart=on-failure` brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import click

from fulfil.cli.context import CliState, CommandFailed, get_state, run_async
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.instance_lock import InstanceLock, InstanceLocked, lock_path_for
from fulfil.worker import Worker, WorkerCrashed, reload_from_file, utc_now

logger = logging.getLogger("fulfil.run")


@click.command("run")
@click.option("--once", is_flag=True, help="Process the orders pending now, then exit (no HTTP server).")
def run(once: bool) -> None:
    """Run the daemon: claim paid orders and deliver them until stopped."""
    state = get_state()
    config = state.config  # every config error, exit 2
    cipher = state.cipher()  # no card key, exit 2
    with _instance_lock(config.database.url):
        run_async(_serve(state, config, cipher, once=once))


@contextlib.contextmanager
def _instance_lock(url: str) -> Iterator[None]:
    path = lock_path_for(url)
    if path is None:  # PostgreSQL: several daemons share the database through row locks
        yield
        return
    lock = InstanceLock(path)
    try:
        lock.acquire()
    except InstanceLocked as exc:
        raise CommandFailed(str(exc)) from exc
    try:
        yield
    finally:
        lock.release()


async def _serve(state: CliState, config: Config, cipher: CardCipher, *, once: bool) -> None:
    from fulfil.app import daemon

    store = await state.open_store(cipher=cipher)  # SchemaOutOfDate names `fulfil db upgrade`, exit 2
    try:
        if store.dialect == "sqlite":
            # We hold the instance lock, so no other daemon can own a lease here: a crashed predecessor's
            # orders are taken back now instead of when their leases expire.
            await store.release_all_leases(utc_now())
        if not once:
            await store.warm_pools()  # opened now, not as load first needs them: none opens while serving
        serve_http = config.http.enabled and not once
        folder = state.resolved_config_path.resolve().parent
        async with daemon(config, store, cipher, serve_http=serve_http, notify=not once, config_dir=folder) as d:
            with _signal_handlers(d.worker, state.resolved_config_path):
                # What start-up built lives as long as the process: out of the collector's sight, so a full
                # collection under load walks only what the orders made (it walked everything: 30-60 ms pauses
                # every few seconds at ~300 orders/s, each one order's delay).
                gc.freeze()
                await d.worker.run(once=once)
    except WorkerCrashed as exc:
        raise CommandFailed(str(exc)) from exc
    except OSError as exc:  # the admin listener
        raise CommandFailed(f"http.listen {config.http.listen}: cannot listen ({exc.strerror})") from exc
    finally:
        await store.close()


@contextlib.contextmanager
def _signal_handlers(worker: Worker, config_path: Path) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        logger.info("signal.received", extra={"signal": signum.name, "action": "stop"})
        worker.stop()

    def reload() -> None:
        logger.info(
            "signal.received", extra={"signal": "SIGHUP", "action": "reload", "path": str(config_path)}
        )
        reload_from_file(worker, config_path)

    loop.add_signal_handler(signal.SIGTERM, stop, signal.SIGTERM)
    loop.add_signal_handler(signal.SIGINT, stop, signal.SIGINT)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
