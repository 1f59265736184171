"""SQLite's group commit (fulfil/storage/direct.py `_SqliteWriter`): direct transactions that arrive while one runs
on the writer's thread go together in the next, one COMMIT for all. Each script still stands alone: one that
raises, falls back or hits a constraint is rolled back to its savepoint and the others stay; a COMMIT that
fails, or a kill -9 before it, leaves none of the group written and nobody told otherwise."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import insert

from fulfil.crypto import CardCipher
from fulfil.domain import ReceiptKind
from fulfil.storage import Store, direct
from fulfil.storage.direct import FALL_BACK, Script, Step
from fulfil.storage.errors import Conflict, StoreError
from fulfil.storage.schema import deliveries
from suppliers.taxonomy import Card
from tests.conftest import _migrated_sqlite
from tests.storage.scriptkit import OWNER, falling_back, raising, touch, updated_at

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, KillAt, Raw

KEY = bytes(range(32))  # the card key of the store here and of the killed child's


@pytest.fixture
def cipher() -> CardCipher:
    return CardCipher(KEY)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Group commit is SQLite's (PostgreSQL runs each direct transaction on a connection of its own)."""
    return _migrated_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path)


def _hold(seconds: float) -> Any:
    def then() -> Script:
        time.sleep(seconds)  # on the writer's thread: the transactions queued meanwhile form the next group
        yield from ()
        return "held"

    return then


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the groups the writer ran together (a lone script runs as before, not counted)."""
    sizes: list[int] = []
    original = direct._run_sqlite_group  # noqa: SLF001

    def spy(conn: sqlite3.Connection, scripts: Any) -> Any:
        sizes.append(len(scripts))
        return original(conn, scripts)

    monkeypatch.setattr(direct, "_run_sqlite_group", spy)
    return sizes


async def test_transactions_queued_meanwhile_commit_together_each_standing_alone(
    store: Store, claimed: Claimed, raw: Raw, now: datetime, groups: list[int]
) -> None:
    held, good, boom, back, dup = [await claimed(f"o-{i}") for i in range(5)]
    attempt = await store.open_attempt(dup.id, OWNER, "fulu", 0, 1, None, now, sent=True)
    before = {o.id: await updated_at(raw, o.id) for o in (good, boom, back, dup)}
    later = now + timedelta(days=1)
    run = store._direct.run  # noqa: SLF001

    keys = ("order_id", "attempt_id", "number_enc", "password_enc", "expires", "fingerprint", "created_at")
    add = store._direct.prepared("test_deliveries", lambda: insert(deliveries), keys=keys)  # noqa: SLF001
    row = {"order_id": dup.id, "attempt_id": attempt.id, "number_enc": b"n", "password_enc": b"p"}
    row |= {"expires": None, "fingerprint": "fp-twice", "created_at": now}

    def twice() -> Script:
        yield Step(add, [row, row], many=True)

    first = asyncio.create_task(run(touch(store, held.id, later, _hold(0.5))))
    await asyncio.sleep(0.1)  # the first is on the thread, sleeping inside its transaction
    answers = await asyncio.gather(
        run(touch(store, good.id, later)),
        run(touch(store, boom.id, later, raising)),
        run(touch(store, back.id, later, falling_back)),
        run(touch(store, dup.id, later, twice)),
        return_exceptions=True,
    )
    assert await first == "held"
    assert groups == [4], "the four that came while the first ran went in one transaction"
    assert answers[0] == "done"
    assert isinstance(answers[1], RuntimeError) and str(answers[1]) == "half-way"
    assert answers[2] is FALL_BACK
    assert isinstance(answers[3], Conflict)
    # Only the one that finished well is written; the others' fences were rolled back with their savepoints.
    assert await updated_at(raw, good.id) != before[good.id]
    for order in (boom, back, dup):
        assert await updated_at(raw, order.id) == before[order.id], order.ref
    assert await store.delivered_fingerprints(["fp-twice"]) == set()
    # And the store goes on: a lone transaction after the group.
    receipt = await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password="K-1")])
    await store.deliver(dup.id, OWNER, attempt.id, receipt.cards, now, reissue=False)
    view = await store.get_order(dup.ref)
    assert view is not None and view.order.status.value == "delivered"


class _CommitFails(sqlite3.Connection):
    """A connection whose COMMIT fails as a full disk's would."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


