"""How late the daemon's event loop runs its timers: a half-second timer, its lateness recorded in
`fulfil_event_loop_lag_seconds`, and a stall of a second or more logged (at most once a minute).

A late loop is this process's own doing (a daemon out of CPU in a flash sale, a blocking call, a core taken by
the database beside it), not a supplier's: beside `fulfil_supplier_call_seconds` it tells an engineer on call
which of the two a slow delivery was, and the engine asks `Stalls` before it blames a supplier's breaker for a
call that failed while the loop stood still (its timeout fired late, or early on an answer not yet read). One
timer at 2 Hz costs nothing measurable.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Final

from fulfil import metrics

log = logging.getLogger(__name__)

INTERVAL: Final = 0.5
STALL: Final = 1.0  # seconds late: logged as loop.stalled
WARN_EVERY: Final = 60.0  # seconds between two loop.stalled lines
KEEP_FROM: Final = 0.25  # seconds late: kept as a stall for the engine's judgement of calls
KEPT: Final = 64  # the most recent stalls kept
# Failures in a row one supplier may have excused: a daemon late all the time (overloaded) must not hide a
# supplier that is really down from its breaker.
MAX_EXCUSED: Final = 3


class Stalls:
    """The loop's recent stalls as (start, end) on time.monotonic's scale: a tick that ran L seconds late at T
    means the loop stood still for at least [T - L, T]."""

    def __init__(self) -> None:
        self._spans: collections.deque[tuple[float, float]] = collections.deque(maxlen=KEPT)
        # When the watch's timer is due next: past it by KEEP_FROM or more, the loop is standing still right now
        # (a stalled loop runs what was waiting in any order, the watch's tick not necessarily first).
        self.due: float | None = None
        self._excused: dict[str, int] = {}  # per supplier: failures excused in a row

    @staticmethod
    def mark() -> float:
        """When a call starts, on this object's own clock (not an engine's, which tests may move)."""
        return time.monotonic()

    def excuses(self, supplier: str, since: float, *, failed_without_reply: bool) -> bool:
        """Whether a call that started at `since` (`mark()`) and just ended is not the supplier's to answer for:
        it failed with no reply at all (a timeout, a reset) while the loop stood still for at least a quarter of
        a second and half of the call, and the supplier has not had MAX_EXCUSED such excuses in a row. Anything
        else (a success, a reply, a failure judged) ends the run of excuses."""
        if failed_without_reply:
            end = time.monotonic()
            stalled = self.within(since, end)
            run = self._excused.get(supplier, 0)
            if stalled >= max(KEEP_FROM, (end - since) / 2) and run < MAX_EXCUSED:
                self._excused[supplier] = run + 1
                return True
        self._excused.pop(supplier, None)
        return False

    def add(self, start: float, end: float) -> None:
        self._spans.append((start, end))

    def within(self, start: float, end: float) -> float:
        """Seconds of [start, end] the loop stood still: the stalls seen, and one still going on at `end`."""
        spans = list(self._spans)
        if self.due is not None and end - self.due >= KEEP_FROM:
            spans.append((self.due, end))
        return sum(max(0.0, min(end, e) - max(start, s)) for s, e in spans if e > start and s < end)


class LoopWatch:
    """A worker service (`fulfil.worker.Service`): returns as soon as `stopping` is set."""

    name = "loop-watch"

    def __init__(self, interval: float = INTERVAL, stall: float = STALL, warn_every: float = WARN_EVERY) -> None:
        self.interval = interval
        self.stall = stall
        self.warn_every = warn_every
        self.worst = 0.0  # the largest lateness seen (tests read it)
        self.stalls = Stalls()

    async def serve(self, stopping: asyncio.Event) -> None:
        try:
            await self._watch(stopping)
        finally:  # a watch that stopped must not leave a stall "going on" for the engine to find
            self.stalls.due = None

    async def _watch(self, stopping: asyncio.Event) -> None:
        warned = -math.inf
        while not stopping.is_set():
            due = self.stalls.due = time.monotonic() + self.interval
            try:  # a timer that also ends at once when the daemon stops (its shutdown waits for this service)
                await asyncio.wait_for(stopping.wait(), self.interval)
                return
            except TimeoutError:
                pass
            now = time.monotonic()
            lag = max(0.0, now - due)
            metrics.EVENT_LOOP_LAG.observe(lag)
            self.worst = max(self.worst, lag)
            if lag >= KEEP_FROM:
                self.stalls.add(now - lag, now)
            if lag >= self.stall and now - warned >= self.warn_every:
                warned = now
                log.warning("loop.stalled", extra={"late_s": round(lag, 3), "interval_s": self.interval})
