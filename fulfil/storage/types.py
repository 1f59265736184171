"""Small result types of storage operations (the domain records live in `fulfil.domain`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

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
