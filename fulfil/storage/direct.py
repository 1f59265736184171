"""Direct transactions: the hot path's writes run on the driver itself, one thread hand-off per transaction.

Through SQLAlchemy's execution every statement pays its machinery (parameters, cache keys, result objects, the
greenlet bridge) and, on SQLite, a hand-off to the connection's thread; ten statements an order made that the
largest share of the daemon's CPU (benchmarks/PROFILE.md). Here a transaction is a *script*: a generator that
yields the statements it runs and receives their rows. On SQLite the whole script runs inside one call on the
connection's thread (BEGIN IMMEDIATE ... COMMIT); on PostgreSQL it runs over an asyncpg connection of its own.
The statements are still SQLAlchemy Core, compiled once per dialect, and their values are bound and read by
the same column types, so a row written here reads back through the rest of the store exactly as before.

The connections are the direct path's own (SQLite: one writer; PostgreSQL: a few, kept open), and the
commit is where it was: nothing about what is durable when changes, only how many layers the statements cross.
A script answers `FALL_BACK` (before writing anything) when a rare case needs the store's general code.
On PostgreSQL `each` runs a script with no BEGIN/COMMIT around it, each statement its own transaction: for
the worker's claim and a batch's reads, and for the three writes of an order that are each one statement (the
write-ahead attempt, the receipt, the delivery: statements.py), which makes them one round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import asyncpg
from sqlalchemy import Dialect
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from fulfil.storage import database, sqlite_driver
from fulfil.storage.errors import Conflict, StoreError
from fulfil.storage.pg_connections import DRIVER_ERRORS, PgConnection, PgConnections
from fulfil.storage.sqlite_driver import OneHopConnection

Row = dict[str, Any]
# The hot path's own PostgreSQL connections per store (beside the engine's pool: database.create_store_engine).
PG_CONNECTIONS: Final = 8


class Prepared:
    """A Core statement compiled once for a dialect: its SQL, how to bind its parameters, how to read its rows."""

    def __init__(self, stmt: Any, dialect: Dialect, *, keys: Sequence[str] | None = None) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.sql: str = compiled.string
        self.text = " ".join(self.sql.split())[:100]  # as FULFIL_SQL_COUNT reports statements
        self._positional = compiled.positiontup is not None
        binds = {name: bind for bind, name in compiled.bind_names.items()}  # by the name the SQL gives them
        names = list(compiled.positiontup) if self._positional else list(binds)
        # Values fixed in the statement (a literal, a compared constant) are bound from here.
        fixed = compiled.construct_params(_check=False)
        self._fixed = {name: fixed[name] for name in names if not binds[name].required}
        self._names = names
        self._bind = [(name, _bind_processor(binds[name].type, dialect)) for name in names]
        self._columns = list(getattr(stmt, "exported_columns", ()) or ())
        self.columns = [column.key for column in self._columns]
        self._dialect = dialect
        self._read: list[Any] | None = None  # made from the first result's description (the driver's types)

    def params(self, values: Mapping[str, Any]) -> Any:
        if self._fixed:
            values = {**self._fixed, **values}
        try:
            bound = [(name, proc(values[name]) if proc else values[name]) for name, proc in self._bind]
        except (ValueError, TypeError) as exc:  # as SQLAlchemy's StatementError: a value the column cannot take
            raise StoreError(f"cannot store a value: {exc}") from exc
        return tuple(value for _, value in bound) if self._positional else dict(bound)

    def rows(self, raw: Sequence[Iterable[Any]], description: Sequence[Sequence[Any]]) -> list[Row]:
        read = self._read
        if read is None:
            dialect = self._dialect
            read = self._read = [
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(self._columns, description, strict=True)
            ]
        names = self.columns
        return [
            {name: proc(value) if proc else value for name, proc, value in zip(names, read, row, strict=True)}
            for row in raw
        ]


def _bind_processor(type_: Any, dialect: Dialect) -> Any:
    return type_.dialect_impl(dialect).bind_processor(dialect)


class Step:
    """One statement of a script: `params` one mapping (rows come back), or with `many` a list of them."""

    __slots__ = ("prepared", "params", "many")

    def __init__(self, prepared: Prepared, params: Any, *, many: bool = False) -> None:
        self.prepared = prepared
        self.params = params
        self.many = many


Script = Generator[Step, list[Row], Any]
FALL_BACK: Final = object()


def _run_sqlite(conn: sqlite3.Connection, script: Script) -> tuple[Any, list[str]]:
    """On the connection's thread: the whole transaction. Returns the script's answer and the texts it ran."""
    ran: list[str] = []
    conn.execute("BEGIN IMMEDIATE")  # a writer takes the lock up front, as every write transaction here
    try:
        answer = _steps(conn, script, ran)
    except BaseException:
        if conn.in_transaction:  # SQLite itself rolls back on some errors (a full disk, an I/O error)
            conn.execute("ROLLBACK")
        raise
    if answer is FALL_BACK:
        conn.execute("ROLLBACK")
    else:
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return answer, ran


def _steps(conn: sqlite3.Connection, script: Script, ran: list[str]) -> Any:
    """Run the script's statements in the open transaction (each text onto `ran`); its answer."""
    try:
        step = next(script)
        while True:
            prepared = step.prepared
            ran.append(prepared.text)
            if step.many:
                conn.executemany(prepared.sql, [prepared.params(p) for p in step.params])
                rows: list[Row] = []
            else:
                cursor = conn.execute(prepared.sql, prepared.params(step.params))
                rows = prepared.rows(cursor.fetchall(), cursor.description) if cursor.description else []
                cursor.close()
            step = script.send(rows)
    except StopIteration as done:
        return done.value


