"""The process dies at the dangerous moments; a fresh engine takes over. Nothing bought twice, nothing lost.

"Dies" is a cancellation at the exact await the moment names, with no code of ours running after it (the
store commits each step in one transaction, so a cancellation leaves what a kill -9 would leave). The
successor is a new Engine on the same database after the leases are taken back, as `fulfil run` does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from enginekit import (
    FAST_RETRY,
    FakeSupplier,
    Harness,
    books,
    cards_step,
    charge_then_lose,
    error,
    good_card,
    make_config,
    ok,
    unpark,
)

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, ClaimReason, ClaimRecord, OrderStatus
from fulfil.storage import Store
from suppliers.base import PlaceRequest
from suppliers.taxonomy import Card, ErrorClass, OrderState, Outcome


async def die_here() -> None:
    """Cancel the running order task right here, as if the process were killed at this line."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0)


def two(store: Store, cipher: CardCipher, main: FakeSupplier, backup: FakeSupplier) -> Harness:
    config = make_config([("main", 1), ("backup", 2)])
    return Harness(store, cipher, config, {"main": main, "backup": backup})


async def crash_then_recover(store: Store, cipher: CardCipher, main: FakeSupplier, backup: FakeSupplier) -> Harness:
    first = two(store, cipher, main, backup)
    await first.add(qty=2)
    with pytest.raises(asyncio.CancelledError):
        await first.run()
    view = await first.view()
    assert view.order.status is OrderStatus.PROCESSING, "the dead worker left its order leased"
    released = await store.release_all_leases(datetime.now(UTC))
    assert released == 1
    successor = two(store, cipher, main, backup)
    successor.owner = "successor"
    return successor


