"""The adapter contract: what the engine may rely on from every supplier adapter, checked against each.

Each test runs for fulu and acg_faka (real simulator over loopback HTTP) and for stock (real SQLite and
PostgreSQL). A capability an adapter declares it lacks (`can_query = False`, no balance, `local`) skips
the point that needs it, and a separate test checks the declaration against what the adapter does.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from contractkit import (
    ACG_KEY,
    FULU_SECRET,
    Harness,
    card_set,
    charged_units,
    leaks,
    settle,
)

from fulfil.storage import LeaseLost
from suppliers.base import Balance, StockCheck, Supplier
from suppliers.registry import supplier_class
from suppliers.taxonomy import ErrorClass, OrderState, Outcome

SUT = tuple[Supplier, Harness]


def assert_failure_evidence(outcome: Outcome, harness: Harness, *, answered: bool) -> None:
    """A failure says why: a message always; the supplier's own code when the supplier answered one."""
    assert outcome.state in (OrderState.FAILED, OrderState.ERROR)
    assert outcome.evidence.message, outcome
    if answered and harness.networked:
        assert outcome.evidence.code, outcome


def skip_unless_networked(harness: Harness) -> None:
    if not harness.networked:
        pytest.skip(f"{harness.kind} is local: one database transaction, no connection to refuse or answer to lose")


# --- declarations ---------------------------------------------------------------------------------------


