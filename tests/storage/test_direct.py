"""The direct transactions (fulfil/storage/direct.py) on SQLite and PostgreSQL: values round-trip through the same
column types as the rest of the store; a script that raises, falls back or is killed -9 half-way leaves nothing;
constraint errors are Conflicts; counters see every statement."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, NewOrder, ReceiptKind
from fulfil.storage import Store
from fulfil.storage.database import parse_url
from fulfil.storage.direct import FALL_BACK, Script, Step
from fulfil.storage.errors import Conflict, LeaseLost, StoreError
from fulfil.storage.schema import deliveries
from suppliers.taxonomy import Card
from tests.storage.scriptkit import OWNER, falling_back, raising, touch, updated_at

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, KillAt, Raw



async def test_values_written_directly_read_back_through_the_store(
    store: Store, claimed: Claimed, now: datetime
) -> None:
    order = await claimed()
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, Decimal("9.90"), now, sent=True)
    assert (attempt.state, attempt.cost, attempt.sent_at, attempt.evidence) == (
        AttemptState.SENT,
        Decimal("9.90"),
        now,
        {},
    )
    receipt = await store.record_receipt(
        attempt.id,
        ReceiptKind.GOODS,
        now,
        cards=[Card(password="PW-1", number="N-1", expires="2030-01-01")],
        supplier_order_id="S-1",
        cost=Decimal("9.85"),
        evidence={"code": 0, "text": "好"},
    )
    again = await store.receipt_for(attempt.id)
    assert again is not None
    assert (again.id, again.kind, again.cost, again.supplier_order_id, again.evidence, again.created_at) == (
        receipt.id,
        ReceiptKind.GOODS,
        Decimal("9.85"),
        "S-1",
        {"code": 0, "text": "好"},
        now,
    )
    assert again.cards == receipt.cards == (Card(password="PW-1", number="N-1", expires="2030-01-01"),)
    facts = await store.get_attempt(attempt.id)
    assert (facts.supplier_order_id, facts.supplier_cost) == ("S-1", Decimal("9.85"))
    assert facts.evidence == {"answer": {"code": 0, "text": "好"}}

    await store.deliver(order.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
    view = await store.get_order(order.ref)
    assert view is not None and view.order.status.value == "delivered" and view.order.delivered_at == now
    assert view.cards == receipt.cards
    done = await store.receipt_for(attempt.id)
    assert done is not None and done.applied_at == now


async def test_a_script_that_raises_or_falls_back_writes_nothing(
    store: Store, claimed: Claimed, raw: Raw, now: datetime
) -> None:
    order = await claimed()
    before = await updated_at(raw, order.id)
    later = now.replace(year=now.year + 1)

    with pytest.raises(RuntimeError, match="half-way"):
        await store._direct.run(touch(store, order.id, later, raising))  # noqa: SLF001
    assert await updated_at(raw, order.id) == before, "the fence's update was rolled back"
    assert await store._direct.run(touch(store, order.id, later, falling_back)) is FALL_BACK  # noqa: SLF001
    assert await updated_at(raw, order.id) == before


async def test_a_lost_lease_and_a_constraint_are_told_apart(store: Store, claimed: Claimed, now: datetime) -> None:
    order = await claimed()
    with pytest.raises(LeaseLost):
        await store.open_attempt(order.id, "someone-else", "fulu", 0, 1, None, now, sent=True)
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    direct = store._direct  # noqa: SLF001
    keys = ("order_id", "attempt_id", "number_enc", "password_enc", "expires", "fingerprint", "created_at")
    add = direct.prepared("test_deliveries", lambda: insert(deliveries), keys=keys)
    row = {"order_id": order.id, "attempt_id": attempt.id, "number_enc": b"n", "password_enc": b"p"}
    row |= {"expires": None, "fingerprint": "fp-same", "created_at": now}

    def twice() -> Script:
        yield Step(add, [row, row], many=True)

    with pytest.raises(Conflict, match="constraint"):
        await direct.run(twice())
    assert await store.delivered_fingerprints(["fp-same"]) == set(), "neither row stayed"


async def test_every_direct_statement_is_counted(store: Store, claimed: Claimed, now: datetime) -> None:
    seen: list[tuple[int, bool]] = []
    store._direct.watch(lambda texts, committed: seen.append((len(texts), committed)))  # noqa: SLF001
    order = await claimed()
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    cards = [Card(password="K")]
    receipt = await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=cards, attempt=attempt)
    await store.deliver(order.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
    # The attempt fenced by the lease in one INSERT. SQLite: read + receipt + its key + the attempt's facts in
    # one transaction; order + key + attempt + receipt applied in one. PostgreSQL: the claim, one statement on its
    # own; receipt, key and facts as one statement (the attempt as the caller saw it: no read); the delivery as
    # one statement.
    if store.dialect == "postgresql":
        assert seen == [(1, True)] * 4
    else:
        assert seen == [(1, True), (4, True), (4, True)]


async def test_a_receipt_written_from_a_stale_copy_of_the_attempt_keeps_what_changed_since(
    store: Store, claimed: Claimed, now: datetime
) -> None:
    """The facts a first receipt teaches the attempt are worked out from the caller's copy only while the row
    still holds it; changed since, it is read again and nothing written meanwhile is lost."""
    order = await claimed()
    stale = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    await store.mark_attempt(stale.id, AttemptState.SENT, now, supplier_order_id="S-1", evidence={"asked": 1})
    seen: list[int] = []
    store._direct.watch(lambda texts, committed: seen.append(len(texts)))  # noqa: SLF001
    evidence = {"code": "0"}
    receipt = await store.record_receipt(
        stale.id, ReceiptKind.GOODS, now, cards=[Card(password="K")], supplier_order_id="S-2", evidence=evidence,
        cost=Decimal("9.5"), attempt=stale,
    )  # fmt: skip
    assert [c.password for c in receipt.cards] == ["K"] and receipt.supplier_order_id == "S-2"
    (attempt,) = await store.attempts_for_order(order.id)
    assert attempt.evidence == {"asked": 1, "answer": evidence}, "the change made after the copy stays"
    assert (attempt.supplier_order_id, attempt.supplier_cost) == ("S-1", Decimal("9.5")), "the first id stays"
    if store.dialect == "postgresql":  # the write refused (the copy is stale), the read, the write
        assert seen == [1, 1, 1]
    again = await store.record_receipt(stale.id, ReceiptKind.GOODS, now, cards=[Card(password="X")], attempt=stale)
    assert [c.password for c in again.cards] == ["K"], "the first answer stays"


_CHILD = """
import asyncio, os, sys, time
from datetime import datetime, timezone
from fulfil.crypto import CardCipher
from fulfil.storage import Store
from suppliers.taxonomy import Card

