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

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.next_action is not None:
            on_retry(_last_outcome(state), state.next_action.sleep)

    class spent_on_our_clock(stop_base):  # noqa: N801 - reads like tenacity's own stop conditions
        """tenacity times itself with its own monotonic clock; this twin honours an injected clock too."""

        def __call__(self, state: RetryCallState) -> bool:
            return (clock.monotonic() - start) + state.upcoming_sleep >= budget

    retrying = AsyncRetrying(
        stop=stop_before_delay(budget) | spent_on_our_clock(),
        wait=wait_random_exponential(multiplier=retry.initial_backoff, max=retry.max_backoff),
        retry=retry_if_result(is_transient),
        retry_error_callback=_last_outcome,
        before_sleep=before_sleep,
        sleep=clock.sleep,
    )
    outcome: Outcome = await retrying(one_try)
    return outcome
