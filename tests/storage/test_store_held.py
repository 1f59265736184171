"""Held keys: listed, released to stock, delivered to their order in review; claims follow what was recovered;
a refusal or an interruption writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptRecord, AttemptState, ClaimReason, Order, OrderStatus
from fulfil.storage import InvalidTransition, NotFound, Store
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw

COST = Decimal("10.00")


@dataclass
class Bought:
    order: Order
    attempt: AttemptRecord
    held: list[int]


async def buy(
    store: Store,
    now: datetime,
    claimed: Claimed,
    ref: str,
    held: Sequence[tuple[str, str]],
    *,
    qty: int = 1,
    claim: ClaimReason | None = None,
    claim_units: int = 0,
    cost: Decimal | None = COST,
    review: bool = True,
    final: bool = True,
) -> Bought:
    """An order bought at `fulu` whose attempt held `held` (password, reason), optionally under a claim."""
    order = await claimed(ref, qty=qty)
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, qty, cost, now)
    if claim is not None:
        await store.open_claim(attempt.id, claim, attempt.cost_of(claim_units), claim_units, {"n": 1}, now)
    for password, reason in held:
        await store.hold_cards(attempt.id, [Card(password)], reason, now)
    if final:
        await store.mark_attempt(attempt.id, AttemptState.SUCCEEDED, now, error_class="invalid_key")
    if review:
        await store.finish_order(order.id, "w1", OrderStatus.REVIEW, "invalid_keys: held", now)
    ids = [h.id for h in await store.held_cards(order_ref=ref)]
    return Bought(order, attempt, ids)


async def test_list_shows_unreleased_keys_with_their_purchase_and_claims(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    a = await buy(
        store, now, claimed, "r1", [("BAD-1", "invalid_key"), ("GOOD-1", "partial_invalid_batch")],
        qty=2, claim=ClaimReason.INVALID_KEY, claim_units=1,
    )  # fmt: skip
    b = await buy(store, now, claimed, "r2", [("EXTRA-1", "surplus")], review=False, final=True)

    listed = await store.held_cards()
    assert [(h.id, h.order_ref, h.reason, h.card.password) for h in listed] == [
        (a.held[0], "r1", "invalid_key", "BAD-1"),
        (a.held[1], "r1", "partial_invalid_batch", "GOOD-1"),
        (b.held[0], "r2", "surplus", "EXTRA-1"),
    ]
    first = listed[0]
    assert (first.supplier, first.attempt_id, first.attempt_number, first.sku) == (
        "fulu", a.attempt.id, a.attempt.number, "steam-100"
    )
    assert [(c.reason, c.amount) for c in first.claims] == [(ClaimReason.INVALID_KEY, COST)]
    assert listed[2].claims == ()
    assert [h.id for h in await store.held_cards(reason="surplus")] == b.held
    assert [h.id for h in await store.held_cards(order_ref="r1")] == a.held

    await store.release_held_to_stock([b.held[0]], "alice", now)
    assert [h.id for h in await store.held_cards()] == a.held, "released keys are held no more"
    [gone] = await store.held_cards(include_released=True, reason="surplus")
    assert (gone.released_at, gone.released_to) == (now, "stock")


async def test_release_to_stock_makes_the_key_deliverable_from_stock(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    b = await buy(store, now, claimed, "r1", [("EXTRA-1", "surplus")], review=False)
    release = await store.release_held_to_stock(b.held, "alice", now)
    assert (release.ids, release.released_to, release.recoveries) == (tuple(b.held), "stock", ())

    rows = await raw("SELECT sku, source_attempt, used_by_attempt FROM stock")
    assert rows == [{"sku": "steam-100", "source_attempt": b.attempt.id, "used_by_attempt": None}]
    [event] = await store.events(name="held.released")
    assert (event.order_id, event.operator, event.data["ids"], event.data["to"]) == (
        b.order.id, "alice", b.held, "stock"
    )
    assert event.data["reasons"] == {"surplus": 1}

    later = await claimed("r2")
    attempt = await store.open_attempt(later.id, "w1", "shelf", 0, 1, None, now)
    taken = await store.deliver_from_stock(later.id, "w1", attempt.id, "steam-100", 1, now)
    assert taken is not None and [c.password for c in taken] == ["EXTRA-1"]


async def test_releasing_twice_is_refused_and_writes_nothing(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    b = await buy(store, now, claimed, "r1", [("EXTRA-1", "surplus"), ("EXTRA-2", "surplus")], qty=2, review=False)
    await store.release_held_to_stock([b.held[0]], "alice", now)
    with pytest.raises(InvalidTransition, match=rf"released already: {b.held[0]} to stock"):
        await store.release_held_to_stock(b.held, "bob", now + timedelta(minutes=1))
    assert len(await raw("SELECT id FROM stock")) == 1, "the other key did not go in either"
    assert [h.id for h in await store.held_cards()] == [b.held[1]]
    with pytest.raises(NotFound, match="no held key with id 999"):
        await store.release_held_to_stock([b.held[1], 999], "bob", now)
    assert [e.operator for e in await store.events(name="held.released")] == ["alice"]


@pytest.mark.parametrize("where", ["stock", "delivered"])
async def test_a_key_already_in_stock_or_delivered_is_refused_by_id(
    store: Store, now: datetime, claimed: Claimed, raw: Raw, where: str
) -> None:
    b = await buy(
        store, now, claimed, "r1", [("OK-1", "late_keys"), ("KNOWN", "late_keys")],
        qty=2, claim=ClaimReason.POSSIBLE_DOUBLE, claim_units=2,
    )  # fmt: skip
    if where == "stock":
        await store.import_stock("steam-100", [Card("KNOWN")], now)
    else:
        other = await claimed("r9")
        attempt = await store.open_attempt(other.id, "w1", "acg", 0, 1, None, now)
        await store.deliver(other.id, "w1", attempt.id, [Card("KNOWN")], now)
    before = await raw("SELECT id, fingerprint FROM stock ORDER BY id")

    refused = rf"held key\(s\) {b.held[1]}: this key is in stock or delivered already"
    with pytest.raises(InvalidTransition, match=refused):
        await store.release_held_to_stock(b.held, "alice", now)

    assert await raw("SELECT id, fingerprint FROM stock ORDER BY id") == before
    assert [h.id for h in await store.held_cards()] == b.held
    [claim] = await store.claims_for_attempt(b.attempt.id)
    assert (claim.amount, claim.evidence) == (2 * COST, {"n": 1})
    assert await store.events(name="held.released") == []
    assert await store.events(name="claim.recovered") == []


async def test_claims_shrink_by_the_unit_cost_per_recovered_key(store: Store, now: datetime, claimed: Claimed) -> None:
    bad = await buy(
        store, now, claimed, "r1",
        [("BAD-1", "invalid_key"), ("BAD-2", "invalid_key"), ("GOOD", "partial_invalid_batch")],
        qty=3, claim=ClaimReason.INVALID_KEY, claim_units=2,
    )  # fmt: skip
    release = await store.release_held_to_stock([bad.held[0], bad.held[2]], "alice", now)
    [recovery] = release.recoveries
    assert (recovery.units, recovery.amount_before, recovery.amount_after, recovery.recovered_amount) == (
        1, Decimal("20.00"), Decimal("10.00"), Decimal("10.00")
    )  # the partial_invalid_batch key is on no claim: only the invalid one counts
    [claim] = await store.claims_for_attempt(bad.attempt.id)
    assert claim.amount == Decimal("10.00")
    assert (claim.evidence["recovered_units"], claim.evidence["recovered_amount"], claim.evidence["n"]) == (
        1, "10.00", 1
    )
    [event] = await store.events(name="claim.recovered")
    assert (event.operator, event.supplier, event.data["claim_no"], event.data["held_ids"]) == (
        "alice", "fulu", claim.claim_no, [bad.held[0]]
    )
    assert (event.data["amount_from"], event.data["amount_to"], event.data["units"]) == ("20.00", "10.00", 1)

    await store.release_held_to_stock([bad.held[1]], "bob", now)
    [claim] = await store.claims_for_attempt(bad.attempt.id)
    assert (claim.amount, claim.evidence["recovered_units"], claim.evidence["recovered_amount"]) == (
        Decimal("0.00"), 2, "20.00"
    )


async def test_late_keys_shrink_a_possible_double_never_below_zero(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    late = await buy(
        store, now, claimed, "r1", [("LATE-1", "late_keys"), ("LATE-2", "late_keys")],
        qty=2, claim=ClaimReason.POSSIBLE_DOUBLE, claim_units=1,  # claim asks for 10.00, two keys worth 20.00
    )  # fmt: skip
    surplus = await buy(store, now, claimed, "r2", [("EXTRA", "surplus")], claim=ClaimReason.CHARGED_NOT_DELIVERED,
                        claim_units=1)  # fmt: skip
    release = await store.release_held_to_stock([*late.held, *surplus.held], "alice", now)
    assert [(r.reason, r.amount_after, r.recovered_amount) for r in release.recoveries] == [
        ("possible_double", Decimal("0.00"), Decimal("10.00"))
    ]
    [double] = await store.claims_for_attempt(late.attempt.id)
    assert (double.amount, double.evidence["recovered_units"]) == (Decimal("0.00"), 2)
    [untouched] = await store.claims_for_attempt(surplus.attempt.id)
    assert (untouched.amount, untouched.evidence) == (COST, {"n": 1}), "surplus keys are on no claim"
    events = await store.events(name="held.released")
    assert sorted(e.order_id for e in events) == sorted([late.order.id, surplus.order.id])


async def test_a_claim_without_a_unit_cost_keeps_its_amount_and_counts_units(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    b = await buy(store, now, claimed, "r1", [("BAD", "invalid_key")], claim=ClaimReason.INVALID_KEY, cost=None)
    release = await store.release_held_to_stock(b.held, "alice", now)
    assert [(r.amount_after, r.recovered_amount) for r in release.recoveries] == [(None, None)]
    [claim] = await store.claims_for_attempt(b.attempt.id)
    assert (claim.amount, claim.evidence.get("recovered_units"), "recovered_amount" in claim.evidence) == (
        None, 1, False
    )


async def test_keys_of_a_purchase_still_being_worked_on_stay_held(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    b = await buy(store, now, claimed, "r1", [("LATE", "late_keys")], final=False, review=False)
    with pytest.raises(InvalidTransition, match="still being worked on"):
        await store.release_held_to_stock(b.held, "alice", now)
    assert await raw("SELECT id FROM stock") == []


async def test_resolve_from_held_delivers_under_the_attempt_that_bought_them(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    b = await buy(
        store, now, claimed, "r1",
        [("BAD", "invalid_key"), ("GOOD-1", "partial_invalid_batch"), ("GOOD-2", "partial_invalid_batch"),
         ("GOOD-3", "partial_invalid_batch")],
        qty=2, claim=ClaimReason.INVALID_KEY, claim_units=1,
    )  # fmt: skip
    release = await store.review_resolve_from_held("r1", None, "carol", now)

    assert release.order is not None
    assert (release.order.status, release.order.delivered_at, release.order.reason) == (
        OrderStatus.DELIVERED, now, None
    )
    assert release.ids == (b.held[1], b.held[2]), "oldest first, the invalid key not by default"
    assert (release.released_to, release.recoveries) == ("order:r1", ())
    view = await store.get_order("r1")
    assert view is not None
    assert [c.password for c in view.cards] == ["GOOD-1", "GOOD-2"]
    assert [(a.id, a.supplier, a.state) for a in view.attempts] == [(b.attempt.id, "fulu", AttemptState.SUCCEEDED)]
    assert [c.password for c in await store.cards_for_attempt(b.attempt.id)] == ["GOOD-1", "GOOD-2"]
    assert [h.id for h in await store.held_cards()] == [b.held[0], b.held[3]]
    [resolved] = await store.events(name="review.resolve", order_id=b.order.id)
    assert (resolved.operator, resolved.data["from_held"], resolved.data["attempt_ids"]) == (
        "carol", [b.held[1], b.held[2]], [b.attempt.id]
    )
    [claim] = await store.claims_for_attempt(b.attempt.id)
    assert claim.amount == COST, "the delivered keys were on no claim"

    with pytest.raises(InvalidTransition, match="is delivered, not in review"):
        await store.review_resolve_from_held("r1", [b.held[3]], "carol", now)


async def test_resolve_with_named_ids_may_deliver_an_invalid_key_and_shrinks_its_claim(
    store: Store, now: datetime, claimed: Claimed
) -> None:
    b = await buy(
        store, now, claimed, "r1", [("BAD", "invalid_key")], claim=ClaimReason.INVALID_KEY, claim_units=1,
    )  # fmt: skip
    with pytest.raises(InvalidTransition, match=r"for 1 key\(s\) but 0 usable key\(s\) are held for it \(and 1 held"):
        await store.review_resolve_from_held("r1", None, "carol", now)
    release = await store.review_resolve_from_held("r1", b.held, "carol", now)
    assert [(r.amount_after, r.recovered_amount) for r in release.recoveries] == [(Decimal("0.00"), COST)]
    [event] = await store.events(name="claim.recovered")
    assert (event.operator, event.data["to"]) == ("carol", "order:r1")


async def test_resolve_refusals_write_nothing(store: Store, now: datetime, claimed: Claimed, raw: Raw) -> None:
    mine = await buy(store, now, claimed, "r1", [("SOLD", "late_keys")], claim=ClaimReason.POSSIBLE_DOUBLE,
                     claim_units=1)  # fmt: skip
    theirs = await buy(store, now, claimed, "r2", [("THEIRS", "surplus")])
    other = await claimed("r9")
    attempt = await store.open_attempt(other.id, "w1", "acg", 0, 1, None, now)
    await store.deliver(other.id, "w1", attempt.id, [Card("SOLD")], now)
    deliveries = await raw("SELECT id FROM deliveries")

    refused = rf"held key\(s\) {mine.held[0]}: this key is in stock or delivered already"
    with pytest.raises(InvalidTransition, match=refused):
        await store.review_resolve_from_held("r1", None, "carol", now)
    with pytest.raises(InvalidTransition, match="bought for another order, not r1"):
        await store.review_resolve_from_held("r1", theirs.held, "carol", now)
    with pytest.raises(InvalidTransition, match="named twice"):
        await store.review_resolve_from_held("r2", theirs.held * 2, "carol", now)
    with pytest.raises(InvalidTransition, match=r"for 1 key\(s\); 0 held id\(s\) given"):
        await store.review_resolve_from_held("r2", [], "carol", now)

    assert await raw("SELECT id FROM deliveries") == deliveries
    assert [h.id for h in await store.held_cards()] == [*mine.held, *theirs.held]
    view = await store.get_order("r1")
    assert view is not None and view.order.status is OrderStatus.REVIEW
    [claim] = await store.claims_for_attempt(mine.attempt.id)
    assert claim.amount == COST
    assert await store.events(name="review.resolve") == []


async def test_resolve_refuses_a_held_key_that_is_in_stock_too(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    b = await buy(store, now, claimed, "r1", [("TWICE", "surplus")])
    await store.import_stock("steam-100", [Card("TWICE")], now)
    with pytest.raises(InvalidTransition, match="in stock or delivered already"):
        await store.review_resolve_from_held("r1", None, "carol", now)
    assert await raw("SELECT id FROM deliveries") == []
    assert [h.id for h in await store.held_cards()] == b.held


async def test_two_releases_at_once_release_the_key_once(
    store: Store, cipher: CardCipher, db_url: str, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    b = await buy(store, now, claimed, "r1", [("BAD", "invalid_key")], claim=ClaimReason.INVALID_KEY, claim_units=1)
    other = await Store.open(db_url, cipher)
    try:
        results = await asyncio.gather(
            store.release_held_to_stock(b.held, "alice", now),
            other.release_held_to_stock(b.held, "bob", now),
            return_exceptions=True,
        )
    finally:
        await other.close()
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], InvalidTransition), results
    assert len(await raw("SELECT id FROM stock")) == 1
    [claim] = await store.claims_for_attempt(b.attempt.id)
    assert (claim.amount, claim.evidence["recovered_units"]) == (Decimal("0.00"), 1)
    assert len(await store.events(name="claim.recovered")) == 1


async def die_here() -> None:
    """Cancel the running task right here, as if the process were killed at this line."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0)


