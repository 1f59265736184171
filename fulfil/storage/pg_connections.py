"""The hot path's own PostgreSQL connections (asyncpg), beside the engine's pool (psycopg, everything else).

asyncpg rather than psycopg for the write-ahead attempt, the receipt and the delivery, and for the worker's claim
and a fresh batch's reads: a round trip costs this daemon's one core much less (the protocol in C, no socket
reader registered and dropped per wait, no pool checkout and ping), and those are every statement of an order
on the happy path. The connections stay open (no pool checkout, no ping per
transaction); each statement is prepared once per connection, under a name, so the server parses it once and,
should a migration change a table under it, refuses it instead of sending rows of another shape.

A connection is given back only when it is known clean: idle, not closed, and no driver call on it failed in
a way that leaves its state unknown (a cancelled call, a dropped socket, a statement the server invalidated).
Anything else is closed and the next transaction opens a new one, so a restarted server costs each one error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy.engine import URL

from fulfil.storage import database
from fulfil.storage.errors import StoreError

# Errors the server raised cleanly: the transaction is aborted, the connection fine once rolled back.
# A statement the server no longer accepts as prepared is not among them: that connection is dropped.
_CLEAN: Final = asyncpg.PostgresError
_STALE: Final = (asyncpg.InvalidCachedStatementError, asyncpg.FeatureNotSupportedError)
DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)

# libpq's connection options asyncpg does not take. Client-side TCP tuning is left to the system's defaults;
# the rest change who is trusted or how, so they are refused rather than dropped.
_TCP_TUNING: Final = frozenset(
    {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}
)
_REFUSED: Final = frozenset(
    {
        "hostaddr",
        "channel_binding",
        "gssencmode",
        "gssdelegation",
        "requirepeer",
        "require_auth",
        "sslcertmode",
        "sslcompression",
        "sslsni",
        "load_balance_hosts",
        "replication",
        "client_encoding",
    }
)


def connect_args(url: URL) -> tuple[str, dict[str, Any]]:
    """asyncpg's DSN and keyword arguments for the store's database URL (written for libpq/psycopg).

    asyncpg would send an option it does not know to the server as a setting, which the server refuses, so
    every hot-path transaction would fail while the rest of the daemon works: the options are sorted here."""
    query = {key: value if isinstance(value, str) else value[-1] for key, value in url.query.items()}
    refused = sorted(set(query) & _REFUSED)
    if refused:
        raise StoreError(
            f"database.url: {', '.join(refused)} is not supported for PostgreSQL here (the hot path's driver, "
            "asyncpg, has no such option); remove it from the URL"
        )
    kwargs: dict[str, Any] = {}
    timeout = query.pop("connect_timeout", None)
    if timeout is not None:
        try:
            kwargs["timeout"] = float(timeout)
        except ValueError:
            raise StoreError(f"database.url: connect_timeout must be a number of seconds, not {timeout!r}") from None
    fallback = query.pop("fallback_application_name", None)
    if fallback is not None:
        query.setdefault("application_name", fallback)
    for key in _TCP_TUNING:
        query.pop(key, None)
    dsn = url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    return dsn, kwargs


class PgConnection:
    """One asyncpg connection, its prepared statements, and whether it can be trusted again (`spoiled`)."""

    __slots__ = ("conn", "spoiled", "_statements")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.spoiled = False
        # Each statement with its result's description ((name, type oid) per column), both made once.
        self._statements: dict[str, tuple[PreparedStatement[asyncpg.Record], list[tuple[str, int]]]] = {}

    # Each driver call's error goes through `_failed` (a plain try, not a context manager: ten an order).

    async def execute(self, sql: str) -> str:
        """A statement without parameters (transaction control); the server's status line."""
        try:
            return await self.conn.execute(sql)
        except BaseException as exc:
            if (wrapped := self._failed(exc)) is None:
                raise
            raise wrapped from exc

    async def fetch(self, sql: str, args: Sequence[Any]) -> tuple[list[asyncpg.Record], list[tuple[str, int]]]:
        """Rows and their description ((name, type oid) per column, as a DB-API cursor gives it)."""
        try:
            statement, description = self._statements.get(sql) or await self._prepared(sql)
            return await statement.fetch(*args), description
        except BaseException as exc:
            if (wrapped := self._failed(exc)) is None:
                raise
            raise wrapped from exc

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        try:
            statement, _ = self._statements.get(sql) or await self._prepared(sql)
            await statement.executemany(args)
        except BaseException as exc:
            if (wrapped := self._failed(exc)) is None:
                raise
            raise wrapped from exc

    def reusable(self) -> bool:
        return not (self.spoiled or self.conn.is_closed() or self.conn.is_in_transaction())

    async def _prepared(self, sql: str) -> tuple[PreparedStatement[asyncpg.Record], list[tuple[str, int]]]:
        found = self._statements.get(sql)
        if found is None:
            name = f"fulfil_direct_{len(self._statements)}"  # named: the server keeps it parsed
            statement = await self.conn.prepare(sql, name=name)
            description = [(a.name, a.type.oid) for a in statement.get_attributes()]
            found = self._statements[sql] = (statement, description)
        return found

    def _failed(self, exc: BaseException) -> StoreError | None:
        """For a driver call that raised `exc`: a StoreError to raise instead, or None to raise `exc` itself.
        One that failed other than cleanly on the server leaves the connection's state unknown: it is not used
        again. What is not a driver error (a row it could not decode) becomes a StoreError."""
        if not isinstance(exc, _CLEAN) or isinstance(exc, _STALE):
            self.spoiled = True
        if isinstance(exc, Exception) and not isinstance(exc, DRIVER_ERRORS):
            return StoreError(f"database error: {exc!r}")
        return None


