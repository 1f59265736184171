"""Attempts: write-ahead rows with a supplier-facing number that is unique forever."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState
from fulfil.storage import InvalidTransition, NotFound, Store, StoreError
from fulfil.storage.base import MAX_NUMBER_LENGTH

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed


async def test_open_attempt_is_committed_with_a_fresh_number(
    store: Store, db_url: str, cipher: CardCipher, now: datetime, claimed: Claimed
) -> None:
    order = await claimed("r1")
    first = await store.open_attempt(order.id, "w1", "fulu", 0, 2, Decimal("9.50"), now)
    second = await store.open_attempt(order.id, "w1", "acg", 1, 2, None, now)

    for attempt in (first, second):
        assert re.fullmatch(r"F[0-9A-Z]{8}[0-9]{10}", attempt.number)
        assert attempt.number.startswith("F" + store.install_id)
        assert len(attempt.number) <= 32
    assert first.number != second.number
    assert (first.state, first.supplier, first.offer_index, first.qty, first.cost) == (
        AttemptState.PLANNED,
        "fulu",
        0,
        2,
        Decimal("9.50"),
    )
    # Committed before returning: another connection (another daemon) sees it.
    other = await Store.open(db_url, cipher)
    try:
        assert [a.number for a in await other.attempts_for_order(order.id)] == [first.number, second.number]
    finally:
        await other.close()


async def test_a_number_longer_than_19_characters_is_never_made(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    # acg-faka keeps request_no in a char(19) column: a longer one is answered with an HTML page, which the
    # adapter must read as ambiguous. The store refuses to make such a number, and writes no attempt.
    order = await claimed("r1")
    fitting = await store.open_attempt(order.id, "w1", "acg", 0, 1, None, now)
    assert len(fitting.number) == MAX_NUMBER_LENGTH == 19

    store.install_id += "X"  # one character more: every number this store would make is 20 long
    with pytest.raises(StoreError, match="longer than 19"):
        await store.open_attempt(order.id, "w1", "acg", 1, 1, None, now)

    assert [a.number for a in await store.attempts_for_order(order.id)] == [fitting.number]


async def test_mark_attempt_records_times_and_fields(store: Store, now: datetime, claimed: Claimed) -> None:
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now)
    t1, t2, t3 = (now + timedelta(seconds=s) for s in (1, 2, 3))

    sent = await store.mark_attempt(attempt.id, AttemptState.SENT, t1, evidence={"request": "r"})
    resent = await store.mark_attempt(attempt.id, AttemptState.SENT, t2)
    ambiguous = await store.mark_attempt(attempt.id, AttemptState.AMBIGUOUS, t2, error_class="ambiguous")
    done = await store.mark_attempt(
        attempt.id, AttemptState.SUCCEEDED, t3, supplier_order_id="S-1", evidence={"response": "ok"}
    )

    assert (sent.sent_at, sent.finished_at, sent.evidence) == (t1, None, {"request": "r"})
    assert resent.sent_at == t1, "sent_at is the first send"
    assert resent.evidence == {"request": "r"}, "fields not given keep their value"
    assert (ambiguous.state, ambiguous.error_class, ambiguous.finished_at) == (
        AttemptState.AMBIGUOUS,
        "ambiguous",
        None,
    )
    assert (done.state, done.finished_at, done.supplier_order_id, done.error_class, done.evidence) == (
        AttemptState.SUCCEEDED,
        t3,
        "S-1",
        "ambiguous",
        {"response": "ok"},
    )
    assert await store.attempts_for_order(order.id) == [done]


async def test_a_succeeded_attempt_stays_succeeded(store: Store, now: datetime, claimed: Claimed) -> None:
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now)
    await store.mark_attempt(attempt.id, AttemptState.SENT, now)
    with pytest.raises(InvalidTransition, match="cannot go back to planned"):
        await store.mark_attempt(attempt.id, AttemptState.PLANNED, now)
    await store.mark_attempt(attempt.id, AttemptState.SUCCEEDED, now)
    for state in (AttemptState.FAILED, AttemptState.AMBIGUOUS, AttemptState.SENT):
        with pytest.raises(InvalidTransition, match="succeeded already"):
            await store.mark_attempt(attempt.id, state, now)
    assert (await store.get_attempt(attempt.id)).state == AttemptState.SUCCEEDED
    with pytest.raises(NotFound):
        await store.mark_attempt(attempt.id + 100, AttemptState.SENT, now)


async def test_open_attempts_lists_sent_and_ambiguous_of_every_order(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    a = await claimed("r1")
    b = await claimed("r2")
    planned = await store.open_attempt(a.id, "w1", "s", 0, 1, None, now)
    sent = await store.open_attempt(a.id, "w1", "s", 0, 1, None, now)
    ambiguous = await store.open_attempt(b.id, "w1", "s", 0, 1, None, now)
    failed = await store.open_attempt(b.id, "w1", "s", 0, 1, None, now)
    await store.mark_attempt(sent.id, AttemptState.SENT, now)
    await store.mark_attempt(ambiguous.id, AttemptState.AMBIGUOUS, now)
    await store.mark_attempt(failed.id, AttemptState.FAILED, now)

    assert [x.id for x in await store.open_attempts()] == [sent.id, ambiguous.id]
    assert [x.id for x in await store.open_attempts(limit=1)] == [sent.id]
    assert planned.id not in {x.id for x in await store.open_attempts()}
