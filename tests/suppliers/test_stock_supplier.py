"""The local-stock adapter against a real store: keys taken and delivered in one transaction, or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fulfil.config import SupplierConfig
from fulfil.domain import AttemptRecord, AttemptState, NewOrder, Order, OrderStatus
from fulfil.storage import DuplicateCard, LeaseLost, Store
from suppliers.base import PlaceRequest
from suppliers.registry import build_supplier
from suppliers.stock import OUT_OF_STOCK, CardsByAttempt, StockSupplier
from suppliers.taxonomy import Card, ErrorClass, OrderState

OWNER = "worker-1"
SKU = "steam-100"


def cards(n: int, prefix: str = "K") -> list[Card]:
    return [Card(password=f"{prefix}-PW-{i:04d}", number=f"{prefix}-NO-{i:04d}") for i in range(n)]


def keys(found: Sequence[Card]) -> set[tuple[str, str]]:
    return {(card.number, card.password) for card in found}


async def claimed_attempt(
    store: Store, now: datetime, ref: str = "o-1", *, qty: int = 2, sku: str = SKU
) -> tuple[Order, AttemptRecord]:
    added = await store.add_order(NewOrder(ref, sku, qty, amount=Decimal("10.00")), now)
    [order] = [o for o in await store.claim_orders(OWNER, 100, 60, now) if o.id == added.order_id]
    attempt = await store.open_attempt(order.id, OWNER, "own-stock", 0, qty, None, now)
    return order, attempt


def place_request(order: Order, attempt: AttemptRecord, **overrides: Any) -> PlaceRequest:
    fields: dict[str, Any] = {
        "number": attempt.number,
        "sku": order.sku,
        "product_id": None,
        "qty": attempt.qty,
        "kind": "card",
        "order_id": order.id,
        "attempt_id": attempt.id,
        "owner": OWNER,
    }
    fields.update(overrides)
    return PlaceRequest(**fields)


@pytest.fixture
def supplier(store: Store, now: datetime) -> StockSupplier:
    return StockSupplier("own-stock", {"name": "own-stock", "type": "stock"}, store=store, clock=lambda: now)


async def test_place_takes_keys_and_delivers_in_one_transaction(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    await store.import_stock(SKU, cards(3), now)
    order, attempt = await claimed_attempt(store, now, qty=2)

    outcome = await supplier.place(place_request(order, attempt))

    assert (outcome.state, outcome.error, outcome.delivered_in_store) == (OrderState.SUCCEEDED, None, True)
    assert len(outcome.cards) == 2 and keys(outcome.cards) <= keys(cards(3))
    view = await store.get_order(order.ref)
    assert view is not None
    assert view.order.status is OrderStatus.DELIVERED
    assert view.order.delivered_at == now  # the adapter's clock
    assert keys(view.cards) == keys(outcome.cards)
    assert [a.state for a in view.attempts] == [AttemptState.SUCCEEDED]
    counts = await store.stock_counts()
    assert (counts[SKU].available, counts[SKU].used) == (1, 2)
    # The keys themselves, not "PW" alone: a random install id (in the attempt number) may hold those letters.
    assert "-PW-" not in repr(outcome) and not any(card.password in repr(outcome) for card in outcome.cards)


async def test_out_of_stock_fails_over_and_writes_nothing(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    await store.import_stock(SKU, cards(1), now)
    order, attempt = await claimed_attempt(store, now, qty=2)

    outcome = await supplier.place(place_request(order, attempt))

    assert (outcome.state, outcome.error) == (OrderState.FAILED, ErrorClass.PRODUCT_UNAVAILABLE)
    assert outcome.evidence.message == OUT_OF_STOCK
    assert outcome.cards == () and not outcome.delivered_in_store
    view = await store.get_order(order.ref)
    assert view is not None
    assert (view.order.status, view.order.lease_owner) == (OrderStatus.PROCESSING, OWNER)
    assert view.cards == ()
    assert [a.state for a in view.attempts] == [AttemptState.PLANNED]
    counts = await store.stock_counts()
    assert (counts[SKU].available, counts[SKU].used) == (1, 0)


async def test_an_empty_pool_is_out_of_stock(store: Store, now: datetime, supplier: StockSupplier) -> None:
    order, attempt = await claimed_attempt(store, now, qty=1)

    outcome = await supplier.place(place_request(order, attempt))

    assert outcome.error is ErrorClass.PRODUCT_UNAVAILABLE
    assert await store.stock_counts() == {}


async def test_the_offer_product_id_names_the_pool(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    await store.import_stock(SKU, cards(2, "SKU"), now)
    await store.import_stock("pool-eu", cards(2, "EU"), now)
    order, attempt = await claimed_attempt(store, now, qty=2)

    outcome = await supplier.place(place_request(order, attempt, product_id="pool-eu"))

    assert keys(outcome.cards) == keys(cards(2, "EU"))
    counts = await store.stock_counts()
    assert (counts["pool-eu"].available, counts[SKU].available) == (0, 2)


async def test_two_orders_never_share_a_key(store: Store, now: datetime, supplier: StockSupplier) -> None:
    await store.import_stock(SKU, cards(4), now)
    taken: list[set[tuple[str, str]]] = []
    for ref in ("o-1", "o-2"):
        order, attempt = await claimed_attempt(store, now, ref, qty=2)
        taken.append(keys((await supplier.place(place_request(order, attempt))).cards))
    order, attempt = await claimed_attempt(store, now, "o-3", qty=1)

    third = await supplier.place(place_request(order, attempt))

    assert taken[0].isdisjoint(taken[1]) and taken[0] | taken[1] == keys(cards(4))
    assert third.error is ErrorClass.PRODUCT_UNAVAILABLE


@pytest.mark.parametrize("missing", ["order_id", "attempt_id", "owner"])
async def test_without_the_engine_fields_it_is_our_bug_and_takes_nothing(
    store: Store, now: datetime, supplier: StockSupplier, missing: str
) -> None:
    await store.import_stock(SKU, cards(2), now)
    order, attempt = await claimed_attempt(store, now, qty=1)

    outcome = await supplier.place(place_request(order, attempt, **{missing: None}))

    assert (outcome.state, outcome.error) == (OrderState.FAILED, ErrorClass.OUR_BUG)
    assert (await store.stock_counts())[SKU].used == 0


async def test_a_lost_lease_takes_nothing(store: Store, now: datetime, supplier: StockSupplier) -> None:
    await store.import_stock(SKU, cards(2), now)
    order, attempt = await claimed_attempt(store, now, qty=1)

    with pytest.raises(LeaseLost):
        await supplier.place(place_request(order, attempt, owner="someone-else"))

    assert (await store.stock_counts())[SKU].used == 0


async def test_placing_a_delivered_attempt_again_takes_nothing_more(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    await store.import_stock(SKU, cards(4), now)
    order, attempt = await claimed_attempt(store, now, qty=2)
    await supplier.place(place_request(order, attempt))

    # The order is delivered and its lease released: the fence refuses a second take.
    with pytest.raises(LeaseLost):
        await supplier.place(place_request(order, attempt))

    assert (await store.stock_counts())[SKU].used == 2


class RacingStore:
    """The real store, except that a concurrent delivery wins the picked keys (DuplicateCard)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def deliver_from_stock(
        self, order_id: int, owner: str, attempt_id: int, sku: str, qty: int, now: datetime
    ) -> list[Card] | None:
        raise DuplicateCard(["f" * 64])

    async def attempts_for_order(self, order_id: int) -> list[AttemptRecord]:
        return await self.store.attempts_for_order(order_id)

    async def stock_counts(self) -> dict[str, Any]:
        return dict(await self.store.stock_counts())


