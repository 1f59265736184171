"""Opening, migrating and checking the schema; URLs and the install id."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from fulfil.crypto import CardCipher
from fulfil.storage import SchemaOutOfDate, Store, StoreError, schema_revision_status
from fulfil.storage.database import head_revision, parse_url
from fulfil.storage.schema import metadata


async def test_open_unmigrated_database_names_the_upgrade_command(db_url: str, cipher: CardCipher) -> None:
    with pytest.raises(
        SchemaOutOfDate, match=rf"schema is at nothing .*needs {head_revision()}: run `fulfil db upgrade`"
    ):
        await Store.open(db_url, cipher)
    assert not schema_revision_status(db_url).up_to_date


async def test_upgrade_is_idempotent_and_makes_the_schema_current(db_url: str, cipher: CardCipher) -> None:
    Store.upgrade(db_url)
    Store.upgrade(db_url)
    status = schema_revision_status(db_url)
    assert (status.current, status.head, status.up_to_date) == (head_revision(), head_revision(), True)
    store = await Store.open(db_url, cipher)
    try:
        assert store.dialect in ("sqlite", "postgresql")
        assert re.fullmatch(r"[0-9A-Z]{8}", store.install_id)
    finally:
        await store.close()


async def test_unknown_revision_is_out_of_date(db_url: str, cipher: CardCipher) -> None:
    Store.upgrade(db_url)
    engine = create_engine(_sync(db_url), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDate, match=f"schema is at 9999, this fulfil needs {head_revision()}"):
        await Store.open(db_url, cipher)


async def test_open_without_check_on_an_empty_database(db_url: str, cipher: CardCipher) -> None:
    store = await Store.open(db_url, cipher, check_schema=False)
    try:
        assert store.install_id == ""
    finally:
        await store.close()


def test_tables_match_the_migrations(db_url: str) -> None:
    """schema.py and migrations/ describe the same database (a column added to one needs the other)."""
    Store.upgrade(db_url)
    engine = create_engine(_sync(db_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = [d for d in compare_metadata(context, metadata) if "alembic_version" not in repr(d)]
    finally:
        engine.dispose()
    assert diff == []


def test_install_ids_differ_between_databases(tmp_path: Path, cipher: CardCipher) -> None:
    ids = set()
    for name in ("a", "b", "c"):
        url = f"sqlite:///{tmp_path / name / 'fulfil.db'}"
        Store.upgrade(url)  # also creates the missing directory
        with sqlite3.connect(tmp_path / name / "fulfil.db") as conn:
            ids.add(conn.execute("SELECT value FROM meta WHERE key = 'install_id'").fetchone()[0])
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("url", "dialect", "driver"),
    [
        ("sqlite:///var/lib/fulfil/fulfil.db", "sqlite", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite", "sqlite+aiosqlite"),
        ("postgresql://u:p@h/db", "postgresql", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h:5432/db", "postgresql", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql", "postgresql+psycopg"),
    ],
)
def test_urls_are_normalised(url: str, dialect: str, driver: str) -> None:
    got_dialect, parsed = parse_url(url)
    assert (got_dialect, parsed.drivername) == (dialect, driver)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a url"])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError, match="database.url"):
        parse_url(url)


async def test_a_missing_sqlite_file_is_not_created_by_status_or_open(tmp_path: Path, cipher: CardCipher) -> None:
    url = f"sqlite:///{tmp_path / 'absent' / 'fulfil.db'}"
    assert schema_revision_status(url).current is None
    with pytest.raises(SchemaOutOfDate, match="fulfil db upgrade"):
        await Store.open(url, cipher)
    assert not (tmp_path / "absent").exists()


def _sync(url: str) -> str:
    dialect, parsed = parse_url(url)
    if dialect == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    return parsed.render_as_string(hide_password=False)
