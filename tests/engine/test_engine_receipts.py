"""Receipts: the supplier's answer is written before anything is done with it, and every later pass finishes from
it. Each test breaks the path between the answer and the delivery the way an operator's worst day would: a lost
lease, a database error, a kill right after the receipt, a kill inside the delivery transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from enginekit import FakeSupplier, Harness, charge_then_lose, charge_without_keys, ok, refuse_repeats
from sqlalchemy import update
from test_engine_crash import die_here, two

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, ClaimReason, OrderStatus, ReceiptKind
from fulfil.storage import Store, StoreError
from fulfil.storage.direct import FALL_BACK, Script
from fulfil.storage.schema import orders
from suppliers.base import PlaceRequest
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome


def unqueryable(name: str, *steps: object) -> FakeSupplier:
    """An acg-faka-like supplier: synchronous, cannot be asked by our number, refuses a repeated number."""
    return FakeSupplier(name, place_steps=list(steps) or [refuse_repeats], queryable=False)  # type: ignore[arg-type]


async def steal_lease(store: Store, ref: str) -> None:
    """Another daemon took the order over (our lease expired while we waited on the supplier)."""
    async with store._write() as conn:  # noqa: SLF001 - the test plays a second daemon
        await conn.execute(update(orders).where(orders.c.ref == ref).values(lease_owner="thief"))


async def give_back(store: Store) -> None:
    await store.release_all_leases(datetime.now(UTC))


async def test_a_lost_lease_after_a_synchronous_success_ends_delivered_from_the_receipt(
    store: Store, cipher: CardCipher
) -> None:
    async def charge_and_lose_the_lease(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        outcome = refuse_repeats(s, r)
        await steal_lease(store, "o-1")
        return outcome

    main = unqueryable("main", charge_and_lose_the_lease, refuse_repeats)
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.PROCESSING and view.cards == (), "the delivery was refused: lease lost"
    (attempt,) = view.attempts
    receipt = await store.receipt_for(attempt.id)
    assert receipt is not None and receipt.kind is ReceiptKind.GOODS and len(receipt.cards) == 2
    assert receipt.applied_at is None

    await give_back(store)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert main.numbers("place") == [attempt.number], "finished from the receipt: never sent again"
    assert backup.calls == [] and view.claims == ()
    assert {c.password for c in view.cards} == {c.password for c in main.ledger[attempt.number].cards}
    (done,) = view.attempts
    assert done.state is AttemptState.SUCCEEDED
    assert done.supplier_order_id == f"S-{attempt.number}", "a delivered attempt keeps the supplier's order id"
    assert "answer" in done.evidence
    applied = await store.receipt_for(attempt.id)
    assert applied is not None and applied.applied_at is not None


class FailingDelivery(Store):
    """The real store whose delivery transaction fails the first `fail` times ("database is locked")."""

    fail = 1

    async def deliver(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        if FailingDelivery.fail > 0:
            FailingDelivery.fail -= 1
            raise StoreError("database error: database is locked")
        await super().deliver(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_database_error_at_delivery_is_finished_from_the_receipt(db_url: str, cipher: CardCipher) -> None:
    FailingDelivery.fail = 1
    await asyncio.to_thread(Store.upgrade, db_url)
    store = await FailingDelivery.open(db_url, cipher)
    try:
        main = unqueryable("main")
        backup = FakeSupplier("backup", place_steps=[ok])
        h = two(store, cipher, main, backup)
        await h.add(qty=3)
        first = await h.run()
        # The engine counted a crash and parked the order to try again; the answer is on record.
        assert first.order.status is OrderStatus.PENDING and first.cards == ()
        await asyncio.sleep(0)
        async with store._write() as conn:  # noqa: SLF001 - skip the crash back-off, not the logic
            await conn.execute(update(orders).values(not_before=None))
        view = await h.run()
        assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 3
        assert len(main.numbers("place")) == 1 and backup.calls == []
        assert main.charged_units == 3 and view.claims == ()
    finally:
        await store.close()


class DiesAt(Store):
    """The real store; the process dies at one named moment, once."""

    moment = ""

    async def record_receipt(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
        receipt = await super().record_receipt(*args, **kwargs)  # type: ignore[arg-type]
        if DiesAt.moment == "after_receipt":
            DiesAt.moment = ""
            await die_here()
        return receipt

    def _deliver(self, *args: object, **kwargs: object) -> Script:  # type: ignore[override]
        answer = yield from super()._deliver(*args, **kwargs)  # type: ignore[arg-type]
        if DiesAt.moment == "in_delivery" and answer is not FALL_BACK:
            DiesAt.moment = ""
            # Inside the delivery transaction, every statement run, before its commit: it rolls back, as under
            # kill -9, and the order's task is cancelled at this point.
            raise asyncio.CancelledError
        return answer

    def _deliver_at_once(self, *args: object, **kwargs: object) -> Script:  # type: ignore[override]
        if DiesAt.moment == "in_delivery":
            DiesAt.moment = ""
            # PostgreSQL's delivery is one statement with no transaction around it: the moment before its commit
            # is the moment before it reaches the server.
            raise asyncio.CancelledError
        return (yield from super()._deliver_at_once(*args, **kwargs))  # type: ignore[arg-type]

    async def deliver(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        await super().deliver(*args, **kwargs)  # type: ignore[arg-type]
        if DiesAt.moment == "after_delivery":
            DiesAt.moment = ""
            await die_here()  # committed, and nobody heard: the books must say delivered, and nothing is bought again


async def _dies_once(
    db_url: str, cipher: CardCipher, moment: str
) -> tuple[Store, Harness, FakeSupplier, FakeSupplier]:
    """A store that dies at `moment` once; the harness whose first order (two units) died there, its suppliers."""
    DiesAt.moment = moment
    await asyncio.to_thread(Store.upgrade, db_url)
    dying = await DiesAt.open(db_url, cipher)
    main, backup = unqueryable("main"), FakeSupplier("backup", place_steps=[ok])
    first = two(dying, cipher, main, backup)
    await first.add(qty=2)
    with pytest.raises(asyncio.CancelledError):
        await first.run()
    assert DiesAt.moment == "", "it died where it should"
    return dying, first, main, backup


async def test_killed_after_the_delivery_committed_before_anyone_heard(db_url: str, cipher: CardCipher) -> None:
    dying, first, main, backup = await _dies_once(db_url, cipher, "after_delivery")
    try:
        view = await first.view()
        assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 2
        assert [a.state for a in view.attempts] == [AttemptState.SUCCEEDED]
        receipt = await dying.receipt_for(view.attempts[0].id)
        assert receipt is not None and receipt.applied_at is not None, "the receipt was applied with the delivery"
        await give_back(dying)
        assert await dying.claim_orders("successor", 10, 60, datetime.now(UTC)) == [], "nothing left to do"
        assert main.charged_units == 2 and backup.calls == [] and view.claims == ()
    finally:
        await dying.close()


@pytest.mark.parametrize("moment", ["after_receipt", "in_delivery"])
async def test_killed_between_the_receipt_and_the_delivery(db_url: str, cipher: CardCipher, moment: str) -> None:
    dying, first, main, backup = await _dies_once(db_url, cipher, moment)
    store = await Store.open(db_url, cipher)
    try:
        left = await first.view()
        assert left.cards == () and [a.state for a in left.attempts] == [AttemptState.SENT]
        receipt = await store.receipt_for(left.attempts[0].id)
        assert receipt is not None and len(receipt.cards) == 2, "the answer was written before the crash"

        await give_back(store)
        successor = two(store, cipher, main, backup)
        successor.owner = "successor"
        view = await successor.run()
        assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 2
        assert main.numbers("place") == [left.attempts[0].number] and backup.calls == []
        assert main.charged_units == 2 and view.claims == ()
    finally:
        await dying.close()
        await store.close()


async def test_a_sent_attempt_at_an_unqueryable_supplier_is_settled_by_sending_its_number_again(
    store: Store, cipher: CardCipher
) -> None:
    """The answer was lost after the charge: the same number again says "already exists" — charged. The loss is
    claimed under our number and the order is bought from the next offer."""
    main = unqueryable("main", charge_then_lose, refuse_repeats)
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert backup.charged_units == 2 and len(view.cards) == 2
    (claim,) = view.claims
    assert (claim.reason, claim.qty, claim.supplier) == (ClaimReason.CHARGED_NOT_DELIVERED, 2, "main")
    assert claim.supplier_order_no == view.attempts[0].number, "the claim names our number (the shop stores it)"
    assert main.charged_units == claim.qty, "every unit main charged is claimed"


async def test_a_send_that_never_arrived_is_bought_by_the_resend(store: Store, cipher: CardCipher) -> None:
    def timed_out_before_arriving(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return Outcome.error_of(ErrorClass.AMBIGUOUS, Evidence(message="read timeout"))

    main = unqueryable("main", timed_out_before_arriving, refuse_repeats)
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and view.claims == ()
    assert len(set(main.numbers("place"))) == 1 and main.charged_units == 1 and backup.calls == []


async def test_genuinely_unknown_goes_to_review_with_a_claim_draft_naming_the_number(
    store: Store, cipher: CardCipher
) -> None:
    main = unqueryable("main", charge_then_lose)  # every send, the answer is lost
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW and backup.calls == []
    (claim,) = view.claims
    assert claim.reason is ClaimReason.POSSIBLE_DOUBLE and claim.supplier_order_no == view.attempts[0].number


async def test_a_killed_process_leaves_no_charge_without_a_delivery_or_a_claim(
    store: Store, cipher: CardCipher
) -> None:
    """kill -9 while the purchase was in flight at an unqueryable supplier: the successor settles it."""

    async def charge_and_die(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        refuse_repeats(s, r)
        await die_here()
        raise AssertionError("unreachable")

    main = unqueryable("main", charge_and_die, refuse_repeats)
    backup = FakeSupplier("backup", place_steps=[ok])
    first = two(store, cipher, main, backup)
    await first.add(qty=2)
    with pytest.raises(asyncio.CancelledError):
        await first.run()
    await give_back(store)
    successor = two(store, cipher, main, backup)
    successor.owner = "successor"
    view = await successor.run()
    assert view.order.status is OrderStatus.DELIVERED
    claimed = sum(c.qty for c in view.claims if c.supplier == "main")
    assert main.charged_units == 2 == claimed
    assert backup.charged_units == 2 == len(view.cards)


async def test_charged_without_keys_is_claimed_and_bought_elsewhere(store: Store, cipher: CardCipher) -> None:
    main = unqueryable("main", charge_without_keys())
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 2
    (claim,) = view.claims
    assert (claim.reason, claim.qty, claim.supplier) == (ClaimReason.CHARGED_NOT_DELIVERED, 2, "main")
    assert claim.supplier_order_id == f"S-{view.attempts[0].number}"
    assert "正在发货中" in str(claim.evidence["supplier_said"]), "the shop's text is the evidence, never a key"
    assert main.charged_units == 2 == claim.qty


async def test_an_offer_selling_non_keys_is_cooled_down_after_two_in_a_row(store: Store, cipher: CardCipher) -> None:
    main = unqueryable("main", charge_without_keys())
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    for ref in ("o-1", "o-2", "o-3", "o-4"):
        await h.add(ref)
        view = await h.run(ref)
        assert view.order.status is OrderStatus.DELIVERED
    assert len(main.numbers("place")) == 2, "two charges without keys, then the offer is passed by"
    assert ("main", "p-main") in await store.active_cooldowns(datetime.now(UTC))
    alerts = await store.events(name="supplier.non_keys")
    assert [e.supplier for e in alerts] == ["main"]


def charged_then_says_gone(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    """acg-faka reselling: our payment commits, then its own upstream check throws 商品不存在."""
    if r.number in s.ledger:
        return Outcome(OrderState.EXISTS, evidence=Evidence(code="0", message="The request ID already exists"))
    s.charge(r)
    gone = Evidence(code="0", message="商品不存在")
    return Outcome(OrderState.FAILED, error=ErrorClass.PRODUCT_UNAVAILABLE, evidence=gone, maybe_charged=True)


def really_gone(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    gone = Evidence(code="0", message="商品不存在")
    return Outcome(OrderState.FAILED, error=ErrorClass.PRODUCT_UNAVAILABLE, evidence=gone, maybe_charged=True)


async def test_a_failure_given_after_the_charge_is_told_apart_by_the_same_number(
    store: Store, cipher: CardCipher
) -> None:
    main = unqueryable("main", charged_then_says_gone)
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and backup.charged_units == 1
    (claim,) = view.claims
    assert (claim.reason, claim.supplier, claim.qty) == (ClaimReason.CHARGED_NOT_DELIVERED, "main", 1)
    assert main.charged_units == 1


async def test_a_failure_that_stays_the_same_was_not_charged(store: Store, cipher: CardCipher) -> None:
    main = unqueryable("main", really_gone)
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and view.claims == ()
    assert len(main.numbers("place")) == 3 and len(set(main.numbers("place"))) == 1, "probes under one number"
    assert ("main", "p-main") in await store.active_cooldowns(datetime.now(UTC))


async def test_over_long_supplier_values_never_make_delivery_fail(store: Store, cipher: CardCipher) -> None:
    """PostgreSQL refuses a value wider than its column; the store bounds what suppliers supply, so an answer
    with a huge order id or expiry text is delivered instead of failing every pass."""

    def long_values(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        made = s.charge(r)
        cards = tuple(Card(password=c.password, number=c.number, expires="2030-01-01 " + "x" * 500) for c in made.cards)
        return Outcome(OrderState.SUCCEEDED, cards=cards, supplier_order_id="S" * 5000, evidence=Evidence(message="ok"))

    main = FakeSupplier("main", place_steps=[long_values])
    h = two(store, cipher, main, FakeSupplier("backup", place_steps=[ok]))
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 2
    (attempt,) = view.attempts
    assert attempt.supplier_order_id is not None and len(attempt.supplier_order_id) == 128
    assert attempt.supplier_order_id.startswith("S" * 100)
    assert all(c.expires is not None and len(c.expires) == 64 for c in view.cards)


async def test_unapplied_receipts_pair_each_receipt_with_its_own_attempt(store: Store, cipher: CardCipher) -> None:
    """Receipt ids and attempt ids differ (a first attempt may get no receipt): a receipt must never be read as
    another attempt's answer, or the resolver would book one supplier's keys on another's purchase."""
    main = FakeSupplier("main", place_steps=[ok])
    h = two(store, cipher, main, FakeSupplier("backup", place_steps=[ok]))
    await h.add("o-1")
    await h.add("o-2")
    order = await h.claim()
    assert order is not None
    now = datetime.now(UTC)
    first = await store.open_attempt(order.id, h.owner, "main", 0, 1, None, now)  # no receipt
    second = await store.open_attempt(order.id, h.owner, "main", 0, 1, None, now)
    await store.mark_sent(second.id, order.id, h.owner, now)
    await store.record_receipt(second.id, ReceiptKind.GOODS, now, cards=[Card(password="K" + "1" * 15)])
    assert await store.unapplied_receipts() == [], "the order is still being worked on: the engine applies it"
    await store.finish_order(order.id, h.owner, OrderStatus.REVIEW, "handed to a person", now)
    ((receipt, attempt),) = await store.unapplied_receipts()
    assert (receipt.attempt_id, attempt.id, attempt.number) == (second.id, second.id, second.number)
    assert receipt.id == first.id != second.id, "the ids differ: exactly the case a mix-up would get wrong"
