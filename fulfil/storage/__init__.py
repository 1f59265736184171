"""Storage: the only part of fulfil that speaks SQL (SQLite or PostgreSQL, through SQLAlchemy Core)."""

from __future__ import annotations

from fulfil.storage.database import schema_revision_status
from fulfil.storage.errors import (
    Conflict,
    DuplicateCard,
    InvalidTransition,
    LeaseLost,
    NotFound,
    SchemaOutOfDate,
    StoreError,
)
from fulfil.storage.store import Store
from fulfil.storage.store_held import TO_STOCK, released_to_order
from fulfil.storage.store_review import MANUAL_SUPPLIER
from fulfil.storage.types import (
    AddResult,
    AddStatus,
    ClaimRecovery,
    EventRecord,
    HeldCard,
    HeldRelease,
    SchemaStatus,
    SourceDraft,
    SourceRecord,
    SourceState,
    SourceSummary,
    StockCount,
    StockImport,
)

__all__ = [
    "MANUAL_SUPPLIER",
    "TO_STOCK",
    "AddResult",
    "AddStatus",
    "ClaimRecovery",
    "Conflict",
    "DuplicateCard",
    "EventRecord",
    "HeldCard",
    "HeldRelease",
    "InvalidTransition",
    "LeaseLost",
    "NotFound",
    "SchemaOutOfDate",
    "SchemaStatus",
    "SourceDraft",
    "SourceRecord",
    "SourceState",
    "SourceSummary",
    "StockCount",
    "StockImport",
    "Store",
    "StoreError",
    "released_to_order",
    "schema_revision_status",
]
