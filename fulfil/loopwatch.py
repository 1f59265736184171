"""How late the daemon's event loop runs its timers: a half-second timer, its lateness recorded in
`fulfil_event_loop_lag_seconds`, and a stall of a second or more logged (at most once a minute).

A late loop is this process's own doing (a daemon out of CPU in a flash sale, a blocking call, a core taken by
the database beside it), not a supplier's: beside `fulfil_supplier_call_seconds` it tells an engineer on call
which of the two a slow delivery was. One timer at 2 Hz costs nothing measurable.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Final

from fulfil import metrics

log = logging.getLogger(__name__)

INTERVAL: Final = 0.5
STALL: Final = 1.0  # seconds late: logged as loop.stalled
WARN_EVERY: Final = 60.0  # seconds between two loop.stalled lines


class LoopWatch:
    """A worker service (`fulfil.worker.Service`): returns as soon as `stopping` is set."""

    name = "loop-watch"

    def __init__(self, interval: float = INTERVAL, stall: float = STALL, warn_every: float = WARN_EVERY) -> None:
        self.interval = interval
        self.stall = stall
        self.warn_every = warn_every
        self.worst = 0.0  # the largest lateness seen, for tests and the log line

    async def serve(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        warned = -math.inf
        while not stopping.is_set():
            due = loop.time() + self.interval
            try:  # a timer that also ends at once when the daemon stops (its shutdown waits for this service)
                await asyncio.wait_for(stopping.wait(), self.interval)
                return
            except TimeoutError:
                pass
            now = loop.time()
            lag = max(0.0, now - due)
            metrics.EVENT_LOOP_LAG.observe(lag)
            self.worst = max(self.worst, lag)
            if lag >= self.stall and now - warned >= self.warn_every:
                warned = now
                log.warning("loop.stalled", extra={"late_s": round(lag, 3), "interval_s": self.interval})
