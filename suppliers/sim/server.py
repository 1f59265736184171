"""Run the simulator in-process for tests (`running_sim`) or as a process (`main`, `python -m suppliers.sim`).

The protocol listener is closed for real while a `refuse` window is open, so clients get "connection
refused"; a second, control-only listener stays up so a script can still reach /_sim/ and bring the
supplier back (POST /_sim/scenario).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from suppliers.sim import acg_app, fulu_app
from suppliers.sim.callbacks import CallbackSender
from suppliers.sim.control import add_control_routes
from suppliers.sim.ledger import Ledger
from suppliers.sim.scenario import Fault, Scenario, coerce_scenario, faults_from_data
from suppliers.sim.state import RequestLog, SimState

logger = logging.getLogger("suppliers.sim")

SHUTDOWN_TIMEOUT = 0.5  # hung handlers (timeout_before_commit) are cancelled, not waited for
RETRY_BIND = 0.1


class Simulator:
    """One simulated supplier. `start()`/`stop()`, or `async with running_sim(...)`."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.scenario = scenario
        self.host = host
        self.port = port
        self.control_port = control_port
        self.state = SimState(scenario, clock=clock)
        self.callbacks = (
            CallbackSender(self.state, scenario.callback_url, scenario.secret) if scenario.callback_url else None
        )
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._control_runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._listener_changed = asyncio.Event()
        self._listener_lock = asyncio.Lock()

    # --- what tests use -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL. fulu answers at this URL and at `/api/getway`; acg_faka under `/shared/...`."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def gateway_url(self) -> str:
        return self.url + "/api/getway" if self.scenario.protocol == "fulu" else self.url

    @property
    def control_url(self) -> str | None:
        return f"http://{_url_host(self.host)}:{self.control_port}" if self.control_port is not None else None

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger

    @property
    def requests(self) -> RequestLog:
        return self.state.log

    @property
    def refusing(self) -> bool:
        return self._runner is not None and self._site is None

    def set_faults(self, faults: Sequence[Fault] | Sequence[Mapping[str, Any]]) -> None:
        """Replace the faults (validated like the file's); windows and counters start again from now."""
        parsed = [f for f in faults if isinstance(f, Fault)]
        if len(parsed) != len(faults):
            parsed = list(faults_from_data(list(faults), self.scenario))
        self.state.replace_faults(parsed)

    def reset(self) -> None:
        self.state.reset()

    async def wait_listening(self, listening: bool = True) -> None:
        """Wait until the listener is open (or closed): refuse windows are applied by a background task.
        Wrap it in `asyncio.timeout(...)`."""
        while self.refusing == listening:
            self._listener_changed.clear()
            await self._listener_changed.wait()

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        if self.scenario.protocol == "fulu":
            fulu = fulu_app.FuluHandler(self.state, self.callbacks)
            for path in fulu_app.GATEWAY_PATHS:
                app.router.add_post(path, fulu.handle)
        else:
            acg = acg_app.AcgHandler(self.state)
            for path in acg_app.PATHS:
                app.router.add_post(path, acg.handle)
        add_control_routes(app, self.state, self)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        await self._open()  # bind even when refusing from the start: the port must be known
        if self.control_port is not None:
            control = web.Application()
            add_control_routes(control, self.state, self)
            self._control_runner = web.AppRunner(control, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
            await self._control_runner.setup()
            site = web.TCPSite(self._control_runner, self.host, self.control_port, reuse_address=True)
            await site.start()
            self.control_port = site.port
        if self.state.faults.refusing():
            await self._close()
        self._watcher = asyncio.get_running_loop().create_task(self._watch_refuse())
        self._watcher.add_done_callback(_report_crash)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self.callbacks is not None:
            await self.callbacks.aclose()
        for runner in (self._runner, self._control_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._control_runner = None
        self._site = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the refuse windows -------------------------------------------------------------------------

    async def _open(self) -> None:
        assert self._runner is not None
        reopening = self.port != 0
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, backlog=1024)
        await site.start()
        self._site = site
        self.port = site.port
        self._listener_changed.set()
        # Coming back after a refuse window is news; the first open is not.
        logger.log(logging.INFO if reopening else logging.DEBUG, "sim.accepting", extra={"port": self.port})

    async def _close(self) -> None:
        assert self._runner is not None and self._site is not None
        await self._site.stop()
        self._site = None
        # A down server also drops the connections it had: clients must reconnect, and be refused.
        server = self._runner.server
        for handler in server.connections if server is not None else ():
            if handler.transport is not None:
                handler.transport.abort()
        self._listener_changed.set()
        logger.info("sim.refusing", extra={"port": self.port})

    async def sync_listener(self) -> None:
        """Open or close the protocol listener now, as the faults in force say."""
        async with self._listener_lock:
            want_down = self.state.faults.refusing()
            if want_down and self._site is not None:
                await self._close()
            elif not want_down and self._site is None:
                await self._open()

    async def _watch_refuse(self) -> None:
        changed = self.state.faults_changed
        while True:
            changed.clear()
            try:
                await self.sync_listener()
            except OSError as exc:  # the port was taken meanwhile: keep trying, say so
                logger.warning("sim.rebind_failed", extra={"port": self.port, "error": str(exc)})
                await asyncio.sleep(RETRY_BIND)
                continue
            wait = self.state.faults.next_change()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait + 0.001 if wait is not None else None):
                    await changed.wait()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("sim.watcher_crashed", exc_info=task.exception())


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def running_sim(
    scenario: Scenario | Mapping[str, Any] | str | Path,
    *,
    protocol: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    control_port: int | None = 0,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[Simulator]:
    """`async with running_sim(scenario) as sim:` — a started simulator on loopback; `sim.url`."""
    sim = Simulator(coerce_scenario(scenario, protocol), host=host, port=port, control_port=control_port, clock=clock)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def serve(
    scenario: Scenario, host: str, port: int, control_port: int | None, announce: Callable[[Simulator], None]
) -> None:
    """Run until SIGINT/SIGTERM; `announce` is called once the listener is up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_sim(scenario, host=host, port=port, control_port=control_port) as sim:
        announce(sim)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Subprocess entry: `main(["--listen", "127.0.0.1:0", "--protocol", "fulu", "--scenario", path])`."""
    from suppliers.sim.cli import run  # the CLI module imports this one

    return run(argv)