class _Done:
    """What became of one script of a group: its answer, or the error it (or the group's commit) ended in."""

    __slots__ = ("answer", "error", "ran")

    def __init__(self, ran: list[str], answer: Any = None, error: BaseException | None = None) -> None:
        self.ran = ran
        self.answer = answer
        self.error = error


def _run_sqlite_group(conn: sqlite3.Connection, scripts: Sequence[Script]) -> list[_Done]:
    """On the connection's thread: several scripts in one transaction, each inside a savepoint, one COMMIT.

    A script that raises or falls back is rolled back to its savepoint alone; the others stay. Nobody has been
    told anything before the COMMIT returns, so a crash, or a COMMIT that fails, loses the group whole and
    every script of it reports the failure: what each caller learns is still exactly what is durable."""
    done: list[_Done] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for script in scripts:
            ran: list[str] = []
            conn.execute("SAVEPOINT direct")
            try:
                answer = _steps(conn, script, ran)
            except BaseException as exc:
                if not conn.in_transaction:  # SQLite rolled the whole transaction back (full disk, I/O error)
                    raise
                conn.execute("ROLLBACK TO direct")
                conn.execute("RELEASE direct")
                done.append(_Done(ran, error=exc))
                continue
            if answer is FALL_BACK:
                conn.execute("ROLLBACK TO direct")
            conn.execute("RELEASE direct")
            done.append(_Done(ran, answer=answer))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise  # every script of the group fails with it: none of them is written
    return done


async def _run_postgresql(pg: PgConnection, script: Script) -> tuple[Any, list[str]]:
    """BEGIN, the script's statements, COMMIT, over one of the hot path's asyncpg connections."""
    ran: list[str] = []
    try:
        await pg.execute("BEGIN")
        answer = await _pg_steps(pg, script, ran, transaction=True)
    except BaseException:
        await _roll_back(pg)
        raise
    if answer is FALL_BACK:
        await _roll_back(pg)
        return answer, ran
    status = await pg.execute("COMMIT")
    if status != "COMMIT":  # the server answers an aborted transaction's COMMIT with ROLLBACK, not an error
        raise StoreError(f"database error: the transaction was rolled back at its COMMIT ({status})")
    return answer, ran


