"""The after-sales vocabulary: problems, case states and levels, and the records storage builds from rows.

Plain frozen dataclasses with no I/O, shared by the pure rules (`l1`), storage and the faces (HTTP, CLI)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


class Problem(enum.StrEnum):
    KEY_INVALID = "key_invalid"
    NOT_RECEIVED = "not_received"
    TOPUP_NOT_ARRIVED = "topup_not_arrived"
    OTHER = "other"


class CaseStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    REJECTED = "rejected"


class Level(enum.StrEnum):
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


class Outcome(enum.StrEnum):
    REISSUED = "reissued"
    REFUNDED = "refunded"
    CONFIRMED = "confirmed"
    ANSWERED = "answered"


class Action(enum.StrEnum):
    """What an operator may do with a case (`fulfil aftersales act CASE ACTION`)."""

    REISSUE = "reissue"
    REFUND = "refund"
    RESOLVE = "resolve"
    ESCALATE = "escalate"
    REJECT = "reject"


# The machine's name where an operator's would be: decisions L1 takes, escalations the clock makes.
SYSTEM = "fulfil:L1"
CLOCK = "fulfil:clock"


@dataclass(frozen=True)
class Report:
    """What a buyer (or an operator on their behalf) reports."""

    problem: Problem
    keys: tuple[str, ...] = ()  # card passwords as the buyer copied them
    text: str | None = None
    attachments: tuple[str, ...] = ()  # references (URLs, upload ids), never the files


@dataclass(frozen=True)
class ReportedKey:
    """A named key found among the order's deliveries, with what the rules need to know about it."""

    delivery_id: int
    attempt_id: int
    supplier: str
    fingerprint: str
    reported_in: str | None = None  # an earlier case that named this key
    under_claim: str | None = None  # a claim already open on the purchase that sold it


@dataclass(frozen=True)
class Facts:
    """Everything L1 decides on, read in the transaction that writes the decision."""

    problem: Problem
    sku: str
    product_kind: str | None  # None: the product is no longer configured
    order_status: str
    delivered_at: datetime | None
    delivered_units: int
    credit: int
    named: int = 0  # keys the report names
    matched: tuple[ReportedKey, ...] = ()
    delivered_attempt: int | None = None
    delivered_supplier: str | None = None


class Step(enum.StrEnum):
    REISSUE = "reissue"
    RESEND = "resend"  # re-send the delivery notification; the keys are there
    QUERY_TOPUP = "query_topup"  # ask the supplier what became of the top-up
    REFUND = "refund"
    CONFIRM = "confirm"
    TO_PERSON = "to_person"  # L2, with the reason


@dataclass(frozen=True)
class Decision:
    step: Step
    reason: str
    units: int = 0
    attempt_id: int | None = None
    supplier: str | None = None


@dataclass(frozen=True)
class Case:
    id: int
    case_no: str
    order_id: int
    order_ref: str
    problem: Problem
    status: CaseStatus
    level: Level
    outcome: Outcome | None
    reason: str | None
    text: str | None
    attachments: tuple[str, ...]
    units: int
    supplier: str | None
    attempt_id: int | None
    decided_by: str | None
    reports: int
    due_at: datetime | None
    opened_at: datetime
    level_at: datetime
    closed_at: datetime | None
    updated_at: datetime
    reissue_refs: tuple[str, ...] = ()
    claim_nos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Opened:
    """`open_case`'s answer: the case, whether this report opened it (or repeated an open one), and the step
    L1 left for the caller to take outside the transaction (asking a supplier)."""

    case: Case
    created: bool
    step: Step | None = None


@dataclass(frozen=True)
class ReissueEntry:
    """A row of the reissue ledger (补发台账). JSON keys and CSV columns: `LEDGER_FIELDS`."""

    ref: str
    case_no: str
    reason: str
    original_supplier: str | None
    original_supplier_order_no: str | None
    new_supplier: str | None
    new_supplier_order_no: str | None
    units: int
    cost: Decimal | None
    claim_no: str | None
    decided_by: str
    created_at: datetime
    reissue_ref: str = ""
    reissue_status: str = ""
    sku: str = ""
    account: str | None = field(default=None, repr=False)
    amount: Decimal | None = None
    contact: str | None = field(default=None, repr=False)
    claim_status: str | None = None


LEDGER_FIELDS = (
    "ref",
    "case_no",
    "reason",
    "original_supplier",
    "original_supplier_order_no",
    "new_supplier",
    "new_supplier_order_no",
    "units",
    "cost",
    "claim_no",
    "decided_by",
    "created_at",
)


@dataclass(frozen=True)
class CaseFigure:
    """One closed or open case, as the figures need it (`fulfil aftersales stats`)."""

    level: Level
    status: CaseStatus
    outcome: Outcome | None
    opened_at: datetime
    closed_at: datetime | None
    supplier_caused: bool  # a claim against the supplier came of it
    reissue_cost: Decimal
    recovered: Decimal  # of that cost, what claims accepted or settled cover


def case_dict(case: Case) -> dict[str, Any]:
    """A case as operators see it (CLI JSON); the buyer's view is narrower (`buyer_view`)."""
    return {
        "case_no": case.case_no,
        "ref": case.order_ref,
        "problem": str(case.problem),
        "status": str(case.status),
        "level": str(case.level),
        "outcome": str(case.outcome) if case.outcome else None,
        "reason": case.reason,
        "text": case.text,
        "attachments": list(case.attachments),
        "units": case.units,
        "supplier": case.supplier,
        "decided_by": case.decided_by,
        "reports": case.reports,
        "due_at": _time(case.due_at),
        "opened_at": _time(case.opened_at),
        "level_at": _time(case.level_at),
        "closed_at": _time(case.closed_at),
        "reissues": list(case.reissue_refs),
        "claims": list(case.claim_nos),
    }


def buyer_view(case: Case) -> dict[str, Any]:
    """What the buyer is told about a case: no supplier, no claim, no internal reason."""
    out: dict[str, Any] = {
        "case_no": case.case_no,
        "ref": case.order_ref,
        "problem": str(case.problem),
        "status": str(case.status),
        "level": str(case.level),
        "opened_at": _time(case.opened_at),
    }
    if case.outcome is not None:
        out["outcome"] = str(case.outcome)
    if case.closed_at is not None:
        out["closed_at"] = _time(case.closed_at)
    return out


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
