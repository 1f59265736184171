"""A circuit breaker per supplier: a pure state machine, time given to every call.

closed ──N consecutive failures, or a failure rate over a minimum volume in a window──▶ open
open ──cool-down over (base_ejection × times ejected, at most max_ejection)──▶ half-open
half-open ──a probe succeeds──▶ closed;  ──a probe fails──▶ open again, for longer

A failure is a call that ended in an error (transient or ambiguous): the supplier did not answer properly.
A refusal ("out of stock", "rejected") is an answer, so it is not a failure here. `trip` opens at once
(bad credentials, insufficient balance). Like Envoy's outlier detection, the cool-down grows with each
ejection; the count of ejections is forgotten after the breaker has stayed closed for `max_ejection`.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from fulfil.config import BreakerConfig


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Transition:
    """A change of state, for the caller to log and record."""

    old: BreakerState
    new: BreakerState
    at: datetime
    reason: str
    ejections: int
    until: datetime | None  # open: when it half-opens


@dataclass(frozen=True)
class BreakerView:
    state: BreakerState
    opened_until: datetime | None
    ejections: int
    reason: str | None


class Breaker:
    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state = BreakerState.CLOSED
        self.ejections = 0
        self.reason: str | None = None
        self.opened_at: datetime | None = None
        self.open_until: datetime | None = None
        self._closed_at: datetime | None = None
        self._consecutive = 0
        # Per-second [second, calls, failures] over the last `window`: bounded whatever the call rate.
        self._seconds: deque[list[int]] = deque()
        self._probes = 0
        self._probe_at: datetime | None = None

    # --- what routing asks -------------------------------------------------------------------------

    def allows(self, now: datetime) -> bool:
        """Closed: yes. Open: no, until the cool-down is over. Half-open: up to `probes` trial orders.

        A granted probe whose result never comes (the order went elsewhere) is given again after a while,
        so a half-open breaker cannot starve."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.open_until is not None and now < self.open_until:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probes = 0
        if self._probe_at is not None and now - self._probe_at >= self._probe_timeout():
            self._probes = 0
        if self._probes >= self.config.probes:
            return False
        self._probes += 1
        self._probe_at = now
        return True

    def reopens_at(self, now: datetime) -> datetime | None:
        """When `allows` may say yes again while it says no: the end of the cool-down, or when a probe that
        never reported is given again. None when it would let an order through now. Changes nothing."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.OPEN and self.open_until is not None and now < self.open_until:
            return self.open_until
        if self.state is BreakerState.OPEN or self._probes < self.config.probes or self._probe_at is None:
            return None  # due to half-open, or a probe slot free
        again = self._probe_at + self._probe_timeout()
        return again if again > now else None

    # --- what the engine reports -------------------------------------------------------------------

    def record(self, ok: bool, now: datetime) -> Transition | None:
        if self.state is BreakerState.OPEN:
            return None  # results of calls started before it opened say nothing new
        if self.state is BreakerState.HALF_OPEN:
            if ok:
                return self._close(now, "probe succeeded")
            return self._open(now, "probe failed")
        if ok:
            self._consecutive = 0
            self._count(now, failed=False)
            return None
        self._consecutive += 1
        calls, failures = self._count(now, failed=True)
        if self._consecutive >= self.config.consecutive_failures:
            return self._open(now, f"{self._consecutive} consecutive failures")
        if calls >= self.config.min_volume and failures / calls >= self.config.failure_rate:
            return self._open(now, f"{failures} of {calls} calls failed within {self.config.window:g}s")
        return None

    def trip(self, reason: str, now: datetime) -> Transition | None:
        if self.state is BreakerState.OPEN:
            return None
        return self._open(now, reason)

    def view(self, now: datetime) -> BreakerView:
        state = self.state
        if state is BreakerState.OPEN and self.open_until is not None and now >= self.open_until:
            state = BreakerState.HALF_OPEN  # due: the next order will probe
        until = self.open_until if state is BreakerState.OPEN else None
        return BreakerView(state, until, self.ejections, self.reason)

    # --- moves ---------------------------------------------------------------------------------------

    def _open(self, now: datetime, reason: str) -> Transition:
        old = self.state
        if self._closed_at is not None and now - self._closed_at >= timedelta(seconds=self.config.max_ejection):
            self.ejections = 0  # healthy for a long stretch: start the cool-downs from the bottom again
        self.ejections += 1
        cooldown = min(self.config.base_ejection * self.ejections, self.config.max_ejection)
        self.state = BreakerState.OPEN
        self.reason = reason
        self.opened_at = now
        self.open_until = now + timedelta(seconds=cooldown)
        self._reset_counts()
        return Transition(old, self.state, now, reason, self.ejections, self.open_until)

    def _close(self, now: datetime, reason: str) -> Transition:
        old = self.state
        self.state = BreakerState.CLOSED
        self.reason = None
        self.open_until = None
        self._closed_at = now
        self._reset_counts()
        return Transition(old, self.state, now, reason, self.ejections, None)

    def _reset_counts(self) -> None:
        self._consecutive = 0
        self._seconds.clear()
        self._probes = 0
        self._probe_at = None

    def _probe_timeout(self) -> timedelta:
        return timedelta(seconds=max(self.config.base_ejection, 1.0))

    def _count(self, now: datetime, *, failed: bool) -> tuple[int, int]:
        second = int(now.timestamp())
        if self._seconds and self._seconds[-1][0] == second:
            bucket = self._seconds[-1]
        else:
            bucket = [second, 0, 0]
            self._seconds.append(bucket)
        bucket[1] += 1
        bucket[2] += int(failed)
        oldest = second - int(self.config.window)
        while self._seconds and self._seconds[0][0] <= oldest:
            self._seconds.popleft()
        calls = sum(b[1] for b in self._seconds)
        failures = sum(b[2] for b in self._seconds)
        return calls, failures