async def _pg_steps(pg: PgConnection, script: Script, ran: list[str], *, transaction: bool) -> Any:
    """Run the script's statements on `pg` (each text onto `ran`); its answer. Outside a transaction a step
    of many rows is refused: they would be as many transactions, not what a script means by it."""
    try:
        step = next(script)
        while True:
            prepared = step.prepared
            rows: list[Row] = []
            if step.many:
                if not transaction:
                    raise ValueError(f"each: {prepared.text!r} with many rows needs a transaction (Direct.run)")
                ran.append(prepared.text)
                await pg.executemany(prepared.sql, [prepared.params(p) for p in step.params])
            else:
                ran.append(prepared.text)
                records, description = await pg.fetch(prepared.sql, prepared.params(step.params))
                if prepared.columns:
                    rows = _read(prepared, records, description)
            step = script.send(rows)
    except StopIteration as done:
        return done.value


def _read(prepared: Prepared, records: Sequence[Iterable[Any]], description: Sequence[Sequence[Any]]) -> list[Row]:
    try:
        return prepared.rows(records, description)
    except (ValueError, TypeError) as exc:  # a value its column type cannot read: the store's error, not a crash
        raise StoreError(f"database error: cannot read a row of {prepared.text!r}: {exc}") from exc


async def _roll_back(pg: PgConnection) -> None:
    """ROLLBACK when the connection is still to be trusted; one that is not is closed by the connections
    instead (the server rolls back what a closed session had open)."""
    if pg.spoiled or pg.conn.is_closed() or not pg.conn.is_in_transaction():
        return
    with contextlib.suppress(*DRIVER_ERRORS):  # then spoiled, and closed
        await pg.execute("ROLLBACK")


def _set_up_sqlite(conn: sqlite3.Connection, pragmas: list[str]) -> None:
    conn.isolation_level = None  # transaction control is ours: BEGIN IMMEDIATE ... COMMIT in `_run_sqlite`
    for pragma in pragmas:
        conn.execute(pragma).close()


class _Queued:
    __slots__ = ("script", "future")

    def __init__(self, script: Script, future: asyncio.Future[tuple[Any, list[str]]]) -> None:
        self.script = script
        self.future = future


