"""acg_faka against the simulator where a real acg-faka 3.6.0 shop surprises: what the adapter tells the engine,
checked against what the shop's books charged.

The engine's side (EXISTS at an unqueryable supplier becoming a `charged_not_delivered` claim and a reissue;
re-sending a `maybe_charged` failure) is being built elsewhere; here the adapter's answers are reconciled
with the simulator's ledger as the engine will have to: every unit charged is delivered or claimable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from contractkit import acg_scenario, card_set, charged_units, leaks, new_number, sim_supplier

from fulfil.storage.base import MAX_NUMBER_LENGTH
from suppliers.base import PlaceRequest, Supplier
from suppliers.sim import Simulator, running_sim
from suppliers.taxonomy import ErrorClass, OrderState, Outcome

PRODUCT = "steam-100"
MANUAL = {"name": "Gift", "price": "20.00", "delivery": "manual", "delivery_message": "您的订单已收到，客服将人工发货"}


@pytest.fixture
async def acg() -> AsyncIterator[tuple[Simulator, Supplier]]:
    data = acg_scenario(balance="100000.00")  # room for every trade below
    data["products"]["gift"] = dict(MANUAL)
    async with running_sim(data) as sim:
        supplier = sim_supplier(sim)
        try:
            yield sim, supplier
        finally:
            await supplier.aclose()


def purchase(qty: int = 2, product: str = PRODUCT, number: str | None = None) -> PlaceRequest:
    return PlaceRequest(number or new_number(), "contract-sku", product, qty, "card", timeout=3.0)


async def test_a_repeated_number_is_exists_and_the_books_hold_the_first_charge(acg: tuple[Simulator, Supplier]) -> None:
    sim, supplier = acg
    request = purchase()
    first = await supplier.place(request)
    assert first.state is OrderState.SUCCEEDED and len(first.cards) == 2

    again = await supplier.place(request)

    assert (again.state, again.error, again.cards) == (OrderState.EXISTS, None, ())
    assert again.evidence.message == "The request ID already exists"
    assert leaks(again, first.cards) == []
    order = sim.ledger.by_number(request.number)
    assert order is not None and order.charged and card_set(order.cards) == card_set(first.cards)
    assert charged_units(sim) == 2 and len(sim.ledger.orders) == 1


async def test_a_number_over_19_characters_is_an_html_page_and_no_charge(acg: tuple[Simulator, Supplier]) -> None:
    sim, supplier = acg
    request = purchase(number="CT" + "7" * (MAX_NUMBER_LENGTH - 1))  # 20 characters

    outcome = await supplier.place(request)

    # The adapter cannot know why a page came: AMBIGUOUS, though here nothing was charged. The store never
    # makes such a number (tests/storage), so this page never hides a charge of ours.
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert outcome.evidence.http_status == 200 and "HTML page" in (outcome.evidence.message or "")
    assert charged_units(sim) == 0 and sim.ledger.orders == []
    fitting = await supplier.place(replace(request, number=request.number[:MAX_NUMBER_LENGTH]))
    assert fitting.state is OrderState.SUCCEEDED


async def test_a_manual_delivery_item_is_charged_without_goods(acg: tuple[Simulator, Supplier]) -> None:
    sim, supplier = acg
    request = purchase(qty=3, product="gift")

    outcome = await supplier.place(request)

    assert (outcome.state, outcome.cards) == (OrderState.SUCCEEDED, ())
    assert outcome.supplier_order_id and outcome.cost is not None and outcome.cost == 60
    assert "charged without goods" in (outcome.evidence.message or "")
    assert "您的订单已收到" in (outcome.evidence.message or "")
    assert charged_units(sim, request.number) == 3
    # Asked again by its tradeNo: paid, and still no key.
    asked = await supplier.query(replace(request, supplier_order_id=outcome.supplier_order_id))
    assert (asked.state, asked.cards) == (OrderState.SUCCEEDED, ())
    stock = await supplier.check_stock("gift", 3)
    assert stock is not None and (stock.available, stock.level) == (True, "unknown")


async def test_query_by_trade_no_finds_the_cards(acg: tuple[Simulator, Supplier]) -> None:
    sim, supplier = acg
    request = purchase()
    placed = await supplier.place(request)
    assert placed.state is OrderState.SUCCEEDED

    asked = await supplier.query(replace(request, supplier_order_id=placed.supplier_order_id))
    unknown = await supplier.query(replace(request, supplier_order_id="999999999999999999"))

    assert (asked.state, asked.supplier_order_id) == (OrderState.SUCCEEDED, placed.supplier_order_id)
    assert card_set(asked.cards) == card_set(placed.cards) and leaks(asked) == []
    assert (unknown.state, unknown.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)  # never NOT_FOUND
    assert charged_units(sim) == 2  # asking never buys


# One trade of two units under each fault, and one clean.
SURPRISES: list[dict[str, Any]] = [
    {"kind": "grabbed"},
    {"kind": "manual_delivery"},
    {"kind": "charged_then_error"},
    {"kind": "charged_then_error", "message": "当前商品已停售"},
    {"kind": "lost_after_commit"},
    {"kind": "system_error", "committed": True},
    {"kind": "html_error"},
    {"kind": "purchase_limit", "mode": "per_trade", "limit": 1},
    {"kind": "out_of_stock"},
    {"kind": "invalid_keys"},
    {"kind": "latency", "delay": "0s"},
]


async def test_every_charged_unit_is_delivered_or_claimable(acg: tuple[Simulator, Supplier]) -> None:
    """Units charged = units with cards + units the engine can claim, from the adapter's answers alone.

    Claimable: SUCCEEDED without goods, and EXISTS (on the re-send the engine makes after an ERROR or a
    maybe_charged failure). Not charged: FAILED, unless maybe_charged and the re-send says EXISTS.
    """
    sim, supplier = acg
    delivered = claimable = 0
    for fault in SURPRISES:
        sim.set_faults([{**fault, "requests": "1"}])
        request = purchase()
        outcome = await supplier.place(request)
        if outcome.state is OrderState.ERROR or outcome.maybe_charged:
            sim.set_faults([])  # the engine's next step: the same number again, never charged twice
            outcome = await _resend(supplier, request, outcome)
        if outcome.state is OrderState.SUCCEEDED:
            delivered += len(outcome.cards)  # invalid keys too: the engine's validation claims those
            claimable += request.qty - len(outcome.cards)
        elif outcome.state is OrderState.EXISTS:
            claimable += request.qty
        else:
            assert outcome.state is OrderState.FAILED and not outcome.maybe_charged, outcome
    assert delivered + claimable == charged_units(sim)
    # grabbed, manual delivery, two charged_then_error, the lost answer, the committed system error
    assert claimable == 2 * 6
    # The HTML page's number re-sent and bought, the invalid keys, the clean trade, and each uncharged
    # unavailable/account failure whose probe (the same number again) then bought.
    assert delivered >= 2 * 3
    assert len([o for o in sim.ledger.orders if o.notice is not None]) == 4


async def _resend(supplier: Supplier, request: PlaceRequest, first: Outcome) -> Outcome:
    again = await supplier.place(request)
    if first.maybe_charged and again.state not in (OrderState.EXISTS, OrderState.SUCCEEDED):
        return first  # not charged after all: the failure stands (a success is the re-send buying, delivered)
    return again
