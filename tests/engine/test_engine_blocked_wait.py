"""An order whose offers left are all blocked for a while (a supplier's breaker open, an offer cooling down)
waits for them, within `routing.blocked_wait` of its payment or an operator's retry, instead of going to
review; after that long, or with nothing that ends by itself, review says why. A process that dies on the way
to waiting leaves an order that is bought once, by whoever takes it next."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from enginekit import (
    FAST_RETRY,
    FakeSupplier,
    Harness,
    books,
    charge_then_lose,
    error,
    failed,
    make_config,
    ok,
    unpark,
)

from fulfil.clock import SystemClock
from fulfil.crypto import CardCipher
from fulfil.domain import WAITING_REASON, AttemptState, OrderStatus
from fulfil.health import NullHealth
from fulfil.storage import InvalidTransition, Store
from fulfil.web.metrics import metrics_text
from suppliers.base import PlaceRequest
from suppliers.taxonomy import ErrorClass, Evidence, OrderState, Outcome


class Breakers(NullHealth):
    """Suppliers whose breaker is open, each until a given time (None: it cannot say)."""

    def __init__(self, **open_for: float) -> None:
        """`Breakers(main=30)`: main's breaker open for 30 s from now."""
        self.open: dict[str, datetime | None] = {
            name: datetime.now(UTC) + timedelta(seconds=seconds) for name, seconds in open_for.items()
        }

    def allows(self, supplier: str, now: datetime) -> bool:
        return supplier not in self.open

    def reopens_at(self, supplier: str, now: datetime) -> datetime | None:
        return self.open.get(supplier)


class Shifted(SystemClock):
    """The system's clock, `ahead` seconds ahead: time passes for the engine without the test sleeping."""

    ahead = 0.0

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.ahead)


def harness(store: Store, cipher: CardCipher, main: FakeSupplier, health: Breakers, **routing: Any) -> Harness:
    config = make_config([("main", 1)], routing=routing)
    h = Harness(store, cipher, config, {"main": main})
    h.engine.health = health
    return h


async def waiting_events(store: Store) -> list[Any]:
    return await store.events(name="order.waiting", limit=100)


async def test_an_open_breaker_makes_the_order_wait_then_it_is_delivered_once(store: Store, cipher: CardCipher) -> None:
    main = FakeSupplier("main", place_steps=[ok], query_steps=[books])
    health = Breakers(main=30)
    h = harness(store, cipher, main, health, blocked_wait=600.0)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING, view.order.reason
    assert view.order.reason == f"{WAITING_REASON}main#0 breaker open"
    assert view.attempts == () and main.calls == [], "nothing is bought while it waits"
    assert await h.claim() is None, "not claimable before the breaker may let it through"
    # Looked at again (the wait cut short here) while the breaker is still open: waits again, said once.
    await unpark(store)
    assert (await h.run()).order.status is OrderStatus.PENDING
    events = await waiting_events(store)
    assert [e.data["blocked"] for e in events] == ["main#0 breaker open"]
    # The scrape tells waiting orders from the backlog.
    scrape = (await metrics_text(store, datetime.now(UTC))).decode()
    assert 'fulfil_queue_depth{queue="waiting"} 1.0' in scrape and 'fulfil_queue_depth{queue="pending"} 1.0' in scrape
    health.open.clear()
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and view.order.reason is None
    assert (await store.backlog(datetime.now(UTC))).waiting == 0
    assert len(main.numbers("place")) == 1 and main.charged_units == 1 and len(view.cards) == 1


async def test_the_wait_is_as_long_as_the_block_within_bounds(store: Store, cipher: CardCipher) -> None:
    """Parked until the breaker's cool-down ends, but looked at again within 10 s, and never past the limit."""
    main = FakeSupplier("main", place_steps=[ok])
    health = Breakers()
    h = harness(store, cipher, main, health, blocked_wait=600.0)
    for ref, until, expected in (("a", 4.0, 4.0), ("b", 300.0, 10.0), ("c", None, 1.0)):
        await h.add(ref)
        before = datetime.now(UTC)
        health.open["main"] = None if until is None else before + timedelta(seconds=until)
        await h.run(ref)
        not_before = await _not_before(store, ref)
        # A loaded machine may take a while between `before` and the park: later, never sooner.
        assert expected - 0.5 <= (not_before - before).total_seconds() <= expected + 3.0, (ref, not_before - before)