class DiesAfterTheStockInsert(Store):
    async def _insert_stock(self, conn: AsyncConnection, rows: Sequence[Row[Any]], now: datetime) -> None:
        await super()._insert_stock(conn, rows, now)
        await die_here()


async def test_killed_inside_the_release_leaves_the_key_held_and_no_stock(
    store: Store, cipher: CardCipher, db_url: str, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    b = await buy(store, now, claimed, "r1", [("BAD", "invalid_key")], claim=ClaimReason.INVALID_KEY, claim_units=1)
    dying = await DiesAfterTheStockInsert.open(db_url, cipher)
    try:
        with pytest.raises(asyncio.CancelledError):
            await dying.release_held_to_stock(b.held, "alice", now)
    finally:
        await dying.close()

    assert await raw("SELECT id FROM stock") == []
    assert await raw("SELECT released_at, released_to FROM held_cards") == [{"released_at": None, "released_to": None}]
    [claim] = await store.claims_for_attempt(b.attempt.id)
    assert (claim.amount, claim.evidence) == (COST, {"n": 1})
    assert await store.events(name="held.released") == []
    # and the key is still there to release
    release = await store.release_held_to_stock(b.held, "alice", now)
    assert release.ids == tuple(b.held)
    assert len(await raw("SELECT id FROM stock")) == 1
