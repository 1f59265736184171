"""The worker: claims paid orders under a lease and hands each to the processor, until told to stop.

Its lifecycle follows procrastinate's Worker:

- `run()` starts the side tasks (lease renewer, recovery), the periodic jobs (APScheduler) and the poll
  loop, which claims up to min(batch_size, free slots) orders at a time and runs each as a task, so at
  most `daemon.concurrency` orders are ever in flight;
- `stop()` (SIGTERM/SIGINT) ends claiming; in-flight orders get `daemon.shutdown_timeout` to finish while
  their leases are still renewed, then the rest are cancelled and their leases released in a write
  shielded from cancellation;
- a side task that dies stops the worker, and `run()` raises `WorkerCrashed` once the shutdown is done:
  the daemon exits non-zero (systemd restarts it) rather than limp on without renewal or recovery;
- services (the shop sources' runner) run beside it as side tasks until `stop()`, and `wake()` makes the poll
  loop claim at once (a source just took orders).

No fulfilment logic lives here. Correctness rests on the store's fenced single-transaction writes, so a
missed tick, a lost lease or a cancelled order only ever delays an order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from fulfil.config import Config, ConfigError, load_config
from fulfil.domain import Order
from fulfil.sdnotify import Notifier
from fulfil.storage import LeaseLost

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Tick = Callable[[datetime], Awaitable[object]]

# Sections a running daemon cannot switch: they are read once, at start (supplier adapters included).
RESTART_ONLY = ("database", "security", "http", "suppliers", "sources")
_MIN_INTERVAL = 0.01  # a zero duration in the config must not turn a wait into a busy loop


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_owner() -> str:
    """A lease owner id unique across hosts, processes and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(eq=False)
class Lease:
    """This worker's hold on one order. `lost` is set when renewal finds the lease gone (swept, or taken
    after it expired): the processor should stop writing; the store refuses its writes anyway (LeaseLost)."""

    owner: str
    order_id: int
    lost: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class Processor(Protocol):
    """What the worker drives (the engine); all fulfilment logic lives behind it."""

    async def process(self, order: Order, lease: Lease) -> None:
        """Everything for one claimed order."""
        ...

    async def recover(self) -> None:
        """At start: resolve attempts left sent/ambiguous by an earlier run (may be slow)."""
        ...

    async def periodic(self, now: datetime) -> None:
        """A tick (resolver and the like); correctness must never depend on it."""
        ...


