"""Engines and migrations: the one place that knows drivers, URLs, pragmas and alembic.

`sqlite:///path` runs on aiosqlite with WAL and every write in BEGIN IMMEDIATE (a writer takes the lock
up front, so concurrent writers queue on busy_timeout instead of failing on a lock upgrade).
`postgresql://…` runs on psycopg 3 (async for the store's engine, sync for migrations); the hot path's three
write transactions an order run on asyncpg connections of their own (pg_connections.py).

FULFIL_SQL_COUNT=/path/counts.json (for benchmarks/; off unless set): the store's engines count their SQL
statements (transaction control left out), transactions, commits, rollbacks, new connections and pool
checkouts, and this process writes the counts there as JSON every 0.2 s and at exit (the writer thread costs
~2.5 ms of CPU a second). Unset, nothing is counted and no listener or thread is installed.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from fulfil.storage import sqlite_driver
from fulfil.storage.errors import SchemaOutOfDate, StoreError
from fulfil.storage.types import SchemaStatus

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `fulfil db upgrade`"
# Execution option a connection carries when it is about to write (SQLite: BEGIN IMMEDIATE).
WRITE = "fulfil_write"
_BUSY_TIMEOUT_MS = 10_000


def parse_url(url: str) -> tuple[str, URL]:
    """(dialect, the URL with our driver): "sqlite" -> aiosqlite, "postgresql" -> psycopg."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database.url is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError("database.url: SQLite needs a file (sqlite:///path/to/fulfil.db)")
        return "sqlite", parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return "postgresql", parsed.set(drivername="postgresql+psycopg")
    raise StoreError(f"database.url: unsupported database {backend!r} (use sqlite:/// or postgresql://)")


def sqlite_pragmas(synchronous: str = "FULL") -> list[str]:
    """What every SQLite connection of the store is set up with (the engine's, and the hot path's own)."""
    return [
        f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}",
        "PRAGMA journal_mode = WAL",
        # FULL: a commit that returned survives power loss (a lost "sent" row risks a double purchase).
        # (NORMAL only for the notification dispatcher's own engine: see `create_store_engine`.)
        f"PRAGMA synchronous = {synchronous}",
        "PRAGMA foreign_keys = ON",
    ]


