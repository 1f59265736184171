"""`fulfil.loopwatch`: the event loop's own lateness, measured on a real loop that is really blocked."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from fulfil import metrics
from fulfil.loopwatch import LoopWatch


def lag_count() -> float:
    value = metrics.REGISTRY.get_sample_value("fulfil_event_loop_lag_seconds_count")
    return value or 0.0


async def test_a_blocked_loop_is_measured_late_and_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(interval=0.05, stall=0.4)
    stopping = asyncio.Event()
    before = lag_count()
    with caplog.at_level(logging.WARNING, logger="fulfil.loopwatch"):
        task = asyncio.create_task(watch.serve(stopping))
        await asyncio.sleep(0.12)  # a few on-time ticks
        time.sleep(0.6)  # noqa: ASYNC251 - the point: a blocking call on the loop, every timer waits for it
        await asyncio.sleep(0.12)
        time.sleep(0.6)  # noqa: ASYNC251 - a second stall within the minute: measured, not logged again
        await asyncio.sleep(0.12)
        stopping.set()
        await asyncio.wait_for(task, timeout=5)  # it returns once stopping is set
    # The timer was due at most one interval after the block began, so it ran at least 0.55 s late.
    assert watch.worst >= 0.5
    assert lag_count() - before >= 4  # every tick is recorded, on time or late
    stalls = [r for r in caplog.records if r.getMessage() == "loop.stalled"]
    assert len(stalls) == 1 and stalls[0].late_s >= 0.5  # type: ignore[attr-defined]
    assert len(watch.stalls._spans) >= 2  # both kept for the engine's judgement of calls


async def test_an_idle_loop_is_on_time() -> None:
    watch = LoopWatch(interval=0.02, stall=10.0)
    stopping = asyncio.Event()
    before = lag_count()
    task = asyncio.create_task(watch.serve(stopping))
    await asyncio.sleep(0.2)
    stopping.set()
    await asyncio.wait_for(task, timeout=5)
    assert lag_count() > before  # it ticked
    # Nothing blocks: a tick is late by the timer's granularity and this machine's noise, never by a stall.
    assert 0.0 <= watch.worst < 1.0


async def test_it_ends_when_the_daemon_stops_not_at_its_next_tick() -> None:
    watch = LoopWatch(interval=60.0)  # a tick a minute: ending at the tick would hold the shutdown that long
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.serve(stopping))
    await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, timeout=5)
    assert watch.worst == 0.0  # no tick came due
