"""Regression tests for the money-safety review: each names the sequence it guards against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from enginekit import (
    FAST_RETRY,
    FakeSupplier,
    Harness,
    books,
    cards_step,
    charge_then_lose,
    error,
    failed,
    good_card,
    make_config,
    ok,
    pair,
)

from fulfil.crypto import CardCipher
from fulfil.domain import ClaimReason, OrderStatus
from fulfil.storage import LeaseLost, Store
from suppliers.base import PlaceRequest
from suppliers.taxonomy import Card, ErrorClass, OrderState, Outcome


async def test_planned_to_sent_is_fenced_and_happens_once(store: Store, cipher: CardCipher) -> None:
    h = pair(store, cipher, FakeSupplier("main"), FakeSupplier("backup"))
    await h.add()
    order = await h.claim()
    assert order is not None
    attempt = await store.open_attempt(order.id, h.owner, "main", 0, 1, None, datetime.now(UTC))
    await store.release_all_leases(datetime.now(UTC))
    taken = await store.claim_orders("new", 1, 60, datetime.now(UTC))
    assert [o.id for o in taken] == [order.id]
    with pytest.raises(LeaseLost):
        await store.mark_sent(attempt.id, order.id, h.owner, datetime.now(UTC))
    sent = await store.mark_sent(attempt.id, order.id, "new", datetime.now(UTC))
    assert sent is not None and sent.state.value == "sent"
    assert await store.mark_sent(attempt.id, order.id, "new", datetime.now(UTC)) is None


async def test_operator_retry_is_a_watermark_not_a_clock(store: Store, cipher: CardCipher) -> None:
    # The CLI's clock runs an hour ahead of the daemon's: attempts made after the retry must still count as
    # after it, or each would be set aside and the order bought again and again.
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE)])
    h = pair(
        store,
        cipher,
        main,
        backup,
        retry={"budget": 0.5, "initial_backoff": 0.01, "max_backoff": 0.02},
        ambiguity={"query_interval": 5.0, "give_up_after": 0.0},
    )
    await h.add()
    assert (await h.run()).order.status is OrderStatus.REVIEW
    await store.review_retry("o-1", "op", datetime.now(UTC) + timedelta(hours=1))
    # The first attempt is set aside under a claim; main is tried again under a new number.
    h.engine.config = h.engine.config.model_copy(
        update={"ambiguity": h.engine.config.ambiguity.model_copy(update={"give_up_after": 3600.0})}
    )
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING, "parked on the new attempt, not bought a third time"
    assert len(set(main.numbers("place"))) == 2
    assert [c.reason for c in view.claims] == [ClaimReason.POSSIBLE_DOUBLE]
    await store.wake_order(view.attempts[-1].number, datetime.now(UTC))
    again = await h.run()
    assert len(set(main.numbers("place"))) == 2, "the new attempt is waited on, never set aside"
    assert [c.reason for c in again.claims] == [ClaimReason.POSSIBLE_DOUBLE]


async def test_an_acknowledged_attempt_is_never_abandoned_under_failover(store: Store, cipher: CardCipher) -> None:
    def pending(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return Outcome(OrderState.PENDING)

    main = FakeSupplier("main", place_steps=[pending], query_steps=[pending])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = pair(
        store,
        cipher,
        main,
        backup,
        retry={"budget": 0.5, "initial_backoff": 0.01, "max_backoff": 0.02},
        ambiguity={"query_interval": 0.0, "policy": "failover"},
    )
    await h.add()
    first = await h.run()
    assert first.order.status is OrderStatus.PENDING
    assert first.attempts[0].evidence.get("acknowledged") is True
    second = await h.run()  # a later pass (or another daemon after a crash) keeps waiting on it
    assert second.order.status is OrderStatus.PENDING
    assert backup.calls == [] and second.claims == ()


async def test_late_success_of_a_set_aside_attempt_does_not_loop_through_review(
    store: Store, cipher: CardCipher
) -> None:
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE)])
    h = pair(
        store,
        cipher,
        main,
        backup,
        retry={"budget": 0.5, "initial_backoff": 0.01, "max_backoff": 0.02},
        ambiguity={"query_interval": 0.0, "policy": "failover", "late_keys": "stock"},
    )
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW  # nothing else could serve it
    main.query_steps = [books]
    for _ in range(3):
        await h.engine.recover()
        after = await h.view()
        assert after.order.status is OrderStatus.REVIEW
    assert after.claims[0].evidence.get("resolution") == "charged"
    assert (await store.stock_counts())["sku"].available == 1, "the charged key is kept, once"


async def test_late_charge_with_nothing_to_keep_opens_a_claim(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = pair(
        store,
        cipher,
        main,
        backup,
        kind="direct",
        retry={"budget": 0.5, "initial_backoff": 0.01, "max_backoff": 0.02},
        ambiguity={"query_interval": 0.0, "give_up_after": 0.0},
    )
    await h.add(account="123")
    assert (await h.run()).order.status is OrderStatus.REVIEW
    await store.review_refund("o-1", "op", datetime.now(UTC))

    def topped_up(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return Outcome(OrderState.SUCCEEDED, supplier_order_id="S-1")

    main.query_steps = [topped_up]
    await h.engine.recover()
    view = await h.view()
    assert [(c.reason, c.qty) for c in view.claims] == [(ClaimReason.CHARGED_NOT_DELIVERED, 1)]


async def test_an_order_that_keeps_crashing_goes_to_a_person(store: Store, cipher: CardCipher) -> None:
    def boom(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        raise RuntimeError("adapter bug")

    main = FakeSupplier("main", place_steps=[boom], query_steps=[boom])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = pair(store, cipher, main, backup, daemon={"lease": 0.0})
    await h.add()
    for _ in range(2):
        view = await h.run()
        assert view.order.status is OrderStatus.PENDING
        assert view.order.reason and "retrying after a crash" in view.order.reason
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert view.order.reason and "crashed 3 times" in view.order.reason and "adapter bug" in view.order.reason
    assert backup.calls == [], "a crash is not a reason to buy elsewhere"


@pytest.mark.parametrize("answer", ["refused_as_our_bug", "half_the_keys_invalid"])
async def test_an_answer_in_hand_at_an_unqueryable_supplier_is_not_claimed_again_as_a_possible_double(
    store: Store, cipher: CardCipher, answer: str
) -> None:
    """The order goes to a person while its attempt is still open (it is marked final right after, so a crash
    between leaves it open): the draft for attempts nobody can settle must not cover this one, whose answer is
    known. Before, a refusal (nothing charged) and an invalid batch (claimed as invalid_key, the valid keys held)
    each got a possible_double claim for the attempt's whole cost on top."""
    step = failed(ErrorClass.OUR_BUG) if answer == "refused_as_our_bug" else cards_step(
        lambda qty: [good_card(), Card(password="bad")]
    )
    main = FakeSupplier("main", place_steps=[step], queryable=False)
    h = Harness(store, cipher, make_config([("main", 1)], retry=FAST_RETRY), {"main": main})
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW, view.order.reason
    claims = sorted((c.reason, c.qty) for c in view.claims)
    if answer == "refused_as_our_bug":
        assert main.charged_units == 0 and claims == []
    else:
        assert main.charged_units == 2 and claims == [(ClaimReason.INVALID_KEY, 1)]
