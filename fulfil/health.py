"""The seam between the engine and supplier quality (scores, breakers): what routing asks and what it reports."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from suppliers.base import Supplier


class Health(Protocol):
    def allows(self, supplier: str, now: datetime) -> bool:
        """False while the supplier's breaker is open (a half-open breaker lets probes through)."""
        ...

    def reopens_at(self, supplier: str, now: datetime) -> datetime | None:
        """While `allows` says no: when it may say yes again (None: it would let an order through now)."""
        ...

    def weight(self, supplier: str) -> float:
        """Routing weight within one priority level: the quality score (a new supplier starts at the prior)."""
        ...

    def record(self, supplier: str, ok: bool, latency: float | None, now: datetime) -> None:
        """One call's result: timeouts count against health but never mean "not purchased"."""
        ...

    def trip(self, supplier: str, reason: str, now: datetime) -> None:
        """Open the breaker at once (bad credentials, insufficient balance)."""
        ...

    async def in_stock(self, supplier: Supplier, product_id: str, qty: int, now: datetime) -> bool:
        """Before placing: False when the supplier is known to have none (a briefly cached stock check)."""
        ...

    async def periodic(self, now: datetime) -> None:
        """Recompute scores, poll balances, persist what `fulfil suppliers` shows."""
        ...


class NullHealth:
    """Every supplier healthy, equal weights: priority order alone decides."""

    def allows(self, supplier: str, now: datetime) -> bool:
        return True

    def reopens_at(self, supplier: str, now: datetime) -> datetime | None:
        return None

    def weight(self, supplier: str) -> float:
        return 50.0

    def record(self, supplier: str, ok: bool, latency: float | None, now: datetime) -> None:
        return None

    def trip(self, supplier: str, reason: str, now: datetime) -> None:
        return None

    async def in_stock(self, supplier: Supplier, product_id: str, qty: int, now: datetime) -> bool:
        return True

    async def periodic(self, now: datetime) -> None:
        return None
