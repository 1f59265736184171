"""Migration 0002 on a database already in use at 0001 (released): the record it has is counted after."""

from __future__ import annotations

from datetime import datetime, timedelta

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, inspect, text
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


def _write_0001_record(url: str, started: datetime) -> None:
    """One finished order with one succeeded attempt, written as a 0001-era fulfil would (plain SQL: today's
    Store writes today's columns)."""
    dialect, parsed = parse_url(url)
    if dialect == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
        at: object = started.replace(tzinfo=None).isoformat(sep=" ")
        ended: object = (started + timedelta(seconds=3)).replace(tzinfo=None).isoformat(sep=" ")
    else:
        at, ended = started, started + timedelta(seconds=3)
    engine = create_engine(parsed, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO orders (id, ref, sku, qty, status, created_at, updated_at) "
                    "VALUES (1, 'Q1', 'steam-100', 1, 'failed', :at, :at)"
                ),
                {"at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO attempts (id, order_id, number, supplier, offer_index, qty, cost, state, evidence,"
                    " started_at, sent_at, finished_at) VALUES (1, 1, 'FOLD00000000000001', 'main', 0, 1, '10.00',"
                    " 'succeeded', '{}', :at, :at, :ended)"
                ),
                {"at": at, "ended": ended},
            )
    finally:
        engine.dispose()


async def test_upgrade_from_0001_keeps_and_counts_the_record(db_url: str, cipher: CardCipher, now: datetime) -> None:
    assert head_revision() >= "0003"  # the chain runs through 0002 (quality) and 0003 (receipts)
    tables = _migrate(db_url, "0001")
    assert "supplier_calls" not in tables
    started = now - timedelta(minutes=5)
    _write_0001_record(db_url, started)

    Store.upgrade(db_url)
    store = await Store.open(db_url, cipher)
    try:
        found = await store.supplier_windows(now - timedelta(hours=1), now)
        assert (found["main"].fulfilled, found["main"].latency_p50) == (1, 3.0)
        assert await store.supplier_health() == []
        (kept,) = await store.attempts_for_order(1)
        # 0003: the latest send starts as the first one; nothing scheduled, nothing checked yet.
        assert (kept.last_sent_at, kept.next_check_at, kept.checks) == (started, None, 0)
    finally:
        await store.close()

    tables = _migrate(db_url, "0002", down=True)
    assert "receipts" not in tables and "receipt_cards" not in tables and "supplier_calls" in tables
    tables = _migrate(db_url, "0001", down=True)
    assert "supplier_calls" not in tables and "supplier_health" not in tables and "attempts" in tables