url, order_id, attempt_id, marker, script = sys.argv[1:6]

async def main():
    store = await Store.open(url, CardCipher(os.urandom(32)))
    now = datetime.now(timezone.utc)
    original = getattr(store, script)

    def run_then_hang(*args, **kwargs):
        answer = yield from original(*args, **kwargs)  # every statement of the script, not committed yet
        open(marker, "w").close()
        time.sleep(60)  # on SQLite on the connection's thread, on PostgreSQL in the loop: killed here
        return answer

    setattr(store, script, run_then_hang)
    if script == "_deliver":
        await store.deliver(int(order_id), "w1", int(attempt_id), [Card(password="KILLED")], now, reissue=False)
    else:
        await store.open_attempt(int(order_id), "w1", "fulu", 0, 1, None, now, sent=True)

asyncio.run(main())
"""


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.getcwd()}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL's delivery is one statement: below
async def test_kill_9_inside_a_direct_delivery_leaves_nothing_of_it(
    store: Store, claimed: Claimed, raw: Raw, db_url: str, now: datetime, tmp_path: Path, kill_9_at: KillAt
) -> None:
    order = await claimed()
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password="KEY-1")])
    marker = tmp_path / "inside"
    args = [db_url, str(order.id), str(attempt.id), str(marker), "_deliver"]
    await kill_9_at(_CHILD, args, _child_env(), marker)

    # The delivery ran every statement and was killed before its commit: nothing of it is in the books.
    view = await store.get_order(order.ref)
    assert view is not None and view.order.status.value == "processing" and view.order.lease_owner == OWNER
    assert view.cards == ()
    assert [a.state for a in view.attempts] == [AttemptState.SENT]
    receipt = await store.receipt_for(attempt.id)
    assert receipt is not None and receipt.applied_at is None, "the receipt is still to be acted on"
    assert await raw(f"SELECT id FROM deliveries WHERE order_id = {order.id}") == []
    # And the delivery can be made now, once.
    await store.deliver(order.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
    delivered = await store.get_order(order.ref)
    assert delivered is not None and delivered.order.status.value == "delivered" and len(delivered.cards) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL's attempt is one statement: below
async def test_an_attempt_being_written_keeps_its_order_until_killed_then_nothing_of_it_stays(
    store: Store, raw: Raw, db_url: str, now: datetime, tmp_path: Path
) -> None:
    """The write-ahead attempt is fenced by the lease in its one INSERT. While that transaction is open (after
    the INSERT, before its COMMIT) and the lease has run out, no one else takes the order: the sweeper waits for
    the writer's lock. Killed -9 there, the attempt is not written, the order is swept and claimed again, and the
    next owner's attempt is the only one."""
    await store.add_order(NewOrder("o-1", "steam-100", 1), now)
    (order,) = await store.claim_orders(OWNER, 1, 0.3, now)
    marker = tmp_path / "inside"
    args = [db_url, str(order.id), "0", str(marker), "_open_attempt"]
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, *args, env=_child_env())
    try:
        async with asyncio.timeout(60):
            while not marker.exists():  # noqa: ASYNC110 - a file the child makes
                assert child.returncode is None, f"the child ended early ({child.returncode})"
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the 0.3 s lease has run out on the database's clock
        sweeping = asyncio.create_task(store.sweep_expired_leases(now))
        await asyncio.sleep(0.5)
        assert not sweeping.done(), "the sweeper waits for the writer's lock"
    finally:
        child.kill()
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    assert await raw(f"SELECT id FROM attempts WHERE order_id = {order.id}") == [], "not committed: not written"
    assert await sweeping == 1
    (again,) = await store.claim_orders("B", 10, 60, now)
    with pytest.raises(LeaseLost):
        await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    attempt = await store.open_attempt(again.id, "B", "fulu", 0, 1, None, now, sent=True)
    assert [a.id for a in await store.attempts_for_order(order.id)] == [attempt.id]


