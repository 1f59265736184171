"""Placing one attempt at one supplier within the retry budget.

Only `transient` outcomes (the request was not executed) are retried, always under the attempt's own number.
Backoff is exponential with full jitter, so the first retry comes within `initial_backoff`; tenacity stops
*before* a wait would cross the budget, and each try's timeout is capped at what is left of it, so no supplier
sees the calls of one attempt spread over more than the budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from fulfil.clock import Clock
from fulfil.config import RetryConfig
from suppliers.taxonomy import ErrorClass, OrderState, Outcome

MIN_TRY_TIMEOUT = 0.2  # below this a try cannot succeed anyway: stop instead


def is_transient(outcome: Outcome) -> bool:
    return outcome.state is OrderState.ERROR and outcome.error is ErrorClass.TRANSIENT


def _last_outcome(state: RetryCallState) -> Outcome:
    assert state.outcome is not None
    result: Outcome = state.outcome.result()
    return result


async def place_with_budget(
    call: Callable[[float], Awaitable[Outcome]],
    *,
    retry: RetryConfig,
    try_timeout: float,
    clock: Clock,
    spent: float = 0.0,
    on_retry: Callable[[Outcome, float], None] | None = None,
) -> Outcome:
    """Call `call(try_timeout)` until it is not transient or the budget is spent; return the last outcome.

    `spent` is the part of the budget an earlier run of this attempt used (a resumed attempt continues its
    own budget rather than starting a new one).
    """
    budget = max(0.0, retry.budget - spent)
    start = clock.monotonic()

    async def one_try() -> Outcome:
        left = budget - (clock.monotonic() - start)
        if left < MIN_TRY_TIMEOUT:
            return Outcome.error_of(ErrorClass.TRANSIENT)
        return await call(min(try_timeout, left))

    # Most calls end with their first try: it is made before tenacity is set up (a retrying object and its
    # conditions per call cost more than the call's own bookkeeping), and tenacity replays it as its first.
    tried = await one_try()
    if not is_transient(tried):
        return tried
    replay: list[Outcome] = [tried]

    async def replay_then_try() -> Outcome:
        return replay.pop() if replay else await one_try()

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.next_action is not None:
            on_retry(_last_outcome(state), state.next_action.sleep)

    retrying = AsyncRetrying(
        stop=stop_before_delay(budget) | _SpentOnOurClock(clock, start, budget),
        wait=wait_random_exponential(multiplier=retry.initial_backoff, max=retry.max_backoff),
        retry=retry_if_result(is_transient),
        retry_error_callback=_last_outcome,
        before_sleep=before_sleep,
        sleep=clock.sleep,
    )
    outcome: Outcome = await retrying(replay_then_try)
    return outcome


class _SpentOnOurClock(stop_base):
    """tenacity times itself with its own monotonic clock; this twin honours an injected clock too."""

    def __init__(self, clock: Clock, start: float, budget: float) -> None:
        self._clock, self._start, self._budget = clock, start, budget

    def __call__(self, state: RetryCallState) -> bool:
        return (self._clock.monotonic() - self._start) + state.upcoming_sleep >= self._budget
