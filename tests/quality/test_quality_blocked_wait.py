"""A supplier's breaker trips (its balance ran out) on the product's only offer: the orders that come next wait
for it instead of going to review, and are delivered once a probe closes it — each bought once.

Real engine, worker, quality object and SQLite store; a fulu simulator on loopback.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from qualitykit import eventually, fulu_scenario, running, two_fulu_config

from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from suppliers.sim.server import running_sim

COOL_DOWN = 5.0  # the margin for a stalled test process: longer than any stall seen on CI
ORDERS = 20


async def test_orders_wait_out_a_tripped_breaker_and_are_delivered_when_it_closes(
    tmp_path: Path, cipher: CardCipher
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fulfil.db'}"
    empty = [{"kind": "balance_exhausted", "requests": "1"}]  # the first purchase: insufficient balance
    async with running_sim(fulu_scenario(1, empty)) as main:
        config = two_fulu_config(
            db_url,
            {"main": main},
            priorities={"main": 0},
            breaker={"base_ejection": f"{COOL_DOWN:g}s", "max_ejection": "10s", "probes": 1},
            routing={"blocked_wait": "2m"},
        )
        async with running(db_url, cipher, config) as run:
            await run.add(1)

            async def tripped() -> bool:
                return (await run.store.count_by_status())["review"] == 1

            await eventually(tripped, within=20.0)
            started = time.monotonic()
            await run.add(ORDERS)
            await eventually(run.settled, within=60.0)
            elapsed = time.monotonic() - started
            await run.quality.periodic(datetime.now(UTC))  # flush the breaker's events
            views = {v.order.ref: v for v in await run.store.list_orders()}
            waited = await run.store.events(name="order.waiting", limit=1000)
            closed = await run.store.events(name="supplier.breaker_closed", limit=10)

    first = views.pop("R000000")
    assert first.order.status is OrderStatus.REVIEW
    assert first.order.reason is not None and "supplier_account" in first.order.reason
    assert Counter(v.order.status for v in views.values()) == {OrderStatus.DELIVERED: ORDERS}
    # They waited (the breaker was open when they came), and each was bought once, by one attempt.
    assert len({e.order_id for e in waited}) >= ORDERS - 1, len(waited)
    assert all(e.data["blocked"] == "main#0 breaker open" for e in waited)
    assert all(len(v.attempts) == 1 and len(v.cards) == 1 for v in views.values())
    charged = [o for o in main.ledger.orders if o.charged and o.final_state == "success"]
    assert len(charged) == ORDERS and {o.number for o in charged} == {
        v.attempts[0].number for v in views.values()
    }
    assert closed, "a probe closed the breaker"
    print(f"\n{ORDERS} orders waited out a {COOL_DOWN:g}s breaker and were delivered {elapsed:.1f}s after they came")
