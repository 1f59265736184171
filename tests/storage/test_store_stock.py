"""Local stock: imports are all-or-nothing, duplicates are reported by position, known keys never re-enter."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from fulfil.crypto import CardCipher
from fulfil.storage import StockCount, StockImport, Store, StoreError
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw


async def test_import_reports_repeats_in_the_file_and_known_keys(store: Store, now: datetime) -> None:
    first = await store.import_stock("sku", [Card("A"), Card("B", "n")], now)
    assert first == StockImport(added=2, duplicate_in_file=[], duplicate_existing=[])

    second = await store.import_stock(
        "sku", [Card("C"), Card("A"), Card("C"), Card("D"), Card("B", "n"), Card("B", "other")], now
    )

    assert second == StockImport(added=3, duplicate_in_file=[2], duplicate_existing=[1, 4])
    assert await store.stock_counts() == {"sku": StockCount(available=5, used=0)}
    assert (await store.events(name="stock.imported"))[0].data == {
        "sku": "sku",
        "added": 3,
        "duplicate_in_file": 1,
        "duplicate_existing": 2,
    }


async def test_keys_delivered_before_are_not_imported(store: Store, now: datetime, claimed: Claimed) -> None:
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now)
    await store.deliver(order.id, "w1", attempt.id, [Card("SOLD")], now)
    result = await store.import_stock("steam-100", [Card("SOLD"), Card("NEW")], now)
    assert (result.added, result.duplicate_existing) == (1, [0])


async def test_a_bad_card_rolls_the_whole_file_back(store: Store, now: datetime, raw: Raw) -> None:
    with pytest.raises(StoreError, match=r"without a password at indexes \[1\]"):
        await store.import_stock("sku", [Card("A"), Card("  ", "number-only"), Card("C")], now)
    assert await store.stock_counts() == {}
    assert await raw("SELECT id FROM stock") == []


async def test_counts_per_sku(store: Store, now: datetime, claimed: Claimed) -> None:
    await store.import_stock("a", [Card("1"), Card("2"), Card("3")], now)
    await store.import_stock("b", [Card("4")], now)
    order = await claimed("r1", sku="a", qty=2)
    attempt = await store.open_attempt(order.id, "w1", "stock", 0, 2, None, now)
    assert await store.deliver_from_stock(order.id, "w1", attempt.id, "a", 2, now) is not None
    assert await store.stock_counts() == {"a": StockCount(1, 2), "b": StockCount(1, 0)}


async def test_return_to_stock_skips_known_keys(store: Store, now: datetime, claimed: Claimed, raw: Raw) -> None:
    await store.import_stock("sku", [Card("IN-STOCK")], now)
    order = await claimed("r1", sku="sku")
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now)
    late = await store.open_attempt(order.id, "w1", "acg", 1, 3, None, now)
    await store.deliver(order.id, "w1", attempt.id, [Card("DELIVERED")], now)

    added = await store.return_to_stock(
        "sku", late.id, [Card("IN-STOCK"), Card("DELIVERED"), Card("LATE-1"), Card("LATE-1"), Card("LATE-2")], now
    )

    assert added == 2
    assert await store.return_to_stock("sku", late.id, [Card("LATE-1")], now) == 0
    assert (await store.stock_counts())["sku"] == StockCount(available=3, used=0)
    rows = await raw("SELECT source_attempt FROM stock WHERE source_attempt IS NOT NULL")
    assert [row["source_attempt"] for row in rows] == [late.id, late.id]


async def test_hold_cards_keeps_each_key_once_per_attempt(
    store: Store, cipher: CardCipher, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 2, None, now)
    cards = [Card("BAD-1"), Card("BAD-2")]
    await store.hold_cards(attempt.id, cards, "invalid key", now)
    await store.hold_cards(attempt.id, cards, "invalid key", now)  # recovery running twice
    await store.hold_cards(attempt.id, [], "nothing", now)

    rows = await raw("SELECT attempt_id, fingerprint, reason FROM held_cards ORDER BY id")
    assert [(r["attempt_id"], r["fingerprint"], r["reason"]) for r in rows] == [
        (attempt.id, cipher.fingerprint(c), "invalid key") for c in cards
    ]
    assert [e.data["held"] for e in await store.events(name="cards.held")] == [0, 2]
