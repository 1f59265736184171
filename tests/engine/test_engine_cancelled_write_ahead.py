"""An order's work cancelled while its write-ahead attempt is being written (a shutdown past its timeout, a lost
lease), on SQLite and PostgreSQL, with a real store whose write is held up by a lock the test holds.

The write may still land after the cancel: PostgreSQL's one INSERT was sent whole and the server finishes it,
SQLite's group commits it with the others. Left `sent`, the next owner would ask the supplier about a purchase
that never left, and a supplier that cannot be asked would make it a claim or a case for a person. The engine
lets the write end and marks the attempt failed, never sent; the next owner buys once, at once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from enginekit import FakeSupplier, LeaseStub, ok
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from test_engine_crash import two
from test_engine_receipts import give_back

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptRecord, AttemptState, OrderStatus
from fulfil.storage import Store
from fulfil.storage.database import parse_url


class HeldUp(Store):
    """The real store; `open_attempt` says when it is called and waits for the test to let it go on."""

    entered: asyncio.Event
    gate: asyncio.Event

    async def open_attempt(self, *args: Any, **kwargs: Any) -> AttemptRecord:
        HeldUp.entered.set()
        await HeldUp.gate.wait()
        return await super().open_attempt(*args, **kwargs)


@contextlib.asynccontextmanager
async def order_locked(db_url: str, order_id: int) -> AsyncIterator[None]:
    """Hold what the attempt's write needs: the order's row (PostgreSQL), the database's write lock (SQLite)."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    engine = create_async_engine(parse_url(db_url)[1], poolclass=NullPool)
    try:
        async with engine.connect() as locker:
            await locker.execute(text(f"SELECT id FROM orders WHERE id = {order_id} FOR UPDATE"))
            yield
            await locker.rollback()
    finally:
        await engine.dispose()


async def test_an_attempt_written_after_its_work_was_cancelled_is_marked_never_sent(
    db_url: str, cipher: CardCipher
) -> None:
    HeldUp.entered, HeldUp.gate = asyncio.Event(), asyncio.Event()
    await asyncio.to_thread(Store.upgrade, db_url)
    store = await HeldUp.open(db_url, cipher)
    try:
        main = FakeSupplier("main", place_steps=[ok])
        backup = FakeSupplier("backup", place_steps=[ok])
        first = two(store, cipher, main, backup)
        await first.add()
        order = await first.claim()
        assert order is not None
        work = asyncio.create_task(first.engine.process(order, LeaseStub(first.owner)))
        await asyncio.wait_for(HeldUp.entered.wait(), 30)
        async with order_locked(db_url, order.id):
            HeldUp.gate.set()
            await asyncio.sleep(0.5)  # the write waits for our lock
            assert not work.done()
            work.cancel()
            await asyncio.sleep(0.3)
            assert not work.done(), "the write is let end"
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(work, 30)

        (attempt,) = await store.attempts_for_order(order.id)
        assert (attempt.state, attempt.error_class) == (AttemptState.FAILED, "transient"), "never sent"
        assert "not sent" in attempt.evidence["message"]
        assert main.calls == [] and backup.calls == []

        await give_back(store)
        successor = two(store, cipher, main, backup)
        successor.owner = "successor"
        view = await successor.run()
        assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 1
        assert main.charged_units + backup.charged_units == 1 and view.claims == ()
        assert [c[0] for c in main.calls + backup.calls] == ["place"], "bought at once, nothing asked"
    finally:
        await store.close()