async def test_an_attempt_id_past_ten_digits_is_never_written(store: Store, claimed: Claimed, raw: Raw) -> None:
    """The number is the install's prefix and the id in ten digits: an id past that would be sent cut off.
    SQLite refuses it before its COMMIT; PostgreSQL's single INSERT by the table's CHECK (migration 0010)."""
    order = await claimed()
    now = datetime.now(UTC)
    first = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    assert first.number.endswith(f"{first.id:010d}") and len(first.number) == 19
    async with store._write() as conn:  # noqa: SLF001 - the next id is 10^10
        if store.dialect == "postgresql":
            await conn.execute(text("SELECT setval(pg_get_serial_sequence('attempts', 'id'), 9999999999)"))
        else:
            await conn.execute(text(f"UPDATE attempts SET id = 9999999999, number = 'X' WHERE id = {first.id}"))
    with pytest.raises(StoreError):
        await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    assert len(await raw(f"SELECT id FROM attempts WHERE order_id = {order.id}")) == 1, "nothing more written"


# PostgreSQL writes the attempt, the receipt and the delivery each as one statement with no BEGIN or COMMIT:
# there is no moment between its parts for a kill to land in. The dangerous moment is the statement in flight:
# sent, and running on the server when the daemon dies. The test holds a lock the statement needs, so it waits
# there; the child is killed -9; then either the server ends the dead client's session (nothing of it) or the
# lock goes and the statement, whose end was sent with it, runs to its commit (all of it). Never a part.