async def test_after_blocked_wait_review_says_it_waited_and_a_retry_waits_again(
    store: Store, cipher: CardCipher
) -> None:
    main = FakeSupplier("main", place_steps=[ok])
    health = Breakers(main=50)
    h = harness(store, cipher, main, health, blocked_wait=60.0)
    clock = Shifted()
    h.engine.clock = clock
    await h.add()
    assert (await h.run()).order.status is OrderStatus.PENDING
    clock.ahead = 61.0  # the engine's clock: a minute and a second after payment
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    reason = view.order.reason or ""
    assert reason.startswith("exhausted: main#0 breaker open (blocked 1m0") and reason.endswith(
        "s since it came or was retried)"
    ), reason
    # An operator's retry starts the wait again: the order waits instead of bouncing straight back.
    clock.ahead = 0.0
    await store.review_retry("o-1", "alice", datetime.now(UTC))
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING and (view.order.reason or "").startswith(WAITING_REASON)
    assert main.calls == []


async def test_blocked_wait_zero_and_blocks_that_do_not_end_go_to_review_at_once(
    store: Store, cipher: CardCipher
) -> None:
    main = FakeSupplier("main", place_steps=[ok])
    health = Breakers(main=30)
    h = harness(store, cipher, main, health, blocked_wait=0.0)
    await h.add("zero")
    view = await h.run("zero")
    assert view.order.status is OrderStatus.REVIEW and view.order.reason == "exhausted: main#0 breaker open"
    # A disabled supplier does not come back by itself: nothing to wait for, whatever the limit.
    config = make_config([("main", 1)], routing={"blocked_wait": 600.0})
    off = config.model_copy(
        update={"suppliers": tuple(s.model_copy(update={"enabled": False}) for s in config.suppliers)}
    )
    h2 = Harness(store, cipher, off, {"main": main})
    await h2.add("off")
    view = await h2.run("off")
    assert view.order.status is OrderStatus.REVIEW and view.order.reason == "exhausted: main#0 disabled"
    assert await waiting_events(store) == [] and main.calls == []


async def test_a_cool_down_or_a_block_past_the_limit_is_not_waited_for(store: Store, cipher: CardCipher) -> None:
    """Orders waiting out a cool-down would all be routed to the offer the moment it ends, with no probe limit:
    a burst the non-keys cool-down exists to stop. A breaker that opens again past the limit: review now."""
    main = FakeSupplier("main", place_steps=[ok], query_steps=[books])
    health = Breakers()
    h = harness(store, cipher, main, health, blocked_wait=600.0)
    now = datetime.now(UTC)
    await store.set_cooldown("main", "p-main", now + timedelta(seconds=30), "not keys twice", now)
    await h.add("cool")
    view = await h.run("cool")
    assert view.order.status is OrderStatus.REVIEW and view.order.reason == "exhausted: main#0 cooling down"
    await store.set_cooldown("main", "p-main", now, "over", now)
    health.open["main"] = now + timedelta(seconds=900)
    await h.add("late")
    view = await h.run("late")
    assert view.order.status is OrderStatus.REVIEW and view.order.reason == "exhausted: main#0 breaker open"
    assert main.calls == [] and await waiting_events(store) == []


async def test_an_attempt_set_aside_open_sends_the_order_to_review_not_to_wait(
    store: Store, cipher: CardCipher
) -> None:
    """Policy failover: the main purchase may have been charged (a possible-double claim, the attempt open), the
    backup's breaker is open. In review the resolver keeps asking about the open attempt; a waiting order would
    leave it unasked and buy at the backup when the breaker closes."""
    main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[ok])
    health = Breakers(backup=30)
    config = make_config(
        [("main", 1), ("backup", 2)],
        retry=FAST_RETRY,
        ambiguity={"query_interval": 0.01, "give_up_after": 3600.0, "policy": "failover"},
        routing={"blocked_wait": 600.0},
    )
    h = Harness(store, cipher, config, {"main": main, "backup": backup})
    h.engine.health = health
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW, view.order.reason
    assert [a.state for a in view.attempts] == [AttemptState.AMBIGUOUS]
    assert backup.calls == [] and main.charged_units == 1


@pytest.mark.parametrize("moment", ["before the wait is written", "after it, before its event"])
async def test_killed_on_the_way_to_waiting_the_next_owner_buys_once(
    store: Store, cipher: CardCipher, moment: str
) -> None:
    main = FakeSupplier("main", place_steps=[ok], query_steps=[books])
    health = Breakers(main=30)
    first = harness(store, cipher, main, health, blocked_wait=600.0)
    park, record = store.park_for, store.record_event

    async def die() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    async def dying_park(*args: Any, **kwargs: Any) -> None:
        if moment == "before the wait is written":
            await die()
        await park(*args, **kwargs)

    async def dying_record(*args: Any, **kwargs: Any) -> Any:
        await die()
        return await record(*args, **kwargs)

    store.park_for = dying_park  # type: ignore[method-assign]
    store.record_event = dying_record  # type: ignore[method-assign]
    await first.add()
    with pytest.raises(asyncio.CancelledError):
        await first.run()
    store.park_for, store.record_event = park, record  # type: ignore[method-assign]
    view = await first.view()
    expected = OrderStatus.PROCESSING if moment == "before the wait is written" else OrderStatus.PENDING
    assert view.order.status is expected and view.attempts == ()
    await store.release_all_leases(datetime.now(UTC))
    await unpark(store)
    health.open.clear()  # the successor's breaker lets it through
    successor = harness(store, cipher, main, health, blocked_wait=600.0)
    successor.owner = "successor"
    view = await successor.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(main.numbers("place")) == 1 and main.charged_units == 1 and len(view.attempts) == 1