def _sqlite_setup(sync_engine: Engine, synchronous: str = "FULL") -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver; we say BEGIN ourselves (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in sqlite_pragmas(synchronous):
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


SQL_COUNT_ENV = "FULFIL_SQL_COUNT"
_TX_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END")


class _SqlCounts:
    """Counters fed by engine events, written to `path` by a daemon thread and at exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.texts: Counter[str] = Counter()  # statements by their first 100 characters
        atexit.register(self.write)
        threading.Thread(target=self._flush, name="fulfil-sql-count", daemon=True).start()

    def watch(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", lambda conn: self.add("begin"))
        event.listen(engine, "commit", lambda conn: self.add("commit"))
        event.listen(engine, "rollback", lambda conn: self.add("rollback"))
        event.listen(engine.pool, "connect", lambda dbapi_conn, record: self.add("connect"))
        event.listen(engine.pool, "checkout", lambda dbapi_conn, record, proxy: self.add("checkout"))

    def add(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    def add_transaction(self, texts: list[str], committed: bool) -> None:
        with self.lock:
            self.counts["begin"] += 1
            self.counts["commit" if committed else "rollback"] += 1
            self.counts["statement"] += len(texts)
            for text in texts:  # not Counter.update: its checks cost the measured daemon more than the count
                self.texts[text] += 1

    def add_group(self, size: int) -> None:
        with self.lock:
            self.counts["groups"] += 1
            self.counts["grouped"] += size

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split())
        if not text.upper().startswith(_TX_CONTROL):
            with self.lock:
                self.counts["statement"] += 1
                self.texts[text[:100]] += 1

    def write(self) -> None:
        with self.lock:
            data = {**self.counts, "texts": dict(self.texts.most_common())}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)

    def _flush(self) -> None:
        while True:
            time.sleep(0.2)
            self.write()


_sql_counts: _SqlCounts | None = None


def count_connect() -> None:
    """A new connection the direct path opened (fulfil/storage/direct.py), beside the engine's pool."""
    if _sql_counts is not None:
        _sql_counts.add("connect")
        _sql_counts.add("connect_direct")  # of them, the direct path's (the rest: the engine's pool)


def count_group(size: int) -> None:
    """`size` direct transactions went to the database as one (SQLite's group commit): size - 1 commits saved."""
    if _sql_counts is not None:
        _sql_counts.add_group(size)


def count_direct(texts: list[str], committed: bool) -> None:
    """A transaction run on the driver directly (fulfil/storage/direct.py), which engine events do not see."""
    if _sql_counts is not None:
        _sql_counts.add_transaction(texts, committed)


def _count_sql(engine: Engine) -> None:
    global _sql_counts
    path = os.environ.get(SQL_COUNT_ENV)
    if path:
        _sql_counts = _sql_counts or _SqlCounts(path)
        _sql_counts.watch(engine)


def create_store_engine(url: str, *, side: bool = False) -> tuple[str, AsyncEngine]:
    """The store's engine. `side`: an engine for work beside the order path (the notification dispatcher): a
    smaller PostgreSQL pool, and on SQLite `synchronous = NORMAL` (WAL): its commits (which deliveries were sent,
    claims of outbox rows) survive a crash of the process but may be lost to a power cut, and losing one only
    sends a notification again, with the same id. Orders, attempts, deliveries and the outbox rows themselves
    are written by the main engine, FULL."""
    dialect, parsed = parse_url(url)
    if dialect == "sqlite":
        # SQLite has one writer: a second connection only lets a read overlap a write. Both are kept open: an
        # overflow connection would be opened and closed again (an aiosqlite thread each) on every busy moment.
        assert parsed.database is not None
        path = str(Path(parsed.database).expanduser())
        engine = create_async_engine(
            parsed, pool_size=2, max_overflow=0, pool_timeout=60, async_creator=sqlite_driver.connector(path)
        )
        _sqlite_setup(engine.sync_engine, "NORMAL" if side else "FULL")
    else:
        # The main engine's 8 plus as many for the hot path's own (fulfil/storage/direct.py): 16 a daemon, as
        # before that path had its own; four daemons stay within the server's default max_connections (100).
        size = 4 if side else 8
        engine = create_async_engine(parsed, pool_size=size, max_overflow=0, pool_timeout=60, pool_pre_ping=True)
    _count_sql(engine.sync_engine)
    return dialect, engine


def _sync_engine(url: str) -> Engine:
    dialect, parsed = parse_url(url)
    if dialect == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(drivername="sqlite+pysqlite"), poolclass=NullPool)
        _sqlite_setup(engine)
        return engine
    return create_engine(parsed, poolclass=NullPool)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> None:
    """Bring the database to the newest schema (creates the SQLite file and its directory)."""
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    except DBAPIError as exc:
        raise StoreError(f"database upgrade failed: {exc.orig}") from exc
    finally:
        engine.dispose()


def missing_sqlite_file(url: str) -> bool:
    dialect, parsed = parse_url(url)
    return dialect == "sqlite" and not Path(str(parsed.database)).expanduser().exists()


def schema_revision_status(url: str) -> SchemaStatus:
    """Where the database's schema stands; a missing SQLite file counts as never migrated."""
    head = head_revision()
    if missing_sqlite_file(url):
        return SchemaStatus(current=None, head=head)
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            return SchemaStatus(current=current_revision(conn), head=head)
    except DBAPIError as exc:
        raise StoreError(f"cannot read the database schema version: {exc.orig}") from exc
    finally:
        engine.dispose()


def schema_error(status: SchemaStatus) -> SchemaOutOfDate:
    at = status.current or "nothing (never migrated)"
    return SchemaOutOfDate(f"database schema is at {at}, this fulfil needs {status.head}: {UPGRADE_HINT}")
