"""Small result types of storage operations (the domain records live in `fulfil.domain`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fulfil.domain import ClaimRecord, Order
from suppliers.taxonomy import Card

AddStatus = Literal["accepted", "duplicate", "conflict"]


@dataclass(frozen=True)
class AddResult:
    """What intake did with one order. `order_id` is the stored order's id in every case."""

    ref: str
    status: AddStatus
    order_id: int


@dataclass(frozen=True)
class StockImport:
    """Outcome of one stock import; indexes are 0-based positions in the imported sequence."""

    added: int
    duplicate_in_file: list[int] = field(default_factory=list)
    duplicate_existing: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StockCount:
    available: int
    used: int


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: datetime
    name: str
    order_id: int | None
    supplier: str | None
    operator: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against the migrations this fulfil ships."""

    current: str | None  # None: never migrated
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class HeldCard:
    """A key a supplier charged for and fulfil did not deliver, with the purchase it came from.

    `card` is plaintext: callers show it masked (`fulfil.render`) unless an operator asked to reveal it.
    """

    id: int
    order_id: int
    order_ref: str
    sku: str
    attempt_id: int
    attempt_number: str
    supplier: str
    reason: str
    created_at: datetime
    card: Card
    claims: tuple[ClaimRecord, ...] = ()
    released_at: datetime | None = None
    released_to: str | None = None


@dataclass(frozen=True)
class ClaimRecovery:
    """A claim made smaller because keys it covered were recovered (released to stock or delivered)."""

    claim_no: str
    reason: str
    units: int
    amount_before: Decimal | None
    amount_after: Decimal | None
    recovered_amount: Decimal | None  # None when the attempt has no unit cost: the amount cannot follow


@dataclass(frozen=True)
class HeldRelease:
    """What releasing held keys did: the ids, where they went, claims reduced, and the order they delivered."""

    ids: tuple[int, ...]
    released_to: str
    recoveries: tuple[ClaimRecovery, ...] = ()
    order: Order | None = None