async def _not_before(store: Store, ref: str) -> datetime:
    from sqlalchemy import select

    from fulfil.storage.schema import orders

    async with store._read() as conn:  # noqa: SLF001 - when the order may be claimed again is not in its view
        value = await conn.scalar(select(orders.c.not_before).where(orders.c.ref == ref))
    assert value is not None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Outage:
    """A supplier that refuses connections (transient: never executed) while `down`, and sells when it is not."""

    def __init__(self, opens: Breakers | None = None, cool_down: float = 6.0) -> None:
        self.down = True
        self.opens = opens  # whose breaker the failures open, for `cool_down` seconds
        self.cool_down = cool_down

    def __call__(self, s: FakeSupplier, r: PlaceRequest) -> Outcome:
        if self.down and self.opens is not None:
            self.opens.open[s.name] = datetime.now(UTC) + timedelta(seconds=self.cool_down)
        if self.down:
            return Outcome.error_of(ErrorClass.TRANSIENT, Evidence(message="connection refused"))
        return s.charge(r)


def transient_harness(store: Store, cipher: CardCipher, outage: Outage, health: Breakers) -> tuple[Harness, Any]:
    main = FakeSupplier("main", place_steps=[outage], query_steps=[books])
    config = make_config([("main", 1)], retry=FAST_RETRY, routing={"blocked_wait": 600.0})
    h = Harness(store, cipher, config, {"main": main})
    h.engine.health = health
    return h, main


async def test_a_purchase_that_failed_transient_is_tried_again_after_a_wait(store: Store, cipher: CardCipher) -> None:
    outage = Outage()
    h, main = transient_harness(store, cipher, outage, Breakers())
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING and view.order.reason == f"{WAITING_REASON}main#0 tried: transient"
    (first,) = view.attempts
    assert (first.state, first.error_class) == (AttemptState.FAILED, "transient")
    assert [e.data["after_attempt"] for e in await waiting_events(store)] == [first.id]
    # Still down at the next look: a new attempt, failed the same way, moves the watermark on.
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING and len(view.attempts) == 2
    assert [e.data["after_attempt"] for e in await waiting_events(store)] == [view.attempts[1].id, first.id]
    outage.down = False
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert [(a.state, a.error_class) for a in view.attempts] == [
        (AttemptState.FAILED, "transient"),
        (AttemptState.FAILED, "transient"),
        (AttemptState.SUCCEEDED, None),
    ]
    assert len({a.number for a in view.attempts}) == 3, "each try again is a new attempt under a new number"
    assert main.charged_units == 1 and len(main.ledger) == 1 and len(view.cards) == 1


async def test_after_a_transient_failure_the_order_waits_for_the_breaker_it_opened(
    store: Store, cipher: CardCipher
) -> None:
    health = Breakers()
    outage = Outage(opens=health)  # the failures open the breaker for 6 s
    h, main = transient_harness(store, cipher, outage, health)
    await h.add()
    before = datetime.now(UTC)
    view = await h.run()
    assert view.order.reason == f"{WAITING_REASON}main#0 tried: transient"
    assert 5.5 <= (await _not_before(store, "o-1") - before).total_seconds() <= 9.0
    # Past the limit, still failing: review says what happened.
    clock = Shifted()
    clock.ahead = 601.0
    h.engine.clock = clock
    health.open.clear()
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.REVIEW
    assert (view.order.reason or "").startswith("exhausted: main#0 tried: transient (blocked 10m")
    assert main.charged_units == 0 and all(a.error_class == "transient" for a in view.attempts)


