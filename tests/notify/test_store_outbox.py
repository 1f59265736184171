"""The outbox in storage, on SQLite and PostgreSQL: written in the change's transaction only when a channel
wants the type; claimed once (SKIP LOCKED); tries fenced by the lease; delay rows never after delivery."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from notifykit import SECRET, routes
from sqlalchemy import event, insert

from fulfil.domain import AttemptState, NewOrder, OrderStatus, ReceiptKind
from fulfil.storage import Store
from fulfil.storage.errors import LeaseLost, NotFound
from fulfil.storage.schema import aftersales_cases, reissues
from suppliers.taxonomy import Card


class _Count:
    def __init__(self, store: Store) -> None:
        self.statements = 0
        self.transactions = 0
        engine = store._engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        store._direct.watch(self._direct)  # the hot path's transactions, run on the driver directly

    def _direct(self, texts: list[str], _committed: bool) -> None:
        self.statements += len(texts)
        self.transactions += 1

    def _statement(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            self.statements += 1

    def _begin(self, _c: Any) -> None:
        self.transactions += 1


async def _happy_path(store: Store, ref: str, now: datetime) -> tuple[int, int]:
    counter = _Count(store)
    added = await store.add_orders([NewOrder(ref, "steam-100", 1, amount=Decimal("1"), contact="b@x.io")], now)
    (order,) = [o for o in await store.claim_orders("w1", 10, 60, now) if o.id == added[0].order_id]
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now, sent=True)
    await store.deliver(order.id, "w1", attempt.id, [Card(password=f"KEY-{ref}")], now)
    return counter.statements, counter.transactions


async def _outbox(store: Store) -> list[Any]:
    return await store.outbox_rows(limit=1000)


async def test_no_channel_means_no_outbox_row_and_no_extra_statement(store: Store, now: datetime) -> None:
    plain = await _happy_path(store, "A1", now)
    assert await _outbox(store) == []
    store.notify_routes = routes(alerts=[])
    with_hooks = await _happy_path(store, "A2", now)
    # The same transactions; one INSERT more where the order is taken in and where it is delivered (PostgreSQL:
    # the delivery's event is a part of the delivery's one statement).
    more = 1 if store.dialect == "postgresql" else 2
    assert with_hooks == (plain[0] + more, plain[1]), (plain, with_hooks)
    rows = sorted(await _outbox(store), key=lambda r: r.id)
    assert [(r.type, r.channel, r.state) for r in rows] == [
        ("order.accepted", "webhook:shop", "pending"),
        ("order.delivered", "webhook:shop", "pending"),
    ]
    assert rows[0].event_id != rows[1].event_id and rows[0].event_id.startswith("evt_")


async def test_a_delivery_wanted_by_two_channels_writes_one_event_to_each(store: Store, now: datetime) -> None:
    hooks = [
        {"name": name, "url": "http://127.0.0.1:1/", "secret": SECRET, "events": ["order.delivered"]}
        for name in ("shop", "crm")
    ]
    store.notify_routes = routes(webhooks=hooks)
    await _happy_path(store, "T1", now)
    rows = sorted(await _outbox(store), key=lambda r: r.channel)
    assert [(r.type, r.channel, r.state, r.data) for r in rows] == [
        ("order.delivered", "webhook:crm", "pending", {"status": "delivered"}),
        ("order.delivered", "webhook:shop", "pending", {"status": "delivered"}),
    ]
    view = await store.get_order("T1")
    assert view is not None and {r.order_id for r in rows} == {view.order.id}
    assert rows[0].event_id == rows[1].event_id and rows[0].next_at == rows[0].created_at == now


async def test_only_the_types_a_channel_wants_are_written(store: Store, now: datetime) -> None:
    store.notify_routes = routes(
        webhooks=[{"name": "s", "url": "http://127.0.0.1:1/", "secret": SECRET, "events": ["order.failed"]}]
    )
    await _happy_path(store, "B1", now)
    assert await _outbox(store) == []
    added = await store.add_order(NewOrder("B2", "steam-100", 1), now)
    await store.claim_orders("w1", 10, 60, now)
    await store.finish_order(added.order_id, "w1", OrderStatus.FAILED, "order_rejected: bad account", now)
    (row,) = await _outbox(store)
    assert (row.type, row.data) == ("order.failed", {"status": "failed", "reason": "order_rejected: bad account"})


async def test_a_failed_write_writes_no_event(store: Store, now: datetime) -> None:
    store.notify_routes = routes()
    added = await store.add_order(NewOrder("C1", "steam-100", 1), now)
    await store.claim_orders("w1", 10, 60, now)
    attempt = await store.open_attempt(added.order_id, "w1", "fulu", 0, 1, None, now, sent=True)
    with contextlib.suppress(Exception):
        await store.deliver(added.order_id, "someone-else", attempt.id, [Card(password="K")], now)
    assert [r.type for r in await _outbox(store)] == ["order.accepted"]


async def test_claims_are_exclusive_and_fenced_by_the_lease(store: Store, now: datetime) -> None:
    store.notify_routes = routes()
    await store.add_orders([NewOrder(f"D{i}", "steam-100", 1) for i in range(30)], now)
    first, second = await asyncio.gather(
        store.claim_outbox("webhook:shop", "d1", 20, 60), store.claim_outbox("webhook:shop", "d2", 20, 60)
    )
    assert not {r.id for r in first} & {r.id for r in second}
    assert len(first) + len(second) == 30
    row = first[0] if first else second[0]
    owner = "d1" if first else "d2"
    assert not await store.finish_outbox(
        row.id, "intruder", "delivered", counts=True, delay=0, status=200, error=None, now=now
    )
    assert await store.finish_outbox(
        row.id, owner, "pending", counts=True, delay=0, status=500, error="HTTP 500", now=now
    )
    (again,) = await store.outbox_rows(event_id=row.event_id)
    assert (again.state, again.attempts, again.last_status) == ("pending", 1, 500)


async def test_an_expired_lease_makes_a_row_claimable_again_with_the_same_id(store: Store, now: datetime) -> None:
    store.notify_routes = routes()
    await store.add_order(NewOrder("E1", "steam-100", 1), now)
    (taken,) = await store.claim_outbox("webhook:shop", "dead-daemon", 10, 0.05)
    assert await store.claim_outbox("webhook:shop", "d2", 10, 60) == []
    await asyncio.sleep(0.3)
    assert await store.due_channels() == {"webhook:shop"}
    (again,) = await store.claim_outbox("webhook:shop", "d2", 10, 60)
    assert (again.id, again.event_id, again.data) == (taken.id, taken.event_id, taken.data)


async def test_delayed_is_written_once_and_never_for_a_delivered_order(store: Store, now: datetime) -> None:
    store.notify_routes = routes()
    open_ = await store.add_order(NewOrder("F1", "steam-100", 1), now)
    done = await store.add_order(NewOrder("F2", "steam-100", 1), now)
    await store.claim_orders("w1", 10, 60, now)
    attempt = await store.open_attempt(done.order_id, "w1", "fulu", 0, 1, None, now, sent=True)
    await store.deliver(done.order_id, "w1", attempt.id, [Card(password="K-F2")], now)
    late = {open_.order_id: {"status": "processing"}, done.order_id: {"status": "processing"}}
    assert await store.mark_delayed(late, now) == 1
    assert await store.mark_delayed(late, now) == 0  # once per order and channel, whoever writes it
    delayed = [r for r in await _outbox(store) if r.type == "order.delayed"]
    assert [r.order_id for r in delayed] == [open_.order_id]


async def test_alerts_respect_the_quiet_period(store: Store, now: datetime) -> None:
    store.notify_routes = routes(
        alerts=[{"name": "ops", "type": "wecom", "secret": "k", "url": "http://127.0.0.1:1/"}],
        alert_rules={"quiet": "1s"},
    )
    assert await store.raise_alert("supplier.invalid_keys", "fulu", {"claims": 5}, 1.0, now)
    assert not await store.raise_alert("supplier.invalid_keys", "fulu", {"claims": 6}, 1.0, now)
    assert await store.raise_alert("supplier.invalid_keys", "acg", {"claims": 5}, 1.0, now)
    await asyncio.sleep(1.2)
    assert await store.raise_alert("supplier.invalid_keys", "fulu", {"claims": 7}, 1.0, now)
    # An event the engine records that is an alert raises one in its own transaction.
    await store.record_event("supplier.account", now, supplier="fulu", data={"code": "bad key", "nested": {"x": 1}})
    rows = [r for r in await _outbox(store) if r.channel == "alert:ops"]
    assert sorted((r.data["kind"], r.subject) for r in rows) == [
        ("supplier.account", "fulu"),
        ("supplier.invalid_keys", "acg"),
        ("supplier.invalid_keys", "fulu"),
        ("supplier.invalid_keys", "fulu"),
    ]
    assert all(r.type == "supplier.alert" for r in rows)
    assert "nested" not in [r for r in rows if r.data["kind"] == "supplier.account"][0].data


async def test_replay_and_prune(store: Store, now: datetime) -> None:
    store.notify_routes = routes()
    await store.add_orders([NewOrder(f"G{i}", "steam-100", 1) for i in range(3)], now)
    rows = await store.claim_outbox("webhook:shop", "d", 10, 60)
    for row, state in zip(rows, ("delivered", "dead", "pending"), strict=True):
        await store.finish_outbox(row.id, "d", state, counts=True, delay=100, status=500, error="x", now=now)
    assert await store.replay_outbox(now, channel="webhook:shop") == 1  # the dead one
    assert await store.prune_outbox(now + timedelta(days=1), 100) == 1  # the delivered one
    assert sorted(r.state for r in await _outbox(store)) == ["pending", "pending"]


async def test_the_contact_is_stored_encrypted(store: Store, now: datetime, db_url: str) -> None:
    from sqlalchemy import text

    added = await store.add_order(NewOrder("H1", "steam-100", 1, contact="buyer@example.com"), now)
    async with store._engine.connect() as conn:
        (row,) = [r._mapping for r in await conn.execute(text("SELECT contact_enc FROM orders"))]
    assert b"buyer" not in bytes(row["contact_enc"])
    notices = await store.order_notices({added.order_id: now})
    assert notices[added.order_id].contact == "buyer@example.com"


async def test_breaker_balance_and_demotion_events_are_alerts_in_their_own_transaction(
    store: Store, now: datetime
) -> None:
    from fulfil.storage.store_quality import QualityEvent

    store.notify_routes = routes(alerts=[{"name": "ops", "type": "wecom", "secret": "k"}], webhooks=[])
    events = [
        QualityEvent("supplier.breaker_opened", now, "fulu", {"failures": 5}),
        QualityEvent("supplier.balance_low", now, "fulu", {"balance": "12.00", "floor": "500"}),
        QualityEvent("supplier.demoted", now, "acg", {"score": 12.5}),
        QualityEvent("supplier.balance_ok", now, "acg", {}),  # not an alert
        QualityEvent("supplier.breaker_opened", now, "fulu", {"failures": 6}),  # within the quiet period
    ]
    await store.record_quality([], events)
    rows = await _outbox(store)
    assert sorted((r.data["kind"], r.subject) for r in rows) == [
        ("supplier.balance_low", "fulu"),
        ("supplier.breaker_opened", "fulu"),
        ("supplier.demoted", "acg"),
    ]


async def test_an_operator_hold_tells_order_review_subscribers_as_the_engine_would(
    store: Store, now: datetime
) -> None:
    store.notify_routes = routes(
        webhooks=[{"name": "s", "url": "http://127.0.0.1:1/", "secret": SECRET, "events": ["order.review"]}]
    )
    await store.add_order(NewOrder("H1", "steam-100", 1), now)
    await store.review_hold("H1", "dana", now)
    (row,) = await _outbox(store)
    assert (row.type, row.data) == ("order.review", {"status": "review", "reason": "held by dana"})


async def _received(store: Store, ref: str, now: datetime) -> tuple[int, int]:
    """An order claimed by w1, its attempt sent and its answer written down: (order id, attempt id)."""
    added = await store.add_order(NewOrder(ref, "steam-100", 1), now)
    (order,) = [o for o in await store.claim_orders("w1", 10, 60, now) if o.id == added.order_id]
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now, sent=True)
    await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=[Card(password=f"KEY-{ref}")])
    return order.id, attempt.id


async def _untouched(store: Store, ref: str, attempt_id: int) -> None:
    view = await store.get_order(ref)
    receipt = await store.receipt_for(attempt_id)
    assert view is not None and receipt is not None
    assert (view.order.status, view.cards, receipt.applied_at) == (OrderStatus.PROCESSING, (), None)
    assert [a.state for a in await store.attempts_for_order(view.order.id)] == [AttemptState.SENT]
    assert [r.type for r in await _outbox(store) if r.order_id == view.order.id] == ["order.accepted"]


async def test_a_refused_delivery_leaves_the_receipt_the_attempt_and_the_events_as_they_were(
    store: Store, now: datetime
) -> None:
    """Lease lost, or an attempt that is not the order's: nothing of the delivery is written, not its event, not
    the receipt's applied mark (the receipt stays to be acted on, its keys not lost)."""
    store.notify_routes = routes()
    order_id, attempt_id = await _received(store, "R1", now)
    with pytest.raises(LeaseLost):
        await store.deliver(order_id, "someone-else", attempt_id, [Card(password="KEY-R1")], now, reissue=False)
    await _untouched(store, "R1", attempt_id)

    _, other_attempt = await _received(store, "R2", now)
    with pytest.raises(NotFound):
        await store.deliver(order_id, "w1", other_attempt, [Card(password="KEY-R2")], now, reissue=False)
    await _untouched(store, "R1", attempt_id)
    await _untouched(store, "R2", other_attempt)


