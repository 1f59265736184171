"""Migration 0002 on a database already in use at 0001 (released): the record it has is counted after."""

from __future__ import annotations

from datetime import datetime, timedelta

from alembic import command
from alembic.config import Config as AlembicConfig
from qualitykit import attempt
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from fulfil.crypto import CardCipher
from fulfil.storage import Store
from fulfil.storage.database import MIGRATIONS, head_revision, parse_url


def _migrate(url: str, target: str, *, down: bool = False) -> list[str]:
    """Move the schema to `target`; the tables there after."""
    dialect, parsed = parse_url(url)
    if dialect == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    engine = create_engine(parsed, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, target)
            conn.commit()
            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


async def test_upgrade_from_0001_keeps_and_counts_the_record(db_url: str, cipher: CardCipher, now: datetime) -> None:
    assert head_revision() >= "0002"  # later migrations build on it
    tables = _migrate(db_url, "0001")
    assert "supplier_calls" not in tables
    old = await Store.open(db_url, cipher, check_schema=False)
    try:
        await attempt(old, "main", now - timedelta(minutes=5), seconds=3)
    finally:
        await old.close()

    Store.upgrade(db_url)
    store = await Store.open(db_url, cipher)
    try:
        found = await store.supplier_windows(now - timedelta(hours=1), now)
        assert (found["main"].fulfilled, found["main"].latency_p50) == (1, 3.0)
        assert await store.supplier_health() == []
    finally:
        await store.close()

    tables = _migrate(db_url, "0001", down=True)
    assert "supplier_calls" not in tables and "supplier_health" not in tables and "attempts" in tables
