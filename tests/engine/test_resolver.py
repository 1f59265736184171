"""The resolver: fair to every open attempt, never writing a charge off too early, never looping an order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enginekit import (
    FAST_RETRY,
    FakeSupplier,
    books,
    charge_then_lose,
    error,
    failed,
    ok,
    pair,
)
from sqlalchemy import update

from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, NewOrder, OrderStatus
from fulfil.resolver import resolve_orphans
from fulfil.storage import Store
from fulfil.storage.schema import attempts, orders
from suppliers.base import PlaceRequest
from suppliers.taxonomy import ErrorClass, Evidence, OrderState, Outcome


async def stuck_in_review(store: Store, count: int, supplier: str, now: datetime, prefix: str = "stuck") -> list[str]:
    """Orders handed to a person with one attempt each that was sent and never answered."""
    refs = [f"{prefix}-{i:04d}" for i in range(count)]
    await store.add_orders([NewOrder(ref, "sku", 1) for ref in refs], now)
    numbers = []
    for order in await store.claim_orders("w", count, 600, now):
        attempt = await store.open_attempt(order.id, "w", supplier, 0, 1, None, now)
        sent = await store.mark_sent(attempt.id, order.id, "w", now)
        assert sent is not None
        numbers.append(sent.number)
        await store.finish_order(order.id, "w", OrderStatus.REVIEW, "test: nobody knows", now)
    return numbers


async def test_attempts_that_never_settle_cannot_starve_a_charged_one(store: Store, cipher: CardCipher) -> None:
    now = datetime.now(UTC)
    await stuck_in_review(store, 300, "main", now - timedelta(minutes=5))
    (charged,) = await stuck_in_review(store, 1, "main", now - timedelta(minutes=1), prefix="charged")

    def answers(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        if r.number == charged:
            s.charge(r)
            return s.found(r)
        return Outcome(OrderState.PENDING, evidence=Evidence(message="processing"))

    main = FakeSupplier("main", query_steps=[answers])
    # The back-off starts at the query interval: a minute, so that a pass slowed by a loaded machine does not
    # make the first ones due again before the last assertion.
    h = pair(store, cipher, main, FakeSupplier("backup"), ambiguity={"query_interval": 60.0, "give_up_after": 7200})
    for _ in range(3):
        await resolve_orphans(h.engine, limit=200)
        if charged in main.numbers("query"):
            break
    assert charged in main.numbers("query"), "the charged attempt was asked about within a few passes"
    found = await store.get_order("stuck-0000")
    assert found is not None
    reopened = [v for v in await store.list_orders(OrderStatus.PENDING)]
    assert [v.attempts[0].number for v in reopened] == [charged], "the charged one went back to its buyer"
    # The stuck ones are scheduled with a back-off, not asked again on every tick.
    asked = len(main.numbers("query"))
    await resolve_orphans(h.engine, limit=200)
    assert len(main.numbers("query")) == asked, "nothing was due yet"
    stuck = (await store.list_orders(OrderStatus.REVIEW))[0].attempts[0]
    assert stuck.checks == 1 and stuck.next_check_at is not None and stuck.next_check_at > datetime.now(UTC)


async def test_not_found_right_after_a_resend_is_not_final(store: Store, cipher: CardCipher) -> None:
    """Fulu may answer 4011 for a while after a re-send: "gone" counts from the latest send, not the first."""
    lost = error(ErrorClass.AMBIGUOUS)  # the request never reached the supplier
    main = FakeSupplier("main", place_steps=[lost], query_steps=[error(ErrorClass.AMBIGUOUS)])
    backup = FakeSupplier("backup", place_steps=[failed(ErrorClass.PRODUCT_UNAVAILABLE)])
    h = pair(
        store,
        cipher,
        main,
        backup,
        retry=FAST_RETRY,
        ambiguity={"query_interval": 0.0, "give_up_after": 60.0, "policy": "failover"},
    )
    await h.add()
    view = await h.run()
    (attempt,) = [a for a in view.attempts if a.supplier == "main"]
    # The first send was long ago; the attempt was just sent again under its number.
    await store.mark_resent(attempt.id, datetime.now(UTC))
    async with store._write() as conn:  # noqa: SLF001 - age the first send by an hour
        await conn.execute(
            update(attempts).where(attempts.c.id == attempt.id).values(sent_at=datetime.now(UTC) - timedelta(hours=1))
        )
    main.query_steps = [books]  # not in the supplier's books (yet)
    await resolve_orphans(h.engine)
    after = [a for a in (await h.view()).attempts if a.id == attempt.id][0]
    assert after.state is AttemptState.AMBIGUOUS, "not written off: the re-send is only seconds old"

    await store.mark_resent(attempt.id, datetime.now(UTC) - timedelta(minutes=2))
    async with store._write() as conn:  # noqa: SLF001 - due now
        await conn.execute(update(attempts).where(attempts.c.id == attempt.id).values(next_check_at=None))
    await resolve_orphans(h.engine)
    after = [a for a in (await h.view()).attempts if a.id == attempt.id][0]
    assert after.state is AttemptState.FAILED, "not found for longer than give_up_after since the latest send"


async def test_the_crash_count_restarts_after_an_operators_retry(store: Store, cipher: CardCipher) -> None:
    class Boom(FakeSupplier):
        async def place(self, request: PlaceRequest) -> Outcome:
            raise RuntimeError("a bug in an adapter")

    main = Boom("main")
    h = pair(store, cipher, main, FakeSupplier("backup", place_steps=[ok]))
    await h.add()

    async def crash_until_review() -> int:
        for passes in range(1, 10):
            async with store._write() as conn:  # noqa: SLF001 - skip the back-off between tries
                await conn.execute(update(orders).values(not_before=None))
            view = await h.run()
            if view.order.status is OrderStatus.REVIEW:
                return passes
        raise AssertionError("never reached review")

    assert await crash_until_review() == 3
    await store.review_retry("o-1", "alice", datetime.now(UTC))
    assert await crash_until_review() == 3, "the operator's retry gets its own three tries, not one"


class BrokenDelivery(Store):
    async def deliver(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        raise RuntimeError("a bug in delivery")


async def test_an_order_is_reopened_once_per_attempt_never_in_a_loop(db_url: str, cipher: CardCipher) -> None:
    import asyncio

    await asyncio.to_thread(Store.upgrade, db_url)
    store = await BrokenDelivery.open(db_url, cipher)
    try:
        main = FakeSupplier("main", place_steps=[charge_then_lose], query_steps=[error(ErrorClass.AMBIGUOUS)])
        h = pair(
            store,
            cipher,
            main,
            FakeSupplier("backup", place_steps=[ok]),
            retry=FAST_RETRY,
            ambiguity={"query_interval": 0.0, "give_up_after": 0.0},
        )
        await h.add()
        assert (await h.run()).order.status is OrderStatus.REVIEW
        main.query_steps = [books]
        await resolve_orphans(h.engine)
        assert (await h.view()).order.status is OrderStatus.PENDING, "reopened: the purchase went through"
        for _ in range(3):  # delivery keeps failing: three crashes, then a person
            async with store._write() as conn:  # noqa: SLF001 - skip the back-off between tries
                await conn.execute(update(orders).values(not_before=None))
            await h.run()
        assert (await h.view()).order.status is OrderStatus.REVIEW
        for _ in range(3):
            await resolve_orphans(h.engine)
            assert (await h.view()).order.status is OrderStatus.REVIEW, "not reopened again"
        reopened = await store.events(name="order.reopened")
        assert len(reopened) == 1
        assert len(main.numbers("place")) == 1 and main.charged_units == 1
        assert (await store.stock_counts())["sku"].available == 1, "the charged key is kept, not lost"
    finally:
        await store.close()
