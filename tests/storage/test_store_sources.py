"""Shop sources' records in fulfil's database: taking is unique per (source, ref), committed before the shop is
touched; the order appears only when the hand-over completes; write-backs are claimed, retried, handed on."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from fulfil.domain import NewOrder, OrderStatus
from fulfil.storage import InvalidTransition, NotFound, SourceDraft, SourceState, Store
from suppliers.taxonomy import Card

SKU = "steam-100"
OWNER = "w1"


def draft(ref: str, *, source: str = "shop", qty: int = 1, account: str | None = None) -> SourceDraft:
    return SourceDraft(
        source=source,
        ref=ref,
        shop_id=int(ref.strip("ABCDEFGHIJKLMNOPQRSTUVWXYZ") or 1),
        goods_id="12",
        kind="manual",
        seen_status=2,
        sku=SKU,
        qty=qty,
        account=account,
        amount=Decimal("10.50"),
    )


async def taken(store: Store, now: datetime, *refs: str) -> list[int]:
    """Take refs all the way: the records' ids."""
    owned, _ = await store.start_taking([draft(ref) for ref in refs], "2026-11-21 12:00:00", 60, now)
    done = await store.complete_taking([r.id for r in owned], now)
    assert all(r.state is SourceState.TAKEN and r.order_id for r in done)
    return [r.id for r in done]


async def deliver(store: Store, ref: str, now: datetime, keys: list[str]) -> None:
    await store.import_stock(SKU, [Card(password=k) for k in keys], now)
    (order,) = [o for o in await store.claim_orders(OWNER, 100, 60, now) if o.ref == ref]
    attempt = await store.open_attempt(order.id, OWNER, "shelf", 0, order.qty, None, now)
    assert await store.deliver_from_stock(order.id, OWNER, attempt.id, SKU, order.qty, now)


async def test_taking_is_recorded_once_and_makes_no_order_yet(store: Store, now: datetime) -> None:
    owned, clashes = await store.start_taking([draft("A1"), draft("A2")], "m", 60, now)
    assert [r.ref for r in owned] == ["A1", "A2"] and not clashes
    assert all(r.state is SourceState.TAKING and r.mark == "m" and r.order_id is None for r in owned)
    again, _ = await store.start_taking([draft("A1"), draft("A3")], "m2", 60, now)
    assert [r.ref for r in again] == ["A3"]  # a second poll (or daemon) never takes A1 twice
    assert await store.count_by_status() == {s.value: 0 for s in OrderStatus}  # nothing claimable yet


async def test_complete_taking_makes_the_pending_order_once(store: Store, now: datetime) -> None:
    owned, _ = await store.start_taking([draft("B1", qty=2, account="user1")], "m", 60, now)
    (done,) = await store.complete_taking([owned[0].id], now)
    assert done.state is SourceState.TAKEN and done.order_id is not None
    assert await store.complete_taking([owned[0].id], now) == []  # someone completed it first: no-op
    view = await store.get_order("B1")
    assert view is not None
    order = view.order
    assert (order.status, order.sku, order.qty, order.account, order.amount) == (
        OrderStatus.PENDING, SKU, 2, "user1", Decimal("10.50")
    )  # fmt: skip
    assert [e.name for e in await store.events(order_id=order.id)] == ["source.taken"]


async def test_take_unmarked_records_and_orders_in_one_go(store: Store, now: datetime) -> None:
    records, clashes = await store.take_unmarked([draft("C1"), draft("C2")], now)
    assert [r.state for r in records] == [SourceState.TAKEN] * 2 and not clashes
    assert (await store.take_unmarked([draft("C1")], now)) == ([], [])
    assert (await store.count_by_status())["pending"] == 2


async def test_a_ref_fulfil_already_has_is_refused_not_taken(store: Store, now: datetime) -> None:
    await store.add_order(NewOrder(ref="D1", sku=SKU, qty=1), now)
    owned, clashes = await store.start_taking([draft("D1")], "m", 60, now)
    assert owned == [] and clashes == ["D1"]
    record = (await store.source_records("shop", ["D1"]))["D1"]
    assert record.state is SourceState.REFUSED and "already has an order" in (record.reason or "")


async def test_an_order_of_the_ref_arriving_mid_hand_over_sends_it_to_review(store: Store, now: datetime) -> None:
    owned, _ = await store.start_taking([draft("E1")], "m", 60, now)
    await store.add_order(NewOrder(ref="E1", sku=SKU, qty=5), now)  # e.g. an operator's `orders add`
    (done,) = await store.complete_taking([owned[0].id], now)
    assert done.state is SourceState.REVIEW and done.order_id is None
    view = await store.get_order("E1")
    assert view is not None and view.order.qty == 5  # the other order is left as it was


async def test_refused_is_said_once_per_reason_and_can_be_taken_once_fixed(store: Store, now: datetime) -> None:
    assert await store.refuse_source_orders([(draft("F1"), "no account")], now) == ["F1"]
    assert await store.refuse_source_orders([(draft("F1"), "no account")], now) == []
    assert await store.refuse_source_orders([(draft("F1"), "qty 0 is below 1")], now) == ["F1"]
    owned, _ = await store.start_taking([draft("F1", account="fixed")], "m", 60, now)
    assert [(r.ref, r.state, r.account, r.reason) for r in owned] == [("F1", SourceState.TAKING, "fixed", None)]
    # Refusing again never touches a record that moved on.
    assert await store.refuse_source_orders([(draft("F1"), "no account")], now) == []