class Service(Protocol):
    """A companion that runs as long as the worker serves (not with `run(once=True)`): `serve` returns soon
    after `stopping` is set; raising stops the worker (a side task that died)."""

    name: str

    async def serve(self, stopping: asyncio.Event) -> None: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A processor that takes a reloaded config on SIGHUP (optional)."""

    def reconfigure(self, config: Config) -> None: ...


class LeaseStore(Protocol):
    """The store operations the worker uses; `fulfil.storage.Store` provides them.

    Lease expiry is the database's clock: `lease` is a number of seconds from the database's now, and the
    `now` passed (this worker's clock) only stamps rows, so hosts whose clocks disagree never take each
    other's orders early."""

    async def claim_orders(self, owner: str, limit: int, lease: float, now: datetime, /) -> list[Order]: ...

    async def renew_leases(
        self, owner: str, order_ids: list[int], lease: float, now: datetime, /
    ) -> set[int]: ...

    async def release_leases(self, owner: str, order_ids: list[int], now: datetime, /) -> int: ...

    async def sweep_expired_leases(self, now: datetime, /) -> int: ...

    async def prune_events(self, before: datetime, batch_size: int, /) -> int: ...


class WorkerCrashed(Exception):
    """A side task of the worker died, so the worker stopped."""


class _Failures:
    """Consecutive failures of a loop that retries: tolerated for `limit` seconds, then fatal."""

    def __init__(self) -> None:
        self._since: float | None = None

    def ok(self) -> None:
        self._since = None

    def give_up(self, limit: float) -> bool:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        return now - self._since > limit


@dataclass(eq=False)
class _InFlight:
    order: Order
    lease: Lease
    task: asyncio.Task[None]


class Worker:
    # Seconds between watchdog pings at most: the loop may spin fast, systemd needs one per WatchdogSec/2.
    watchdog_interval = 1.0

    def __init__(
        self,
        store: LeaseStore,
        processor: Processor,
        config: Config,
        *,
        owner: str | None = None,
        clock: Clock = utc_now,
        notifier: Notifier | None = None,
        services: Sequence[Service] = (),
        jobs: Mapping[str, tuple[Callable[[Config], float], Tick]] | None = None,
    ) -> None:
        self.store = store
        # More periodic jobs (the after-sales desk's time limits and hotspots): name -> (interval from the
        # config, tick). A tick that raises is logged and tried again at the next one, like the others.
        self._extra_jobs = dict(jobs or {})
        self.processor = processor
        self.config = config
        self.owner = owner or make_owner()
        self.claimed = 0  # orders claimed since start
        self.done = 0  # orders whose processing ended (any way)
        self._clock = clock
        self._notifier = notifier if notifier is not None else Notifier.from_environ()
        self._stop_event = asyncio.Event()
        self._wakeup = asyncio.Event()  # stop(), reload(), or a slot freed while the loop waits for one
        self._wake_on_finish = False
        self._finish_woke = False  # finished orders set the wake-up (see `_worth_claiming`); `_poll` reads it
        self._in_flight: dict[int, _InFlight] = {}
        self._ticks: set[asyncio.Task[None]] = set()
        self._crash: tuple[str, BaseException] | None = None
        self._scheduler: Any = None
        self._intervals: dict[str, float] = {}
        self._last_ping = float("-inf")
        self._started = False
        self._services = tuple(services)
        # Called with the new config after a reload (the notification dispatcher: routes must follow at once,
        # or changes committed before its next round would miss a channel just added).
        self.on_reload: list[Callable[[Config], None]] = []
        self._service_tasks: list[asyncio.Task[None]] = []

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        """Serve until `stop()`, or with `once` until nothing is left pending. Raises WorkerCrashed if a
        side task died. Cancelling `run()` shuts down as gracefully as `stop()` does, then re-raises."""
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        main = asyncio.create_task(self._serve(once), name="worker")
        try:
            # Shielded: an outer cancellation becomes a graceful stop, not a cut in the middle of a batch.
            await asyncio.shield(main)
        except asyncio.CancelledError:
            self.stop()
            await main
            raise
        if self._crash is not None:
            name, exc = self._crash
            raise WorkerCrashed(f"side task {name} died: {exc!r}") from exc

    def stop(self) -> None:
        """Stop claiming and shut down gracefully. Idempotent; meant for signal handlers."""
        if self._stop_event.is_set():
            return
        logger.info("worker.stop_requested", extra={"owner": self.owner, "in_flight": self.in_flight})
        self._stop_event.set()
        self._wakeup.set()

    def wake(self) -> None:
        """New work was taken in (HTTP intake, a shop source): claim now rather than at the next poll. The
        poll stays the fallback (another daemon's intake, orders parked until later)."""
        self._wakeup.set()

    def reload(self, config: Config) -> None:
        """Apply a new, already validated config: daemon settings from the next poll, job intervals now."""
        old, self.config = self.config, config
        changed = [name for name in Config.model_fields if getattr(old, name) != getattr(config, name)]
        restart = [name for name in changed if name in RESTART_ONLY]
        if restart:
            logger.warning(
                "config.restart_required",
                extra={"sections": restart, "detail": "these sections take effect at the next start"},
            )
        if isinstance(self.processor, Reconfigurable):
            self.processor.reconfigure(config)
        for listener in self.on_reload:
            listener(config)
        self._reschedule()
        self._wakeup.set()  # concurrency or batch size may have grown
        logger.info("config.reloaded", extra={"changed": changed, **self._settings()})

    def _settings(self) -> dict[str, object]:
        d = self.config.daemon
        return {"concurrency": d.concurrency, "batch_size": d.batch_size, "poll_interval": d.poll_interval}

    async def _serve(self, once: bool) -> None:
        logger.info("worker.started", extra={"owner": self.owner, "once": once, **self._settings()})
        self._notifier.send("STATUS=starting")
        renewer = self._side_task(self._renew_leases(), "lease-renewer")
        recovery = self._side_task(self._recover(), "recovery")
        if not once:
            self._service_tasks = [self._side_task(s.serve(self._stop_event), s.name) for s in self._services]
        try:
            self._scheduler = self._start_scheduler()
            await self._poll_loop(once)
        finally:
            await self._shutdown(renewer, recovery)

    def _side_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._side_task_done)
        return task

    def _side_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        logger.critical("worker.side_task_died", extra={"task": task.get_name()}, exc_info=exc)
        if self._crash is None:
            self._crash = (task.get_name(), exc)
        self.stop()

    async def _recover(self) -> None:
        logger.info("recovery.started")
        await self.processor.recover()
        logger.info("recovery.finished")

    # --- the poll loop --------------------------------------------------------------------------------

    async def _poll_loop(self, once: bool) -> None:
        failures = _Failures()
        ready = False
        while not self._stop_event.is_set():
            self._wakeup.clear()
            try:
                more = await self._poll(once)
            except Exception as exc:
                # A database that stays unreachable for a whole lease ends the daemon: every lease is gone
                # by then anyway, and systemd restarts it. Until then, keep trying.
                if failures.give_up(self.config.daemon.lease):
                    logger.critical("worker.poll_gave_up", extra={"owner": self.owner}, exc_info=True)
                    raise WorkerCrashed(f"claiming orders kept failing for a whole lease: {exc!r}") from exc
                logger.error("worker.poll_failed", extra={"owner": self.owner}, exc_info=True)
                await self._idle(more=False)
                continue
            failures.ok()
            if not ready:
                ready = True
                logger.info("worker.ready", extra={"owner": self.owner})
                self._notifier.send("READY=1", self._status())
            self._progress()
            if once and not more and not self._in_flight:
                logger.info("worker.drained", extra={"owner": self.owner, "done": self.done})
                return
            await self._idle(more)

    async def _poll(self, once: bool) -> bool:
        """Claim what fits; True when the claim came back full (more may be waiting)."""
        d = self.config.daemon
        want = min(d.batch_size, d.concurrency - len(self._in_flight))
        finish_woke, self._finish_woke = self._finish_woke, False
        if want <= 0 or (finish_woke and not self._worth_claiming()):
            # Woken by finishes that came while the last claim ran: wait for a worthwhile number of free
            # slots (or the poll interval) rather than claim the one or two free now.
            self._wake_on_finish = True
            return False
        orders = await self.store.claim_orders(self.owner, want, d.lease, self._clock())
        full = len(orders) == want
        # Bound by free slots rather than the batch: an order finishing frees room for the next claim.
        self._wake_on_finish = once or (full and want < d.batch_size)
        if not orders:
            return False
        if self._stop_event.is_set():
            # stop() came while claiming: hand these straight back rather than start them.
            await self._release([order.id for order in orders], "stopping")
            return False
        self.claimed += len(orders)
        for order in orders:
            if order.id in self._in_flight:
                # Our lease ran out while it was still being worked on and we claimed it back: the run in
                # flight carries on (its lease is held again); a second run of one order must never start.
                logger.warning("worker.reclaimed_in_flight", extra={"order_id": order.id, "ref": order.ref})
                continue
            self._start(order)
        logger.info("worker.claimed", extra={"count": len(orders), "in_flight": len(self._in_flight)})
        return full

    async def _idle(self, more: bool) -> None:
        if more and self._worth_claiming():
            await asyncio.sleep(0)  # let the new orders start, then claim again at once
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(self.config.daemon.poll_interval, _MIN_INTERVAL)):
                await self._wakeup.wait()

    def _progress(self) -> None:
        """A completed poll: the only thing that feeds systemd's watchdog, so a stuck loop gets restarted."""
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self._notifier.send("WATCHDOG=1", self._status())

    def _status(self) -> str:
        return f"STATUS=serving: {len(self._in_flight)} in flight, {self.claimed} claimed, {self.done} done"

    # --- one order ------------------------------------------------------------------------------------

    def _start(self, order: Order) -> None:
        lease = Lease(owner=self.owner, order_id=order.id)
        task = asyncio.create_task(self._process(order, lease), name=f"order-{order.id}")
        self._in_flight[order.id] = _InFlight(order, lease, task)

    async def _process(self, order: Order, lease: Lease) -> None:
        try:
            await self.processor.process(order, lease)
        except LeaseLost:
            self._lease_lost(order, lease)
        except Exception:
            # One order's failure is not the daemon's. Its lease runs out and it is claimed again later.
            logger.exception("worker.order_failed", extra={"order_id": order.id, "ref": order.ref})
        finally:
            self._in_flight.pop(order.id, None)
            self.done += 1
            if self._wake_on_finish and self._worth_claiming():
                self._finish_woke = True
                self._wakeup.set()

    def _worth_claiming(self) -> bool:
        """Whether the slots free now make a claim worth its round trips (the claim and the batch's context
        read cost the same for one order as for sixteen): a quarter of `concurrency`, at least one (an eighth
        cost ~8 % more CPU per order in the benchmark's alternating pairs). Under a steady flow this claims
        several orders at once instead of one per finished order; with little in flight it claims at once,
        and the poll interval is the fallback either way."""
        d = self.config.daemon
        return d.concurrency - len(self._in_flight) >= max(1, min(d.batch_size, d.concurrency // 4))

    def _lease_lost(self, order: Order, lease: Lease) -> None:
        if lease.lost.is_set():
            return
        lease.lost.set()
        logger.warning("lease.lost", extra={"order_id": order.id, "ref": order.ref, "owner": self.owner})

    async def _renew_leases(self) -> None:
        failures = _Failures()
        while True:
            lease = self.config.daemon.lease
            # Every third of a lease: two renewals may fail before a lease can run out.
            await asyncio.sleep(max(lease / 3, _MIN_INTERVAL))
            held = [entry for entry in self._in_flight.values() if not entry.lease.lost.is_set()]
            if not held:
                failures.ok()
                continue
            try:
                ids = [entry.order.id for entry in held]
                kept = await self.store.renew_leases(self.owner, ids, lease, self._clock())
            except Exception:
                if failures.give_up(lease):
                    raise  # every lease has run out by now: stop the worker
                logger.error("lease.renew_failed", extra={"count": len(held)}, exc_info=True)
                continue
            failures.ok()
            for entry in held:
                # An order that finished meanwhile no longer has a lease, and that is no loss.
                if entry.order.id not in kept and entry.order.id in self._in_flight:
                    self._lease_lost(entry.order, entry.lease)

    async def _release(self, order_ids: list[int], reason: str) -> None:
        """Hand leases back (processing -> pending) so another worker need not wait for them to expire.

        The last write of a shutdown: shielded, and awaited even when cancelled, so it is never cut off."""
        write = asyncio.create_task(self.store.release_leases(self.owner, order_ids, self._clock()))
        try:
            try:
                released = await asyncio.shield(write)
            except asyncio.CancelledError:
                await write
                raise
        except Exception:
            # Nothing is lost: the leases expire and the orders are claimed again after `daemon.lease`.
            logger.error("lease.release_failed", extra={"count": len(order_ids)}, exc_info=True)
            return
        logger.info("lease.released", extra={"count": released, "reason": reason})

    # --- periodic jobs --------------------------------------------------------------------------------

    def _jobs(self) -> dict[str, tuple[float, Tick]]:
        return {
            # claim_orders takes expired leases too; the sweeper only makes them show as pending sooner.
            "lease-sweeper": (self.config.daemon.lease / 2, self._sweep),
            "processor": (self.config.ambiguity.query_interval, self.processor.periodic),
            "retention": (self.config.retention.interval, self._prune),
            **{name: (interval(self.config), tick) for name, (interval, tick) in self._extra_jobs.items()},
        }

    def _start_scheduler(self) -> Any:
        # An explicit timezone: APScheduler would otherwise ask tzlocal for the host's.
        scheduler = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        for job_id, (interval, tick) in self._jobs().items():
            interval = max(interval, _MIN_INTERVAL)
            scheduler.add_job(self._tick, "interval", seconds=interval, args=(job_id, tick), id=job_id)
            self._intervals[job_id] = interval
        scheduler.start()
        return scheduler

    def _reschedule(self) -> None:
        if self._scheduler is None or not self._scheduler.running:
            return
        for job_id, (interval, _) in self._jobs().items():
            interval = max(interval, _MIN_INTERVAL)
            if self._intervals.get(job_id) != interval:
                self._scheduler.reschedule_job(job_id, trigger="interval", seconds=interval)
                self._intervals[job_id] = interval

    async def _tick(self, job_id: str, tick: Tick) -> None:
        # APScheduler cancels running coroutine jobs when it shuts down. The work runs in a task of its own
        # that the worker drains (or cancels at the deadline) itself, so the scheduler never cuts a tick
        # short; this wrapper, if cancelled, just returns.
        work = asyncio.create_task(self._run_tick(job_id, tick), name=f"tick-{job_id}")
        self._ticks.add(work)
        work.add_done_callback(self._ticks.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(work)

    async def _run_tick(self, job_id: str, tick: Tick) -> None:
        try:
            await tick(self._clock())
        except Exception:
            # A tick only ever delays work, and the next one tries again: loud, but not fatal.
            logger.error("periodic.failed", extra={"job": job_id}, exc_info=True)

    async def _sweep(self, now: datetime) -> None:
        swept = await self.store.sweep_expired_leases(now)
        if swept:
            logger.warning("lease.swept", extra={"count": swept})

    async def _prune(self, now: datetime) -> None:
        """The event log's retention: old events nothing reads any more, in short batches (the store decides
        which are safe to delete), up to `retention.max_batches` per tick; the next tick goes on."""
        retention = self.config.retention
        if retention.events is None:
            return
        before = now - timedelta(seconds=retention.events)
        pruned = 0
        for _ in range(retention.max_batches):
            deleted = await self.store.prune_events(before, retention.batch_size)
            pruned += deleted
            if deleted < retention.batch_size or self._stop_event.is_set():
                break
            await asyncio.sleep(0)  # let orders' writes in between batches
        if pruned:
            logger.info("retention.pruned", extra={"table": "events", "count": pruned, "before": before.isoformat()})

    # --- shutdown -------------------------------------------------------------------------------------

    async def _shutdown(self, renewer: asyncio.Task[None], recovery: asyncio.Task[None]) -> None:
        timeout = self.config.daemon.shutdown_timeout
        extra = {"owner": self.owner, "in_flight": self.in_flight, "timeout": timeout}
        logger.info("worker.stopping", extra=extra)
        self._notifier.send("STOPPING=1", "STATUS=stopping")
        if self._scheduler is not None:
            self._scheduler.pause()  # no new ticks
        # The renewer keeps running meanwhile, so draining orders keep their leases.
        draining = [entry.task for entry in self._in_flight.values()] + list(self._ticks)
        draining += [task for task in self._service_tasks if not task.done()]  # they end on the stop event
        if not recovery.done():
            draining.append(recovery)
        pending: set[asyncio.Task[None]] = set()
        if draining:
            _, pending = await asyncio.wait(draining, timeout=timeout)
        left = [order_id for order_id, entry in self._in_flight.items() if entry.task in pending]
        if pending:
            logger.warning(
                "worker.shutdown_timeout",
                extra={"timeout": timeout, "cancelled_orders": len(left), "cancelled_tasks": len(pending)},
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if left:
            await self._release(left, "shutdown")
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs on the next loop iteration
        logger.info("worker.stopped", extra={"owner": self.owner, "claimed": self.claimed, "done": self.done})


def reload_from_file(worker: Worker, path: str | Path, environ: Mapping[str, str] | None = None) -> bool:
    """SIGHUP: re-read and validate the file. A bad file is refused loudly, one line per error, and the
    running config is kept; True when the new config was applied."""
    try:
        config = load_config(path, environ)
    except ConfigError as exc:
        for error in exc.errors:
            logger.error(
                "config.reload_refused",
                extra={"path": str(path), "error": error, "count": len(exc.errors), "kept": "running config"},
            )
        return False
    worker.reload(config)
    return True
