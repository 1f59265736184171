"""The direct transactions (fulfil/storage/direct.py) on SQLite and PostgreSQL: values round-trip through the same
column types as the rest of the store; a script that raises, falls back or is killed -9 half-way leaves nothing;
constraint errors are Conflicts; counters see every statement."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import OperationalError

from fulfil.domain import AttemptState, NewOrder, ReceiptKind
from fulfil.storage import Store
from fulfil.storage.direct import FALL_BACK, Script, Step
from fulfil.storage.errors import Conflict, LeaseLost
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
    receipt = await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password="K")])
    await store.deliver(order.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
    # (PostgreSQL: the claim, one statement on its own); the attempt fenced by the lease; read + receipt + its
    # key + the attempt's facts; order + key + attempt + receipt applied
    claim = [(1, True)] if store.dialect == "postgresql" else []
    assert seen == [*claim, (1, True), (4, True), (4, True)]


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


async def test_an_attempt_being_written_keeps_its_order_until_killed_then_nothing_of_it_stays(
    store: Store, raw: Raw, db_url: str, now: datetime, tmp_path: Path
) -> None:
    """The write-ahead attempt is fenced by the lease in its one INSERT. While that transaction is open (after
    the INSERT, before its COMMIT) and the lease has run out, no one else takes the order: PostgreSQL's sweeper
    and claims skip the row it locked, SQLite's wait for its lock. Killed -9 there, the attempt is not written,
    the order is swept and claimed again, and the next owner's attempt is the only one."""
    await store.add_order(NewOrder("o-1", "steam-100", 1), now)
    (order,) = await store.claim_orders(OWNER, 1, 0.3, now)
    marker = tmp_path / "inside"
    args = [db_url, str(order.id), "0", str(marker), "_open_attempt"]
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, *args, env=_child_env())
    sweeping = None
    try:
        async with asyncio.timeout(60):
            while not marker.exists():  # noqa: ASYNC110 - a file the child makes
                assert child.returncode is None, f"the child ended early ({child.returncode})"
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the 0.3 s lease has run out on the database's clock
        if store.dialect == "postgresql":
            assert await store.sweep_expired_leases(now) == 0, "the row being written is locked: skipped"
            assert await store.claim_orders("B", 10, 60, now) == []
            # Locked for update as the fence UPDATE locked it, not only shared by the attempt's foreign key: any
            # other change to the order (an operator's, say) waits for the attempt's commit.
            change = f"UPDATE orders SET reason = '' WHERE id = {order.id} RETURNING id"
            with pytest.raises(OperationalError, match="lock timeout"):
                await raw(f"SET lock_timeout = '300ms'; {change}")
        else:
            sweeping = asyncio.create_task(store.sweep_expired_leases(now))
            await asyncio.sleep(0.5)
            assert not sweeping.done(), "the sweeper waits for the writer's lock"
    finally:
        child.kill()
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    assert await raw(f"SELECT id FROM attempts WHERE order_id = {order.id}") == [], "not committed: not written"
    if sweeping is not None:
        assert await sweeping == 1
    else:
        # The server rolls the killed session back once it notices the closed socket; until then the row
        # is still locked and skipped.
        for _ in range(200):
            if await store.sweep_expired_leases(now) == 1:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the killed session's lock was never released")
    (again,) = await store.claim_orders("B", 10, 60, now)
    with pytest.raises(LeaseLost):
        await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    attempt = await store.open_attempt(again.id, "B", "fulu", 0, 1, None, now, sent=True)
    assert [a.id for a in await store.attempts_for_order(order.id)] == [attempt.id]