def test_declared_capabilities_are_consistent(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    assert supplier_class(supplier.type_name) is type(supplier)  # the registry builds what `type:` names
    if supplier.asynchronous:
        assert supplier.can_query, "an asynchronous supplier must be queryable: the outcome comes from polling"
    assert supplier.local == (not harness.networked)
    assert FULU_SECRET not in repr(supplier) and ACG_KEY not in repr(supplier)


# --- buying ---------------------------------------------------------------------------------------------


async def test_place_delivers_exactly_qty_cards(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    request = await harness.request(3)

    first = await supplier.place(request)

    if supplier.asynchronous:
        assert first.state in (OrderState.PENDING, OrderState.SUCCEEDED), first
    else:
        assert first.state is OrderState.SUCCEEDED, first  # a synchronous supplier answers with the goods
    final = await settle(supplier, request, first)
    assert (final.state, final.error) == (OrderState.SUCCEEDED, None), final
    assert len(final.cards) == 3 and len(card_set(final.cards)) == 3
    assert all(harness.fits(card) for card in final.cards)
    assert final.delivered_in_store == supplier.local
    assert leaks(final) == [] and leaks(first, final.cards) == []
    assert await harness.charged() == 3


async def test_same_number_twice_never_charges_twice(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    if not supplier.idempotent_place:
        pytest.skip(f"{harness.kind} does not declare a repeated number safe")
    request = await harness.request(2)
    first = await settle(supplier, request, await supplier.place(request))
    assert first.state is OrderState.SUCCEEDED
    assert await harness.charged() == 2

    try:
        again = await supplier.place(request)
    except LeaseLost:
        # Stock: the attempt's order was delivered in the same transaction, so the lease fence refuses.
        assert supplier.local
    else:
        # A repeat must not be a failure (the engine would buy elsewhere while the first purchase stands),
        # nor a success with other goods. Whatever it says, settled, it is the first purchase or nothing.
        assert again.state is not OrderState.FAILED, again
        settled = await settle(supplier, request, again) if again.state is OrderState.PENDING else again
        if settled.state is OrderState.SUCCEEDED:
            assert card_set(settled.cards) == card_set(first.cards)
        assert leaks(again, first.cards) == []
    assert await harness.charged() == 2
    if harness.sim is not None:
        assert [o.number for o in harness.sim.ledger.orders] == [request.number]


# --- querying -------------------------------------------------------------------------------------------


async def test_query_returns_the_cards_of_an_existing_order(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    if not supplier.can_query:
        pytest.skip(f"{harness.kind} declares can_query=False")
    request = await harness.request(2)
    placed = await settle(supplier, request, await supplier.place(request))
    assert placed.state is OrderState.SUCCEEDED

    found = await supplier.query(request)

    assert (found.state, found.error) == (OrderState.SUCCEEDED, None), found
    assert card_set(found.cards) == card_set(placed.cards)
    assert found.delivered_in_store == supplier.local
    assert leaks(found) == []
    assert await harness.charged() == 2  # asking does not buy


async def test_a_supplier_that_cannot_query_says_ambiguous(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    if supplier.can_query:
        pytest.skip(f"{harness.kind} declares can_query=True")
    request = await harness.request(1)
    placed = await supplier.place(request)
    assert placed.state is OrderState.SUCCEEDED

    # Even for an order it sold a moment ago, it cannot say: never NOT_FOUND (that would invite a re-buy).
    asked = await supplier.query(request)

    assert (asked.state, asked.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert_failure_evidence(asked, harness, answered=False)


async def test_query_for_an_unknown_number_is_never_a_failure(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    request = await harness.request(1)  # an attempt opened but never sent

    asked = await supplier.query(request)

    assert asked.state is not OrderState.FAILED, asked
    if supplier.can_query:
        assert (asked.state, asked.error) == (OrderState.NOT_FOUND, None), asked
    else:
        assert (asked.state, asked.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS), asked
    assert await harness.charged() == 0


# --- failures -------------------------------------------------------------------------------------------


async def test_out_of_stock_fails_product_unavailable_and_charges_nothing(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    books_before = await harness.books_balance()
    request = await harness.request(1, product=harness.sold_out)

    outcome = await supplier.place(request)

    assert (outcome.state, outcome.error) == (OrderState.FAILED, ErrorClass.PRODUCT_UNAVAILABLE), outcome
    assert_failure_evidence(outcome, harness, answered=True)
    assert outcome.cards == ()
    assert await harness.charged() == 0
    assert await harness.books_balance() == books_before
    if supplier.can_query:
        assert (await supplier.query(request)).state is OrderState.NOT_FOUND


async def test_refused_connection_is_transient(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    skip_unless_networked(harness)
    assert harness.sim is not None
    request = await harness.request(1)
    harness.sim.set_faults([{"kind": "refuse"}])
    await harness.sim.sync_listener()

    outcome = await supplier.place(request)

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.TRANSIENT), outcome
    assert_failure_evidence(outcome, harness, answered=False)
    assert harness.sim.requests.count == 0 and await harness.charged() == 0
    # Transient means "not executed": the same attempt, re-sent once the supplier is back, buys once.
    harness.sim.set_faults([])
    await harness.sim.sync_listener()
    retried = await settle(supplier, request, await supplier.place(request))
    assert retried.state is OrderState.SUCCEEDED and len(retried.cards) == 1
    assert await harness.charged() == 1


async def test_lost_answer_after_commit_is_ambiguous(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    skip_unless_networked(harness)
    sim = harness.sim
    assert sim is not None
    request = await harness.request(2)
    sim.set_faults([{"kind": "lost_after_commit", "requests": "1"}])

    outcome = await supplier.place(request)

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS), outcome
    assert_failure_evidence(outcome, harness, answered=False)
    assert charged_units(sim, request.number) == 2  # the supplier did charge: ambiguous was the only safe answer
    sold = sim.ledger.by_number(request.number)
    assert sold is not None
    # The engine's safe re-send of the same attempt: never a second charge, never a failure.
    again = await supplier.place(request)
    assert again.state is not OrderState.FAILED, again
    assert not (again.state is OrderState.SUCCEEDED and card_set(again.cards) != card_set(sold.cards))
    assert await harness.charged() == 2
    if supplier.can_query:
        found = await settle(supplier, request, await supplier.query(request))
        assert found.state is OrderState.SUCCEEDED
        assert card_set(found.cards) == card_set(sold.cards)


# --- account and stock ----------------------------------------------------------------------------------


async def test_balance_is_a_decimal_where_the_protocol_has_one(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    balance = await supplier.balance()
    if not harness.has_balance:
        assert balance is None
        return
    assert isinstance(balance, Balance) and isinstance(balance.amount, Decimal)
    assert balance.amount == await harness.books_balance()
    request = await harness.request(2)
    assert (await settle(supplier, request, await supplier.place(request))).state is OrderState.SUCCEEDED
    after = await supplier.balance()
    assert after is not None and harness.price is not None
    assert after.amount == balance.amount - 2 * harness.price


async def test_stock_check_tells_plenty_from_none(supplier_under_test: SUT) -> None:
    supplier, harness = supplier_under_test
    plenty = await supplier.check_stock(harness.product, 1)
    empty = await supplier.check_stock(harness.sold_out, 1)

    assert isinstance(plenty, StockCheck) and plenty.available
    assert empty == StockCheck(available=False, level="empty")
    assert await harness.charged() == 0
