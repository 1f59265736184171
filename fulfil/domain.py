"""The project's own vocabulary: order and attempt states, claims, and the records that carry them.

Plain frozen dataclasses; the storage module builds them from rows, the engine decides on them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from suppliers.taxonomy import Card


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DELIVERED = "delivered"
    FAILED = "failed"
    REVIEW = "review"


class AttemptState(enum.StrEnum):
    PLANNED = "planned"  # row committed with its number, nothing sent yet
    SENT = "sent"  # the request may have left: after a crash this means "ask before anything else"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # confirmed not charged
    AMBIGUOUS = "ambiguous"  # may have been charged; only a query settles it


OPEN_ATTEMPT_STATES = (AttemptState.PLANNED, AttemptState.SENT, AttemptState.AMBIGUOUS)


class ClaimReason(enum.StrEnum):
    INVALID_KEY = "invalid_key"
    CHARGED_NOT_DELIVERED = "charged_not_delivered"
    POSSIBLE_DOUBLE = "possible_double"
    TOPUP_FAILED_AFTER_CHARGE = "topup_failed_after_charge"
    INVALID_KEY_REPORTED = "invalid_key_reported"  # a buyer reported a delivered key invalid (after-sales)


class ClaimStatus(enum.StrEnum):
    OPEN = "open"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SETTLED = "settled"


# Moves an operator may make; anything else is refused with the allowed list.
CLAIM_TRANSITIONS: dict[ClaimStatus, tuple[ClaimStatus, ...]] = {
    ClaimStatus.OPEN: (ClaimStatus.SUBMITTED, ClaimStatus.REJECTED),
    ClaimStatus.SUBMITTED: (ClaimStatus.ACCEPTED, ClaimStatus.REJECTED),
    ClaimStatus.ACCEPTED: (ClaimStatus.SETTLED,),
    ClaimStatus.REJECTED: (ClaimStatus.SETTLED,),
    ClaimStatus.SETTLED: (),
}


@dataclass(frozen=True)
class NewOrder:
    """An order as intake accepts it, before it has an id."""

    ref: str
    sku: str
    qty: int
    account: str | None = None
    amount: Decimal | None = None
    # The buyer's e-mail or phone, for notifications: stored encrypted, masked wherever it is shown.
    contact: str | None = field(default=None, compare=False, repr=False)
    # The buyer as the shop saw them, for risk: stored as a keyed hash (matching) and encrypted, masked.
    ip: str | None = field(default=None, compare=False, repr=False)
    user: str | None = field(default=None, compare=False, repr=False)
    device: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Order:
    id: int
    ref: str
    sku: str
    qty: int
    account: str | None
    amount: Decimal | None
    status: OrderStatus
    reason: str | None
    created_at: datetime
    delivered_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires: datetime | None = None
    reissue_of: int | None = None  # a reissue: the id of the order it makes good
    avoid_supplier: str | None = None  # a reissue: routed last (the supplier that sold the bad key)
    # (kind, keyed hash) of each buyer identity the order has: account, contact, ip, user, device.
    identities: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Risk has let it through (or a person released it): never evaluated again.
    risk_passed: bool = False


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    order_id: int
    supplier: str
    offer_index: int
    number: str  # the supplier-facing idempotency number
    state: AttemptState
    started_at: datetime
    error_class: str | None = None
    supplier_order_id: str | None = None
    cost: Decimal | None = None
    qty: int = 1
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    supplier_cost: Decimal | None = None  # what the supplier's answer said it charged
    last_sent_at: datetime | None = None  # the latest send or re-send
    next_check_at: datetime | None = None  # when the resolver asks next
    checks: int = 0  # how often the resolver asked

    def cost_of(self, units: int) -> Decimal | None:
        """What `units` of this attempt cost us (the claim amount); None when the offer has no cost."""
        return self.cost * units if self.cost is not None else None


@dataclass(frozen=True)
class ClaimRecord:
    id: int
    claim_no: str
    supplier: str
    order_id: int
    order_ref: str
    attempt_id: int
    supplier_order_no: str
    supplier_order_id: str | None
    reason: ClaimReason
    amount: Decimal | None
    qty: int
    status: ClaimStatus
    created_at: datetime
    updated_at: datetime
    note: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class ReceiptKind(enum.StrEnum):
    """What a supplier's answer about one attempt carried, as written ahead of acting on it."""

    GOODS = "goods"  # a success: keys (or a direct top-up done)
    ACKNOWLEDGED = "acknowledged"  # the supplier has the order (accepted / processing), maybe with its id
    CHARGED_NO_GOODS = "charged_no_goods"  # charged, and the answer carries nothing to deliver


@dataclass(frozen=True)
class Receipt:
    """The supplier's answer about one attempt, committed before anything is done with it.

    Delivery, claims and stock returns work from here; a later pass finishes from it without asking again."""

    id: int
    attempt_id: int
    order_id: int
    kind: ReceiptKind
    cards: tuple[Card, ...]
    supplier_order_id: str | None
    cost: Decimal | None
    evidence: dict[str, Any]
    created_at: datetime
    applied_at: datetime | None = None

    @property
    def settles(self) -> bool:
        """Whether the answer is final: goods, or a charge with nothing to deliver."""
        return self.kind is not ReceiptKind.ACKNOWLEDGED


# (supplier, product id) -> until: the offers cooled down for now.
Cooldowns = dict[tuple[str, str], datetime]


# The reason an order carries while it waits for a supplier (pending, not claimable for a while).
WAITING_REASON = "waiting for a supplier: "


@dataclass(frozen=True)
class WorkContext:
    """What the engine needs of an order's past to work on it: its attempts (oldest first), its claims, and
    the attempt id the last `review retry` came after (attempts up to it came before the operator's retry)."""

    attempts: tuple[AttemptRecord, ...] = ()
    claims: tuple[ClaimRecord, ...] = ()
    retried_after: int | None = None
    # The newest attempt when the order last began to wait for a supplier: attempts up to it that failed
    # `transient` (never executed) no longer use up their offer, so the order tries it again after the wait.
    waited_after: int | None = None
    # A blocklist entry is active, or one of the buyer's identities is below the starting credit: risk must
    # look at this order even when no rule is configured.
    risk_check: bool = False


@dataclass(frozen=True)
class OrderView:
    """An order with everything an operator or the CLI shows about it."""

    order: Order
    cards: tuple[Card, ...]
    attempts: tuple[AttemptRecord, ...]
    claims: tuple[ClaimRecord, ...]
    # Parallel to `cards`: a key a reissue replaced (reported invalid, new keys delivered), and the reissue's
    # new keys, which the original order's view lists after its own.
    replaced: tuple[bool, ...] = ()
    reissued: tuple[bool, ...] = ()
