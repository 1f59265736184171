"""Column types that make both databases speak UTC-aware datetimes, exact Decimals and JSON dicts."""

from __future__ import annotations

import enum
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, Text
from sqlalchemy.types import TypeDecorator, TypeEngine

from suppliers.taxonomy import Card


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; naive UTC text on SQLite (one format, so text order is time order)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: pass UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """NUMERIC on PostgreSQL; text on SQLite, whose NUMERIC affinity would turn 0.10 into a float."""

    impl = Numeric(asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Card):
        # A card key must never reach the events or evidence columns in plaintext.
        return "<card>"
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


# One encoder for every row: json.dumps with options builds a new one per call (a few rows an order).
_ENCODER = json.JSONEncoder(default=_json_default, sort_keys=True, ensure_ascii=False)


def dumps(data: dict[str, Any] | None) -> str:
    return _ENCODER.encode(data or {})


class JSONText(TypeDecorator[dict[str, Any]]):
    """A JSON object kept as text on both databases (readable in psql and sqlite3 alike)."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str:
        return dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, Any]:
        if not value:
            return {}
        loaded = json.loads(value)
        return loaded if isinstance(loaded, dict) else {"value": loaded}
