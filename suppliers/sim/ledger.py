"""The simulated supplier's books: balance, stock, and every order it took, with the keys it issued.

An order is charged when it is committed (balance and stock go down, keys are made), then settles at its
`ready_at` into success, or into failure with a refund. The ledger is what tests compare the daemon's
claims and deliveries against: "the supplier charged for N units; were they all delivered or claimed?"
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from suppliers.sim.scenario import Product, Scenario
from suppliers.taxonomy import Card


class Refusal(enum.Enum):
    """Why a purchase was not taken."""

    DUPLICATE = "duplicate"
    OUT_OF_STOCK = "out_of_stock"
    NO_BALANCE = "no_balance"


@dataclass
class LedgerOrder:
    number: str  # ours: customer_order_no / request_no
    supplier_order_id: str  # the supplier's: fulu order_id / acg tradeNo
    product: Product
    qty: int
    account: str | None
    created_at: datetime
    ready_at: datetime
    final_state: str  # what it becomes at ready_at: success | failed
    description: str = ""
    state: str = "processing"  # processing | success | failed
    charged: bool = True
    cards: list[Card] = field(default_factory=list)
    finished_at: datetime | None = None
    invalid_keys: str | None = None  # not_matching | resold: the whole batch was made invalid
    # Charged without keys: the text the supplier gave in their place (acg-faka's delivery message, the
    # "grabbed" notice; "" when it answered an error after charging). None: a normal order.
    notice: str | None = None
    # A protocol's rendered answer for a finished order (it never changes again): rendering and signing
    # it is most of the cost of a query, and queries are most of the traffic.
    rendered: Any = field(default=None, repr=False, compare=False)

    @property
    def total(self) -> Decimal:
        return self.product.price * self.qty

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "supplier_order_id": self.supplier_order_id,
            "product_id": self.product.id,
            "qty": self.qty,
            "price": str(self.product.price),
            "total": str(self.total),
            "account": self.account,
            "state": self.state,
            "charged": self.charged,
            "description": self.description,
            # Plaintext on purpose: this is a simulator, and tests compare keys with what was delivered.
            "cards": [{"number": c.number, "password": c.password} for c in self.cards],
            "invalid_keys": self.invalid_keys,
            "notice": self.notice,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class Purchase:
    """How a committed order should turn out (decided by the faults in force)."""

    processing: float = 0.0  # seconds before it settles
    then: str = "success"
    description: str = ""  # the failure description
    invalid_keys: str | None = None  # not_matching | resold
    # Charge without making keys or taking stock; the supplier answers this text in their place.
    notice: str | None = None


class Ledger:
    def __init__(self, scenario: Scenario, *, id_prefix: str, rng: random.Random | None = None) -> None:
        self.scenario = scenario
        # Keys must differ between runs (a restarted simulator must not "resell" by accident): not seeded.
        self._rng = rng or random.Random()
        self._prefix = id_prefix
        self.reset()

    def reset(self) -> None:
        self.balance = self.scenario.balance
        self.stock: dict[str, int | None] = {pid: p.stock for pid, p in self.scenario.products.items()}
        self.orders: list[LedgerOrder] = []
        self._by_number: dict[str, LedgerOrder] = {}
        self._by_id: dict[str, LedgerOrder] = {}
        self._sold: dict[str, list[Card]] = {}  # product id -> keys of successful orders, for `resold`
        self._seq = 0

    # --- lookups ------------------------------------------------------------------------------------

    def by_number(self, number: str) -> LedgerOrder | None:
        return self._by_number.get(number)

    def by_supplier_id(self, supplier_order_id: str) -> LedgerOrder | None:
        return self._by_id.get(supplier_order_id)

    # --- purchases ----------------------------------------------------------------------------------

    def check(self, number: str, product: Product, qty: int) -> Refusal | None:
        """Whether `place` would refuse, without changing anything."""
        if number and number in self._by_number:
            return Refusal.DUPLICATE
        available = self.stock.get(product.id)
        if available is not None and available < qty:
            return Refusal.OUT_OF_STOCK
        if self.balance < product.price * qty:
            return Refusal.NO_BALANCE
        return None

    def place(
        self, number: str, product: Product, qty: int, account: str | None, now: datetime, purchase: Purchase
    ) -> LedgerOrder | Refusal:
        """Commit a purchase: charge, take stock, make the keys. Nothing changes when refused."""
        refusal = self.check(number, product, qty)
        if refusal is not None:
            return refusal
        self.balance -= product.price * qty
        order = self._record(number, product, qty, account, now, purchase)
        if purchase.notice is not None:
            order.notice = purchase.notice  # charged, and no key leaves the stock
            return order
        available = self.stock.get(product.id)
        if available is not None:
            self.stock[product.id] = available - qty
        if product.kind == "card":
            order.cards = self._make_cards(product, qty, purchase.invalid_keys, order)
        return order

    def record_failed(
        self, number: str, product: Product, qty: int, account: str | None, now: datetime, description: str
    ) -> LedgerOrder:
        """An order taken but failed at once without a charge (fulu's answer to an empty balance)."""
        order = self._record(number, product, qty, account, now, Purchase(then="failed", description=description))
        order.charged = False
        self._finish(order, "failed")
        return order

    def _record(
        self, number: str, product: Product, qty: int, account: str | None, now: datetime, purchase: Purchase
    ) -> LedgerOrder:
        self._seq += 1
        order = LedgerOrder(
            number=number,
            supplier_order_id=f"{self._prefix}{self._seq:06d}",
            product=product,
            qty=qty,
            account=account,
            created_at=now,
            ready_at=now + timedelta(seconds=purchase.processing),
            final_state="success" if purchase.then == "success" else "failed",
            description=purchase.description if purchase.then != "success" else "",
        )
        self.orders.append(order)
        if number:
            self._by_number[number] = order
        self._by_id[order.supplier_order_id] = order
        return order

    def _make_cards(self, product: Product, qty: int, invalid: str | None, order: LedgerOrder) -> list[Card]:
        assert product.card_pattern is not None  # card products always have one (scenario validation)
        pattern, numbers = product.card_pattern, product.number_pattern
        if invalid == "resold":
            earlier = self._sold.get(product.id) or [c for cards in self._sold.values() for c in cards]
            if earlier:
                order.invalid_keys = "resold"
                return [earlier[i % len(earlier)] for i in range(qty)]
            invalid = None  # nothing sold yet to sell again: the fault cannot apply
        if invalid == "not_matching":
            order.invalid_keys = "not_matching"
        make = pattern.mismatch if invalid == "not_matching" else pattern.generate
        return [
            Card(password=make(self._rng), number=numbers.generate(self._rng) if numbers else "") for _ in range(qty)
        ]

    # --- settling -----------------------------------------------------------------------------------

    def settle(self, order: LedgerOrder, now: datetime) -> LedgerOrder:
        """Move a processing order to its final state once its time has come."""
        if order.state == "processing" and now >= order.ready_at:
            if order.final_state == "failed":
                self._refund(order)
            self._finish(order, order.final_state)
        return order

    def settle_all(self, now: datetime) -> None:
        for order in self.orders:
            self.settle(order, now)

    def _finish(self, order: LedgerOrder, state: str) -> None:
        order.state = state
        order.finished_at = order.ready_at  # settling is lazy: the order finished when its time came
        if state == "success" and order.cards:
            self._sold.setdefault(order.product.id, []).extend(order.cards)

    def _refund(self, order: LedgerOrder) -> None:
        self.balance += order.total
        available = self.stock.get(order.product.id)
        if available is not None:
            self.stock[order.product.id] = available + order.qty
        order.charged = False
        order.cards = []

    def snapshot(self, now: datetime) -> dict[str, Any]:
        self.settle_all(now)
        return {
            "balance": str(self.balance),
            "stock": dict(self.stock),
            "orders": [o.as_json() for o in self.orders],
        }