async def test_a_group_whose_commit_fails_leaves_none_written(
    store: Store, claimed: Claimed, raw: Raw, db_url: str, now: datetime
) -> None:
    orders = [await claimed(f"o-{i}") for i in range(3)]
    before = [await updated_at(raw, o.id) for o in orders]
    later = now + timedelta(days=1)
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), factory=_CommitFails, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            direct._run_sqlite_group(conn, [touch(store, o.id, later) for o in orders])  # noqa: SLF001
        assert not conn.in_transaction
    finally:
        conn.close()
    assert [await updated_at(raw, o.id) for o in orders] == before


async def test_when_a_group_fails_whole_every_script_of_it_is_told(
    store: Store, claimed: Claimed, raw: Raw, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    held, *rest = [await claimed(f"o-{i}") for i in range(4)]
    before = [await updated_at(raw, o.id) for o in rest]
    later = now + timedelta(days=1)

    def fails(conn: sqlite3.Connection, scripts: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(direct, "_run_sqlite_group", fails)
    run = store._direct.run  # noqa: SLF001
    first = asyncio.create_task(run(touch(store, held.id, later, _hold(0.3))))
    await asyncio.sleep(0.1)
    answers = await asyncio.gather(*(run(touch(store, o.id, later)) for o in rest), return_exceptions=True)
    assert await first == "held"
    assert all(isinstance(a, StoreError) and "disk I/O error" in str(a) for a in answers), answers
    assert [await updated_at(raw, o.id) for o in rest] == before


_KILLED_CHILD = """
import asyncio, json, os, sys, time
from datetime import datetime, timezone
from fulfil.crypto import CardCipher
from fulfil.storage import Store
from suppliers.taxonomy import Card

url, plan, marker = sys.argv[1:4]
plan = json.loads(plan)  # [[order_id, attempt_id], ...]: the first goes alone, the rest as one group

async def main():
    store = await Store.open(url, CardCipher(bytes.fromhex(os.environ["TEST_KEY"])))
    now = datetime.now(timezone.utc)
    original = store._deliver
    calls = []

    def deliver(*args, **kwargs):
        calls.append(1)
        answer = yield from original(*args, **kwargs)
        if len(calls) == 1:
            time.sleep(0.5)  # the first, alone on the thread: the others queue behind it
        elif len(calls) == len(plan):
            open(marker, "w").close()  # the last of the group ran its statements; nothing is committed yet
            time.sleep(60)
        return answer

    store._deliver = deliver
    first = asyncio.create_task(
        store.deliver(plan[0][0], "w1", plan[0][1], [Card(password="KEY-0")], now, reissue=False)
    )
    await asyncio.sleep(0.1)
    await asyncio.gather(
        *(store.deliver(o, "w1", a, [Card(password=f"KEY-{i}")], now, reissue=False)
          for i, (o, a) in enumerate(plan[1:], 1)),
        first,
    )

asyncio.run(main())
"""


async def test_kill_9_inside_a_group_before_its_commit_leaves_none_of_it(
    claimed: Claimed, raw: Raw, db_url: str, now: datetime, tmp_path: Path, store: Store, kill_9_at: KillAt
) -> None:
    orders = [await claimed(f"o-{i}") for i in range(4)]
    plan = []
    for i, order in enumerate(orders):
        attempt = await store.open_attempt(order.id, OWNER, "fulu", 0, 1, None, now, sent=True)
        await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password=f"KEY-{i}")])
        plan.append([order.id, attempt.id])
    marker = tmp_path / "inside"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TEST_KEY": KEY.hex()}
    await kill_9_at(_KILLED_CHILD, [db_url, json.dumps(plan), str(marker)], env, marker)

    # The first delivery committed on its own before the group began; the group's three ran every statement
    # and were killed before their one COMMIT: none of them is in the books, each receipt still to act on.
    statuses = {o.ref: (await store.get_order(o.ref)).order.status.value for o in orders}  # type: ignore[union-attr]
    assert statuses == {"o-0": "delivered", "o-1": "processing", "o-2": "processing", "o-3": "processing"}
    kept = await raw("SELECT order_id FROM deliveries ORDER BY order_id")
    assert [r["order_id"] for r in kept] == [orders[0].id]
    for order_id, attempt_id in plan[1:]:
        receipt = await store.receipt_for(attempt_id)
        assert receipt is not None and receipt.applied_at is None
        # And each can be delivered now, once.
        await store.deliver(order_id, OWNER, attempt_id, receipt.cards, now, reissue=False)
    assert len(await raw("SELECT id FROM deliveries")) == 4
