"""The worker loop against a real store: claiming, the concurrency bound, leases, shutdown, side tasks."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import pytest

from fulfil.domain import Order
from fulfil.storage import Store
from fulfil.worker import Lease, Worker, WorkerCrashed, make_owner
from tests.dbtime import let_time_pass
from tests.worker.conftest import (
    StockProcessor,
    add_orders,
    add_stock,
    events,
    eventually,
    make_config,
    run_once,
    statuses,
    utcnow,
)


async def test_delivers_everything_within_the_concurrency_bound(store: Store) -> None:
    refs = await add_orders(store, 16)
    await add_stock(store, 16)
    processor = StockProcessor(store, delay=0.02)
    worker = Worker(store, processor, make_config(concurrency=4, batch_size=10))

    await run_once(worker)

    assert processor.max_active == 4
    assert sorted(processor.finished) == sorted(refs)
    assert set((await statuses(store)).values()) == {"delivered"}
    assert worker.claimed == 16 and worker.done == 16


async def test_owner_id_is_host_pid_random() -> None:
    owner = make_owner()
    assert re.fullmatch(r"[^:]+:\d+:[0-9a-f]{8}", owner)
    assert owner != make_owner()


async def test_a_full_batch_is_followed_by_another_claim_at_once(store: Store) -> None:
    await add_orders(store, 25)
    await add_stock(store, 25)
    processor = StockProcessor(store)
    # A poll interval far longer than the test: only "the batch was full, claim again" can finish in time.
    worker = Worker(store, processor, make_config(poll_interval="30s", batch_size=5, concurrency=50))

    started = time.monotonic()
    await run_once(worker)

    assert time.monotonic() - started < 2
    assert len(processor.finished) == 25


async def test_a_freed_slot_wakes_the_loop(store: Store, running: Any) -> None:
    await add_orders(store, 6)
    await add_stock(store, 6)
    processor = StockProcessor(store, delay=0.02)
    handle = running(Worker(store, processor, make_config(poll_interval="30s", concurrency=2)))

    # With every slot busy and a 30 s poll interval, only an order finishing can trigger the next claims.
    await eventually(lambda: len(processor.finished) == 6)
    assert processor.max_active == 2
    await handle.stop()


@pytest.mark.slow  # must outlive two leases
async def test_lease_renewal_keeps_a_long_order(store: Store, running: Any) -> None:
    await add_orders(store, 1)
    await add_stock(store, 1)
    processor = StockProcessor(store, delay=1.2)
    worker = Worker(store, processor, make_config(lease="500ms"))
    handle = running(worker)

    await eventually(lambda: processor.started == ["R0"])
    # A rival keeps trying to take the order; the lease outlives its 500 ms only because it is renewed.
    rival = make_owner()
    while not processor.finished:
        assert await store.claim_orders(rival, 10, 0.5, utcnow()) == []
        await asyncio.sleep(0.05)

    assert not processor.leases["R0"].lost.is_set()
    assert (await statuses(store)) == {"R0": "delivered"}
    await handle.stop()


async def test_an_expired_lease_of_a_dead_owner_is_reclaimed(store: Store, db_url: str) -> None:
    refs = await add_orders(store, 3)
    await add_stock(store, 3)
    dead = "gone-host:4242:deadbeef"
    taken = await store.claim_orders(dead, 10, 60.0, utcnow())
    assert len(taken) == 3
    await let_time_pass(db_url, 300)  # held by a daemon that died; its leases ran out four minutes ago
    processor = StockProcessor(store)
    worker = Worker(store, processor, make_config())

    await run_once(worker)

    assert sorted(processor.finished) == refs
    assert {lease.owner for lease in processor.leases.values()} == {worker.owner}
    assert set((await statuses(store)).values()) == {"delivered"}


async def test_the_sweeper_returns_expired_orders_to_pending(store: Store, running: Any) -> None:
    await add_orders(store, 1, prefix="busy")
    await add_stock(store, 1)
    processor = StockProcessor(store)
    processor.gate_all = asyncio.Event()
    # concurrency 1 and a busy slot: the worker cannot claim, so only the sweeper can move the others.
    worker = Worker(store, processor, make_config(concurrency=1, lease="200ms"))
    handle = running(worker)
    await eventually(lambda: processor.started == ["busy0"])
    await add_orders(store, 2, prefix="orphan")
    orphans = await store.claim_orders("gone-host:1:00000000", 10, 0.05, utcnow())
    assert len(orphans) == 2

    async def swept() -> bool:
        now = await statuses(store)
        return now["orphan0"] == now["orphan1"] == "pending"

    await eventually(swept)
    processor.gate_all.set()
    await handle.stop()


async def test_stop_finishes_in_flight_orders_and_releases_the_rest(
    store: Store, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await add_orders(store, 2, prefix="quick")
    await add_orders(store, 2, prefix="stuck")
    await add_stock(store, 4)
    processor = StockProcessor(store)
    quick, never = asyncio.Event(), asyncio.Event()
    processor.gates = {"quick0": quick, "quick1": quick, "stuck0": never, "stuck1": never}
    # 2 s: room for the quick ones to deliver within it on a loaded machine (with 300 ms, their two writes each
    # sometimes came after the deadline and they were cancelled too).
    worker = Worker(store, processor, make_config(shutdown_timeout="2s"))
    handle = running(worker)
    await eventually(lambda: len(processor.started) == 4, within=15.0)

    # All four are in flight when stop() comes; the quick ones end 100 ms later, the stuck ones never.
    asyncio.get_running_loop().call_later(0.1, quick.set)
    began = time.monotonic()
    await handle.stop()
    took = time.monotonic() - began

    assert 2.0 <= took < 4.0  # waited out the timeout for the stuck ones, then cut them off (no second wait)
    assert sorted(processor.finished) == ["quick0", "quick1"]
    assert sorted(processor.cancelled) == ["stuck0", "stuck1"]
    assert await statuses(store) == {
        "quick0": "delivered",
        "quick1": "delivered",
        "stuck0": "pending",
        "stuck1": "pending",
    }
    for ref in ("stuck0", "stuck1"):
        view = await store.get_order(ref)
        assert view is not None and view.order.lease_owner is None
    assert [getattr(r, "count", None) for r in events(caplog, "lease.released")] == [2]
    assert events(caplog, "worker.shutdown_timeout", logging.WARNING)
    assert events(caplog, "worker.stopped")


async def test_stop_before_any_slow_order_ends_waits_for_it(store: Store, running: Any) -> None:
    await add_orders(store, 1)
    await add_stock(store, 1)
    processor = StockProcessor(store, delay=0.3)
    handle = running(Worker(store, processor, make_config(shutdown_timeout="2s")))
    await eventually(lambda: processor.started == ["R0"])

    await handle.stop()

    assert processor.finished == ["R0"] and processor.cancelled == []
    assert await statuses(store) == {"R0": "delivered"}


async def test_cancelling_run_is_a_graceful_stop(store: Store) -> None:
    await add_orders(store, 1)
    await add_stock(store, 1)
    processor = StockProcessor(store)
    processor.gate_all = asyncio.Event()
    worker = Worker(store, processor, make_config(shutdown_timeout="100ms"))
    task = asyncio.create_task(worker.run())
    await eventually(lambda: processor.started == ["R0"])

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert processor.cancelled == ["R0"]
    assert await statuses(store) == {"R0": "pending"}


async def test_renewal_that_finds_the_lease_gone_sets_lost(
    store: Store, db_url: str, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await add_orders(store, 1)
    await add_stock(store, 1)
    processor = StockProcessor(store)
    processor.gate_all = asyncio.Event()
    # concurrency 1 keeps the worker from claiming the order back while the first run is in flight.
    worker = Worker(store, processor, make_config(concurrency=1, lease="300ms"))
    handle = running(worker)
    await eventually(lambda: processor.started == ["R0"])
    first = processor.leases["R0"]

    # A stall longer than the lease: another daemon's sweeper finds it expired on the database's clock.
    await eventually(lambda: lapse_and_sweep(store, db_url))
    await eventually(first.lost.is_set)
    assert [r.levelno for r in events(caplog, "lease.lost")] == [logging.WARNING]

    # The first run's delivery is fenced off (LeaseLost); the order is claimed afresh and delivered once.
    processor.gate_all.set()
    await eventually(lambda: processor.finished == ["R0"])
    assert processor.started[:2] == ["R0", "R0"]
    assert processor.leases["R0"] is not first and not processor.leases["R0"].lost.is_set()
    assert await statuses(store) == {"R0": "delivered"}
    # Renewal and the store both saw each loss: logged once per loss. On a loaded machine the 300 ms lease of
    # the second run may lapse too; every run after the first follows exactly one logged loss.
    assert len(events(caplog, "lease.lost")) == len(processor.started) - 1
    await handle.stop()


async def test_an_order_claimed_back_while_in_flight_is_not_run_twice(
    store: Store, db_url: str, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await add_orders(store, 1)
    await add_stock(store, 1)
    processor = StockProcessor(store)
    processor.gate_all = asyncio.Event()
    # Time passes on the database's clock (let_time_pass), so the lease need not be short, and a long one keeps
    # wall-clock timing out of the test: the renewer (every lease/3) and the worker's sweeper (lease/2) do not
    # run while it does, and a lease claimed back after a renewal found it swept (`lost` set: the renewer skips
    # it from then on) cannot run out before the run delivers. With the 3 s default, a stall of a few seconds
    # on a loaded machine could take the order from the run for real, and it would rightly run again.
    worker = Worker(store, processor, make_config(concurrency=2, lease="60s"))
    handle = running(worker)
    await eventually(lambda: processor.started == ["R0"], within=30.0)

    # The lease is swept (a stall longer than the lease, say) and the free slot claims the order back.
    await lapse_until_claimed_back(store, db_url, caplog)
    processor.gate_all.set()
    await eventually(lambda: processor.finished == ["R0"], within=30.0)

    assert processor.started == ["R0"]
    assert await statuses(store) == {"R0": "delivered"}
    await handle.stop()


async def lapse_and_sweep(store: Store, db_url: str) -> bool:
    """An hour passes on the database's clock and the sweeper runs: True if it swept the one order (False
    if the worker's renewal slipped in between, so the caller tries again)."""
    await let_time_pass(db_url, 3600)
    return await store.sweep_expired_leases(utcnow()) == 1


