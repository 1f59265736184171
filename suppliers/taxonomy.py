"""The one error taxonomy every adapter maps into, and the result types adapters return.

The engine decides only on these classes; it never sees a supplier's own codes. The raw code and message
travel along as `Evidence`, for claims and for the engineer on call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

from suppliers import values


class ErrorClass(enum.StrEnum):
    """What a failure means for money, decided once by the adapter."""

    TRANSIENT = "transient"  # not executed: retry the same attempt at the same supplier
    AMBIGUOUS = "ambiguous"  # may have executed: query by our number before anything else
    PRODUCT_UNAVAILABLE = "product_unavailable"  # fail over now, cool the offer down
    SUPPLIER_ACCOUNT = "supplier_account"  # fail over, alert, open the supplier's breaker
    ORDER_REJECTED = "order_rejected"  # buyer-side: fail the order, refundable, no failover
    OUR_BUG = "our_bug"  # malformed request: alert, order to review
    INVALID_KEY = "invalid_key"  # supplier said success but the keys fail validation


class OrderState(enum.StrEnum):
    """Where the purchase stands at the supplier, as far as one answer tells."""

    SUCCEEDED = "succeeded"  # final, charged; cards present for card products
    PENDING = "pending"  # accepted or processing: ask again later
    FAILED = "failed"  # final, not charged (see `error` for why)
    NOT_FOUND = "not_found"  # the supplier has no order under our number (yet)
    # The supplier refused our number as already used: a purchase under it was recorded (and charged) before,
    # and this answer does not say what became of it. Fulu can be asked; acg-faka cannot, so it is a charge
    # without goods.
    EXISTS = "exists"
    ERROR = "error"  # the call itself failed; `error` says whether it may have executed


@dataclass(frozen=True)
class Card:
    """One unit of goods. `number` may be empty (password-only products).

    `expires` is the supplier's text, cut to its column (`values.expires`) whoever built the card.
    """

    password: str
    number: str = ""
    expires: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "expires", values.expires(self.expires))

    def __repr__(self) -> str:  # keys never reach a log through a repr
        return "Card(<redacted>)"


@dataclass(frozen=True)
class Evidence:
    """What was sent and received, already redacted of secrets and card keys.

    Texts are bounded whoever built it (a supplier's message can be any length): see `suppliers.values`.
    """

    code: str | None = None
    message: str | None = None
    http_status: int | None = None
    request: str | None = None
    response: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", values.clip_optional(self.code, values.MAX_CODE))
        object.__setattr__(self, "message", values.clip_optional(self.message, values.MAX_MESSAGE))
        object.__setattr__(self, "request", values.clip_optional(self.request, values.MAX_EXCERPT))
        object.__setattr__(self, "response", values.clip_optional(self.response, values.MAX_EXCERPT))

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "http_status": self.http_status,
            "request": self.request,
            "response": self.response,
        }


@dataclass(frozen=True)
class Outcome:
    """One answer from a supplier about one purchase (from placing it, querying it, or a callback)."""

    state: OrderState
    error: ErrorClass | None = None
    cards: tuple[Card, ...] = ()
    supplier_order_id: str | None = None
    cost: Decimal | None = None
    evidence: Evidence = field(default_factory=Evidence)
    # True when the adapter already delivered inside the store's transaction (local stock).
    delivered_in_store: bool = False
    # A FAILED answer that the supplier also gives *after* charging (acg-faka reselling goods it checks at its own
    # upstream after our payment committed): the engine re-sends under the same number before believing it.
    maybe_charged: bool = False

    def __post_init__(self) -> None:
        # Fit for its String(128) column however long the supplier's id was (prefix + hash beyond that).
        object.__setattr__(self, "supplier_order_id", values.supplier_order_id(self.supplier_order_id))
        needs_error = self.state in (OrderState.FAILED, OrderState.ERROR)
        if needs_error and self.error is None:
            raise ValueError(f"an outcome in state {self.state} must carry an error class")
        if not needs_error and self.error is not None:
            raise ValueError(f"an outcome in state {self.state} carries no error class")
        if self.maybe_charged and self.state is not OrderState.FAILED:
            raise ValueError("only a FAILED outcome can be maybe_charged")

    @property
    def final(self) -> bool:
        return self.state in (OrderState.SUCCEEDED, OrderState.FAILED)

    @classmethod
    def error_of(cls, error: ErrorClass, evidence: Evidence | None = None) -> Outcome:
        return cls(OrderState.ERROR, error=error, evidence=evidence or Evidence())

    @classmethod
    def failed(cls, error: ErrorClass, evidence: Evidence | None = None) -> Outcome:
        return cls(OrderState.FAILED, error=error, evidence=evidence or Evidence())


class SupplierError(Exception):
    """A supplier adapter could not be built or used (bad settings, unknown type)."""
