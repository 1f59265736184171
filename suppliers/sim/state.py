"""Everything one running simulator knows: scenario, books, faults in force, and the request log."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from suppliers.sim.faults import FaultEngine
from suppliers.sim.ledger import Ledger
from suppliers.sim.scenario import Fault, Scenario

REQUEST_LOG_LIMIT = 50_000  # the latest entries: a benchmark must not grow the log without bound


class RequestLog:
    """One entry per request: what was asked, which fault applied, what the client got."""

    def __init__(self, limit: int = REQUEST_LOG_LIMIT) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self.count = 0

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        entry["seq"] = self.count
        self.entries.append(entry)
        return entry

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["seq"] > seq]

    def clear(self) -> None:
        self.entries.clear()
        self.count = 0


class SimState:
    def __init__(
        self,
        scenario: Scenario,
        *,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic
        self.started = monotonic()
        # Supplier order ids carry the start time and a random part: a restarted simulator never reuses one.
        stamp = self.now().strftime("%y%m%d%H%M%S")
        self.ledger = Ledger(scenario, id_prefix=f"{stamp}{random.randrange(1000):03d}")
        self.faults = FaultEngine(scenario.faults, scenario.seed, monotonic)
        self.log = RequestLog()
        # Set whenever the faults change, so the server re-checks whether it should be refusing.
        self.faults_changed = asyncio.Event()

    def now(self) -> datetime:
        return self._clock()

    def elapsed(self) -> float:
        return self._monotonic() - self.started

    def replace_faults(self, faults: Sequence[Fault]) -> None:
        self.faults.load(faults)
        self.faults_changed.set()

    def reset(self) -> None:
        """Books, log, balance, stock and fault counters back to the start; the faults in force stay."""
        self.ledger.reset()
        self.log.clear()
        self.faults.reset()
        self.faults_changed.set()

    def log_request(
        self,
        *,
        method: str,
        path: str,
        op: str | None,
        number: str | None,
        product: str | None,
        fault: Fault | None,
        delay: float,
    ) -> dict[str, Any]:
        """Start a log entry; the handler fills in `outcome`, `code`, `http_status` and `committed`."""
        return self.log.add(
            {
                "time": self.now().isoformat(),
                "elapsed": round(self.elapsed(), 4),
                "method": method,
                "path": path,
                "op": op,
                "number": number,
                "product_id": product,
                "fault": fault.kind if fault else None,
                "fault_index": fault.index if fault else None,
                "delay_ms": round(delay * 1000, 1),
                "outcome": None,
                "code": None,
                "http_status": None,
                "committed": False,
            }
        )
