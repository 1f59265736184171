"""The small interface every shop source implements, and the types it answers in.

A source speaks one shop's database (its tables, status codes and text formats) and nothing else: which orders
are paid and waiting, a conditional "taken" mark, a conditional write of the keys or the failure, and a look at
one row. Everything about exactly-once — when fulfil records what, what a row found after a crash means — is
decided in `fulfil.sources.runner` from these answers, the same for every shop.

Every method that touches the shop raises `ShopUnavailable` when the shop's database cannot be reached or does
not answer in time (try again later) and `ShopRefused` when it refused a statement (a missing privilege, a value
it will not store); never a driver's exception.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from fulfil.config import SourceConfig


class SourceError(Exception):
    """A shop source could not do what was asked."""


class ShopUnavailable(SourceError):
    """The shop's database cannot be reached or did not answer in time: nothing is known to have changed."""


class ShopRefused(SourceError):
    """The shop's database refused a statement (a privilege missing, a table or column missing, a value too
    large). `lasting`: asking again will not help (a value), as opposed to a grant an operator may still add."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


@dataclass(frozen=True)
class ShopOrder:
    """A paid order waiting at the shop, as the source read it. `problem` says why it cannot be an order as it
    is (garbage in the buyer's inputs); fulfil leaves such a row alone and says so.

    `contact` and `ip` (the buyer's e-mail or contact, address) go onto the order (notifications, risk): stored
    hashed and encrypted, never logged or shown unmasked."""

    ref: str  # the shop's order number: the fulfil order's ref
    row_id: int  # the shop row's primary key
    goods_id: str
    qty: int
    status: int  # the shop's status as seen (what the conditional take compares)
    kind: str  # "manual": the buyer's inputs are kept; "abnormal": the shop's error text is replaced
    account: str | None = None
    amount: Decimal | None = None
    problem: str | None = None
    contact: str | None = field(default=None, repr=False)
    ip: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Taken:
    """What fulfil keeps of a shop order it took: enough to find the row and to recognise its own marks."""

    ref: str
    row_id: int
    seen_status: int
    kind: str
    mark: str | None


class RowState(enum.Enum):
    """A taken (or half-taken) order's shop row, compared with what fulfil left there."""

    AS_SEEN = "as_seen"  # untouched since fulfil read it: fulfil's mark never landed
    OURS = "ours"  # fulfil's mark is there: the order is fulfil's
    CHANGED = "changed"  # someone else moved it (a person in the shop's admin): not fulfil's to touch
    GONE = "gone"  # deleted


@dataclass(frozen=True)
class Examined:
    state: RowState
    detail: str = ""


class Written(enum.Enum):
    WRITTEN = "written"  # this call wrote it
    ALREADY = "already"  # the row already holds exactly this (a write that landed before a crash)
    CHANGED = "changed"  # the row is not as fulfil left it: nothing written, a person decides


@dataclass(frozen=True)
class WriteOutcome:
    result: Written
    detail: str = ""


@dataclass(frozen=True)
class Check:
    """One line of `fulfil sources test`: what was checked, and whether it holds."""

    ok: bool
    what: str


class Source(abc.ABC):
    """One configured shop. Built from its YAML entry by `fulfil.sources.registry.build_source`."""

    type_name: ClassVar[str]
    # Whether the shop has a state fulfil sets when it takes an order (dujiaoka: status 3 "processing"). When
    # not (acg-faka), fulfil's own record is the mark and the write-back's condition is the only guard.
    marks_taken: ClassVar[bool] = True

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.name = config.name

    @abc.abstractmethod
    async def poll(self, after: int, limit: int) -> list[ShopOrder]:
        """Paid orders of mapped goods waiting for fulfil, with row ids above `after`, lowest first."""

    def new_mark(self, now: datetime) -> str | None:
        """What a take writes at the shop besides the status, to recognise fulfil's own mark later."""
        return None

    async def take(self, orders: Sequence[ShopOrder], mark: str | None) -> set[str]:
        """Mark these orders taken at the shop, each only if its row is still as seen (one conditional update
        per row). Returns the refs whose row this call changed: those, and only those, are fulfil's."""
        return {order.ref for order in orders}

    async def examine(self, taken: Taken) -> Examined:
        """Where a taken order's row stands against what fulfil left (after a crash between the two databases)."""
        return Examined(RowState.OURS)

    @abc.abstractmethod
    async def write_delivered(self, taken: Taken, lines: Sequence[str]) -> WriteOutcome:
        """Write the keys (one per line) and the shop's "delivered" status, only if the row is as fulfil left
        it; ALREADY when it holds exactly these lines already."""

    @abc.abstractmethod
    async def write_failed(self, taken: Taken, reason: str) -> WriteOutcome:
        """Mark the order failed (refundable) at the shop, with no keys, only if the row is as fulfil left it."""

    async def unmapped(self) -> dict[str, int]:
        """Paid orders waiting at the shop for goods fulfil does not take: {goods id: count}."""
        return {}

    async def check(self) -> list[Check]:
        """`fulfil sources test`: connect, look at the tables and columns this source needs. Changes nothing."""
        return []

    async def aclose(self) -> None:
        """Release connections."""
        return None
