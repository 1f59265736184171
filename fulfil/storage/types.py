"""Small result types of storage operations (the domain records live in `fulfil.domain`)."""

from __future__ import annotations

import enum
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


# --- shop sources ------------------------------------------------------------------------------------------


class SourceState(enum.StrEnum):
    """Where fulfil stands with one shop order (table `source_orders`)."""

    REFUSED = "refused"  # seen and not taken: the shop row cannot be read as an order (reason); looked at again
    TAKING = "taking"  # fulfil's record is committed, the shop's own mark is not confirmed yet
    TAKEN = "taken"  # ours: an order in fulfil; nothing written back yet
    WRITTEN = "written"  # the keys (or the failure) are in the shop's row: done
    REVIEW = "review"  # a person decides (a write-back the shop would not take); any keys are safe in fulfil


@dataclass(frozen=True)
class SourceDraft:
    """A shop order as a source read it, mapped to what the fulfil order will be."""

    source: str
    ref: str
    shop_id: int
    goods_id: str
    kind: str  # manual | abnormal
    seen_status: int
    sku: str
    qty: int
    account: str | None
    amount: Decimal | None
    # The buyer as the shop had them (risk, notifications); kept encrypted on the record until the order exists.
    contact: str | None = field(default=None, compare=False, repr=False)
    ip: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SourceRecord:
    """fulfil's record of one shop order; `order_status`/`order_reason` are its fulfil order's, when read."""

    id: int
    source: str
    ref: str
    shop_id: int
    goods_id: str
    kind: str
    seen_status: int
    mark: str | None
    sku: str
    qty: int
    account: str | None
    amount: Decimal | None
    state: SourceState
    order_id: int | None
    outcome: str | None
    reason: str | None
    tries: int
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime
    order_status: str | None = None
    order_reason: str | None = None
    contact_enc: bytes | None = field(default=None, repr=False)  # the buyer's, encrypted (for the order)
    ip_enc: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SourceSummary:
    """One source's figures for `fulfil sources`."""

    source: str
    states: dict[str, int]  # rows per SourceState
    written: dict[str, int]  # written back per outcome (delivered, failed, by_hand)
    waiting_write_back: int  # ours, finished in fulfil, not yet in the shop's row
    in_progress: int  # ours, still being fulfilled
    in_review: int  # ours, in fulfil's own review queue (`fulfil review list`): nothing to write back yet
    polled_at: datetime | None
    ok_at: datetime | None
    error: str | None
