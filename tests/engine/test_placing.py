"""The retry budget of one attempt: transient outcomes retried, never past the budget, first retry fast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fulfil.config import RetryConfig
from fulfil.placing import place_with_budget
from suppliers.taxonomy import ErrorClass, OrderState, Outcome


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def transient() -> Outcome:
    return Outcome.error_of(ErrorClass.TRANSIENT)


async def test_transient_is_retried_until_success() -> None:
    clock = FakeClock()
    answers = [transient(), transient(), Outcome(OrderState.PENDING)]
    timeouts: list[float] = []

    async def call(timeout: float) -> Outcome:
        timeouts.append(timeout)
        clock.t += 0.05
        return answers.pop(0)

    outcome = await place_with_budget(call, retry=RetryConfig(), try_timeout=10.0, clock=clock)
    assert outcome.state is OrderState.PENDING
    assert len(timeouts) == 3
    assert clock.sleeps[0] <= 0.5  # first retry within initial_backoff


@pytest.mark.parametrize("seed_latency", [0.0, 0.3, 2.0, 9.0])
async def test_never_spreads_past_the_budget(seed_latency: float) -> None:
    clock = FakeClock()
    calls: list[tuple[float, float]] = []  # (start, end) of each try

    async def call(timeout: float) -> Outcome:
        begin = clock.t
        clock.t += min(seed_latency, timeout)
        calls.append((begin, clock.t))
        return transient()

    cfg = RetryConfig(budget=30.0, initial_backoff=0.5, max_backoff=5.0)
    outcome = await place_with_budget(call, retry=cfg, try_timeout=10.0, clock=clock)
    assert outcome.error is ErrorClass.TRANSIENT
    assert len(calls) >= 2
    assert calls[-1][1] - calls[0][0] <= 30.0
    assert all(wait <= 5.0 for wait in clock.sleeps)


async def test_non_transient_is_not_retried() -> None:
    clock = FakeClock()
    seen = 0

    async def call(timeout: float) -> Outcome:
        nonlocal seen
        seen += 1
        return Outcome.error_of(ErrorClass.AMBIGUOUS)

    outcome = await place_with_budget(call, retry=RetryConfig(), try_timeout=10.0, clock=clock)
    assert outcome.error is ErrorClass.AMBIGUOUS
    assert seen == 1


async def test_try_timeout_capped_by_what_is_left() -> None:
    clock = FakeClock()
    timeouts: list[float] = []

    async def call(timeout: float) -> Outcome:
        timeouts.append(timeout)
        clock.t += timeout  # every try times out before sending
        return transient()

    await place_with_budget(call, retry=RetryConfig(budget=12.0), try_timeout=10.0, clock=clock)
    assert timeouts[0] == 10.0
    assert timeouts[1] < 2.0
    assert clock.t <= 12.0 + 1e-9


async def test_resumed_attempt_continues_its_own_budget() -> None:
    clock = FakeClock()
    timeouts: list[float] = []

    async def call(timeout: float) -> Outcome:
        timeouts.append(timeout)
        clock.t += timeout
        return transient()

    await place_with_budget(call, retry=RetryConfig(budget=30.0), try_timeout=10.0, clock=clock, spent=25.0)
    assert clock.t <= 5.0 + 1e-9