async def test_killed_after_the_supplier_charged_before_the_answer(store: Store, cipher: CardCipher) -> None:
    async def charge_and_die(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        s.charge(r)
        await die_here()
        raise AssertionError("unreachable")

    main = FakeSupplier("main", place_steps=[charge_and_die, ok], query_steps=[books])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await crash_then_recover(store, cipher, main, backup)
    left = (await h.view()).attempts
    assert [a.state for a in left] == [AttemptState.SENT], "the write-ahead row says a request may have left"
    main.calls.clear()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert main.calls[0][0] == "query", "a sent attempt is asked about before anything else"
    assert main.numbers("place") == [] and backup.calls == []
    assert main.charged_units == 2 and len(view.cards) == 2
    assert {c.password for c in view.cards} == {c.password for c in main.ledger[left[0].number].cards}


async def test_killed_while_the_request_was_on_its_way(store: Store, cipher: CardCipher) -> None:
    async def die_before_commit(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        await die_here()
        raise AssertionError("unreachable")

    main = FakeSupplier("main", place_steps=[die_before_commit, ok], query_steps=[books])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await crash_then_recover(store, cipher, main, backup)
    number = (await h.view()).attempts[0].number
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    # Not found at the supplier: sent again under the same number, never under a new one elsewhere.
    assert set(main.numbers("place")) == {number} and backup.calls == []
    assert main.charged_units == 2 and len(view.attempts) == 1


async def test_killed_after_the_answer_before_delivery_was_written(store: Store, cipher: CardCipher) -> None:
    async def answer_then_die(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        outcome = s.charge(r)
        asyncio.current_task().cancel()  # type: ignore[union-attr]  # dies at the engine's next await
        return outcome

    main = FakeSupplier("main", place_steps=[answer_then_die], query_steps=[books])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await crash_then_recover(store, cipher, main, backup)
    assert (await h.view()).cards == (), "nothing was delivered before the crash"
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(main.numbers("place")) == 1 and backup.calls == []
    assert main.charged_units == 2 and len(view.cards) == 2


async def test_planned_attempt_is_driven_under_its_own_number(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[ok], query_steps=[books])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = two(store, cipher, main, backup)
    await h.add()
    order = await h.claim()
    assert order is not None
    # The process wrote its attempt and died before marking it sent: nothing left the building.
    planned = await store.open_attempt(order.id, h.owner, "main", 0, 1, None, datetime.now(UTC))
    await store.release_all_leases(datetime.now(UTC))
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert main.numbers("place") == [planned.number]
    assert [a.id for a in view.attempts] == [planned.id]


async def test_a_lost_lease_stops_the_old_worker_from_delivering(store: Store, cipher: CardCipher) -> None:
    gate = asyncio.Event()

    async def slow_ok(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        await gate.wait()
        return s.charge(r)

    main = FakeSupplier("main", place_steps=[slow_ok], query_steps=[books])
    backup = FakeSupplier("backup", place_steps=[ok])
    old = two(store, cipher, main, backup)
    await old.add()
    running = asyncio.create_task(old.run())
    await asyncio.sleep(0.1)
    # The old worker stalls past its lease; another takes the order over and settles it.
    await store.release_all_leases(datetime.now(UTC))
    new = two(store, cipher, main, backup)
    new.owner = "new"
    gate.set()
    done = await new.run()
    await running
    assert done.order.status is OrderStatus.DELIVERED
    assert main.charged_units == 1 and len(done.cards) == 1
    assert len(done.attempts) == 1


class DiesAfterHolding(Store):
    """The real store; the process dies right after the first `hold_cards` commits."""

    died = False

    async def hold_cards(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        await super().hold_cards(*args, **kwargs)  # type: ignore[arg-type]
        if not DiesAfterHolding.died:
            DiesAfterHolding.died = True
            await die_here()


async def test_killed_between_the_invalid_key_claim_and_the_final_mark(db_url: str, cipher: CardCipher) -> None:
    from enginekit import cards_step

    from fulfil.domain import ClaimReason
    from suppliers.taxonomy import Card

    DiesAfterHolding.died = False
    await asyncio.to_thread(Store.upgrade, db_url)
    dying = await DiesAfterHolding.open(db_url, cipher)
    store = await Store.open(db_url, cipher)
    try:
        main = FakeSupplier("main", place_steps=[cards_step(lambda n: [Card(password="junk") for _ in range(n)])])
        main.query_steps = [books]
        backup = FakeSupplier("backup", place_steps=[ok])
        first = two(dying, cipher, main, backup)
        await first.add(qty=2)
        with pytest.raises(asyncio.CancelledError):
            await first.run()
        left = await first.view()
        assert [c.reason for c in left.claims] == [ClaimReason.INVALID_KEY]
        assert left.attempts[0].state is AttemptState.SENT, "the attempt is not final until its claim is written"
        await store.release_all_leases(datetime.now(UTC))
        successor = two(store, cipher, main, backup)
        successor.owner = "successor"
        view = await successor.run()
        assert view.order.status is OrderStatus.DELIVERED
        assert [(c.reason, c.qty) for c in view.claims] == [(ClaimReason.INVALID_KEY, 2)], "one claim, not two"
        assert main.charged_units == 2 and backup.charged_units == 2 and len(view.cards) == 2
        assert main.numbers("place") == [left.attempts[0].number], "the invalid batch is not bought again"
    finally:
        await dying.close()
        await store.close()


class DiesAfterTheClaimDraft(Store):
    """The real store; the process dies right after the first possible-double claim commits (before its order
    reaches review)."""

    died = False

    async def open_claim(self, *args: object, **kwargs: object) -> ClaimRecord:
        claim = await super().open_claim(*args, **kwargs)  # type: ignore[arg-type]
        if claim.reason is ClaimReason.POSSIBLE_DOUBLE and not DiesAfterTheClaimDraft.died:
            DiesAfterTheClaimDraft.died = True
            await die_here()
        return claim


async def test_killed_between_the_possible_double_draft_and_review_is_not_bought_elsewhere(
    db_url: str, cipher: CardCipher
) -> None:
    """Policy `wait`, a supplier that cannot be asked by our number: the answer is lost after the charge and
    every re-send's answer too, so the order goes to a person with a claim draft naming the number. A kill
    after the draft committed and before the order reached review must not let the next worker take the draft
    for "moved on" (as under policy `failover` or an operator's retry) and buy the order from the backup while
    the first purchase exists."""
    DiesAfterTheClaimDraft.died = False
    await asyncio.to_thread(Store.upgrade, db_url)
    dying = await DiesAfterTheClaimDraft.open(db_url, cipher)
    store = await Store.open(db_url, cipher)
    try:
        lost = error(ErrorClass.AMBIGUOUS)
        main = FakeSupplier("main", place_steps=[charge_then_lose, lost], queryable=False)
        backup = FakeSupplier("backup", place_steps=[ok])
        config = make_config([("main", 1), ("backup", 2)], retry=FAST_RETRY)
        first = Harness(dying, cipher, config, {"main": main, "backup": backup})
        await first.add(qty=2)
        with pytest.raises(asyncio.CancelledError):
            await first.run()
        left = await first.view()
        assert left.order.status is OrderStatus.PROCESSING, "killed before the order reached review"
        assert [c.reason for c in left.claims] == [ClaimReason.POSSIBLE_DOUBLE]
        await store.release_all_leases(datetime.now(UTC))
        successor = Harness(store, cipher, config, {"main": main, "backup": backup})
        successor.owner = "successor"
        view = await successor.run()
        assert backup.charged_units == 0, "bought from the backup while the first purchase may exist"
        assert view.order.status is OrderStatus.REVIEW, view.order.reason
        assert left.attempts[0].number in (view.order.reason or "")
        assert "cannot be queried by our number" in (view.order.reason or ""), "the draft's why, for the person"
        assert [c.reason for c in view.claims] == [ClaimReason.POSSIBLE_DOUBLE], "one claim, not two"
    finally:
        await dying.close()
        await store.close()


async def test_an_order_that_failed_over_before_a_switch_to_wait_is_delivered_from_its_later_attempt(
    db_url: str, cipher: CardCipher
) -> None:
    """Policy `failover`: the main supplier's answer is lost, a possible-double claim is drafted and the order is
    bought from the backup, which answers "processing" (parked). The operator then switches to `wait`. The
    claimed attempt must not send the order to review on the next pass (it moved on legitimately, a later
    attempt exists): the backup's purchase is asked about and its key delivered to the buyer, not released to
    stock as a late success of an order already in review."""
    await asyncio.to_thread(Store.upgrade, db_url)
    store = await Store.open(db_url, cipher)
    try:
        ready = False

        def processing_then_goods(s: FakeSupplier, r: PlaceRequest) -> Outcome:
            return s.found(r) if ready else Outcome(OrderState.PENDING, supplier_order_id=f"S-{r.number}")

        def pending(s: FakeSupplier, r: PlaceRequest) -> Outcome:
            s.charge(r)  # charged; the goods come with a later query
            return Outcome(OrderState.PENDING, supplier_order_id=f"S-{r.number}")

        lost = error(ErrorClass.AMBIGUOUS)
        main = FakeSupplier("main", place_steps=[lost], query_steps=[lost])
        backup = FakeSupplier("backup", place_steps=[pending], query_steps=[processing_then_goods])
        suppliers = {"main": main, "backup": backup}

        def config(policy: str) -> Any:
            ambiguity = {"query_interval": 0.01, "give_up_after": 3600.0, "policy": policy}
            return make_config([("main", 1), ("backup", 2)], retry=FAST_RETRY, ambiguity=ambiguity)

        harness = Harness(store, cipher, config("failover"), suppliers)
        await harness.add(qty=1)
        first = await harness.run()
        assert [(a.supplier, a.state) for a in first.attempts] == [
            ("main", AttemptState.AMBIGUOUS),
            ("backup", AttemptState.SENT),
        ], first.order.reason
        assert [c.reason for c in first.claims] == [ClaimReason.POSSIBLE_DOUBLE]
        harness.engine.reconfigure(config("wait"))  # SIGHUP
        ready = True
        await unpark(store)
        view = await harness.run()
        assert view.order.status is OrderStatus.DELIVERED, view.order.reason
        assert len(view.cards) == 1 and backup.charged_units == 1
        assert await store.stock_counts() == {}, "the buyer's key went to stock"
    finally:
        await store.close()


class DiesOnTheWayToReview(Store):
    """The real store; the process dies right after an order reaches review (before its attempt is marked)."""

    died = False

    async def finish_order(self, order_id: int, owner: str, status: OrderStatus, reason: str, now: datetime) -> None:
        await super().finish_order(order_id, owner, status, reason, now)
        if status is OrderStatus.REVIEW and not DiesOnTheWayToReview.died:
            DiesOnTheWayToReview.died = True
            await die_here()


async def test_killed_between_review_and_the_final_mark_of_an_invalid_batch_claims_each_unit_once(
    db_url: str, cipher: CardCipher
) -> None:
    """A supplier that cannot be queried sells a batch of two keys, one invalid: the invalid one is claimed, both
    are held, the order goes to a person, and the process dies before the attempt is marked final. Nothing is
    lost (2 charged = 1 claimed + 1 valid key held) and nothing is claimed twice: no possible-double draft for an
    attempt whose answer is in hand, then or after an operator's retry finishes it from its receipt."""
    DiesOnTheWayToReview.died = False
    await asyncio.to_thread(Store.upgrade, db_url)
    dying = await DiesOnTheWayToReview.open(db_url, cipher)
    store = await Store.open(db_url, cipher)
    try:
        half_bad = cards_step(lambda qty: [good_card(), Card(password="bad")])
        main = FakeSupplier("main", place_steps=[half_bad], queryable=False)
        config = make_config([("main", 1)], retry=FAST_RETRY)
        first = Harness(dying, cipher, config, {"main": main})
        await first.add(qty=2)
        with pytest.raises(asyncio.CancelledError):
            await first.run()
        left = await first.view()
        assert left.order.status is OrderStatus.REVIEW
        assert [a.state for a in left.attempts] == [AttemptState.SENT], "killed before the final mark"
        assert [(c.reason, c.qty) for c in left.claims] == [(ClaimReason.INVALID_KEY, 1)]
        held = await store.held_cards()
        assert main.charged_units == 2 and len(held) == 2
        await store.review_retry(left.order.ref, "agent", datetime.now(UTC))
        successor = Harness(store, cipher, config, {"main": main})
        successor.owner = "successor"
        view = await successor.run()
        assert view.order.status is OrderStatus.REVIEW, view.order.reason
        assert [a.state for a in view.attempts] == [AttemptState.SUCCEEDED], "finished from its receipt"
        assert [(c.reason, c.qty) for c in view.claims] == [(ClaimReason.INVALID_KEY, 1)], "each unit claimed once"
        assert main.charged_units == 2, "not bought again"
        assert len(await store.held_cards()) == 2
    finally:
        await dying.close()
        await store.close()