class PgConnections:
    """At most `size` connections at once, the idle ones kept open."""

    def __init__(self, url: URL, size: int) -> None:
        self._dsn, self._kwargs = connect_args(url)
        self._idle: list[PgConnection] = []
        self._size = size
        self._slots = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[PgConnection]:
        pg = await self.acquire()
        try:
            yield pg
        finally:
            self.release(pg)

    async def acquire(self) -> PgConnection:
        """A connection for one transaction; `release` it in a `finally` (the hot path's form of `connection`,
        without a generator per transaction)."""
        await self._slots.acquire()
        try:
            return self._idle.pop() if self._idle else await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def release(self, pg: PgConnection) -> None:
        try:
            if pg.reusable():
                self._idle.append(pg)
            else:
                lost = pg.spoiled and pg.conn.is_closed()  # dropped under it, not closed by us
                pg.conn.terminate()  # the server rolls back whatever the closed session had open
                if lost:
                    self._drop_idle()
        finally:
            self._slots.release()

    def _drop_idle(self) -> None:
        """A connection the server or the network dropped: the idle ones were opened before the same restart or
        outage, most likely dead too. Closed now, so it costs one failed transaction, not one per connection."""
        idle, self._idle = self._idle, []
        for pg in idle:
            pg.conn.terminate()

    async def warm(self, count: int = 1) -> None:
        """Have `count` open (at most the size) now: a database this driver cannot reach fails the start, not
        the first order."""
        async with contextlib.AsyncExitStack() as held:  # held at once: each one a connection of its own
            for _ in range(min(count, self._size)):  # more would wait on itself
                await held.enter_async_context(self.connection())

    async def _connect(self) -> PgConnection:
        try:
            # asyncpg's own statement cache off: the connection keeps its few prepared statements itself.
            conn = await asyncpg.connect(self._dsn, statement_cache_size=0, **self._kwargs)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"database error: cannot connect: {exc}") from exc
        database.count_connect()
        return PgConnection(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for pg in idle:
            await pg.conn.close()