async def test_a_lost_race_for_a_key_is_transient(store: Store, now: datetime) -> None:
    await store.import_stock(SKU, cards(2), now)
    order, attempt = await claimed_attempt(store, now, qty=1)
    racing = StockSupplier("own-stock", {}, store=RacingStore(store), clock=lambda: now)

    outcome = await racing.place(place_request(order, attempt))

    # Nothing was written, and a retry of the same attempt picks other keys.
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.TRANSIENT)
    assert (await store.stock_counts())[SKU].used == 0


# --- query ---------------------------------------------------------------------------------------------


async def test_query_says_not_found_until_the_attempt_delivered(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    await store.import_stock(SKU, cards(2), now)
    order, attempt = await claimed_attempt(store, now, qty=2)

    before = await supplier.query(place_request(order, attempt))
    placed = await supplier.place(place_request(order, attempt))
    after = await supplier.query(place_request(order, attempt))

    assert (before.state, before.error) == (OrderState.NOT_FOUND, None)
    assert (after.state, after.delivered_in_store) == (OrderState.SUCCEEDED, True)
    if isinstance(store, CardsByAttempt):
        assert keys(after.cards) == keys(placed.cards)
    else:
        assert after.cards == ()


async def test_query_after_out_of_stock_is_not_found(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    order, attempt = await claimed_attempt(store, now, qty=1)
    await supplier.place(place_request(order, attempt))

    outcome = await supplier.query(place_request(order, attempt))

    assert outcome.state is OrderState.NOT_FOUND


async def test_query_of_an_attempt_of_another_order_is_not_found(
    store: Store, now: datetime, supplier: StockSupplier
) -> None:
    await store.import_stock(SKU, cards(1), now)
    order, attempt = await claimed_attempt(store, now, qty=1)
    await supplier.place(place_request(order, attempt))
    other, _ = await claimed_attempt(store, now + timedelta(seconds=1), "o-2", qty=1)

    outcome = await supplier.query(place_request(other, attempt))

    assert outcome.state is OrderState.NOT_FOUND


async def test_query_without_ids_is_our_bug(store: Store, now: datetime, supplier: StockSupplier) -> None:
    order, attempt = await claimed_attempt(store, now, qty=1)

    outcome = await supplier.query(place_request(order, attempt, order_id=None, attempt_id=None))

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.OUR_BUG)


# --- stock level and construction ----------------------------------------------------------------------


async def test_check_stock(store: Store, now: datetime, supplier: StockSupplier) -> None:
    await store.import_stock(SKU, cards(5), now)

    enough = await supplier.check_stock(SKU, 2)
    short = await supplier.check_stock(SKU, 6)
    none = await supplier.check_stock("unknown", 1)

    assert enough is not None and (enough.available, enough.level) == (True, "low")
    assert short is not None and (short.available, short.level) == (False, "low")
    assert none is not None and (none.available, none.level) == (False, "empty")


async def test_the_registry_builds_it_with_the_store(store: Store) -> None:
    built = build_supplier(SupplierConfig(name="own-stock", type="stock"), store=store)

    assert isinstance(built, StockSupplier)
    assert (built.type_name, built.can_query, built.idempotent_place, built.asynchronous) == (
        "stock",
        True,
        True,
        False,
    )
