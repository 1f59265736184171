"""Regression tests for an independent review of the receipts change (each names the finding it covers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from enginekit import (
    FAST_RETRY,
    FakeSupplier,
    books,
    charge_then_lose,
    error,
    ok,
    pair,
    refuse_repeats,
    unpark,
)

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, ClaimReason, OrderStatus, ReceiptKind
from fulfil.resolver import resolve_orphans
from fulfil.storage import Store
from suppliers.base import PlaceRequest
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome


async def test_keys_arriving_after_a_charged_no_goods_receipt_are_kept(store: Store, cipher: CardCipher) -> None:
    """Finding 2: worker B settled by "already exists" while worker A's answer with the keys was on its way."""
    h = pair(store, cipher, FakeSupplier("main"), FakeSupplier("backup"))
    await h.add()
    order = await h.claim()
    assert order is not None
    now = datetime.now(UTC)
    attempt = await store.open_attempt(order.id, h.owner, "main", 0, 2, Decimal("9.50"), now)
    keys = [Card(password="K" + str(i) * 15) for i in (1, 2)]
    first = await store.record_receipt(attempt.id, ReceiptKind.CHARGED_NO_GOODS, now)
    late = await store.record_receipt(attempt.id, ReceiptKind.GOODS, now, cards=keys)
    assert first.id == late.id and late.kind is ReceiptKind.GOODS and len(late.cards) == 2, "upgraded, not dropped"

    other = await store.open_attempt(order.id, h.owner, "main", 0, 2, Decimal("9.50"), now)
    await store.record_receipt(other.id, ReceiptKind.CHARGED_NO_GOODS, now)
    await store.mark_attempt(other.id, AttemptState.SUCCEEDED, now, error_class="charged_not_delivered")  # acted on
    more = [Card(password="K" + str(i) * 15) for i in (3, 4)]
    kept = await store.record_receipt(other.id, ReceiptKind.GOODS, now, cards=more)
    assert kept.kind is ReceiptKind.CHARGED_NO_GOODS
    held = [c for c in await store.held_cards(reason="late_keys") if c.attempt_id == other.id]
    assert sorted(c.card.password for c in held) == sorted(c.password for c in more), "held under the claim"


async def test_an_order_whose_resends_go_nowhere_reaches_a_person(store: Store, cipher: CardCipher) -> None:
    """Finding 3: every re-send refreshed the deadline, so the order was parked for ever."""
    lost = error(ErrorClass.AMBIGUOUS)
    not_found = lambda s, r: Outcome(OrderState.NOT_FOUND, evidence=Evidence(code="4011"))  # noqa: E731
    main = FakeSupplier("main", place_steps=[lost], query_steps=[not_found])
    h = pair(
        store,
        cipher,
        main,
        FakeSupplier("backup", place_steps=[ok]),
        retry=FAST_RETRY,
        ambiguity={"query_interval": 0.01, "give_up_after": 0.5, "policy": "wait"},
    )
    await h.add()
    for _ in range(20):
        view = await h.run()
        if view.order.status is OrderStatus.REVIEW:
            break
        await asyncio.sleep(0.1)
        await unpark(store)
    assert view.order.status is OrderStatus.REVIEW, view.order.reason
    assert len(main.numbers("place")) > 2, "it did re-send meanwhile"


async def test_late_keys_back_in_stock_shrink_the_possible_double_claim(store: Store, cipher: CardCipher) -> None:
    """Finding 4: the keys went to stock while the claim still asked for their full cost."""
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
    h = pair(
        store,
        cipher,
        main,
        FakeSupplier("backup", place_steps=[ok]),
        retry=FAST_RETRY,
        ambiguity={"query_interval": 0.0, "policy": "failover", "late_keys": "stock"},
    )
    await h.add(qty=2)
    assert (await h.run()).order.status is OrderStatus.DELIVERED
    main.query_steps = [books]
    await resolve_orphans(h.engine)
    (claim,) = (await h.view()).claims
    assert claim.reason is ClaimReason.POSSIBLE_DOUBLE
    assert claim.amount == Decimal("0.00") and claim.evidence["recovered_units"] == 2
    assert (await store.stock_counts())["sku"].available == 2


async def test_an_acknowledged_purchase_is_never_written_off_by_a_stray_not_found(
    store: Store, cipher: CardCipher
) -> None:
    """Finding 6: one 4011 after give_up_after marked a purchase the supplier had acknowledged as not charged."""
    pending = lambda s, r: (s.charge(r), Outcome(OrderState.PENDING, supplier_order_id="S-1"))[1]  # noqa: E731
    main = FakeSupplier("main", place_steps=[pending], query_steps=[lambda s, r: Outcome(OrderState.PENDING)])
    h = pair(
        store,
        cipher,
        main,
        FakeSupplier("backup", place_steps=[ok]),
        retry=FAST_RETRY,
        ambiguity={"query_interval": 0.01, "give_up_after": 0.0, "policy": "wait"},
    )
    await h.add()
    assert (await h.run()).order.status is OrderStatus.REVIEW  # still processing after give_up_after
    main.query_steps = [lambda s, r: Outcome(OrderState.NOT_FOUND, evidence=Evidence(code="4011"))]
    await resolve_orphans(h.engine)
    (attempt,) = (await h.view()).attempts
    assert attempt.state is not AttemptState.FAILED, "a known purchase is not written off"


async def test_an_open_attempt_at_an_unqueryable_supplier_never_reaches_a_person_unclaimed(
    store: Store, cipher: CardCipher
) -> None:
    """Finding 7: the third crash sent the order to review with an acg attempt open and no claim."""
    calls = 0

    async def charge_then_crash(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        nonlocal calls
        calls += 1
        refuse_repeats(s, r)
        raise RuntimeError("a bug after the call")

    main = FakeSupplier("main", place_steps=[charge_then_crash], queryable=False)
    h = pair(store, cipher, main, FakeSupplier("backup", place_steps=[ok]))
    await h.add()
    for _ in range(5):
        view = await h.run()
        if view.order.status is OrderStatus.REVIEW:
            break
        await unpark(store)
    assert view.order.status is OrderStatus.REVIEW
    open_ = [a for a in view.attempts if a.state in (AttemptState.SENT, AttemptState.AMBIGUOUS)]
    assert open_ and {c.attempt_id for c in view.claims} >= {a.id for a in open_}, "each open attempt has a claim"


async def test_lost_answers_do_not_trip_the_non_key_wire(store: Store, cipher: CardCipher) -> None:
    """Finding 9: two "already exists" settlements after a crash cooled a healthy offer down."""
    main = FakeSupplier("main", place_steps=[charge_then_lose, refuse_repeats], queryable=False)
    h = pair(store, cipher, main, FakeSupplier("backup", place_steps=[ok]))
    for ref in ("o-1", "o-2"):
        main.calls.clear()
        await h.add(ref)
        assert (await h.run(ref)).order.status is OrderStatus.DELIVERED
    assert await store.events(name="supplier.non_keys") == []
