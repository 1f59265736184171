"""Claims: one per (attempt, reason), opened idempotently, moved only along CLAIM_TRANSITIONS."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptRecord, AttemptState, ClaimReason, ClaimStatus
from fulfil.storage import InvalidTransition, NotFound, Store

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed, Raw


async def _attempt(store: Store, now: datetime, claimed: Claimed, ref: str = "r1") -> AttemptRecord:
    order = await claimed(ref)
    attempt = await store.open_attempt(order.id, "w1", "fulu", 0, 1, Decimal("9.5"), now)
    return await store.mark_attempt(attempt.id, AttemptState.SUCCEEDED, now, supplier_order_id="S-77")


async def test_open_claim_carries_the_supplier_facing_facts(store: Store, now: datetime, claimed: Claimed) -> None:
    attempt = await _attempt(store, now, claimed)
    claim = await store.open_claim(attempt.id, ClaimReason.INVALID_KEY, Decimal("9.5"), 1, {"response": "masked"}, now)
    assert claim.claim_no == f"C-20261121-{claim.id:06d}"
    assert (claim.supplier, claim.order_ref, claim.order_id, claim.attempt_id) == (
        "fulu",
        "r1",
        attempt.order_id,
        attempt.id,
    )
    assert (claim.supplier_order_no, claim.supplier_order_id) == (attempt.number, "S-77")
    assert (claim.reason, claim.status, claim.amount, claim.qty) == (
        ClaimReason.INVALID_KEY,
        ClaimStatus.OPEN,
        Decimal("9.5"),
        1,
    )
    assert (claim.evidence, claim.created_at, claim.updated_at) == ({"response": "masked"}, now, now)
    [event] = await store.events(name="claim.opened")
    assert (event.order_id, event.supplier, event.data["claim_no"]) == (attempt.order_id, "fulu", claim.claim_no)


async def test_open_claim_is_idempotent_per_attempt_and_reason(
    store: Store, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    attempt = await _attempt(store, now, claimed)
    first = await store.open_claim(attempt.id, ClaimReason.INVALID_KEY, Decimal("1"), 1, {"n": 1}, now)
    again = await store.open_claim(
        attempt.id, ClaimReason.INVALID_KEY, Decimal("2"), 2, {"n": 2}, now + timedelta(hours=1)
    )
    other = await store.open_claim(attempt.id, ClaimReason.POSSIBLE_DOUBLE, Decimal("1"), 1, {}, now)

    assert again == first, "the existing claim comes back unchanged"
    assert [c.reason for c in await store.claims_for_attempt(attempt.id)] == [
        ClaimReason.INVALID_KEY,
        ClaimReason.POSSIBLE_DOUBLE,
    ]
    assert (await store.get_claim(first.claim_no)) == first
    assert other.claim_no != first.claim_no
    assert len(await raw("SELECT id FROM claims")) == 2
    assert len(await store.events(name="claim.opened")) == 2


async def test_concurrent_open_claim_writes_one_claim(
    store: Store, db_url: str, cipher: CardCipher, now: datetime, claimed: Claimed, raw: Raw
) -> None:
    attempt = await _attempt(store, now, claimed)
    other = await Store.open(db_url, cipher)
    try:
        claims = await asyncio.gather(
            *(
                s.open_claim(attempt.id, ClaimReason.CHARGED_NOT_DELIVERED, None, 1, {}, now)
                for s in (store, other, store, other)
            )
        )
    finally:
        await other.close()
    assert len({c.claim_no for c in claims}) == 1
    assert len(await raw("SELECT id FROM claims")) == 1


async def test_claim_moves_follow_the_transitions(store: Store, now: datetime, claimed: Claimed) -> None:
    attempt = await _attempt(store, now, claimed)
    claim = await store.open_claim(attempt.id, ClaimReason.INVALID_KEY, Decimal("1"), 1, {}, now)
    with pytest.raises(InvalidTransition, match=r"cannot move to settled \(allowed: submitted, rejected\)"):
        await store.set_claim_status(claim.claim_no, ClaimStatus.SETTLED, None, "ops", now)

    later = now + timedelta(days=1)
    submitted = await store.set_claim_status(claim.claim_no, ClaimStatus.SUBMITTED, "ticket 12", "alice", later)
    accepted = await store.set_claim_status(claim.claim_no, ClaimStatus.ACCEPTED, None, "bob", later)
    settled = await store.set_claim_status(claim.claim_no, ClaimStatus.SETTLED, "paid", "bob", later)

    assert (submitted.status, submitted.note, submitted.updated_at) == (ClaimStatus.SUBMITTED, "ticket 12", later)
    assert (accepted.status, accepted.note) == (ClaimStatus.ACCEPTED, "ticket 12")
    assert (settled.status, settled.note) == (ClaimStatus.SETTLED, "paid")
    with pytest.raises(InvalidTransition, match=r"allowed: none \(final\)"):
        await store.set_claim_status(claim.claim_no, ClaimStatus.REJECTED, None, "ops", later)
    moves = [(e.operator, e.data["from"], e.data["to"]) for e in await store.events(name="claim.status")]
    assert moves == [("bob", "accepted", "settled"), ("bob", "submitted", "accepted"), ("alice", "open", "submitted")]
    with pytest.raises(NotFound):
        await store.set_claim_status("C-19990101-000001", ClaimStatus.SUBMITTED, None, "ops", now)


async def test_evidence_is_merged(store: Store, now: datetime, claimed: Claimed) -> None:
    attempt = await _attempt(store, now, claimed)
    claim = await store.open_claim(attempt.id, ClaimReason.INVALID_KEY, None, 1, {"a": 1, "b": 1}, now)
    await store.update_claim_evidence(claim.claim_no, {"b": 2, "c": [3]}, now + timedelta(minutes=5))
    [found] = await store.list_claims()
    assert (found.evidence, found.updated_at) == ({"a": 1, "b": 2, "c": [3]}, now + timedelta(minutes=5))
    with pytest.raises(NotFound):
        await store.update_claim_evidence("C-nope", {}, now)
    with pytest.raises(NotFound):
        await store.get_claim("C-nope")


async def test_list_claims_filters(store: Store, now: datetime, claimed: Claimed) -> None:
    a1 = await _attempt(store, now, claimed, "r1")
    order2 = await claimed("r2")
    a2 = await store.open_attempt(order2.id, "w1", "acg", 0, 1, None, now)
    c1 = await store.open_claim(a1.id, ClaimReason.INVALID_KEY, None, 1, {}, now)
    c2 = await store.open_claim(a2.id, ClaimReason.POSSIBLE_DOUBLE, None, 1, {}, now + timedelta(days=2))
    await store.set_claim_status(c2.claim_no, ClaimStatus.SUBMITTED, None, "ops", now)

    assert [c.claim_no for c in await store.list_claims()] == [c1.claim_no, c2.claim_no]
    assert [c.claim_no for c in await store.list_claims(supplier="acg")] == [c2.claim_no]
    assert [c.claim_no for c in await store.list_claims(status=ClaimStatus.OPEN)] == [c1.claim_no]
    assert [c.claim_no for c in await store.list_claims(since=now + timedelta(days=1))] == [c2.claim_no]
    assert await store.list_claims(supplier="fulu", status=ClaimStatus.SUBMITTED) == []
    view = await store.get_order("r2")
    assert view is not None and [c.claim_no for c in view.claims] == [c2.claim_no]


async def test_claim_for_an_unknown_attempt(store: Store, now: datetime) -> None:
    with pytest.raises(NotFound):
        await store.open_claim(999, ClaimReason.INVALID_KEY, None, 1, {}, now)
