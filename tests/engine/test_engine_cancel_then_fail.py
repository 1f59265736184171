"""An order's work cancelled (a shutdown past its timeout, a lost lease) while one of its money writes is running,
and that write then fails: the task ends cancelled, never with the write's error, and the books say what was
written. The write-ahead attempt and the receipt, on SQLite and PostgreSQL with the real store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from enginekit import FakeSupplier, LeaseStub, books, ok
from test_engine_crash import two
from test_engine_receipts import give_back

from fulfil import engine as engine_module
from fulfil.crypto import CardCipher
from fulfil.domain import AttemptRecord, AttemptState, OrderStatus, Receipt
from fulfil.engine import finished_despite_cancel
from fulfil.storage import Store, StoreError


class Gated(Store):
    """The real store; the write named by `at` says when it is called, waits for the test, then fails."""

    at = ""
    entered: asyncio.Event
    gate: asyncio.Event

    async def _held_then_failed(self, name: str) -> None:
        if Gated.at == name:
            Gated.entered.set()
            await Gated.gate.wait()
            raise StoreError("database error: database is locked")

    async def open_attempt(self, *args: Any, **kwargs: Any) -> AttemptRecord:
        await self._held_then_failed("open_attempt")
        return await super().open_attempt(*args, **kwargs)

    async def record_receipt(self, *args: Any, **kwargs: Any) -> Receipt:
        await self._held_then_failed("record_receipt")
        return await super().record_receipt(*args, **kwargs)


Suppliers = tuple[FakeSupplier, FakeSupplier]


@pytest.fixture
async def gated(db_url: str, cipher: CardCipher) -> AsyncIterator[Store]:
    Gated.at, Gated.entered, Gated.gate = "", asyncio.Event(), asyncio.Event()
    await asyncio.to_thread(Store.upgrade, db_url)
    store = await Gated.open(db_url, cipher)
    try:
        yield store
    finally:
        await store.close()


async def _cancelled_then_failed(
    store: Store, cipher: CardCipher, at: str, caplog: pytest.LogCaptureFixture
) -> Suppliers:
    """The order's work, cancelled twice while the write `at` is held, which then fails; the suppliers, whose
    books answer queries."""
    Gated.at = at
    main, backup = (FakeSupplier(name, place_steps=[ok], query_steps=[books]) for name in ("main", "backup"))
    first = two(store, cipher, main, backup)
    await first.add(qty=2)
    order = await first.claim()
    assert order is not None
    work = asyncio.create_task(first.engine.process(order, LeaseStub(first.owner)))
    await asyncio.wait_for(Gated.entered.wait(), 30)
    for _ in range(2):
        work.cancel()
        await asyncio.sleep(0.05)
        assert not work.done(), "the write is let end"
    Gated.at = ""  # later writes (the successor's) go through
    with caplog.at_level(logging.WARNING, logger="fulfil.engine"):
        Gated.gate.set()
        with pytest.raises(asyncio.CancelledError) as raised:
            await asyncio.wait_for(work, 30)
    assert isinstance(raised.value.__cause__, StoreError), "the write's failure is the cancel's cause"
    assert [r.message for r in caplog.records] == ["write.failed_after_cancel"]
    assert work.cancelled()
    return main, backup


async def _successor_delivers(store: Store, cipher: CardCipher, suppliers: Suppliers) -> list[tuple[str, str]]:
    """Another worker takes the order over: delivered, two units charged in all, no claim; what the suppliers
    were asked, by anyone."""
    await give_back(store)
    main, backup = suppliers
    successor = two(store, cipher, main, backup)
    successor.owner = "successor"
    view = await successor.run()
    assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 2 and view.claims == ()
    assert main.charged_units + backup.charged_units == 2
    return main.calls + backup.calls


async def test_the_write_ahead_attempt_failing_after_a_cancel_ends_cancelled_with_nothing_written(
    gated: Store, cipher: CardCipher, caplog: pytest.LogCaptureFixture
) -> None:
    suppliers = await _cancelled_then_failed(gated, cipher, "open_attempt", caplog)
    order = await gated.get_order("o-1")
    assert order is not None and order.attempts == (), "no attempt, so nothing was sent"
    assert suppliers[0].calls == [] and suppliers[1].calls == []
    calls = await _successor_delivers(gated, cipher, suppliers)
    assert [kind for kind, _ in calls] == ["place"], "bought at once, nothing asked"


async def test_the_receipt_failing_after_a_cancel_ends_cancelled_with_the_attempt_left_sent(
    gated: Store, cipher: CardCipher, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "RECEIPT_TRIES", (0.0,))  # one try: its failure is the write's
    suppliers = await _cancelled_then_failed(gated, cipher, "record_receipt", caplog)
    order = await gated.get_order("o-1")
    assert order is not None
    (attempt,) = order.attempts
    assert attempt.state is AttemptState.SENT, "charged at the supplier, answer not written: still open"
    assert await gated.receipt_for(attempt.id) is None
    calls = await _successor_delivers(gated, cipher, suppliers)
    assert calls == [("place", attempt.number), ("query", attempt.number)], "asked about, never bought again"


async def test_work_failing_without_a_cancel_raises_its_own_error() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise StoreError("database error: disk I/O error")

    with pytest.raises(StoreError, match="disk I/O"):
        await finished_despite_cancel(fails())


async def test_work_ending_well_after_cancels_gives_its_result_and_says_so() -> None:
    gate = asyncio.Event()

    async def slow() -> int:
        await gate.wait()
        return 7

    task = asyncio.create_task(finished_despite_cancel(slow()))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await task == (7, True)