_CHILD_ONE = """
import asyncio, os, sys
from datetime import datetime, timezone
from fulfil.crypto import CardCipher
from fulfil.domain import ReceiptKind
from fulfil.storage import Store
from suppliers.taxonomy import Card

url, order_id, attempt_id, what = sys.argv[1:5]

async def main():
    store = await Store.open(url, CardCipher(bytes.fromhex(os.environ["TEST_CARD_KEY"])))
    now = datetime.now(timezone.utc)
    cards = [Card(password="KILLED-1"), Card(password="KILLED-2")]
    if what == "deliver":
        await store.deliver(int(order_id), "w1", int(attempt_id), cards, now, reissue=False)
    elif what == "attempt":
        await store.open_attempt(int(order_id), "w1", "fulu", 0, 2, None, now, sent=True)
    else:
        await store.record_receipt(int(attempt_id), ReceiptKind.GOODS, now, cards=cards, supplier_order_id="S-9")
    print("the statement returned", flush=True)

asyncio.run(main())
"""


_KEY = bytes(range(32))  # the child's and the test's store: the same key, so each reads what the other wrote


@pytest.fixture
async def keyed(store: Store, db_url: str) -> AsyncIterator[Store]:
    """The test's store (migrated) opened again with `_KEY`."""
    opened = await Store.open(db_url, CardCipher(_KEY))
    try:
        yield opened
    finally:
        await opened.close()


async def _kill_9_in_flight(db_url: str, lock: str, args: list[str], *, terminate: bool) -> bool:
    """Hold `lock` (a row lock) in a transaction of our own, run the child until its statement waits for it on
    the server, kill -9 the child; then end its session (`terminate`) or not, and let the lock go. Whether the
    statement was let finish: not when its session was ended, nor when the server checks for lost clients
    (`client_connection_check_interval`), which ends it too."""
    _, parsed = parse_url(db_url)
    engine = create_async_engine(parsed, poolclass=NullPool)
    try:
        async with engine.connect() as locker:
            checks = await locker.scalar(text("SHOW client_connection_check_interval"))
            blocker = await locker.scalar(text("SELECT pg_backend_pid()"))
            await locker.execute(text(lock))
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CHILD_ONE, db_url, *args, env={**_child_env(), "TEST_CARD_KEY": _KEY.hex()}
            )
            try:
                async with asyncio.timeout(60):
                    while not (waiting := await _backends(engine, f"{blocker} = ANY(pg_blocking_pids(pid))")):
                        assert child.returncode is None, f"the child ended early ({child.returncode})"
                        await asyncio.sleep(0.05)
            finally:
                child.kill()
                await child.wait()
            assert child.returncode == -signal.SIGKILL
            if terminate:
                async with engine.connect() as admin:
                    for pid in waiting:
                        await admin.execute(text(f"SELECT pg_terminate_backend({pid})"))
            await locker.rollback()
        pids = ", ".join(map(str, waiting))
        async with asyncio.timeout(60):
            while await _backends(engine, f"pid IN ({pids}) AND state = 'active'"):  # noqa: ASYNC110 - not ours
                await asyncio.sleep(0.05)  # the dead client's backend has finished, one way or the other
    finally:
        await engine.dispose()
    return not terminate and checks == "0"


async def _backends(engine: AsyncEngine, where: str) -> list[int]:
    """The other sessions' backends `where` holds for (a condition on pg_stat_activity)."""
    async with engine.connect() as conn:
        sql = f"SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND {where}"
        return [row.pid for row in await conn.execute(text(sql))]


def _in_flight(test: Any) -> Any:
    """PostgreSQL only; with the dead client's session ended by the server, and without."""
    test = pytest.mark.parametrize("terminate", [True, False], ids=["session-ended", "statement-finished"])(test)
    return pytest.mark.parametrize("db_url", [pytest.param("pg", marks=pytest.mark.pg)], indirect=True)(test)


