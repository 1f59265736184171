"""The hot path's own PostgreSQL connections (fulfil/storage/pg_connections.py, asyncpg): a connection whose
state is unknown is never used again, a statement the server no longer accepts fails one transaction (not every
one after it, and never with rows of another shape), and the database URL's libpq options are sorted out at
start, not at the first order."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, Order
from fulfil.storage import Store
from fulfil.storage.errors import StoreError
from fulfil.storage.pg_connections import PgConnections, connect_args

OWNER = "w1"


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[Store]:
    """A store on a fresh schema of its own: these tests change tables and end sessions under it."""
    await asyncio.to_thread(Store.upgrade, pg_url)
    store = await Store.open(pg_url, CardCipher(os.urandom(32)))
    try:
        yield store
    finally:
        await store.close()


def _pool(store: Store) -> PgConnections:
    pool = store._direct._pg  # noqa: SLF001 - the connections under test
    assert pool is not None
    return pool


async def _claimed(store: Store, now: datetime, ref: str = "pg-1") -> Order:
    await store.add_order(NewOrder(ref, "steam-100", 1), now)
    (order,) = await store.claim_orders(OWNER, 10, 60, now)
    return order


async def test_a_connection_the_server_dropped_is_replaced(pg_store: Store, now: datetime) -> None:
    """Not pinged before use: a dropped one fails the transaction it was given (rolled back, a StoreError the
    engine retries) and is closed; the next one opens a fresh one."""
    store = pg_store
    order = await _claimed(store, now)
    pool = _pool(store)
    assert len(pool._idle) == 1, "Store.open opened one"  # noqa: SLF001
    await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now)
    assert len(pool._idle) == 1, "and the attempt used it"  # noqa: SLF001
    pid = pool._idle[0].conn.get_server_pid()  # noqa: SLF001
    async with store._write() as conn:  # noqa: SLF001 - the server drops that session, as on a restart
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    with pytest.raises(StoreError, match="database error"):
        await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now)
    assert pool._idle == []  # noqa: SLF001 - closed, not given back
    again = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now)
    attempts = await store.attempts_for_order(order.id)
    assert len(attempts) == 2 and attempts[-1].id == again.id, "the failed one wrote nothing"
    assert pool._idle[0].conn.get_server_pid() != pid  # noqa: SLF001


async def test_a_statement_a_migration_changed_fails_once_and_never_reads_another_shape(
    pg_store: Store, now: datetime
) -> None:
    """Prepared statements are named, so a column type changed under them (a migration while the daemon runs)
    makes the server refuse the next execution, one StoreError, instead of the driver decoding the new column
    with the old type (a bigint read as NUMERIC comes out as a wrong amount, silently); that connection is
    dropped and the next transaction prepares afresh."""
    store = pg_store
    order = await _claimed(store, now)
    await store.open_attempt(order.id, OWNER, "fulu", 0, 1, Decimal("9.90"), now)  # prepared: RETURNING cost
    async with store._write() as conn:  # noqa: SLF001
        await conn.execute(text("ALTER TABLE attempts ALTER COLUMN cost TYPE bigint USING round(cost)"))

    with pytest.raises(StoreError, match="database error"):
        await store.open_attempt(order.id, OWNER, "fulu", 0, 1, Decimal("985"), now)
    assert _pool(store)._idle == []  # noqa: SLF001 - that connection's statements are not trusted again
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, Decimal("985"), now)
    assert attempt.cost == Decimal("985")
    assert [a.cost for a in await store.attempts_for_order(order.id)] == [10, 985], "the refused one wrote nothing"


async def test_a_caller_cancelled_mid_statement_leaves_all_or_nothing_and_no_connection_in_doubt(
    pg_store: Store, now: datetime
) -> None:
    """The attempt's INSERT (one statement, its own transaction) waits on the order's row, locked elsewhere, and
    its caller is cancelled: the connection is not given back (its state is not known) and its slot is free. The
    statement was sent whole, so it is the server's to finish: once the row is free it is written whole or not
    at all, as when a daemon dies at that moment; the engine settles such an attempt before buying again. The
    next attempt goes through."""
    store = pg_store
    order = await _claimed(store, now)
    pool = _pool(store)
    async with store._write() as conn:  # noqa: SLF001 - someone else holds the order's row
        blocker = await conn.scalar(text("SELECT pg_backend_pid()"))
        await conn.execute(text(f"SELECT id FROM orders WHERE id = {order.id} FOR UPDATE"))
        opening = asyncio.create_task(store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now))
        async with asyncio.timeout(30):
            while not await _running(store, f"{blocker} = ANY(pg_blocking_pids(pid))"):  # noqa: ASYNC110
                assert not opening.done(), "the INSERT waits for the row"
                await asyncio.sleep(0.05)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert pool._idle == [], "not given back"  # noqa: SLF001
        assert pool._slots._value == pool._size, "its slot is free again"  # noqa: SLF001
    async with asyncio.timeout(30):
        while await _running(store, "state = 'active' AND query LIKE '%INSERT INTO attempts%'"):  # noqa: ASYNC110 - another session's statement
            await asyncio.sleep(0.05)  # the abandoned session's statement ends, one way or the other
    before = await store.attempts_for_order(order.id)
    assert len(before) <= 1 and all(a.number == f"F{store.install_id}{a.id:010d}" for a in before)
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now)
    assert [a.id for a in await store.attempts_for_order(order.id)] == [*(a.id for a in before), attempt.id]


async def _running(store: Store, where: str) -> bool:
    """Whether another session of this database is one `where` holds for (a condition on pg_stat_activity)."""
    async with store._read() as conn:  # noqa: SLF001
        mine = "pid <> pg_backend_pid() AND datname = current_database()"
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE {mine} AND {where}"
        return bool(await conn.scalar(text(sql)))


async def test_values_keep_their_scale_instant_and_bytes(pg_store: Store) -> None:
    """What asyncpg writes reads back through the engine (psycopg) unchanged: a Decimal's scale, a non-UTC
    instant with microseconds (as the same instant in UTC), keys as bytes."""
    store = pg_store
    at = datetime(2026, 11, 21, 20, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    order = await _claimed(store, at)
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, Decimal("9.850"), at, sent=True)
    again = await store.get_attempt(attempt.id)
    assert str(again.cost) == "9.850" and again.sent_at == at and again.sent_at.utcoffset() == timedelta(0)


def test_libpq_options_in_the_url_are_sorted_out() -> None:
    dsn, kwargs = connect_args(
        make_url(
            "postgresql+psycopg://u:p%40ss@db:5433/shop?connect_timeout=7&keepalives=1&keepalives_idle=30"
            "&fallback_application_name=fulfil&sslmode=require&options=-csearch_path%3Dx"
        )
    )
    assert kwargs == {"timeout": 7.0}
    parsed = make_url(dsn)
    assert (parsed.drivername, parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "postgresql",
        "u",
        "p@ss",
        "db",
        5433,
        "shop",
    )
    assert dict(parsed.query) == {
        "application_name": "fulfil",
        "sslmode": "require",
        "options": "-csearch_path=x",
    }
    with pytest.raises(StoreError, match="channel_binding, gssencmode is not supported"):
        connect_args(make_url("postgresql://db/shop?gssencmode=require&channel_binding=require"))
    with pytest.raises(StoreError, match="connect_timeout must be a number"):
        connect_args(make_url("postgresql://db/shop?connect_timeout=soon"))


async def test_a_url_the_hot_path_cannot_use_fails_the_start(pg_url: str) -> None:
    """An option libpq takes and asyncpg does not know (asyncpg sends it to the server as a setting, which the
    server refuses) fails Store.open, not every order after it."""
    await asyncio.to_thread(Store.upgrade, pg_url)
    with pytest.raises(StoreError, match="cannot connect"):
        await Store.open(f"{pg_url}&sslcrldir=/tmp", CardCipher(os.urandom(32)))


async def _idle_pids(store: Store, count: int, now: datetime) -> list[int]:
    """Open `count` hot-path connections at once and give them back idle; their server pids."""
    pool = _pool(store)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(pool.connection())
    assert len(pool._idle) >= count  # noqa: SLF001
    return [pg.conn.get_server_pid() for pg in pool._idle]  # noqa: SLF001


async def test_a_claim_over_a_dropped_connection_fails_once_claims_nothing_and_the_next_one_works(
    pg_store: Store, now: datetime
) -> None:
    """The claim is one statement on the hot path's connections, no BEGIN: a server restart (every session
    ended) costs one failed claim, not one per idle connection, and claims nothing; the next claim takes the
    order."""
    store = pg_store
    added = await store.add_order(NewOrder("pg-9", "steam-100", 1), now)
    pids = await _idle_pids(store, 3, now)
    async with store._write() as conn:  # noqa: SLF001 - the server ends those sessions, as on a restart
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.sleep(0.2)  # the sessions are gone before the next claim
    with pytest.raises(StoreError, match="database error"):
        await store.claim_orders(OWNER, 10, 60, now)
    assert _pool(store)._idle == [], "the other idle ones were dropped with it"  # noqa: SLF001
    view = await store.get_order("pg-9")
    assert view is not None and view.order.status.value == "pending", "nothing was claimed"
    (order,) = await store.claim_orders(OWNER, 10, 60, now)
    assert order.id == added.order_id and order.lease_owner == OWNER
    contexts, _ = await store.work_contexts([order.id], now)  # the batch's reads on a fresh connection too
    assert contexts[order.id].attempts == ()


async def test_the_claim_and_the_batch_reads_count_as_their_own_transactions(pg_store: Store, now: datetime) -> None:
    seen: list[tuple[int, bool]] = []
    pg_store._direct.watch(lambda texts, committed: seen.append((len(texts), committed)))  # noqa: SLF001
    order = await _claimed(pg_store, now)
    await pg_store.work_contexts([order.id], now)
    assert seen == [(1, True)] * 4, "the claim, then the risk check, the attempts and the cool-downs"


async def test_a_daemon_opens_its_connections_before_serving(pg_store: Store, now: datetime) -> None:
    """`fulfil run` warms the pools: every hot-path connection and two of the engine's are open before the first
    order, so load never opens one (the benchmark's steady-state count)."""
    from fulfil.storage.direct import PG_CONNECTIONS

    await pg_store.warm_pools()
    pool = _pool(pg_store)
    assert len(pool._idle) == PG_CONNECTIONS  # noqa: SLF001
    assert len({pg.conn.get_server_pid() for pg in pool._idle}) == PG_CONNECTIONS  # noqa: SLF001
    assert pg_store._engine.pool.checkedin() >= 2  # type: ignore[attr-defined]  # noqa: SLF001
    before = [pg.conn.get_server_pid() for pg in pool._idle]  # noqa: SLF001
    order = await _claimed(pg_store, now)
    await pg_store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now)
    assert sorted(pg.conn.get_server_pid() for pg in pool._idle) == sorted(before), "no new one"  # noqa: SLF001
