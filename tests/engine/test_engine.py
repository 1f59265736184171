"""The engine on a real store with scripted suppliers: every outcome class, and the ledgers after each.

The invariant checked throughout: units a supplier charged = units delivered + units under claims (+ held).
"""

from __future__ import annotations

from datetime import UTC, datetime

from enginekit import (
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
)

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, ClaimReason, OrderStatus, OrderView
from fulfil.storage import Store
from suppliers.stock import StockSupplier
from suppliers.taxonomy import Card, ErrorClass, OrderState, Outcome

TWO = [("main", 1), ("backup", 2)]


def delivered_units(view: OrderView, supplier: str) -> int:
    return sum(
        a.qty
        for a in view.attempts
        if a.supplier == supplier and a.state is AttemptState.SUCCEEDED and a.error_class != "invalid_key"
    )


def claimed_units(view: OrderView, supplier: str) -> int:
    return sum(c.qty for c in view.claims if c.supplier == supplier)


def balanced(view: OrderView, *suppliers: FakeSupplier) -> bool:
    return all(s.charged_units == delivered_units(view, s.name) + claimed_units(view, s.name) for s in suppliers)


async def harness(store: Store, cipher: CardCipher, *suppliers: FakeSupplier, **config: object) -> Harness:
    offers = [(s.name, i + 1) for i, s in enumerate(suppliers)]
    return Harness(store, cipher, make_config(offers, **config), {s.name: s for s in suppliers})


async def test_success_delivers_once(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[ok])
    h = await harness(store, cipher, main)
    await h.add(qty=3)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(view.cards) == 3
    assert [a.state for a in view.attempts] == [AttemptState.SUCCEEDED]
    assert balanced(view, main)


async def test_transient_is_retried_under_the_same_number(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[error(ErrorClass.TRANSIENT), error(ErrorClass.TRANSIENT), ok])
    h = await harness(store, cipher, main)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    numbers = main.numbers("place")
    assert len(numbers) == 3 and len(set(numbers)) == 1
    assert len(view.attempts) == 1


async def test_transient_past_the_budget_fails_over_with_a_new_number(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[error(ErrorClass.TRANSIENT)])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup, retry={"budget": 0.3, "initial_backoff": 0.01, "max_backoff": 0.05})
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert [(a.supplier, a.state, a.error_class) for a in view.attempts] == [
        ("main", AttemptState.FAILED, "transient"),
        ("backup", AttemptState.SUCCEEDED, None),
    ]
    assert set(main.numbers("place")).isdisjoint(backup.numbers("place"))
    assert balanced(view, main, backup)


async def test_lost_answer_is_settled_by_query_never_bought_elsewhere(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[books])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(main.numbers("place")) == 1 and main.numbers("query")
    assert backup.calls == []
    assert main.charged_units == 2 and balanced(view, main, backup)


async def test_unfound_ambiguous_attempt_is_resent_under_its_own_number(store: Store, cipher: CardCipher) -> None:
    # A system error that did not commit: the query says "no such order", the same number is sent again.
    main = FakeSupplier("main", place_steps=[error(ErrorClass.AMBIGUOUS, "5000"), ok], query_steps=[books])
    h = await harness(store, cipher, main)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(set(main.numbers("place"))) == 1 and len(main.numbers("place")) == 2
    assert main.charged_units == 1 and balanced(view, main)


async def test_supplier_says_failed_then_fail_over(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier(
        "main",
        place_steps=[error(ErrorClass.AMBIGUOUS)],
        query_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE, "failed")],
    )
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert [a.supplier for a in view.attempts] == ["main", "backup"]
    assert view.attempts[0].state is AttemptState.FAILED


async def test_undecided_supplier_parks_the_order_then_review_after_give_up(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[error(ErrorClass.AMBIGUOUS)], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(
        store,
        cipher,
        main,
        backup,
        retry={"budget": 0.5, "initial_backoff": 0.01, "max_backoff": 0.02},
        ambiguity={"query_interval": 5.0},  # parked this long; the supplier's own poll interval is 10 ms
    )
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING
    assert view.order.reason and "awaiting main" in view.order.reason
    assert await h.claim() is None, "a parked order is not claimable before its time"
    assert backup.calls == [], "never buy elsewhere while the first purchase may exist"
    # Past give_up_after the next pass hands it to a person instead of parking again.
    h.engine.config = h.engine.config.model_copy(
        update={"ambiguity": h.engine.config.ambiguity.model_copy(update={"give_up_after": 0.0, "query_interval": 0.0})}
    )
    await store.wake_order(view.attempts[0].number, datetime.now(UTC))
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert view.order.reason and view.order.reason.startswith("ambiguous_unresolved")
    assert backup.calls == []


async def test_failover_policy_claims_possible_double_and_moves_on(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(
        store,
        cipher,
        main,
        backup,
        retry={"budget": 0.5, "initial_backoff": 0.01, "max_backoff": 0.02},
        ambiguity={"query_interval": 0.01, "policy": "failover", "late_keys": "stock"},
    )
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert [c.reason for c in view.claims] == [ClaimReason.POSSIBLE_DOUBLE]
    assert view.claims[0].supplier == "main" and view.claims[0].qty == 1
    # The resolver finds the first purchase charged after all: the keys go back to stock, the claim says so.
    main.query_steps = [books]
    main.calls.clear()
    await h.engine.recover()
    after = await h.view()
    assert after.claims[0].evidence.get("resolution") == "charged"
    assert (await store.stock_counts())["sku"].available == 1
    assert main.charged_units == 1 and backup.charged_units == 1


async def test_unqueryable_supplier_goes_to_review_under_wait(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[charge_then_lose], queryable=False)
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert view.order.reason and "cannot be queried" in view.order.reason
    assert backup.calls == [] and main.numbers("query") == []


async def test_product_unavailable_cools_the_offer_and_fails_over(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE, "3004")])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    cooling = await store.active_cooldowns(datetime.now(UTC))
    assert ("main", "p-main") in cooling
    # The next order skips the cooling offer without calling it.
    await h.add("o-2")
    await h.run("o-2")
    assert len(main.numbers("place")) == 1


