"""aiosqlite with one thread hand-off per statement instead of four.

SQLAlchemy's aiosqlite adapter makes, for every statement, a cursor (one hand-off to the connection's thread),
enters it, executes, fetches and closes it (one each). Each hand-off is a queue put, a thread wake-up and a
cross-thread wake-up of the event loop. Here the cursor is a plain object and `execute` runs the statement,
fetches its rows and closes the sqlite3 cursor in one call on the connection's thread; the rows wait in memory
(SQLAlchemy reads every row of a statement anyway). Measured: ~15–35 % less CPU per statement
(benchmarks/PROFILE.md). The connection itself is aiosqlite's, so transactions, pragmas and closing work as
before.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

_Result = tuple[Any, int, int | None, list[Any]]
T = TypeVar("T")


def _run(conn: sqlite3.Connection, many: bool, sql: str, params: Any) -> _Result:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        elif params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor:
    """The cursor interface SQLAlchemy's aiosqlite adapter uses, one thread hand-off per execute."""

    arraysize = 1

    def __init__(self, connection: OneHopConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:
        return self._took(await self._connection.on_thread(_run, False, sql, parameters))

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> OneHopCursor:
        return self._took(await self._connection.on_thread(_run, True, sql, parameters))

    def _took(self, result: _Result) -> OneHopCursor:
        self.description, self.rowcount, self.lastrowid, self._rows = result
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def close(self) -> None:
        self._rows = []


class OneHopConnection(aiosqlite.Connection):
    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)

    async def rollback(self) -> None:
        # The pool rolls back every connection it is given back; with nothing begun that is a no-op, and not
        # worth a hand-off to the thread (a read of sqlite3's own flag; nothing else runs on it meanwhile).
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()

    async def on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(sqlite3_connection, *args)` on the connection's thread."""
        result: T = await self._execute(fn, self._conn, *args)  # type: ignore[no-untyped-call]
        return result


def connector(path: str) -> Any:
    """An `async_creator` for create_async_engine: a OneHopConnection on `path`."""

    async def connect() -> OneHopConnection:
        # The same arguments SQLAlchemy's pysqlite dialect gives sqlite3 for a file URL; transaction control is
        # taken over in the engine's connect event (isolation_level None, BEGIN said by us).
        factory = functools.partial(sqlite3.connect, path, check_same_thread=False)
        connection = await OneHopConnection(factory, iter_chunk_size=64)
        assert isinstance(connection, OneHopConnection)
        return connection

    return connect
