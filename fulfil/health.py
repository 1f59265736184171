"""The seam between the engine and supplier quality (scores, breakers): what routing asks and what it reports."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Health(Protocol):
    def allows(self, supplier: str, now: datetime) -> bool:
        """False while the supplier's breaker is open (a half-open breaker lets probes through)."""
        ...

    def weight(self, supplier: str) -> float:
        """Routing weight within one priority level (the quality score; 50 when unknown)."""
        ...

    def record(self, supplier: str, ok: bool, latency: float | None, now: datetime) -> None:
        """One call's result: timeouts count against health but never mean "not purchased"."""
        ...

    def trip(self, supplier: str, reason: str, now: datetime) -> None:
        """Open the breaker at once (bad credentials, insufficient balance)."""
        ...


class NullHealth:
    """Every supplier healthy, equal weights: priority order alone decides."""

    def allows(self, supplier: str, now: datetime) -> bool:
        return True

    def weight(self, supplier: str) -> float:
        return 50.0

    def record(self, supplier: str, ok: bool, latency: float | None, now: datetime) -> None:
        return None

    def trip(self, supplier: str, reason: str, now: datetime) -> None:
        return None
