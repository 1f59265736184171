"""Which fault, if any, a request gets: a pure decision over the fault list, a seeded RNG and a clock.

Faults are tried in list order. Every fault a request matches (by operation and product) counts it, so a
`requests: "10-20"` schedule means the 10th to 20th request *that fault* could apply to. Latency faults add
up, each with its own draw. The other faults are exclusive, and their probabilities are shares of one draw
per request: `lost_after_commit: 0.1` + `system_error: 0.1` + `invalid_keys: 0.05` hit exactly 10 %, 10 % and
5 % of requests, never two at once. A fault with no probability fires on every request its schedule
selects, unless an earlier one fired. `refuse` is not decided per request: the server closes its listening
socket while `refusing()` says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from suppliers.sim.fault_spec import Fault, Latency


@dataclass(frozen=True)
class Decision:
    delay: float  # seconds to wait before handling the request
    fault: Fault | None  # the one non-latency fault that fired


NO_FAULT = Decision(0.0, None)


def sample_latency(latency: Latency, rng: random.Random) -> float:
    if latency.distribution == "uniform":
        return rng.uniform(latency.a, latency.b)
    if latency.distribution == "normal":
        return max(0.0, rng.gauss(latency.a, latency.b))
    return latency.a


class FaultEngine:
    """Holds the live fault list with its counters and the time it was loaded."""

    def __init__(self, faults: Sequence[Fault], seed: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seed = seed
        self.rng = random.Random(seed)
        self.load(faults)

    def load(self, faults: Sequence[Fault]) -> None:
        """Replace the faults; counters and the time windows start again from now."""
        self.faults = tuple(faults)
        self._counts = [0] * (max((f.index for f in self.faults), default=-1) + 1)
        self.loaded_at = self._clock()
        self._per_request = tuple(f for f in self.faults if f.kind != "refuse")
        self._refuse = tuple(f for f in self.faults if f.kind == "refuse")

    def reset(self) -> None:
        self.rng = random.Random(self._seed)
        self.load(self.faults)

    def elapsed(self) -> float:
        return self._clock() - self.loaded_at

    def decide(self, op: str, product: str | None) -> Decision:
        if not self._per_request:
            return NO_FAULT
        elapsed = self.elapsed()
        delay = 0.0
        chosen: Fault | None = None
        draw: float | None = None  # the one draw the exclusive faults share, made when first needed
        band = 0.0  # probability already given to earlier exclusive faults in force
        for fault in self._per_request:
            if op not in fault.on or (fault.products is not None and product not in fault.products):
                continue
            self._counts[fault.index] += 1
            if not self._scheduled(fault, self._counts[fault.index], elapsed):
                continue
            if fault.latency is not None:
                if fault.probability is None or self.rng.random() < fault.probability:
                    delay += sample_latency(fault.latency, self.rng)
            elif fault.probability is None:
                chosen = chosen or fault
            else:
                if draw is None:
                    draw = self.rng.random()
                if chosen is None and band <= draw < band + fault.probability:
                    chosen = fault
                band += fault.probability
        return Decision(delay, chosen) if delay or chosen else NO_FAULT

    @staticmethod
    def _scheduled(fault: Fault, count: int, elapsed: float) -> bool:
        if fault.requests is not None:
            first, last = fault.requests
            if count < first or (last is not None and count > last):
                return False
        return _in_window(fault, elapsed)

    def refusing(self, elapsed: float | None = None) -> bool:
        """Whether the listener should be closed now (a `refuse` window is open)."""
        at = self.elapsed() if elapsed is None else elapsed
        return any(_in_window(f, at) for f in self._refuse)

    def next_change(self, elapsed: float | None = None) -> float | None:
        """Seconds until a `refuse` window opens or closes; None when nothing changes any more."""
        at = self.elapsed() if elapsed is None else elapsed
        edges = [e for f in self._refuse for e in (f.start, f.end) if e is not None and e > at]
        return min(edges) - at if edges else None


def _in_window(fault: Fault, elapsed: float) -> bool:
    if fault.start is not None and elapsed < fault.start:
        return False
    return fault.end is None or elapsed < fault.end
