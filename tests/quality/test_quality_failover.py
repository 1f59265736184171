"""Acceptance: the primary supplier goes hard down mid-run (connections refused). Once its breaker opens,
at least 99 % of later orders never touch it and complete on the backup; when it comes back, a probe closes
the breaker and traffic returns within one cool-down.

Real engine, worker and SQLite store; two fulu simulators on loopback; orders fed at a steady rate.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from qualitykit import eventually, fulu_scenario, running, two_fulu_config

from fulfil.breaker import BreakerState
from fulfil.crypto import CardCipher
from fulfil.domain import AttemptState, OrderStatus, OrderView
from suppliers.sim.server import running_sim

pytestmark = pytest.mark.slow

RATE = 25.0  # orders a second, about what one SQLite daemon does here with room to spare
BASE, CAP = 5.0, 20.0  # cool-downs 5 s, 10 s, 15 s, 20 s, 20 s ... (Envoy's 30 s × n up to 300 s, scaled down)
# Seconds the primary stays down after its breaker opened: one probe fails at +5 s, the next (+15 s) finds it
# back. What share of orders probes touch is about probes / (order rate × cool-down): ~1/250 here.
OUTAGE = 14.0


def first_started(view: OrderView) -> datetime:
    return min(a.started_at for a in view.attempts)


def delivered_by(view: OrderView) -> str | None:
    done = [a for a in view.attempts if a.state is AttemptState.SUCCEEDED and not a.error_class]
    return done[-1].supplier if done else None


async def test_primary_down_then_back(tmp_path: Path, cipher: CardCipher) -> None:
    db_url = f"sqlite:///{tmp_path / 'fulfil.db'}"
    async with running_sim(fulu_scenario(1)) as primary, running_sim(fulu_scenario(2)) as backup:
        config = two_fulu_config(
            db_url,
            {"primary": primary, "backup": backup},
            priorities={"primary": 0, "backup": 1},
            routing={"strategy": "priority"},
            # Orders parked on the down primary's unanswered queries hold worker slots: leave room for the rest.
            daemon={"concurrency": 64},
            breaker={
                "consecutive_failures": 5,
                "base_ejection": f"{BASE}s",
                "max_ejection": f"{CAP}s",
                "probes": 1,
            },
        )
        async with running(db_url, cipher, config) as run:
            quality, stop = run.quality, asyncio.Event()
            feeder = asyncio.create_task(run.feed(RATE, stop))
            await asyncio.sleep(2.0)  # warm: everything goes to the primary

            primary.set_faults([{"kind": "refuse"}])
            t_down = datetime.now(UTC)

            def state() -> BreakerState:
                return quality.breaker_view("primary", datetime.now(UTC)).state

            async def is_open() -> bool:
                return state() is BreakerState.OPEN

            await eventually(is_open, within=5.0)
            t_open = datetime.now(UTC)
            await asyncio.sleep(OUTAGE)

            view = quality.breaker_view("primary", datetime.now(UTC))
            in_force = min(BASE * view.ejections, CAP)  # the cool-down the breaker is serving now
            primary.set_faults([])
            t_back = datetime.now(UTC)

            async def is_closed() -> bool:
                return state() is BreakerState.CLOSED

            await eventually(is_closed, within=in_force + 3.0)
            t_closed = datetime.now(UTC)
            await asyncio.sleep(3.0)
            stop.set()
            await feeder
            await eventually(run.settled, within=60.0)
            await quality.periodic(datetime.now(UTC))  # flush the last events
            views = await run.store.list_orders()
            events = await run.store.events(limit=1000)

    # Every order was delivered, before, during and after the outage.
    assert Counter(v.order.status for v in views) == {OrderStatus.DELIVERED: run.added}

    # Orders that started while the primary was down and its breaker open.
    later = [v for v in views if t_open < first_started(v) < t_back]
    touched = [v for v in later if any(a.supplier == "primary" for a in v.attempts)]
    untouched_on_backup = [v for v in later if v not in touched and delivered_by(v) == "backup"]
    share = len(untouched_on_backup) / len(later)
    print(
        f"\nfailover: {run.added} orders; {len(later)} started during the outage after the breaker opened "
        f"({(t_open - t_down).total_seconds():.2f}s after the primary went down); {len(touched)} touched the "
        f"primary (probes); {share:.2%} never touched it and completed on the backup"
    )
    assert len(later) >= 150
    assert share >= 0.99

    # Nothing reached the primary while it refused; after it came back, its ledger fills again.
    at_primary = {o.number: o for o in primary.ledger.orders}
    assert not [o for o in at_primary.values() if t_down + timedelta(seconds=0.5) < o.created_at < t_back]
    back = [o for o in at_primary.values() if o.created_at > t_back]

    # A probe closed the breaker within one cool-down of the primary coming back ...
    closed = [e for e in events if e.name == "supplier.breaker_closed" and e.supplier == "primary" and e.at > t_back]
    assert closed, "no breaker_closed event after the primary came back"
    returned_after = (min(e.at for e in closed) - t_back).total_seconds()
    print(
        f"recovery: cool-down in force {in_force:.0f}s; breaker closed {returned_after:.2f}s after the primary came "
        f"back ({(t_closed - t_back).total_seconds():.2f}s as polled); {len(back)} orders placed at it since"
    )
    assert returned_after <= in_force + 1.0
    # ... and traffic went back to it: orders started after the close went there first.
    after = [v for v in views if first_started(v) > t_closed]
    to_primary = [v for v in after if min(v.attempts, key=lambda a: a.started_at).supplier == "primary"]
    assert len(after) >= 30 and len(to_primary) / len(after) >= 0.95
    assert len(back) >= len(to_primary)
    assert {v.order.ref for v in to_primary} <= {
        v.order.ref for v in views if any(a.number in at_primary for a in v.attempts)
    }
    opened = [e for e in events if e.name == "supplier.breaker_opened" and e.supplier == "primary"]
    assert opened and opened[-1].data["reason"] == "5 consecutive failures"  # newest first
