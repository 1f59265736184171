"""Connections to a shop's MySQL/MariaDB database, and its failures turned into `ShopUnavailable`/`ShopRefused`.

Shared by the built-in sources (the SQL itself lives in each source's module, as a supplier's HTTP lives in its
adapter). The driver is asyncmy (`pip install 'fulfil[shops]'`); a URL may say `mysql://`, `mysql+asyncmy://` or
`mariadb://`. Each connection works in UTC (`time_zone = '+00:00'`), so a timestamp fulfil writes and later
compares means the same instant whatever the server's zone. Every operation runs under the source's `timeout`:
a shop database that hangs counts as unavailable, never as a stuck poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import column, func, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from fulfil.sources.base import Check, ShopRefused, ShopUnavailable, SourceError

SCHEMES = ("mysql", "mariadb")
# MySQL error codes that mean "refused": a privilege, a table or column missing (an operator can fix them) ...
_REFUSED = {1044: "access denied", 1045: "access denied", 1142: "command denied", 1143: "column denied",
            1146: "no such table", 1054: "unknown column", 1049: "unknown database"}  # fmt: skip
# ... and values the shop will not store, which asking again will not change.
_LASTING = {1406: "value too long for its column", 1366: "a value the column's character set cannot hold",
            1264: "value out of range"}  # fmt: skip


def shop_engine(url: str, timeout: float) -> AsyncEngine:
    """An engine for one shop: a small pool (a source polls one statement at a time), checked before use."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ShopRefused(f"url is not a database URL: {exc}") from None
    if parsed.get_backend_name() not in SCHEMES:
        raise ShopRefused(f"url: a shop database is MySQL or MariaDB, not {parsed.get_backend_name()!r}")
    parsed = parsed.set(drivername="mysql+asyncmy")
    if "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    try:
        import asyncmy  # noqa: F401  (a clear message instead of SQLAlchemy's when the extra is missing)
    except ImportError:
        raise ShopRefused("the MySQL driver is not installed: pip install 'fulfil[shops]' (asyncmy)") from None
    return create_async_engine(
        parsed,
        pool_size=2,
        max_overflow=2,
        pool_timeout=timeout,
        pool_pre_ping=True,
        pool_recycle=600,
        connect_args={"connect_timeout": max(1, int(timeout)), "init_command": "SET time_zone = '+00:00'"},
    )


def describe(exc: BaseException) -> str:
    """A driver error as one line for people: the code and the server's message, never the statement or its
    values (they may hold keys)."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if code == 1366:  # the message quotes the value's bytes
        return f"({code}) {_LASTING[code]}"
    message = str(args[1]) if code is not None and len(args) > 1 else str(orig)
    message = re.sub(r"\s+", " ", message).strip()[:300] or type(orig).__name__
    return f"({code}) {message}" if code is not None else message


def translate(exc: BaseException) -> SourceError:
    """A failure at the shop as fulfil's own kind: refused (a statement) or unavailable (everything else)."""
    if isinstance(exc, SourceError):
        return exc
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if code in _LASTING:
        return ShopRefused(describe(exc), lasting=True)
    if code in _REFUSED:
        return ShopRefused(describe(exc))
    if isinstance(exc, DBAPIError) and not isinstance(exc, _UNAVAILABLE_DBAPI) and code is not None:
        return ShopRefused(describe(exc))
    return ShopUnavailable(describe(exc))


def _unavailable_kinds() -> tuple[type[DBAPIError], ...]:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


_UNAVAILABLE_DBAPI = _unavailable_kinds()


@contextlib.asynccontextmanager
async def shop_connection(
    engine: AsyncEngine, timeout: float, *, write: bool = False
) -> AsyncIterator[AsyncConnection]:
    """One transaction at the shop under `timeout`; driver errors come out as `ShopUnavailable`/`ShopRefused`.

    Committed on a clean exit, rolled back otherwise. A transaction cut off mid-way (a timeout, a dropped
    connection, a kill) is rolled back by the server: it never half-happened."""
    try:
        async with asyncio.timeout(timeout), engine.connect() as conn, conn.begin():
            yield conn
    except TimeoutError:
        raise ShopUnavailable(f"the shop's database did not answer within {timeout:g}s") from None
    except (SQLAlchemyError, OSError) as exc:
        if isinstance(exc, PoolTimeout):
            raise ShopUnavailable("no connection to the shop's database came free in time") from None
        raise translate(exc) from None


async def table_columns(conn: AsyncConnection, name: str) -> set[str]:
    """The columns of a table in the connection's database that this user may see (none: no such table)."""
    stmt: Any = (
        select(column("COLUMN_NAME"))
        .select_from(table("COLUMNS", schema="information_schema"))
        .where(column("TABLE_SCHEMA") == func.database(), column("TABLE_NAME") == name)
    )
    return {str(name) for name in (await conn.execute(stmt)).scalars()}


def column_check(name: str, found: set[str], wanted: tuple[str, ...]) -> Check:
    missing = [c for c in wanted if c not in found]
    if not found:
        return Check(False, f"table {name}: not found (or no privilege on it)")
    if missing:
        return Check(False, f"table {name}: missing column(s) {', '.join(missing)}")
    return Check(True, f"table {name}: the {len(wanted)} columns fulfil uses are there")


def rows_changed(result: Any) -> int:
    """Rows an UPDATE matched (SQLAlchemy's MySQL dialects count matched rows, not only changed ones)."""
    return int(result.rowcount)