class _SqliteWriter:
    """The direct path's own SQLite connection, kept open: its scripts queue on its one thread, with no pool
    checkout per transaction. Beside the engine's two (claims, reads, the rest); writers of all three take
    the database's lock with BEGIN IMMEDIATE and wait for each other on busy_timeout, as before.

    Group commit: scripts that arrive while a transaction runs on the thread wait, and all of them go together
    in the next one (`_run_sqlite_group`): one COMMIT, one fsync, one hand-off to the thread for the lot. Nothing
    waits for company: a script alone goes at once, in a transaction of its own."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: OneHopConnection | None = None
        self._opening = asyncio.Lock()
        self._queued: list[_Queued] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, script: Script) -> tuple[Any, list[str]]:
        """Run the script in the next transaction on the thread; its answer and the texts it ran, once that
        transaction committed (or the error it ended in)."""
        conn = await self.connection()
        queued = _Queued(script, asyncio.get_running_loop().create_future())
        self._queued.append(queued)
        if self._draining is None:
            # A task of its own, not the caller's: a caller cancelled while its group runs leaves the others'
            # answers to be delivered all the same.
            self._draining = asyncio.create_task(self._drain(conn))
        return await queued.future

    async def _drain(self, conn: OneHopConnection) -> None:
        try:
            while self._queued:
                group, self._queued = self._queued, []
                try:
                    if len(group) == 1:
                        answer, ran = await conn.on_thread(_run_sqlite, group[0].script)
                        done = [_Done(ran, answer=answer)]
                    else:
                        done = await conn.on_thread(_run_sqlite_group, [q.script for q in group])
                        database.count_group(len(group))
                except BaseException as exc:  # the transaction failed whole: none of its scripts is written
                    for queued in group:
                        _settle(queued.future, _Done([], error=exc))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for queued, result in zip(group, done, strict=True):
                    _settle(queued.future, result)
        finally:
            self._draining = None

    async def connection(self) -> OneHopConnection:
        if self._conn is None:
            async with self._opening:
                if self._conn is None:
                    conn = await sqlite_driver.connector(self._path)()
                    await conn.on_thread(_set_up_sqlite, database.sqlite_pragmas())
                    database.count_connect()
                    self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._draining is not None:
            await asyncio.wait([self._draining])
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _settle(future: asyncio.Future[tuple[Any, list[str]]], done: _Done) -> None:
    if future.done():  # its caller was cancelled: the answer has nobody to go to
        return
    if isinstance(done.error, asyncio.CancelledError):
        future.cancel()
    elif done.error is not None:
        future.set_exception(done.error)
    else:
        future.set_result((done.answer, done.ran))


class Direct:
    """Runs scripts on the hot path's own connections (SQLite's writer, PostgreSQL's asyncpg ones); builds each
    statement once."""

    def __init__(self, engine: AsyncEngine, dialect: str) -> None:
        self._engine = engine
        self.dialect = dialect
        self._pg: PgConnections | None = None
        self._sqlite: _SqliteWriter | None = None
        # The dialect the statements are compiled for: the driver that runs them ($1 parameters for asyncpg).
        self._dialect: Dialect = engine.dialect
        if dialect == "sqlite":
            assert engine.url.database is not None
            self._sqlite = _SqliteWriter(str(Path(engine.url.database).expanduser()))
        else:
            self._pg = PgConnections(engine.url, PG_CONNECTIONS)
            self._dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        self._prepared: dict[Any, Prepared] = {}
        # Engine events do not see these statements: who counts them is told here (texts run, committed).
        self._watchers: list[Callable[[list[str], bool], None]] = [database.count_direct]

    def watch(self, watcher: Callable[[list[str], bool], None]) -> None:
        self._watchers.append(watcher)

    def prepared(self, key: Any, build: Any, *, keys: Sequence[str] | None = None) -> Prepared:
        """The statement `build()` compiled for this engine, once per `key`."""
        found = self._prepared.get(key)
        if found is None:
            found = self._prepared[key] = Prepared(build(), self._dialect, keys=keys)
        return found

    @property
    def postgresql(self) -> bool:
        """Whether `each` is there: PostgreSQL's hot-path connections."""
        return self._pg is not None

    async def each(self, script: Script) -> Any:
        """PostgreSQL: run the script with each statement its own transaction, no BEGIN or COMMIT (two round
        trips fewer). Only for reads (at READ COMMITTED a transaction would not make them one snapshot
        either) and for a write that is one statement; errors as `run`."""
        assert self._pg is not None, "each: PostgreSQL's hot path only"
        return await self.run(script, transaction=False)

    async def run(self, script: Script, *, transaction: bool = True) -> Any:
        """Run the script as one write transaction; its answer, or FALL_BACK (rolled back, nothing written).

        A constraint refusing a write: Conflict; any other database error: StoreError (rolled back either way)."""
        each: list[str] = []  # without a transaction: the statements run, each committed on its own
        try:
            if self._pg is not None:
                pg = await self._pg.acquire()
                try:
                    if transaction:
                        answer, ran = await _run_postgresql(pg, script)
                    else:
                        answer = await _pg_steps(pg, script, each, transaction=False)
                finally:
                    self._pg.release(pg)
            else:
                assert self._sqlite is not None
                answer, ran = await self._sqlite.run(script)
        except (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError) as exc:
            each[-1:] = []  # the statement refused was not committed
            raise Conflict(f"write refused by a constraint: {exc}") from exc
        except (sqlite3.Error, *DRIVER_ERRORS, DBAPIError) as exc:
            each[-1:] = []
            raise StoreError(f"database error: {exc}") from exc
        except StatementError as exc:
            raise StoreError(f"cannot store a value: {exc.orig}") from exc
        finally:
            for text in each:  # also when the script raised after them (LeaseLost, NotFound): they ran
                for watcher in self._watchers:
                    watcher([text], True)
        if transaction:
            for watcher in self._watchers:
                watcher(ran, answer is not FALL_BACK)
        return answer

    async def warm(self, *, every: bool = False) -> None:
        """PostgreSQL: open one hot-path connection now, so a database it cannot use fails the start; with
        `every`, all of them (a daemon about to serve)."""
        if self._pg is not None:
            await self._pg.warm(PG_CONNECTIONS if every else 1)
        elif every:
            assert self._sqlite is not None
            await self._sqlite.connection()  # the writer

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._sqlite is not None:
            await self._sqlite.close()
