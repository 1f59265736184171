"""The floor under the daemon's CPU per order: what one statement and one transaction cost through the
store's own stack (SQLAlchemy Core, async), with no fulfil code around them.

    python -m benchmarks.sql_floor                      # SQLite (aiosqlite and the one-hand-off driver)
    python -m benchmarks.sql_floor --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test

For each: CPU µs (this process's utime+stime; the SQLite connection's thread included) per UPDATE ...
RETURNING built on every call, the same statement built once with bound parameters, and one short write
transaction (pool checkout, BEGIN, that statement, COMMIT). The happy path runs ~10 statements in ~3.3
transactions per order, so statements × the prebuilt figure + transactions × the transaction figure is the
part of an order's CPU no change inside fulfil's engine can remove.

With `--pg-url`, also the hot path's own driver on PostgreSQL (asyncpg, `fulfil/storage/pg_connections.py`):
one round trip of a prepared statement and one BEGIN + COMMIT pair, on eight connections at once as the daemon
keeps them, user and system CPU apart (the kernel's loopback TCP is most of a round trip's cost); and a
transaction of four statements through fulfil's own layer (`Direct.run`) beside the same on bare asyncpg.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, literal_column, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fulfil.storage import sqlite_driver
from fulfil.storage.direct import Direct, Script, Step

meta = MetaData()
rows = Table("floor_rows", meta, Column("id", Integer, primary_key=True), Column("a", String), Column("c", String))


async def measure(engine: AsyncEngine, n: int) -> dict[str, float]:
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
        await conn.execute(insert(rows), [{"id": i, "a": "x", "c": "y"} for i in range(1, 101)])
    prebuilt = (
        update(rows)
        .where(rows.c.id == bindparam("k"), rows.c.c == bindparam("cc"))
        .values(a=bindparam("aa"))
        .returning(rows.c.id)
    )
    out: dict[str, float] = {}

    async def built(conn: Any, i: int) -> None:
        await conn.execute(
            update(rows).where(rows.c.id == i % 100 + 1, rows.c.c == "y").values(a="z").returning(rows.c.id)
        )

    async def bound(conn: Any, i: int) -> None:
        await conn.execute(prebuilt, {"k": i % 100 + 1, "cc": "y", "aa": "z"})

    for name, run in (("statement_built_us", built), ("statement_prebuilt_us", bound)):
        start = time.process_time()
        async with engine.connect() as conn, conn.begin():
            for i in range(n):
                await run(conn, i)
        out[name] = (time.process_time() - start) / n * 1e6
    start = time.process_time()
    for i in range(n // 4):
        async with engine.connect() as conn, conn.begin():
            await bound(conn, i)
    out["transaction_us"] = (time.process_time() - start) / (n // 4) * 1e6
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
    return out


async def _cpu_per_call(
    name: str, run: Callable[[int], Awaitable[None]], callers: int, rounds: int
) -> dict[str, float]:
    """`{name}_user_us` and `{name}_sys_us`: this process's CPU per call of `run(i)`, `callers` of them at
    once (i = 0 .. callers-1), `rounds` calls each."""

    async def loop(i: int) -> None:
        for _ in range(rounds):
            await run(i)

    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(loop(i) for i in range(callers)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    calls = rounds * callers
    return {
        f"{name}_user_us": (after.ru_utime - before.ru_utime) / calls * 1e6,
        f"{name}_sys_us": (after.ru_stime - before.ru_stime) / calls * 1e6,
    }


async def measure_asyncpg(url: str, n: int, connections: int = 8) -> dict[str, float]:
    """CPU µs (user, system) of one asyncpg round trip, and of a BEGIN + COMMIT pair, `connections` at once."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conns = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(connections)]
    try:
        statements = [await conn.prepare("SELECT $1::int + 1", name="floor") for conn in conns]

        async def statement(i: int) -> None:
            await statements[i].fetch(i)

        async def control(i: int) -> None:
            await conns[i].execute("BEGIN")
            await conns[i].execute("COMMIT")

        out: dict[str, float] = {}
        for name, run in (("asyncpg_round_trip", statement), ("asyncpg_begin_commit", control)):
            out.update(await _cpu_per_call(name, run, connections, n // connections))
        return out
    finally:
        for conn in conns:
            await conn.close()


async def measure_direct(url: str, n: int, per_transaction: int = 4, connections: int = 8) -> dict[str, float]:
    """CPU µs (user, system) of one transaction of `per_transaction` statements, `connections` at once: through
    fulfil's own layer (`Direct.run`: a script, its statements prepared once, rows read into dicts) and the
    same round trips on bare asyncpg (BEGIN, the statements, COMMIT). The difference is what the layer adds."""
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    direct = Direct(engine, "postgresql")
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conns = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(connections)]
    try:
        await direct.warm(every=True)
        expression = (bindparam("v", type_=Integer) + literal_column("1")).label("n")  # one parameter, as bare
        plus_one = direct.prepared("floor", lambda: select(expression))
        bare = [await conn.prepare(plus_one.sql, name="floor_direct") for conn in conns]

        def script(i: int) -> Script:
            for step in range(per_transaction):
                yield Step(plus_one, {"v": i + step})

        async def through_direct(i: int) -> None:
            await direct.run(script(i))

        async def on_asyncpg(i: int) -> None:
            await conns[i].execute("BEGIN")
            for step in range(per_transaction):
                await bare[i].fetch(i + step)
            await conns[i].execute("COMMIT")

        out: dict[str, float] = {}
        for name, run in (("direct_transaction", through_direct), ("asyncpg_transaction", on_asyncpg)):
            out.update(await _cpu_per_call(name, run, connections, n // per_transaction // connections))
        return out
    finally:
        for conn in conns:
            await conn.close()
        await direct.close()
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--pg-url", help="also measure PostgreSQL (a table floor_rows is made and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "floor.db")
        engines = {
            "sqlite aiosqlite": create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=2, max_overflow=0),
            "sqlite one-hop": create_async_engine(
                f"sqlite+aiosqlite:///{path}", pool_size=2, max_overflow=0, async_creator=sqlite_driver.connector(path)
            ),
        }
        if args.pg_url:
            engines["postgresql psycopg"] = create_async_engine(args.pg_url, pool_size=2, max_overflow=0)
        for name, engine in engines.items():
            try:
                figures = await measure(engine, args.statements)
            finally:
                await engine.dispose()
            print(f"{name:20} " + " | ".join(f"{k} {v:.0f}" for k, v in figures.items()))
        if args.pg_url:
            figures = await measure_asyncpg(args.pg_url, args.statements)
            print(f"{'postgresql asyncpg':20} " + " | ".join(f"{k} {v:.0f}" for k, v in figures.items()))
            figures = await measure_direct(args.pg_url, args.statements)
            print(f"{'postgresql direct':20} " + " | ".join(f"{k} {v:.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    asyncio.run(main())