async def lapse_until_claimed_back(store: Store, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """An hour passes on the database's clock and the sweeper runs, until the worker has claimed the order back.

    The claim-back is what is waited for, not the sweep: the worker's poll takes expired leases too, so it may
    claim the order back before the sweep (which then sweeps nothing). Taking that for "the renewal slipped in"
    and passing another hour would take the lease from the run a second time, for real: `lease.lost`, and the
    order rightly run again (the flake this replaced). Only when no claim-back follows (a renewal did slip in
    before the hour passed) does another hour pass. The wait for it is long: a claim-back that came after it
    would be taken for a renewal, and the next hour would take the order from the run, as above."""

    def reclaimed() -> bool:
        return bool(events(caplog, "worker.reclaimed_in_flight"))

    for _ in range(3):
        await let_time_pass(db_url, 3600)
        await store.sweep_expired_leases(utcnow())
        try:
            await eventually(reclaimed, within=30.0)  # a 20 ms poll: 30 s is for a stalled, loaded machine
        except TimeoutError:
            continue
        return
    raise AssertionError("the order was never claimed back")


class FailingProcessor(StockProcessor):
    def __init__(
        self, store: Store, *, recover_error: Exception | None = None, tick_error: bool = False
    ) -> None:
        super().__init__(store)
        self.recover_error = recover_error
        self.tick_error = tick_error

    async def recover(self) -> None:
        await asyncio.sleep(0.05)
        if self.recover_error is not None:
            raise self.recover_error

    async def periodic(self, now: Any) -> None:
        self.ticks.append(now)
        if self.tick_error:
            raise RuntimeError("tick failed")

    async def process(self, order: Order, lease: Lease) -> None:
        if order.ref.startswith("bad"):
            raise RuntimeError(f"bug on {order.ref}")
        await super().process(order, lease)


async def test_a_side_task_dying_stops_the_worker_loudly(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    processor = FailingProcessor(store, recover_error=RuntimeError("recovery exploded"))
    worker = Worker(store, processor, make_config())

    with pytest.raises(WorkerCrashed, match="recovery.*recovery exploded"):
        async with asyncio.timeout(3):
            await worker.run()  # not once: only the crash can end it

    died = events(caplog, "worker.side_task_died")
    assert [r.levelno for r in died] == [logging.CRITICAL]
    assert events(caplog, "worker.stopped")


async def test_a_failing_order_is_contained(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    await add_orders(store, 1, prefix="bad")
    good = await add_orders(store, 3, prefix="good")
    await add_stock(store, 3)
    processor = FailingProcessor(store)
    worker = Worker(store, processor, make_config())

    await run_once(worker)

    assert sorted(processor.finished) == good
    failed = events(caplog, "worker.order_failed")
    assert [getattr(r, "ref", None) for r in failed] == ["bad0"]
    # Left to its lease: claimed again once that runs out, not in a hot loop.
    assert (await statuses(store))["bad0"] == "processing"


async def test_periodic_jobs_run_and_a_failing_tick_is_not_fatal(
    store: Store, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    processor = FailingProcessor(store, tick_error=True)
    handle = running(Worker(store, processor, make_config(query_interval="50ms")))

    # Deadlines generous for a loaded machine: they only bound how long a failure takes to show.
    await eventually(lambda: len(processor.ticks) >= 3, within=15.0)
    assert events(caplog, "periodic.failed", logging.ERROR)
    # Still serving. The stock goes in first: the running worker polls every 20 ms, and an order claimed before
    # its stock is there fails in the fake processor and waits out its 3 s lease (the flake this replaced).
    await add_stock(store, 1)
    await add_orders(store, 1)
    await eventually(lambda: processor.finished == ["R0"], within=15.0)
    assert not events(caplog, "worker.order_failed")
    assert all(t.tzinfo is not None for t in processor.ticks)
    await handle.stop()


class SlowTick(StockProcessor):
    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.tick_started = asyncio.Event()
        self.tick_done = False

    async def periodic(self, now: Any) -> None:
        self.tick_started.set()
        await asyncio.sleep(0.2)
        self.tick_done = True


async def test_shutdown_lets_a_running_tick_finish(
    store: Store, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    processor = SlowTick(store)
    handle = running(Worker(store, processor, make_config(query_interval="20ms")))
    await asyncio.wait_for(processor.tick_started.wait(), 2)

    await handle.stop()

    assert processor.tick_done  # the scheduler's shutdown did not cut it off
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_stop_is_idempotent_and_a_worker_runs_once(store: Store) -> None:
    worker = Worker(store, StockProcessor(store), make_config())
    worker.stop()
    worker.stop()
    await worker.run()  # stopped before it began: returns after one clean shutdown
    with pytest.raises(RuntimeError):
        await worker.run()
