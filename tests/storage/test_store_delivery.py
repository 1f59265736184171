"""Delivery: one transaction per order, a card key never goes to two orders, stock is taken exactly once."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, NewOrder, OrderStatus
from fulfil.storage import DuplicateCard, NotFound, Store, StoreError
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw

K1 = Card(password="PW-AAAA-1111", number="NO-0001", expires="2027-12-31")
K2 = Card(password="PW-BBBB-2222", number="NO-0002")


async def test_deliver_moves_order_attempt_and_cards_together(
    store: Store, cipher: CardCipher, now: datetime, claimed: Claimed
) -> None:
    order = await claimed("r1", qty=2)
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 2, Decimal("9"), now)
    await store.deliver(order.id, "w1", attempt.id, [K1, K2], now)

    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.status, view.order.delivered_at, view.order.lease_owner) == (OrderStatus.DELIVERED, now, None)
    assert [(c.number, c.password, c.expires) for c in view.cards] == [
        ("NO-0001", "PW-AAAA-1111", "2027-12-31"),
        ("NO-0002", "PW-BBBB-2222", None),
    ]
    assert [(a.state, a.finished_at) for a in view.attempts] == [(AttemptState.SUCCEEDED, now)]
    assert [c.password for c in await store.cards_for_attempt(attempt.id)] == ["PW-AAAA-1111", "PW-BBBB-2222"]
    assert await store.cards_for_attempt(attempt.id + 1) == []
    fps = {cipher.fingerprint(K1), cipher.fingerprint(K2)}
    assert await store.delivered_fingerprints([*fps, "0" * 64]) == fps


async def test_a_key_delivered_before_is_refused_and_nothing_written(
    store: Store, cipher: CardCipher, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    first = await claimed("r1")
    a1 = await store.open_attempt(first.id, "w1", "fulu", 0, 1, None, now)
    await store.deliver(first.id, "w1", a1.id, [K1], now)
    second = await claimed("r2", qty=2)
    a2 = await store.open_attempt(second.id, "w1", "fulu", 0, 2, None, now)
    await store.mark_attempt(a2.id, AttemptState.SENT, now)

    with pytest.raises(DuplicateCard) as caught:
        await store.deliver(second.id, "w1", a2.id, [K2, K1], now)
    assert caught.value.fingerprints == {cipher.fingerprint(K1)}
    assert "PW-AAAA" not in str(caught.value)

    view = await store.get_order("r2")
    assert view is not None
    assert (view.order.status, view.order.lease_owner, view.cards) == (OrderStatus.PROCESSING, "w1", ())
    assert [a.state for a in view.attempts] == [AttemptState.SENT]
    assert len(await raw("SELECT id FROM deliveries")) == 1


async def test_the_same_key_twice_in_one_delivery_is_refused(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    order = await claimed("r1", qty=2)
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 2, None, now)
    with pytest.raises(DuplicateCard):
        await store.deliver(order.id, "w1", attempt.id, [K1, Card(" PW-AAAA-1111 ", "NO-0001 ")], now)
    assert await raw("SELECT id FROM deliveries") == []


async def test_racing_deliveries_of_one_key_let_exactly_one_win(
    store: Store, db_url: str, cipher: CardCipher, now: datetime, claimed: Claimed
) -> None:
    orders = [await claimed(f"r{i}") for i in range(2)]
    attempts = [await store.open_attempt(o.id, "w1", "fulu", 0, 1, None, now) for o in orders]
    other = await Store.open(db_url, cipher)
    try:
        results = await asyncio.gather(
            *(s.deliver(o.id, "w1", a.id, [K1], now) for s, o, a in zip((store, other), orders, attempts, strict=True)),
            return_exceptions=True,
        )
    finally:
        await other.close()
    assert sorted(type(r).__name__ for r in results) == ["DuplicateCard", "NoneType"]
    statuses = sorted((await store.count_by_status()).items())
    assert ("delivered", 1) in statuses and ("processing", 1) in statuses


async def test_deliver_from_stock_takes_the_oldest_keys(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    await store.import_stock("steam-100", [K1, K2, Card("PW-3")], now)
    order = await claimed("r1", qty=2)
    attempt = await store.open_attempt(order.id, "w1", "stock", 0, 2, None, now)

    cards = await store.deliver_from_stock(order.id, "w1", attempt.id, "steam-100", 2, now)

    assert cards is not None and [c.password for c in cards] == ["PW-AAAA-1111", "PW-BBBB-2222"]
    view = await store.get_order("r1")
    assert view is not None
    assert view.order.status == OrderStatus.DELIVERED
    assert [c.password for c in view.cards] == ["PW-AAAA-1111", "PW-BBBB-2222"]
    counts = await store.stock_counts()
    assert (counts["steam-100"].available, counts["steam-100"].used) == (1, 2)
    used = await raw("SELECT used_by_attempt, used_at FROM stock WHERE used_by_attempt IS NOT NULL")
    assert {row["used_by_attempt"] for row in used} == {attempt.id}


async def test_too_little_stock_writes_nothing(store: Store, now: datetime, claimed: Claimed, raw: Raw) -> None:
    await store.import_stock("steam-100", [K1], now)
    order = await claimed("r1", qty=2)
    attempt = await store.open_attempt(order.id, "w1", "stock", 0, 2, None, now)

    assert await store.deliver_from_stock(order.id, "w1", attempt.id, "steam-100", 2, now) is None
    assert await store.deliver_from_stock(order.id, "w1", attempt.id, "other-sku", 1, now) is None

    counts = await store.stock_counts()
    assert (counts["steam-100"].available, counts["steam-100"].used) == (1, 0)
    view = await store.get_order("r1")
    assert view is not None
    assert (view.order.status, view.order.lease_owner) == (OrderStatus.PROCESSING, "w1")
    assert [a.state for a in view.attempts] == [AttemptState.PLANNED]
    assert await raw("SELECT id FROM deliveries") == []


async def test_workers_taking_stock_at_once_get_different_keys(
    store: Store, db_url: str, cipher: CardCipher, now: datetime
) -> None:
    n = 24
    await store.import_stock("sku", [Card(f"PW-{i:04d}") for i in range(n)], now)
    await store.add_orders([NewOrder(f"r{i:03d}", "sku", 1) for i in range(n)], now)
    other = await Store.open(db_url, cipher)
    delivered: list[str] = []

    async def work(s: Store, owner: str) -> None:
        while orders := await s.claim_orders(owner, 4, 60, now):

            async def one(order_id: int) -> None:
                attempt = await s.open_attempt(order_id, owner, "stock", 0, 1, None, now)
                cards = await s.deliver_from_stock(order_id, owner, attempt.id, "sku", 1, now)
                assert cards is not None
                delivered.extend(c.password for c in cards)

            await asyncio.gather(*(one(o.id) for o in orders))

    try:
        await asyncio.gather(work(store, "a"), work(other, "b"))
    finally:
        await other.close()
    assert sorted(delivered) == [f"PW-{i:04d}" for i in range(n)]
    assert (await store.count_by_status())["delivered"] == n
    assert (await store.stock_counts())["sku"].available == 0


async def test_keys_are_encrypted_at_rest_and_absent_from_events(
    store: Store, db_url: str, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    secrets_ = [Card("PW-SECRET-STOCK", "NO-SECRET-STOCK"), Card("PW-SECRET-DELIVER", "NO-SECRET-DELIVER")]
    held = Card("PW-SECRET-HELD", "NO-SECRET-HELD")
    await store.import_stock("sku", [secrets_[0]], now)
    order = await claimed("r1", sku="sku")
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, None, now)
    await store.hold_cards(attempt.id, [held], "invalid key", now)
    await store.return_to_stock("sku", attempt.id, [Card("PW-SECRET-RETURNED")], now)
    await store.record_event("debug", now, data={"card": held})
    await store.deliver(order.id, "w1", attempt.id, [secrets_[1]], now)

    dumped = ""
    for table in ("stock", "deliveries", "held_cards", "events", "attempts", "orders"):
        for row in await raw(f"SELECT * FROM {table}"):
            dumped += repr(row)
    assert "SECRET" not in dumped
    assert "data" in dumped and "fingerprint" in dumped, "the raw read saw the rows"
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
        assert files and all(b"SECRET" not in p.read_bytes() for p in files)
    view = await store.get_order("r1")
    assert view is not None and [c.password for c in view.cards] == ["PW-SECRET-DELIVER"]


async def test_deliver_from_stock_needs_a_positive_quantity(store: Store, now: datetime, claimed: Claimed) -> None:
    await store.import_stock("steam-100", [K1], now)
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "stock", 0, 1, None, now)
    with pytest.raises(StoreError, match="qty must be at least 1"):
        await store.deliver_from_stock(order.id, "w1", attempt.id, "steam-100", 0, now)
    view = await store.get_order("r1")
    assert view is not None and view.order.status == OrderStatus.PROCESSING


async def test_deliver_checks_the_attempt_belongs_to_the_order(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    a = await claimed("r1")
    b = await claimed("r2")
    attempt_of_b = await store.open_attempt(b.id, "w1", "fulu", 0, 1, None, now)
    with pytest.raises(NotFound):
        await store.deliver(a.id, "w1", attempt_of_b.id, [K1], now)
    await store.import_stock("steam-100", [K2], now)
    with pytest.raises(NotFound):
        await store.deliver_from_stock(a.id, "w1", attempt_of_b.id, "steam-100", 1, now)
    assert await raw("SELECT id FROM deliveries") == []
    assert (await store.stock_counts())["steam-100"].available == 1
