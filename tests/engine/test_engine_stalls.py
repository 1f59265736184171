"""A supplier call that fails while this process's own event loop stands still is not held against the supplier
(fulfil.loopwatch.Stalls): its breaker and score see only what the supplier did. Real loop, real blocking."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from enginekit import FakeSupplier, Harness, error, make_config

from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from fulfil.health import NullHealth
from fulfil.loopwatch import LoopWatch, Stalls
from fulfil.storage import Store
from suppliers.base import PlaceRequest
from suppliers.taxonomy import ErrorClass, Evidence, Outcome

RETRY = {"budget": 5.0, "initial_backoff": 0.01, "max_backoff": 0.02}


class Recorded(NullHealth):
    """What the engine held for or against each supplier."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def record(self, supplier: str, ok: bool, latency: float | None, now: datetime) -> None:
        self.calls.append((supplier, ok))


@pytest.fixture
async def watch() -> AsyncIterator[LoopWatch]:
    watch = LoopWatch(interval=0.05)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.serve(stopping))
    await asyncio.sleep(0.12)  # ticking
    yield watch
    stopping.set()
    await asyncio.wait_for(task, timeout=5)
    assert watch.stalls.due is None  # a stopped watch leaves no stall "going on"


def harness(store: Store, cipher: CardCipher, main: FakeSupplier, health: Recorded, stalls: Stalls) -> Harness:
    h = Harness(store, cipher, make_config([("main", 1)], retry=RETRY), {"main": main})
    h.engine.health = health
    h.engine.stalls = stalls
    return h


def stalled_failure(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    time.sleep(0.6)  # this process blocks: the timeout that ends the call fires late, not the supplier's doing
    return Outcome.error_of(ErrorClass.TRANSIENT, Evidence(message="read timeout"))


def stalled_reply(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    time.sleep(0.6)  # the same stall, but the supplier did answer: a 502 is the supplier's
    return Outcome.error_of(ErrorClass.TRANSIENT, Evidence(http_status=502, message="bad gateway"))


async def slow_failure(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    await asyncio.sleep(1.0)  # the supplier is slow; this process is free meanwhile
    return Outcome.error_of(ErrorClass.TRANSIENT, Evidence(message="read timeout"))


def charge(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    return s.charge(r)


async def test_a_call_failed_in_a_stall_is_not_held_against_the_supplier(
    store: Store, cipher: CardCipher, watch: LoopWatch, caplog: pytest.LogCaptureFixture
) -> None:
    main = FakeSupplier("main", place_steps=[stalled_failure, charge])
    health = Recorded()
    h = harness(store, cipher, main, health, watch.stalls)
    await h.add()
    with caplog.at_level(logging.INFO, logger="fulfil.engine"):
        view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and main.charged_units == 1
    assert health.calls == [("main", True)]  # the stalled failure was not counted; the retry's success was
    unjudged = [r for r in caplog.records if r.getMessage() == "supplier.call_unjudged"]
    assert [(r.supplier, r.what) for r in unjudged] == [("main", "place")]  # type: ignore[attr-defined]


async def test_excuses_stop_after_three_in_a_row_and_never_cover_a_reply(
    store: Store, cipher: CardCipher, watch: LoopWatch
) -> None:
    """A daemon stalled call after call (overloaded) must not hide a supplier that is down from its breaker."""
    steps = [stalled_failure, stalled_failure, stalled_failure, stalled_failure, stalled_reply, charge]
    main = FakeSupplier("main", place_steps=steps)
    health = Recorded()
    h = harness(store, cipher, main, health, watch.stalls)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED and main.charged_units == 1
    # Three excused, the fourth held against it, the 502 (a reply) held against it, then the success.
    assert health.calls == [("main", False), ("main", False), ("main", True)]


async def test_a_supplier_that_fails_while_this_process_is_free_is_held_to_it(
    store: Store, cipher: CardCipher, watch: LoopWatch
) -> None:
    main = FakeSupplier("main", place_steps=[slow_failure, error(ErrorClass.TRANSIENT), charge])
    health = Recorded()
    h = harness(store, cipher, main, health, watch.stalls)
    await h.add()
    view = await h.run()
    assert view.order.status is OrderStatus.DELIVERED
    assert health.calls == [("main", False), ("main", False), ("main", True)]


def test_only_a_call_that_stood_still_long_enough_is_excused() -> None:
    stalls = Stalls()
    now = Stalls.mark()
    stalls.add(now - 1.0, now)  # the loop stood still for the last second
    assert not stalls.excuses("s", Stalls.mark(), failed_without_reply=True)  # an instant failure: no stall in it
    assert not stalls.excuses("s", now - 1.2, failed_without_reply=False)  # a reply, a success: the supplier's
    assert stalls.excuses("s", now - 1.2, failed_without_reply=True)
    assert not stalls.excuses("s", now - 5.0, failed_without_reply=True)  # stood still for less than half of it


def test_stalls_count_the_seconds_of_a_call_the_loop_stood_still() -> None:
    stalls = Stalls()
    stalls.add(10.0, 11.0)
    stalls.add(20.0, 20.5)
    assert stalls.within(9.0, 12.0) == pytest.approx(1.0)
    assert stalls.within(10.5, 20.25) == pytest.approx(0.75)
    assert stalls.within(12.0, 19.0) == 0.0
    stalls.due = 30.0  # the watch's tick was due at 30 and has not run: standing still since
    assert stalls.within(29.0, 30.1) == 0.0  # 0.1 s past due is scheduling, not a stall
    assert stalls.within(29.0, 31.0) == pytest.approx(1.0)