async def test_a_reissue_found_by_looking_it_up_settles_its_case_with_the_delivery(store: Store, now: datetime) -> None:
    """Asked to look (`reissue=None`), the delivery finds the order is an after-sales reissue and ends its case in
    the same transaction (the general code); an order that is none is delivered by the hot path alone."""
    store.notify_routes = routes()
    original, _ = await _received(store, "P1", now)
    child, attempt_id = await _received(store, "P1-R1", now)
    async with store._write() as conn:  # noqa: SLF001 - the case and its reissue, as the desk writes them
        case_id = (
            await conn.execute(
                insert(aftersales_cases).returning(aftersales_cases.c.id),
                {"case_no": "AS-1", "order_id": original, "problem": "key_invalid", "status": "open", "level": "L1",
                 "attachments": {}, "open_key": f"{original}:key_invalid", "opened_at": now, "level_at": now,
                 "updated_at": now},
            )
        ).scalar_one()  # fmt: skip
        await conn.execute(
            insert(reissues),
            {"case_id": case_id, "order_id": original, "reissue_order_id": child, "units": 1, "reason": "invalid",
             "decided_by": "rules", "created_at": now},
        )  # fmt: skip
    await store.deliver(child, "w1", attempt_id, [Card(password="KEY-P1-R1")], now)
    case = await store.get_case("AS-1")
    assert case is not None and (case.status.value, case.outcome) == ("resolved", "reissued")
    view = await store.get_order("P1-R1")
    assert view is not None and view.order.status is OrderStatus.DELIVERED
    receipt = await store.receipt_for(attempt_id)
    assert receipt is not None and receipt.applied_at is not None
    types = sorted(r.type for r in await _outbox(store) if r.order_id == child)
    assert types == ["order.accepted", "order.delivered"]