async def test_killed_before_the_watermark_was_written_the_next_pass_waits_again_then_buys_once(
    store: Store, cipher: CardCipher
) -> None:
    outage = Outage()
    h, main = transient_harness(store, cipher, outage, Breakers())
    record = store.record_event

    async def dying_record(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        return await record(*args, **kwargs)

    store.record_event = dying_record  # type: ignore[method-assign]
    await h.add()
    with pytest.raises(asyncio.CancelledError):
        await h.run()
    store.record_event = record  # type: ignore[method-assign]
    view = await h.view()
    assert view.order.status is OrderStatus.PENDING and await waiting_events(store) == []
    outage.down = False
    await unpark(store)
    successor = h  # the same store; what matters is what the database says
    view = await successor.run()
    # No watermark: the failed attempt still uses up its offer, so this pass only waits (and writes it).
    assert view.order.status is OrderStatus.PENDING and len(view.attempts) == 1 and main.charged_units == 0
    await unpark(store)
    view = await successor.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(view.attempts) == 2 and main.charged_units == 1 and len(main.ledger) == 1


async def test_an_offer_that_failed_transient_three_times_is_not_waited_for_again(
    store: Store, cipher: CardCipher
) -> None:
    """"Never executed" is the adapter's word: were it wrong, each look would be a purchase. Three is the cap."""
    outage = Outage()
    h, main = transient_harness(store, cipher, outage, Breakers())
    await h.add()
    for look in range(3):
        await unpark(store)
        view = await h.run()
        assert len(view.attempts) == look + 1
        if look < 2:
            assert view.order.status is OrderStatus.PENDING, view.order.reason
            # A callback naming a failed attempt's number does not hurry the next purchase.
            assert not await store.wake_order(view.attempts[-1].number, datetime.now(UTC))
    assert view.order.status is OrderStatus.REVIEW and view.order.reason == "exhausted: main#0 tried: transient"
    assert main.charged_units == 0 and all(a.error_class == "transient" for a in view.attempts)


async def test_only_the_offer_that_failed_transient_is_tried_again(store: Store, cipher: CardCipher) -> None:
    gone = FakeSupplier("main", place_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE)])
    outage = Outage()
    flaky = FakeSupplier("backup", place_steps=[outage], query_steps=[books])
    config = make_config(
        [("main", 1), ("backup", 2)],
        retry=FAST_RETRY,
        routing={"blocked_wait": 600.0},
        cooldown={"product_unavailable": 0.001},  # so the tried offer, not a cool-down, is what keeps it out
    )
    h = Harness(store, cipher, config, {"main": gone, "backup": flaky})
    h.engine.health = Breakers()
    await h.add()
    view = await h.run()
    assert view.order.reason == f"{WAITING_REASON}backup#1 tried: transient"
    outage.down = False
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert [(a.supplier, a.error_class) for a in view.attempts] == [
        ("main", "product_unavailable"),
        ("backup", "transient"),
        ("backup", None),
    ]
    assert len(gone.numbers("place")) == 1 and flaky.charged_units == 1


async def test_an_operator_holds_a_waiting_order_and_nothing_is_bought_until_a_retry(
    store: Store, cipher: CardCipher
) -> None:
    """`review hold` on an order waiting out an outage: the breaker closing buys nothing for it; a retry does,
    once."""
    main = FakeSupplier("main", place_steps=[ok], query_steps=[books])
    health = Breakers(main=30)
    h = harness(store, cipher, main, health, blocked_wait=600.0)
    await h.add()
    assert (await h.run()).order.status is OrderStatus.PENDING
    held = await store.review_hold("o-1", "dana", datetime.now(UTC))
    assert held.status is OrderStatus.REVIEW and held.reason is not None and held.reason.startswith("held by dana")
    health.open.clear()
    await unpark(store)
    assert await h.claim() is None, "a held order is nobody's to work on"
    assert main.calls == [] and (await h.view()).attempts == ()
    assert (await store.backlog(datetime.now(UTC))).waiting == 0
    await store.review_retry("o-1", "dana", datetime.now(UTC))
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert len(main.numbers("place")) == 1 and main.charged_units == 1 and len(view.cards) == 1


async def test_an_order_parked_on_an_open_purchase_cannot_be_held_and_is_delivered_once(
    store: Store, cipher: CardCipher
) -> None:
    """Parked while a sent purchase has no answer yet: a hold is refused (held, a refund could pay the buyer for
    a top-up that then lands, a retry could buy again what the supplier has); the engine settles it, once."""
    settled = False  # until then the supplier says "processing"

    def query(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return s.found(r) if settled else Outcome(OrderState.PENDING, evidence=Evidence(message="processing"))

    def accepted(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        s.charge(r)
        return Outcome(OrderState.PENDING, evidence=Evidence(message="accepted, processing"))

    main = FakeSupplier("main", place_steps=[accepted], query_steps=[query])
    h = harness(store, cipher, main, Breakers(), blocked_wait=600.0)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.PENDING and [a.state for a in view.attempts] == [AttemptState.SENT]
    number = view.attempts[0].number
    with pytest.raises(InvalidTransition, match=f"o-1 has a purchase still open at the supplier \\({number}\\)"):
        await store.review_hold("o-1", "dana", datetime.now(UTC))
    assert await store.events(name="review.hold") == []
    settled = True
    await unpark(store)
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and len(view.cards) == 1
    assert len(main.numbers("place")) == 1 and main.charged_units == 1
