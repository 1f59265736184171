"""Fixtures every test area shares: a database per test (SQLite and PostgreSQL), a card cipher, an upgraded
and opened Store, and a fixed `now`.

PostgreSQL comes from FULFIL_TEST_PG_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test). Unset, the
PostgreSQL variants skip; with CI=true they fail instead, so CI never passes by skipping. Each test works in
its own schema of that database, so several runs can share one server.

Migrating costs ~70 ms on SQLite and ~250 ms on PostgreSQL, so a test that uses `store` gets a database
migrated once and then reset: a copy of a migrated SQLite file, or a recycled PostgreSQL schema emptied with
its sequences restarted and a new install id. A test that uses `db_url` without `store` gets it unmigrated.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sqlite3
import string
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from fulfil.crypto import CardCipher
from fulfil.storage import Store
from fulfil.storage.database import head_revision, parse_url
from fulfil.storage.schema import metadata

# Fixtures shared by files in different folders: the SMTP server on loopback (`smtp`).
pytest_plugins = ["tests.smtpkit"]

PG_ENV = "FULFIL_TEST_PG_URL"
FIXED_NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def pg_url_or_skip() -> str:
    """The PostgreSQL server for tests (its shared database, not a fresh schema): skip, or fail in CI."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} is not set but CI=true: PostgreSQL tests must run in CI")
        pytest.skip(f"{PG_ENV} not set")
    return url


def _admin(server_url: str) -> Engine:
    return create_engine(parse_url(server_url)[1], poolclass=NullPool)


# Schema names carry host and pid, so a later run can tell which ones a killed run left behind.
_HOST = re.sub(r"[^a-z0-9]", "", socket.gethostname().lower())[:16] or "host"
_PREFIX = f"t_{_HOST}_"


def _create_schema(admin: Engine) -> tuple[str, str]:
    """(schema name, URL whose connections use it)."""
    schema = f"{_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, scoped.render_as_string(hide_password=False)


def _drop_schema(admin: Engine, schema: str) -> None:
    with admin.begin() as conn:
        # A connection a test leaked would block the drop forever; give up on it instead.
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@contextmanager
def fresh_pg_schema(server_url: str) -> Iterator[str]:
    """A new empty schema on the test server; yields a URL whose connections use it, drops it after."""
    admin = _admin(server_url)
    try:
        schema, url = _create_schema(admin)
        try:
            yield url
        finally:
            _drop_schema(admin, schema)
    finally:
        admin.dispose()


def _drop_abandoned_schemas(admin: Engine) -> None:
    """Drop test schemas of this host whose process is gone (a run that was killed)."""
    with admin.connect() as conn:
        names = conn.scalars(
            text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :p)"), {"p": _PREFIX}
        ).all()
    for name in names:
        pid = int(name.removeprefix(_PREFIX).split("_")[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _drop_schema(admin, name)
        except PermissionError:
            pass  # alive, someone else's


class _MigratedPgSchemas:
    """Migrated schemas handed out one test at a time and reset in between (cheaper than migrating)."""

    def __init__(self, server_url: str) -> None:
        self._admin = _admin(server_url)
        _drop_abandoned_schemas(self._admin)
        self._free: list[tuple[str, str]] = []
        self._all: list[str] = []

    def take(self) -> tuple[str, str]:
        while self._free:
            schema, url = self._free.pop()
            if self._reset(schema):
                return schema, url
        schema, url = _create_schema(self._admin)
        self._all.append(schema)
        Store.upgrade(url)
        return schema, url

    def give_back(self, schema: str, url: str) -> None:
        self._free.append((schema, url))

    def _reset(self, schema: str) -> bool:
        """Empty every table, restart the ids, give a new install id: two round trips, ~10 ms."""
        q = f'"{schema}"'
        statements = ["SET LOCAL lock_timeout = '5s'"]
        for table in reversed(metadata.sorted_tables):
            if table.name == "meta":
                continue
            statements.append(f'DELETE FROM {q}."{table.name}"')
            if "id" in table.c:
                statements.append(f"SELECT setval(pg_get_serial_sequence('{q}.{table.name}', 'id'), 1, false)")
        statements.append(f"UPDATE {q}.meta SET value = '{_install_id()}' WHERE key = 'install_id'")
        try:
            with self._admin.begin() as conn:
                version = conn.scalar(text(f"SELECT version_num FROM {q}.alembic_version"))
                if version != head_revision():
                    return False  # the test moved the schema's version: start over with a new one
                conn.exec_driver_sql(";\n".join(statements))
        except DBAPIError:
            return False  # something still holds it: leave it to the final drop
        return True

    def close(self) -> None:
        for schema in self._all:
            _drop_schema(self._admin, schema)
        self._admin.dispose()


@pytest.fixture(scope="session")
def _pg_schemas() -> Iterator[_MigratedPgSchemas]:
    schemas = _MigratedPgSchemas(pg_url_or_skip())
    try:
        yield schemas
    finally:
        schemas.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "fulfil.db"
    Store.upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def _migrated_sqlite(template: Path, directory: Path) -> str:
    path = directory / "fulfil.db"
    shutil.copyfile(template, path)
    with sqlite3.connect(path) as conn:  # each database its own install id, as a real migration gives
        conn.execute("UPDATE meta SET value = ? WHERE key = 'install_id'", (_install_id(),))
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty (not migrated) PostgreSQL schema for this test."""
    with fresh_pg_schema(pg_url_or_skip()) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """This test's database: a SQLite file in tmp_path, or a PostgreSQL schema of its own.

    Empty (not migrated) unless the test also uses `store`, which needs it migrated.
    """
    migrated = "store" in request.fixturenames
    if request.param == "sqlite":
        if migrated:
            yield _migrated_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path)
        else:
            yield f"sqlite:///{tmp_path / 'fulfil.db'}"
        return
    if not migrated:
        with fresh_pg_schema(pg_url_or_skip()) as url:
            yield url
        return
    pool: _MigratedPgSchemas = request.getfixturevalue("_pg_schemas")
    schema, url = pool.take()
    try:
        yield url
    finally:
        pool.give_back(schema, url)


@pytest.fixture
def cipher() -> CardCipher:
    return CardCipher(secrets.token_bytes(32))


@pytest.fixture
async def store(db_url: str, cipher: CardCipher) -> AsyncIterator[Store]:
    """A Store opened on `db_url` (migrated), closed after the test."""
    opened = await Store.open(db_url, cipher)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def now() -> datetime:
    return FIXED_NOW


def _install_id() -> str:
    return "".join(secrets.choice(string.digits + string.ascii_uppercase) for _ in range(8))
