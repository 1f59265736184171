"""The breaker as a state machine over a fake clock: opening, growing cool-downs, probes, closing, trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fulfil.breaker import Breaker, BreakerState
from fulfil.config import BreakerConfig

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CFG = BreakerConfig(
    consecutive_failures=5,
    failure_rate=0.5,
    min_volume=20,
    window=60,
    base_ejection=30,
    max_ejection=300,
    probes=3,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def open_breaker(breaker: Breaker, clock: FakeClock) -> None:
    for _ in range(CFG.consecutive_failures):
        breaker.record(False, clock.tick(0.1))
    assert breaker.state is BreakerState.OPEN


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    for _ in range(4):
        assert breaker.record(False, clock.tick(1)) is None
    breaker.record(True, clock.tick(1))
    for _ in range(4):
        breaker.record(False, clock.tick(1))
    assert breaker.state is BreakerState.CLOSED
    transition = breaker.record(False, clock.tick(1))
    assert transition is not None and transition.new is BreakerState.OPEN
    assert transition.reason == "5 consecutive failures"
    assert transition.until == clock.now + timedelta(seconds=30)
    assert not breaker.allows(clock.now)


def test_opens_on_failure_rate_only_over_the_minimum_volume() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    for _ in range(9):  # 18 calls, half failed, never 5 in a row: under the minimum volume
        breaker.record(True, clock.tick(1))
        breaker.record(False, clock.tick(1))
    assert breaker.state is BreakerState.CLOSED
    breaker.record(True, clock.tick(1))
    transition = breaker.record(False, clock.tick(1))  # 20 calls, 10 failed
    assert transition is not None and transition.reason == "10 of 20 calls failed within 60s"


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    for _ in range(9):
        breaker.record(True, clock.tick(0.5))
        breaker.record(False, clock.tick(0.5))
    clock.tick(120)
    for _ in range(3):  # with the 18 before, 12 failures of 24 calls; but those are outside the window now
        breaker.record(True, clock.tick(1))
        breaker.record(False, clock.tick(1))
    assert breaker.state is BreakerState.CLOSED


def test_cooldown_grows_with_each_ejection_up_to_the_cap() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    open_breaker(breaker, clock)
    cooldowns = []
    for _ in range(12):
        assert breaker.open_until is not None
        cooldowns.append((breaker.open_until - clock.now).total_seconds())
        clock.now = breaker.open_until
        assert breaker.allows(clock.now)  # half-open: a probe goes through
        assert breaker.state is BreakerState.HALF_OPEN
        transition = breaker.record(False, clock.tick(0.1))  # ... and fails
        assert transition is not None and transition.reason == "probe failed"
    assert cooldowns == [30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0, 270.0, 300.0, 300.0, 300.0]
    assert breaker.ejections == 13  # the first opening and twelve failed probes


def test_half_open_lets_a_few_probes_through_and_a_success_closes() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    open_breaker(breaker, clock)
    assert not breaker.allows(clock.tick(29))
    assert breaker.view(clock.now).state is BreakerState.OPEN
    clock.tick(1.1)
    assert breaker.view(clock.now).state is BreakerState.HALF_OPEN  # due, before anyone asked
    assert [breaker.allows(clock.tick(0.01)) for _ in range(5)] == [True, True, True, False, False]
    transition = breaker.record(True, clock.tick(0.5))
    assert transition is not None and transition.new is BreakerState.CLOSED
    assert breaker.allows(clock.now) and breaker.view(clock.now).opened_until is None


def test_probes_that_never_report_are_given_again() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    open_breaker(breaker, clock)
    clock.tick(31)
    assert all(breaker.allows(clock.now) for _ in range(3))
    assert not breaker.allows(clock.tick(10))  # the probes went elsewhere (another offer came first) ...
    assert breaker.allows(clock.tick(21))  # ... so after a while new ones are let through


def test_calls_reported_while_open_change_nothing() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    open_breaker(breaker, clock)
    until = breaker.open_until
    assert breaker.record(True, clock.tick(1)) is None  # an answer to a call made before it opened
    assert breaker.record(False, clock.tick(1)) is None
    assert breaker.state is BreakerState.OPEN and breaker.open_until == until


def test_trip_opens_at_once_and_a_second_trip_changes_nothing() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    transition = breaker.trip("insufficient balance", clock.now)
    assert transition is not None and transition.new is BreakerState.OPEN
    assert breaker.view(clock.now).reason == "insufficient balance"
    assert breaker.trip("again", clock.tick(1)) is None
    assert breaker.ejections == 1
    clock.tick(30)
    assert breaker.allows(clock.now)
    # The probe's call answered (ok) and the answer was "insufficient balance" again: closed, tripped again.
    assert breaker.record(True, clock.tick(0.1)) is not None
    again = breaker.trip("insufficient balance", clock.now)
    assert again is not None and again.until == clock.now + timedelta(seconds=60)


def test_ejections_are_forgotten_after_a_long_healthy_stretch() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    open_breaker(breaker, clock)
    clock.now = breaker.open_until or clock.now
    breaker.allows(clock.now)
    breaker.record(True, clock.tick(0.1))
    open_breaker(breaker, clock)  # soon after: the second ejection is longer
    assert breaker.ejections == 2
    clock.now = breaker.open_until or clock.now
    breaker.allows(clock.now)
    breaker.record(True, clock.tick(0.1))
    clock.tick(CFG.max_ejection + 1)
    open_breaker(breaker, clock)
    assert breaker.ejections == 1
    assert breaker.open_until == clock.now + timedelta(seconds=30)


def test_reopens_at_says_when_a_refusing_breaker_lets_orders_through_again_and_changes_nothing() -> None:
    clock, breaker = FakeClock(), Breaker(CFG)
    assert breaker.reopens_at(clock.now) is None  # closed: lets orders through now
    open_breaker(breaker, clock)
    until = breaker.open_until
    assert until is not None and breaker.reopens_at(clock.now) == until
    assert breaker.state is BreakerState.OPEN  # asking moved nothing
    clock.tick(30)
    assert breaker.reopens_at(clock.now) is None  # due: the next order probes
    for _ in range(CFG.probes):
        assert breaker.allows(clock.now)
    probe_at = clock.now
    assert not breaker.allows(clock.tick(1))
    # Half-open with every probe out: a probe that never reports is given again after the probe timeout.
    assert breaker.reopens_at(clock.now) == probe_at + timedelta(seconds=30)
    assert breaker.reopens_at(clock.tick(28)) == probe_at + timedelta(seconds=30)
    assert breaker.reopens_at(clock.tick(1)) is None
    assert breaker.allows(clock.now)
