"""Issue 2 acceptance: SIGTERM with orders in flight at a supplier.

The daemon stops claiming, gives in-flight orders `daemon.shutdown_timeout` to finish, releases the leases
of what is left, and exits 0 within that time; nothing stays `processing`. A purchase cut off by the
shutdown is not lost: the next start settles it under its own number, and the supplier is paid exactly
for what was delivered.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemonkit import (
    SKU,
    charged_orders,
    charged_units,
    fulu_supplier,
    import_orders,
    latency,
    open_attempts,
    order_line,
    order_views,
    sim_ledger,
    start_daemon,
    start_sim,
    status_counts,
    upgrade,
    wait_until,
    write_config,
    write_scenario,
)

pytestmark = pytest.mark.slow

FULU_SKU = "netease-50"
ORDERS = 20
CONCURRENCY = 6


@pytest.mark.parametrize(
    ("delay", "shutdown_timeout", "finishes"),
    [
        pytest.param(1.5, 6.0, True, id="in-flight-finish"),
        pytest.param(4.0, 1.0, False, id="in-flight-cut-off"),
    ],
)
def test_sigterm_with_orders_in_flight(
    tmp_path: Path, env: dict[str, str], delay: float, shutdown_timeout: float, finishes: bool
) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=[latency(delay)]))
    config = write_config(
        tmp_path,
        daemon={
            "batch_size": CONCURRENCY,
            "concurrency": CONCURRENCY,
            "lease": "30s",
            "shutdown_timeout": f"{int(shutdown_timeout * 1000)}ms",
        },
        suppliers=[fulu_supplier("fulu-sim", sim)],
        products={SKU: None, FULU_SKU: {"offers": [{"supplier": "fulu-sim", "product_id": "10002", "cost": "48.50"}]}},
    )
    upgrade(config, env)
    import_orders(config, env, [order_line(f"T{i:02d}", FULU_SKU) for i in range(ORDERS)], tmp_path / "orders.jsonl")

    daemon = start_daemon(config, env)
    # Every slot busy with a purchase sent and no answer yet (the simulator holds each request `delay`).
    wait_until(lambda: len(daemon.events("attempt.sent")) >= CONCURRENCY, timeout=20, interval=0.05)
    daemon.signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert daemon.wait(timeout=shutdown_timeout + 10) == 0, daemon.tail()
    took = time.monotonic() - stopping

    # The drain itself (the daemon's own clock) keeps to the timeout; the process exit adds closing the
    # database and the interpreter's teardown, so it gets some slack on a loaded machine.
    drain = _seconds(daemon.events("worker.stopped")[0]) - _seconds(daemon.events("worker.stopping")[0])
    assert drain < shutdown_timeout + 0.5, daemon.tail()
    assert took < shutdown_timeout + 3.0, daemon.tail()
    counts = status_counts(config, env)
    assert counts["processing"] == 0, counts
    assert daemon.events("worker.stopping")[0]["in_flight"] == CONCURRENCY
    released = sum(e["count"] for e in daemon.events("lease.released"))
    if finishes:
        # Stop claiming, but let what is in flight finish: those are delivered, the rest never started.
        assert counts["delivered"] == CONCURRENCY and counts["pending"] == ORDERS - CONCURRENCY, counts
        assert released == 0 and not daemon.events("worker.shutdown_timeout")
    else:
        # Cut off at the deadline: the leases go back, the purchases stay on record as sent.
        assert counts["pending"] == ORDERS and released == CONCURRENCY, counts
        assert len(open_attempts(config, env)) == CONCURRENCY
    what = "finish" if finishes else "cut off"
    print(
        f"\n{what}: {CONCURRENCY} in flight, drained in {drain:.2f}s, exit 0 after {took:.2f}s "
        f"(shutdown_timeout {shutdown_timeout}s); {counts}"
    )

    # The next start finishes the job: every order delivered, every purchase paid for exactly once.
    httpx.post(sim.control_url + "/_sim/scenario", json={"faults": []}, timeout=5).raise_for_status()
    again = start_daemon(config, env)
    wait_until(lambda: status_counts(config, env)["delivered"] == ORDERS, timeout=30, message="all delivered")
    assert again.stop() == 0, again.tail()
    views = order_views(config, env)
    assert all(len([a for a in v["attempts"] if a["state"] == "succeeded"]) == 1 for v in views)
    numbers = sorted(a["supplier_order_no"] for v in views for a in v["attempts"] if a["state"] == "succeeded")
    ledger = sim_ledger(sim.control_url)
    assert sorted(o["number"] for o in charged_orders(ledger)) == numbers
    assert charged_units(ledger) == ORDERS == sum(len(v["cards"]) for v in views)


def _seconds(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