async def test_refused_rows_keep_values_no_order_could_have(store: Store, now: datetime) -> None:
    huge = SourceDraft("shop", "G" * 150, 7, "12", "manual", 2, SKU, 10**12, "x" * 5000, None)
    assert await store.refuse_source_orders([(huge, "qty too large")], now) == [huge.ref]
    record = (await store.source_records("shop", [huge.ref]))[huge.ref]
    assert record.qty == 2**31 - 1 and record.account is None


async def test_drop_taking_removes_the_record_with_an_event(store: Store, now: datetime) -> None:
    owned, _ = await store.start_taking([draft("H1")], "m", 60, now)
    assert await store.drop_taking(owned[0].id, "status 4 at the shop", now)
    assert not await store.drop_taking(owned[0].id, "again", now)
    assert await store.source_records("shop", ["H1"]) == {}
    (event,) = await store.events(name="source.dropped")
    assert event.data == {"source": "shop", "ref": "H1", "why": "status 4 at the shop"}


async def test_stale_taking_is_claimed_after_its_recheck_time(store: Store, now: datetime) -> None:
    await store.start_taking([draft("I1")], "m", 3600, now)
    await store.start_taking([draft("I2")], "m", -1, now)
    claimed = await store.claim_stale_taking("shop", 10, 60, now)
    assert [r.ref for r in claimed] == ["I2"]
    assert await store.claim_stale_taking("shop", 10, 60, now) == []  # held for 60 s
    assert await store.claim_stale_taking("other", 10, 0, now) == []


async def test_write_backs_are_claimed_only_for_finished_orders(store: Store, now: datetime) -> None:
    ids = await taken(store, now, "J1", "J2", "J3")
    assert await store.claim_write_backs("shop", 10, 60, now) == []
    await deliver(store, "J1", now, ["KEY0000000000001"])
    claimed = await store.claim_write_backs("shop", 10, 60, now)
    assert [(r.ref, r.order_status) for r in claimed] == [("J1", "delivered")]
    assert await store.claim_write_backs("shop", 10, 60, now) == []  # claimed for a minute
    assert await store.source_order_cards(claimed[0].order_id or 0) == (Card(password="KEY0000000000001"),)
    assert await store.mark_written(ids[0], "delivered", now)
    assert not await store.mark_written(ids[0], "delivered", now)
    record = (await store.source_records("shop", ["J1"]))["J1"]
    assert (record.state, record.outcome) == (SourceState.WRITTEN, "delivered")


async def test_a_failing_write_back_retries_then_goes_to_a_person(store: Store, now: datetime) -> None:
    (record_id,) = await taken(store, now, "K1")
    (order,) = await store.claim_orders(OWNER, 10, 60, now)
    await store.finish_order(order.id, OWNER, OrderStatus.FAILED, "order_rejected: bad account", now)
    (claimed,) = await store.claim_write_backs("shop", 10, 60, now)
    assert (claimed.order_status, claimed.order_reason) == ("failed", "order_rejected: bad account")
    assert await store.write_back_failed(record_id, "shop down", 0.0, 3600, now) is SourceState.TAKEN
    later = now + timedelta(minutes=30)
    assert await store.write_back_failed(record_id, "shop down", 0.0, 3600, later) is SourceState.TAKEN
    record = (await store.source_records("shop", ["K1"]))["K1"]
    assert (record.tries, record.failing_since, record.reason) == (2, now, "shop down")
    assert len(await store.claim_write_backs("shop", 10, 60, later)) == 1  # due again (retry_in 0)
    gave_up = await store.write_back_failed(record_id, "shop down", 0.0, 3600, now + timedelta(hours=1))
    assert gave_up is SourceState.REVIEW
    record = (await store.source_records("shop", ["K1"]))["K1"]
    assert record.state is SourceState.REVIEW and "write-back failing since" in (record.reason or "")
    assert await store.claim_write_backs("shop", 10, 0, now + timedelta(hours=2)) == []


async def test_a_person_retries_or_settles_a_review(store: Store, now: datetime) -> None:
    a, b = await taken(store, now, "L1", "L2")
    with pytest.raises(InvalidTransition, match="not waiting for a person"):
        await store.retry_source_order("L1", "ops", now)
    with pytest.raises(NotFound):
        await store.retry_source_order("nope", "ops", now)
    assert await store.source_to_review(a, "the shop row changed", now)
    assert await store.source_to_review(b, "the shop row changed", now)
    await store.retry_source_order("L1", "ops", now)
    await store.settle_source_order("L2", "written by hand in the admin", "ops", now, source="shop")
    records = await store.source_records("shop", ["L1", "L2"])
    assert records["L1"].state is SourceState.TAKEN and records["L1"].tries == 0
    assert (records["L2"].state, records["L2"].outcome) == (SourceState.WRITTEN, "by_hand")
    assert [e.operator for e in await store.events(name="source.retry")] == ["ops"]


async def test_summaries_count_each_state_and_the_last_poll(store: Store, now: datetime) -> None:
    await taken(store, now, "M1", "M2", "M3")
    await store.refuse_source_orders([(draft("M9"), "no account")], now)
    await deliver(store, "M1", now, ["KEY0000000000002"])
    (claimed,) = await store.claim_write_backs("shop", 10, 60, now)
    await store.record_source_poll("shop", "connection refused", now)
    summary = (await store.source_summaries(["shop", "idle"]))["shop"]
    assert summary.states["taken"] == 3 and summary.states["refused"] == 1
    assert (summary.waiting_write_back, summary.in_progress) == (1, 2)
    assert (summary.polled_at, summary.ok_at, summary.error) == (now, None, "connection refused")
    await store.mark_written(claimed.id, "delivered", now)
    await store.record_source_poll("shop", None, now)
    summary = (await store.source_summaries(["shop"]))["shop"]
    assert summary.written == {"delivered": 1} and summary.ok_at == now and summary.error is None
