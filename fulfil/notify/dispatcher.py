"""The dispatcher: sends the outbox, beside the worker, never in its way.

One task polls for channels with rows due (a read), claims up to each channel's free slots (a short write
transaction, `FOR UPDATE SKIP LOCKED` on PostgreSQL) and sends each row in a task of its own; a channel's
in-flight sends never exceed its `concurrency`, so a slow or dead endpoint fills only its own slots. It uses
a store (engine and connection pool) of its own, so sends never hold the engine's connections.

Beside sending it runs its own periodic jobs: delay warnings (`order.delayed`), operator alerts that come
from looking (review queue age, invalid-key spikes) and pruning finished outbox rows.

Every try's outcome is decided by `retry.decide`; the row's update is fenced by the lease (a daemon that lost
the row does not overwrite the try of the one that took it). A crash between a send and its update leaves the
row leased: it is sent again when the lease runs out (or, on SQLite, at the next start), with the same id and
body: at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from fulfil import failpoints
from fulfil.config import Config
from fulfil.notify import delay
from fulfil.notify.channels import Channel, Message, build_channels
from fulfil.notify.events import build_routes, webhook_channel
from fulfil.notify.retry import Decision, SendResult, decide
from fulfil.storage.store_notify import PENDING, OrderNotice, OutboxRow, TryOutcome

log = logging.getLogger("fulfil.notify")

_DISABLED_REFRESH = 5.0  # seconds between reads of which endpoints are disabled
_DURATIONS_REFRESH = 300.0  # seconds between reads of recent delivery times (delay thresholds)
_FINISH_TRIES = 5
_MIN_ROUND = 0.02  # seconds between two rounds at least (claims), and between two commits of tries
_GIVE_BACK = Decision("pending", delay=0.0, counts=False)  # a claimed row not tried: due again at once


class NotifyStore(Protocol):
    """What the dispatcher uses of `fulfil.storage.Store`."""

    notify_routes: Any
    dialect: str

    async def claim_outbox(self, channel: str, owner: str, limit: int, lease: float) -> list[OutboxRow]: ...

    async def due_channels(self) -> set[str]: ...

    async def finish_outbox_many(self, owner: str, outcomes: Sequence[TryOutcome]) -> int: ...

    async def release_outbox(self, owner: str | None = None) -> int: ...

    async def order_notices(self, wanted: dict[int, datetime], *, with_cards: bool = ...) -> dict[int, OrderNotice]: ...

    async def disabled_endpoints(self) -> dict[str, tuple[datetime, str | None]]: ...

    async def disable_endpoint(
        self, name: str, reason: str, now: datetime, alert: tuple[str, str, dict[str, Any], float] | None = None
    ) -> bool: ...

    async def raise_alert(self, kind: str, subject: str, data: dict[str, Any], quiet: float, now: datetime) -> bool: ...

    async def delivery_durations(self, since: datetime, limit: int = ...) -> dict[str, list[float]]: ...

    async def open_orders_since(
        self, created_before: datetime, limit: int = ...
    ) -> list[tuple[int, str, datetime]]: ...

    async def mark_delayed(self, delayed: dict[int, dict[str, Any]], now: datetime) -> int: ...

    async def review_backlog(self) -> tuple[int, datetime | None]: ...

    async def invalid_key_claims(self, since: datetime) -> dict[str, int]: ...

    async def prune_outbox(self, before: datetime, batch_size: int) -> int: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class _ChannelState:
    """A channel's sends in flight: at most `batch` rows claimed, at most `concurrency` requests at once."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.in_flight: set[asyncio.Task[None]] = set()
        self.paused_until = 0.0  # monotonic
        self.slots = asyncio.Semaphore(channel.concurrency)
        self.backlog = False  # the last claim came back full: more rows may be due
        # Rows claimed per transaction: several per slot, so claims and their records are few commits.
        self.batch = min(max(channel.concurrency * 16, 32), 200)

    def room(self) -> int:
        """Rows to claim now: a refill once half the batch is done, none before."""
        left = len(self.in_flight)
        return self.batch - left if left <= self.batch // 2 else 0

    def lease(self, margin: float) -> float:
        """Long enough for the whole batch through the channel's slots at its timeout, plus the margin."""
        rounds = -(-self.batch // self.channel.concurrency)
        return self.channel.timeout * rounds + margin


class Dispatcher:
    """Sends the outbox until `stopping` is set; `serve` returns after in-flight sends end (or are cut at
    `grace` seconds, their rows released)."""

    name = "notify"

    def __init__(
        self,
        store: NotifyStore,
        config: Callable[[], Config],
        *,
        owner: str,
        config_dir: Path | None = None,
        clock: Callable[[], datetime] = utc_now,
        poll_interval: float = 1.0,
        grace: float = 5.0,
        rng: random.Random | None = None,
        release_all_at_start: bool = False,
        routes_for: Sequence[Any] = (),
    ) -> None:
        self.store = store
        self.config = config
        self.owner = owner
        self.config_dir = config_dir
        self.clock = clock
        self.poll_interval = poll_interval
        self.grace = grace
        self.rng = rng or random.Random()
        self.release_all_at_start = release_all_at_start
        self._routes_for = tuple(routes_for)  # other stores whose outbox writes follow the config (the engine's)
        self.sent = 0  # tries that ended delivered
        self.tried = 0
        self._wakeup = asyncio.Event()
        self._notify_config: Any = None
        self._channels: dict[str, _ChannelState] = {}
        self._retired: list[Channel] = []
        self._disabled: dict[str, tuple[datetime, str | None]] = {}
        self._disabled_at = float("-inf")
        self._durations: dict[str, list[float]] = {}
        self._durations_at = float("-inf")
        self._delayed_done: set[int] = set()
        self._next_job: dict[str, float] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._recorded = asyncio.Event()  # set when tries wait to be recorded
        self._closing = False
        self._outcomes: list[tuple[_ChannelState, OutboxRow, SendResult, Decision, datetime]] = []

    # --- lifecycle ------------------------------------------------------------------------------------

    async def serve(self, stopping: asyncio.Event) -> None:
        self._refresh_channels()
        if self.release_all_at_start:
            released = await self.store.release_outbox()
            if released:
                log.info("notify.released", extra={"count": released, "reason": "start"})
        log.info("notify.started", extra={"owner": self.owner, "channels": sorted(self._channels)})
        recorder = asyncio.create_task(self._record_loop(), name="notify-recorder")
        try:
            last = float("-inf")
            while not stopping.is_set():
                # Rounds at most every _MIN_ROUND: under a stream of events many sends end between two rounds,
                # and one round claims and records them all (one commit each) instead of one per send.
                spacing = last + _MIN_ROUND - time.monotonic()
                if spacing > 0:
                    await asyncio.sleep(spacing)
                last = time.monotonic()
                self._wakeup.clear()
                more = False
                try:
                    more = await self._tick()
                except Exception:
                    # The database may be away for a while: nothing is lost, the rows wait in the outbox.
                    log.error("notify.poll_failed", exc_info=True)
                if not more:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_interval):
                            await _first(self._wakeup.wait(), stopping.wait())
        finally:
            await self._shutdown(recorder)

    async def _record_loop(self) -> None:
        """Records tries as they end, group-commit style: whatever ended while the last commit ran goes in the
        next one. A quiet endpoint costs a commit per send; a busy one a commit per many, and a crash repeats
        only the sends of one commit's time."""
        while True:
            await self._recorded.wait()
            if not self._closing:
                await asyncio.sleep(_MIN_ROUND)  # gather what ends meanwhile: one commit for them all
            self._recorded.clear()
            await self._flush()
            if self._closing and not self._outcomes:
                return

    def wake(self) -> None:
        self._wakeup.set()

    def reconfigure(self) -> None:
        """The config was reloaded: routes and channels follow now, not at the next round."""
        self._refresh_channels()
        self._wakeup.set()

    async def _shutdown(self, recorder: asyncio.Task[None]) -> None:
        tasks = [t for state in self._channels.values() for t in state.in_flight] + list(self._jobs)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # What was sent is recorded as sent (not released to be sent again): the recorder's last commits.
        self._closing = True
        self._recorded.set()
        done, _ = await asyncio.wait([recorder], timeout=self.grace)
        if not done:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
        with contextlib.suppress(Exception):
            released = await self.store.release_outbox(self.owner)
            if released:
                log.info("notify.released", extra={"count": released, "reason": "shutdown"})
        for state in self._channels.values():
            await state.channel.aclose()
        for channel in self._retired:
            await channel.aclose()
        log.info("notify.stopped", extra={"owner": self.owner, "sent": self.sent, "tried": self.tried})

    def _refresh_channels(self) -> None:
        """(Re)build the channels when the `notify:` section changed (SIGHUP); the routes follow it."""
        notify = self.config().notify
        if notify is self._notify_config:
            return
        self._notify_config = notify
        routes = build_routes(notify)
        self.store.notify_routes = routes
        for other in self._routes_for:
            other.notify_routes = routes
        fresh = build_channels(notify.webhooks, notify.email, notify.alerts, self.config_dir)
        old = self._channels
        self._channels = {}
        for name, channel in fresh.items():
            state = _ChannelState(channel)
            if name in old:
                state.in_flight = old[name].in_flight
                state.paused_until = old[name].paused_until
            self._channels[name] = state
        self._retired.extend(state.channel for state in old.values())

    # --- sending --------------------------------------------------------------------------------------

    async def _tick(self) -> bool:
        """One round: periodic jobs when due, claims for channels with room. True if a claim came back full
        (go again at once)."""
        self._refresh_channels()
        self._start_jobs()
        if not self._channels:
            return False  # nothing configured (yet: a SIGHUP may add a channel): no reads at all
        now_mono = time.monotonic()
        if now_mono - self._disabled_at > _DISABLED_REFRESH:
            self._disabled = await self.store.disabled_endpoints()
            self._disabled_at = now_mono
        ready = {
            name: state
            for name, state in self._channels.items()
            if state.room() > 0 and state.paused_until <= now_mono and not self._is_disabled(name)
        }
        if not ready:
            return False
        due = await self.store.due_channels()
        more = False
        margin = self.config().notify.lease
        for name in sorted(due & set(ready)):
            state = ready[name]
            want = state.room()
            lease = state.lease(margin)
            # Measured from before the claim: never later than the lease the database gives (its own clock).
            deadline = time.monotonic() + lease
            rows = await self.store.claim_outbox(name, self.owner, want, lease)
            if not rows:
                state.backlog = False
                continue
            state.backlog = len(rows) == want
            more = more or state.backlog
            notices = await self._notices(rows, state.channel.needs_cards)
            for row in rows:
                message = Message(row, notices.get(row.order_id) if row.order_id is not None else None)
                work = self._deliver(state, message, deadline - margin / 2)
                task = asyncio.create_task(work, name=f"notify-{row.id}")
                state.in_flight.add(task)
                task.add_done_callback(self._sent_callback(state))
        return more

    def _is_disabled(self, channel: str) -> bool:
        return (channel.partition(":")[2] or channel) in self._disabled

    def _sent_callback(self, state: _ChannelState) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            state.in_flight.discard(task)
            # More may be waiting only when the last claim came back full: then refill at half a batch. Otherwise
            # the next poll finds what arrived meanwhile, all in one claim (a trickle costs no claim per event).
            if state.backlog and len(state.in_flight) <= state.batch // 2:
                self._wakeup.set()

        return done

    async def _flush(self) -> None:
        """Record the tries that ended since the last round, in one transaction."""
        if not self._outcomes:
            return
        taken, self._outcomes = self._outcomes, []
        outcomes = [
            TryOutcome(
                row.id,
                decision.state,
                decision.counts,
                at + timedelta(seconds=decision.delay),
                result.status,
                result.error,
                at,
            )
            for _, row, result, decision, at in taken
        ]
        for attempt in range(_FINISH_TRIES):
            try:
                await self.store.finish_outbox_many(self.owner, outcomes)
                break
            except Exception:
                if attempt == _FINISH_TRIES - 1:
                    # The rows stay leased and are sent again when the lease runs out: at least once.
                    log.error("notify.finish_failed", extra={"count": len(outcomes)}, exc_info=True)
                    return
                await asyncio.sleep(0.2 * (attempt + 1))
        for state, row, result, decision, _ in taken:
            self._log(state, row, result, decision)

    async def _notices(self, rows: list[OutboxRow], with_cards: bool) -> dict[int, OrderNotice]:
        wanted: dict[int, datetime] = {}
        for row in rows:
            if row.order_id is not None:
                at = wanted.get(row.order_id)
                wanted[row.order_id] = row.created_at if at is None else max(at, row.created_at)
        if not wanted:
            return {}
        notices = await self.store.order_notices(wanted, with_cards=with_cards)
        # Each row sees only the keys delivered by its own event's time (a later reissue adds keys).
        return notices

    async def _deliver(self, state: _ChannelState, message: Message, start_by: float) -> None:
        """Send one claimed row, if there is time: a send must start early enough to end (timeout) and be
        recorded (half the lease margin) before the lease runs out, or another daemon could take the row and
        send it too. A row that waited too long for a slot goes back, untried."""
        row = message.row
        channel = state.channel
        notice = message.notice
        if notice is not None:
            # Only the keys delivered by this event's time (a later reissue adds keys to the order).
            cards = tuple(c for c in notice.cards if c[0] <= row.created_at)
            if cards != notice.cards:
                message = Message(row, OrderNotice(**{**notice.__dict__, "cards": cards}))
        async with state.slots:
            paused = state.paused_until - time.monotonic()
            if paused > 0:  # slowed down (429/503 + Retry-After) while this row waited for a slot
                await asyncio.sleep(paused)
            if time.monotonic() + channel.timeout > start_by:
                self._outcomes.append((state, row, SendResult(None), _GIVE_BACK, self.clock()))
                self._recorded.set()
                return
            now = self.clock()
            try:
                result = await channel.send(message, now)
            except Exception as exc:  # a sender's bug must not stop the dispatcher: the row is retried
                extra = {"channel": channel.name, "event_id": row.event_id}
                log.error("notify.send_crashed", extra=extra, exc_info=True)
                result = SendResult(None, f"{type(exc).__name__}")
            # Tests: a kill here is a send whose outcome is not written (inside the slot, like a slow commit).
            await failpoints.pause("notify_after_send")
        self.tried += 1
        decision = decide(result, row.attempts, channel.schedule, self.rng)
        if decision.disable:
            await self._disable(channel, row, self.clock())
        if decision.pause:
            state.paused_until = max(state.paused_until, time.monotonic() + decision.pause)
        self._outcomes.append((state, row, result, decision, self.clock()))
        self._recorded.set()

    def _log(self, state: _ChannelState, row: OutboxRow, result: SendResult, decision: Decision) -> None:
        channel = state.channel
        extra = {
            "channel": channel.name,
            "event_id": row.event_id,
            "type": row.type,
            "status": result.status,
            "try": row.attempts + (1 if decision.counts else 0),
        }
        if decision is _GIVE_BACK:
            log.info("notify.given_back", extra={**extra, "why": "waited for a slot until the lease ran short"})
        elif decision.state == "delivered":
            self.sent += 1
            log.debug("notify.delivered", extra=extra)
        elif decision.state == "dead":
            log.error("notify.dead", extra={**extra, "error": result.error})
        elif decision.state == "skipped":
            log.info("notify.skipped", extra={**extra, "error": result.error})
        elif decision.pause:
            log.warning("notify.slowed_down", extra={**extra, "pause": round(decision.pause, 3)})
        elif decision.state == PENDING and not decision.disable:
            log.warning("notify.retry", extra={**extra, "error": result.error, "in": round(decision.delay, 3)})

    async def _disable(self, channel: Channel, row: OutboxRow, now: datetime) -> None:
        name = channel.name.partition(":")[2] or channel.name
        self._disabled[name] = (now, "410 Gone")
        quiet = self.config().notify.alert_rules.quiet
        alert = ("system.webhook_disabled", name, {"url": channel.shown_url, "reason": "410 Gone"}, quiet)
        try:
            newly = await self.store.disable_endpoint(name, "410 Gone", now, alert)
        except Exception:
            log.error("notify.disable_failed", extra={"channel": channel.name}, exc_info=True)
            return
        if newly:
            log.error(
                "notify.endpoint_disabled",
                extra={"channel": channel.name, "url": channel.shown_url, "event_id": row.event_id},
            )

    # --- periodic jobs --------------------------------------------------------------------------------

    def _start_jobs(self) -> None:
        config = self.config()
        routes = self.store.notify_routes
        jobs: dict[str, tuple[float, Callable[[datetime], Any]]] = {}
        if routes.wants("order.delayed"):
            jobs["delay"] = (config.notify.delay.interval, self._delays)
        if routes.wants("system.alert") or routes.wants("supplier.alert"):
            jobs["alerts"] = (config.notify.alert_rules.interval, self._alert_rules)
        if config.notify.retention is not None:
            jobs["prune"] = (config.retention.interval, self._prune)
        now = time.monotonic()
        running = {task.get_name() for task in self._jobs}
        for name, (interval, job) in jobs.items():
            if now < self._next_job.get(name, now) or f"notify-job-{name}" in running:
                continue
            self._next_job[name] = now + interval
            task = asyncio.create_task(self._run_job(name, job), name=f"notify-job-{name}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    async def _run_job(self, name: str, job: Callable[[datetime], Any]) -> None:
        try:
            await job(self.clock())
        except Exception:
            log.error("notify.job_failed", extra={"job": name}, exc_info=True)

    async def _delays(self, now: datetime) -> None:
        config = self.config()
        settings = config.notify.delay
        mono = time.monotonic()
        if mono - self._durations_at > min(_DURATIONS_REFRESH, settings.window):
            self._durations = await self.store.delivery_durations(now - timedelta(seconds=settings.window))
            self._durations_at = mono
        limits = delay.thresholds(self._durations, config.products, settings)
        if not limits:
            return
        candidates = await self.store.open_orders_since(now - timedelta(seconds=min(limits.values())))
        # Orders this daemon already marked are not written again (the database would refuse them anyway).
        self._delayed_done &= {order_id for order_id, _, _ in candidates}
        late = {k: v for k, v in delay.delayed(candidates, limits, now).items() if k not in self._delayed_done}
        if late:
            written = await self.store.mark_delayed(late, now)
            self._delayed_done |= set(late)
            if written:
                log.info("notify.delayed", extra={"orders": len(late), "rows": written})
                self.wake()

    async def _alert_rules(self, now: datetime) -> None:
        rules = self.config().notify.alert_rules
        if rules.review_age is not None:
            count, oldest = await self.store.review_backlog()
            if oldest is not None and (now - oldest).total_seconds() > rules.review_age:
                waited = round((now - oldest).total_seconds() / 60, 1)
                data = {"orders": count, "oldest_minutes": waited, "limit_minutes": round(rules.review_age / 60, 1)}
                if await self.store.raise_alert("system.review_backlog", "review", data, rules.quiet, now):
                    log.warning("alert.review_backlog", extra=data)
        since = now - timedelta(seconds=rules.invalid_window)
        for supplier, count in (await self.store.invalid_key_claims(since)).items():
            if count >= rules.invalid_keys:
                data = {"claims": count, "window_minutes": round(rules.invalid_window / 60, 1)}
                if await self.store.raise_alert("supplier.invalid_keys", supplier, data, rules.quiet, now):
                    log.warning("alert.invalid_keys", extra={"supplier": supplier, **data})
        self.wake()

    async def _prune(self, now: datetime) -> None:
        config = self.config()
        keep = config.notify.retention
        if keep is None:
            return
        before = now - timedelta(seconds=keep)
        pruned = 0
        for _ in range(config.retention.max_batches):
            deleted = await self.store.prune_outbox(before, config.retention.batch_size)
            pruned += deleted
            if deleted < config.retention.batch_size:
                break
            await asyncio.sleep(0)
        if pruned:
            log.info("retention.pruned", extra={"table": "outbox", "count": pruned, "before": before.isoformat()})


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Dispatcher", "webhook_channel"]