@_in_flight
async def test_kill_9_while_the_one_statement_delivery_runs_leaves_all_of_it_or_nothing(
    keyed: Store, claimed: Claimed, raw: Raw, db_url: str, now: datetime, terminate: bool
) -> None:
    store = keyed
    order = await claimed()
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 2, None, now, sent=True)
    await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password="A"), Card(password="B")])
    # The attempt's row: the delivery's UPDATE of it waits (the order's row it locked first).
    lock = f"SELECT id FROM attempts WHERE id = {attempt.id} FOR UPDATE"
    finished = await _kill_9_in_flight(db_url, lock, [str(order.id), str(attempt.id), "deliver"], terminate=terminate)

    view = await store.get_order(order.ref)
    receipt = await store.receipt_for(attempt.id)
    assert view is not None and receipt is not None
    keys = await raw(f"SELECT attempt_id FROM deliveries WHERE order_id = {order.id} ORDER BY id")
    if not finished:  # nothing of it
        assert view.order.status.value == "processing" and view.order.lease_owner == OWNER
        assert (keys, [a.state for a in view.attempts], receipt.applied_at) == ([], [AttemptState.SENT], None)
        await store.deliver(order.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
        view = await store.get_order(order.ref)
        assert view is not None and [c.password for c in view.cards] == ["A", "B"]
    else:  # all of it, the keys in their order
        assert view.order.status.value == "delivered" and view.order.lease_owner is None
        assert [c.password for c in view.cards] == ["KILLED-1", "KILLED-2"]
        assert [a.state for a in view.attempts] == [AttemptState.SUCCEEDED] and receipt.applied_at is not None
        with pytest.raises(LeaseLost):  # and once only
            await store.deliver(order.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
    assert len(await raw(f"SELECT id FROM deliveries WHERE order_id = {order.id}")) == 2


@_in_flight
async def test_kill_9_while_the_one_statement_receipt_runs_leaves_all_of_it_or_nothing(
    keyed: Store, claimed: Claimed, raw: Raw, db_url: str, now: datetime, terminate: bool
) -> None:
    store = keyed
    order = await claimed()
    attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 2, None, now, sent=True)
    lock = f"SELECT id FROM attempts WHERE id = {attempt.id} FOR UPDATE"
    finished = await _kill_9_in_flight(db_url, lock, [str(order.id), str(attempt.id), "receipt"], terminate=terminate)

    receipt = await store.receipt_for(attempt.id)
    (facts,) = await raw(f"SELECT supplier_order_id, evidence FROM attempts WHERE id = {attempt.id}")
    stored = await raw("SELECT receipt_id, position FROM receipt_cards ORDER BY position")
    if not finished:  # nothing of it: the answer can still be written
        assert (receipt, stored, facts["supplier_order_id"]) == (None, [], None)
        receipt = await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password="A")])
        assert [c.password for c in receipt.cards] == ["A"]
    else:  # all of it: the receipt, its keys in order, and what the attempt learnt
        assert receipt is not None and [c.password for c in receipt.cards] == ["KILLED-1", "KILLED-2"]
        assert [row["position"] for row in stored] == [0, 1] and facts["supplier_order_id"] == "S-9"
        assert '"answer"' in facts["evidence"]
        again = await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password="C")])
        assert [c.password for c in again.cards] == ["KILLED-1", "KILLED-2"], "the first answer stays"


@_in_flight
async def test_kill_9_while_the_one_statement_attempt_runs_leaves_all_of_it_or_nothing(
    keyed: Store, claimed: Claimed, raw: Raw, db_url: str, now: datetime, terminate: bool
) -> None:
    store = keyed
    order = await claimed()
    # The order's row: the INSERT's lease fence locks it (FOR NO KEY UPDATE), so it waits for us.
    lock = f"SELECT id FROM orders WHERE id = {order.id} FOR UPDATE"
    finished = await _kill_9_in_flight(db_url, lock, [str(order.id), "0", "attempt"], terminate=terminate)

    written = await store.attempts_for_order(order.id)
    if not finished:  # nothing of it: the write-ahead can be made now
        assert written == []
        attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 2, None, now, sent=True)
        assert [a.id for a in await store.attempts_for_order(order.id)] == [attempt.id]
    else:  # all of it: the attempt with its own number, sent, to be settled before anything else is bought
        (attempt,) = written
        assert attempt.number == f"F{store.install_id}{attempt.id:010d}" and attempt.state is AttemptState.SENT
        assert (attempt.qty, attempt.sent_at is not None) == (2, True)
    view = await store.get_order(order.ref)
    assert view is not None and view.order.lease_owner == OWNER, "the lease is as it was"
