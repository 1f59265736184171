"""The small interface every supplier adapter implements.

An adapter turns our request into the supplier's protocol and the supplier's answer into an `Outcome`.
Everything protocol-specific (codes, signing, transports) stays inside the adapter module.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from suppliers.taxonomy import Outcome


@dataclass(frozen=True)
class PlaceRequest:
    """One purchase at one supplier offer, under our supplier-facing number."""

    number: str  # customer_order_no / request_no: unique per supplier, reused by retries of one attempt
    sku: str  # our product key
    product_id: str | None  # the supplier's product code for this offer
    qty: int
    kind: str  # "card" | "direct"
    account: str | None = None  # recharge account for direct top-ups
    price: Decimal | None = None  # the most we pay per unit (offer cost), where the protocol takes it
    order_id: int | None = None  # ours, for adapters that deliver inside the store (stock)
    attempt_id: int | None = None
    owner: str | None = None  # our lease owner, for adapters whose store writes are fenced by it (stock)
    timeout: float | None = None  # seconds; capped by the engine at what is left of the retry budget
    # The supplier's own order id, when an earlier answer told it (acg-faka's tradeNo): for `query` where the
    # supplier looks orders up by its id only.
    supplier_order_id: str | None = None


@dataclass(frozen=True)
class Balance:
    amount: Decimal
    currency: str = "CNY"


@dataclass(frozen=True)
class StockCheck:
    """Stock at the supplier: `available` is False when it said it has none."""

    available: bool
    level: str  # "empty" | "low" | "plenty" | "unknown"


@dataclass(frozen=True)
class CallbackNotice:
    """A verified callback: only a hint, the engine confirms it with a query."""

    number: str
    supplier_order_id: str | None
    status: str


class Supplier(abc.ABC):
    """One configured supplier. Built from its YAML entry by `suppliers.registry.build`."""

    type_name: ClassVar[str]
    # Whether `query` can find an order by our number. acg_faka cannot: a lost answer stays ambiguous.
    can_query: ClassVar[bool] = True
    # Whether a repeated number is refused without a second charge (safe re-send of one attempt).
    idempotent_place: ClassVar[bool] = True
    # Whether `place` only accepts and the outcome must be polled for (fulu), or answers synchronously.
    asynchronous: ClassVar[bool] = False
    # Whether the goods come from our own store inside one transaction (stock): no network, no cool-down.
    local: ClassVar[bool] = False

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = settings

    @abc.abstractmethod
    async def place(self, request: PlaceRequest) -> Outcome:
        """Buy. Never raises for supplier or transport trouble: that is an `Outcome` in state ERROR/FAILED."""

    @abc.abstractmethod
    async def query(self, request: PlaceRequest) -> Outcome:
        """Ask what became of the purchase under `request.number`."""

    async def balance(self) -> Balance | None:
        """The merchant balance, where the protocol has it."""
        return None

    async def check_stock(self, product_id: str, qty: int) -> StockCheck | None:
        """Stock at the supplier, where the protocol has it."""
        return None

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> CallbackNotice | None:
        """Verify and parse a supplier callback; None when the protocol has none. Raises on a bad signature."""
        return None

    async def aclose(self) -> None:
        """Release connections."""
        return None