async def test_supplier_account_alerts_and_fails_over(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[failed(ErrorClass.SUPPLIER_ACCOUNT, "1019")])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    alerts = await store.events(name="supplier.account")
    assert alerts and alerts[0].supplier == "main"


async def test_order_rejected_fails_the_order_without_failover(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[failed(ErrorClass.ORDER_REJECTED, "4004")])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup, kind="direct")
    await h.add(account="blacklisted")
    view = await h.run()
    assert view.order.status is OrderStatus.FAILED
    assert view.order.reason and view.order.reason.startswith("order_rejected") and "4004" in view.order.reason
    assert backup.calls == [] and view.claims == ()


async def test_our_bug_goes_to_review_with_an_alert(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[failed(ErrorClass.OUR_BUG, "1001")])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert backup.calls == []
    assert await store.events(name="supplier.our_bug")


async def test_invalid_batch_is_claimed_and_reissued(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[cards_step(lambda n: [Card(password="bad key") for _ in range(n)])])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert [(c.supplier, c.reason, c.qty) for c in view.claims] == [("main", ClaimReason.INVALID_KEY, 2)]
    assert view.claims[0].amount is not None and str(view.claims[0].amount) in ("19.00", "19.0000")
    assert view.claims[0].supplier_order_no == view.attempts[0].number
    assert balanced(view, main, backup)


async def test_partly_invalid_batch_holds_the_good_keys_for_review(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[cards_step(lambda n: [good_card(), Card(password="")])])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add(qty=2)
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert view.order.reason and "1 valid keys held" in view.order.reason
    assert [(c.reason, c.qty) for c in view.claims] == [(ClaimReason.INVALID_KEY, 1)]
    assert backup.calls == []


async def test_a_key_delivered_before_is_invalid(store: Store, cipher: CardCipher) -> None:
    resold = good_card()
    main = FakeSupplier("main", place_steps=[cards_step(lambda n: [resold])])
    backup = FakeSupplier("backup", place_steps=[ok])
    h = await harness(store, cipher, main, backup)
    await h.add("o-1")
    await h.add("o-2")
    first = await h.run("o-1")
    second = await h.run("o-2")
    assert first.cards == (resold,)
    assert second.order.status is OrderStatus.DELIVERED and second.cards != (resold,)
    assert second.claims and second.claims[0].evidence["reasons"] == {"delivered_before": 1}


async def test_stock_first_then_upstream_and_review_when_nothing_is_left(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE, "3004")])
    shelf = StockSupplier("shelf", {}, store=store)
    config = make_config([("shelf", 0), ("main", 1)])
    h = Harness(store, cipher, config, {"shelf": shelf, "main": main})
    await store.import_stock("sku", [good_card()], datetime.now(UTC))
    await h.add("o-1")
    await h.add("o-2")
    assert (await h.run("o-1")).order.status is OrderStatus.DELIVERED
    assert main.calls == []
    view = await h.run("o-2")
    assert view.order.status is OrderStatus.REVIEW
    assert view.order.reason == "out_of_stock"


async def test_unknown_sku_goes_to_review(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[ok])
    h = await harness(store, cipher, main)
    await h.add()
    h.engine.reconfigure(h.engine.config.model_copy(update={"products": {}}))
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert view.order.reason and "unknown_sku" in view.order.reason and "'sku'" in view.order.reason
    assert main.calls == []


async def test_callback_wakes_the_waiting_order(store: Store, cipher: CardCipher) -> None:
    import asyncio

    outcome_ready = asyncio.Event()

    async def pending_until_ready(s: FakeSupplier, r):  # type: ignore[no-untyped-def]
        if outcome_ready.is_set():
            return s.charge(r)
        return Outcome(OrderState.PENDING)

    main = FakeSupplier(
        "main", place_steps=[lambda s, r: Outcome(OrderState.PENDING)], query_steps=[pending_until_ready]
    )
    main.settings = {"timeout": 1.0, "poll_interval": 5.0}  # slow polling: only the callback can make it quick
    h = await harness(
        store,
        cipher,
        main,
        retry={"budget": 30.0, "initial_backoff": 0.01, "max_backoff": 0.05},
        ambiguity={"query_interval": 5.0},
    )
    await h.add()
    run = asyncio.create_task(h.run())
    for _ in range(500):  # until the run waits on its number (a loaded machine may take a while)
        await asyncio.sleep(0.01)
        if main.numbers("place") and main.numbers("place")[0] in h.engine._wakers:  # noqa: SLF001
            break
    outcome_ready.set()
    number = main.numbers("place")[0]
    assert h.engine.notify(number)
    view = await asyncio.wait_for(run, timeout=2.0)
    assert view.order.status is OrderStatus.DELIVERED
