"""Buyer credit, as after-sales needs it: a score per order's buyer (0-100), and a penalty for abuse.

The risk wing (issue 11) keeps credit per buyer identity. Until it is wired in, `NeutralCredit` treats every
buyer's credit as unknown (100: L1 decides on the other rules) and records a penalty as an event only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

NEUTRAL_CREDIT = 100


class CreditBook(Protocol):
    async def order_credit(self, order_id: int) -> int:
        """The credit (0-100) of the buyer of this order."""
        ...

    async def adjust_credit_for_order(
        self, order_id: int, delta: int, reason: str, operator: str, now: datetime
    ) -> object:
        """Move the buyer's credit by `delta` (negative: a penalty), recorded with the operator; what it returns
        (the risk wing: the new scores) is not used here."""
        ...


class EventSink(Protocol):
    async def record_event(
        self,
        name: str,
        now: datetime,
        *,
        order_id: int | None = None,
        supplier: str | None = None,
        operator: str | None = None,
        data: dict[str, object] | None = None,
    ) -> None: ...


class NeutralCredit:
    """No credit record: every buyer at NEUTRAL_CREDIT; a penalty is an event (`aftersales.credit_penalty`)."""

    def __init__(self, events: EventSink) -> None:
        self._events = events

    async def order_credit(self, order_id: int) -> int:
        return NEUTRAL_CREDIT

    async def adjust_credit_for_order(
        self, order_id: int, delta: int, reason: str, operator: str, now: datetime
    ) -> None:
        data: dict[str, object] = {"delta": delta, "reason": reason, "applied": False}
        await self._events.record_event(
            "aftersales.credit_penalty", now, order_id=order_id, operator=operator, data=data
        )


def credit_book(store: Any) -> CreditBook:
    """The store's own credit record when it has one (the risk wing), else the neutral one."""
    if hasattr(store, "order_credit") and hasattr(store, "adjust_credit_for_order"):
        book: CreditBook = store
        return book
    return NeutralCredit(store)
