"""kill -9 while orders wait for a supplier whose breaker is open: the balance ran out on the first purchase
(the breaker trips), the orders after it wait instead of going to review, and the daemon is killed with some
of them leased on the way to waiting (a failpoint holds them there) and the rest waiting. While it is down an
operator holds three waiting orders (`fulfil review hold`; a leased one is refused). The next daemon delivers
every other order and buys nothing for the held ones until the operator retries them; each order is bought
once; the supplier's books and ours agree number by number.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from daemonkit import (
    SKU,
    base_env,
    fulfil,
    fulu_supplier,
    import_orders,
    order_line,
    order_views,
    start_daemon,
    start_sim,
    status_counts,
    upgrade,
    wait_until,
    write_config,
    write_scenario,
)
from test_engine_kit import claims_json, reconcile, wait_settled

pytestmark = pytest.mark.slow

ORDERS = 30
MAIN = "main"


def test_kill_9_while_orders_wait_out_an_open_breaker(tmp_path: Path) -> None:
    # The first purchase finds the balance gone: supplier_account, the breaker trips, that order goes to review.
    sim = start_sim(write_scenario(tmp_path / "main.yaml", faults=[{"kind": "balance_exhausted", "requests": "1"}]))
    config = write_config(
        tmp_path,
        daemon={"concurrency": 16, "batch_size": 50, "poll_interval": "50ms", "lease": "3s"},
        retry={"budget": "2s", "initial_backoff": "100ms", "max_backoff": "500ms"},
        # Long enough that the first daemon never lets an order through again before it is killed.
        breaker={"base_ejection": "60s", "max_ejection": "60s", "probes": 1},
        routing={"blocked_wait": "5m"},
        suppliers=[fulu_supplier(MAIN, sim)],
        products={
            SKU: {"offers": [{"supplier": MAIN, "product_id": "10001", "cost": "95.00"}], "max_qty": 2}
        },
    )
    env = base_env()
    upgrade(config, env)
    # Each order pauses 3 s leased, on its way to waiting: the first batch claimed (16, the concurrency) has
    # parked when the kill comes, the second is held there.
    daemon = start_daemon(config, {**env, "FULFIL_FAILPOINTS": "before_waiting=3"})
    import_orders(config, env, [order_line("TRIP", SKU, 1)], tmp_path / "trip.jsonl")
    wait_until(lambda: status_counts(config, env).get("review", 0) == 1, timeout=60, message="the trip order")
    refs = [f"W{i:03d}" for i in range(ORDERS)]
    import_orders(config, env, [order_line(ref, SKU, 1 + i % 2) for i, ref in enumerate(refs)], tmp_path / "w.jsonl")
    wait_until(lambda: daemon.count("order.waiting") >= 5, timeout=60, message="orders waiting")
    daemon.kill()
    waited = {e["order"] for e in daemon.events("order.waiting")}

    at_kill = {v["ref"]: v for v in order_views(config, env) if v["ref"] in refs}
    assert all(v["attempts"] == [] for v in at_kill.values()), "nothing is bought while the breaker is open"
    leased = [r for r, v in at_kill.items() if v["status"] == "processing"]
    waiting = [r for r, v in at_kill.items() if v["status"] == "pending" and (v["reason"] or "").startswith("waiting")]
    assert leased and waiting, (leased, waiting)
    assert not [r for r, v in at_kill.items() if v["status"] == "review"], "none went to review"

    # The night shift takes three waiting orders into review while no daemon runs; one a dead worker still
    # leases cannot be taken (its lease is not this command's to break).
    held = waiting[:3]
    for i, ref in enumerate(held):
        note = ("--note", "buyer asked to wait") if i == 0 else ()
        out = fulfil("review", "hold", ref, *note, "--operator", "night-shift", config=config, env=env).stdout
        why = ": buyer asked to wait" if note else ""
        assert f"{ref}: review; reason: held by night-shift{why} (was: waiting for a supplier" in out, out
    refused = fulfil("review", "hold", leased[0], "--operator", "night-shift", config=config, env=env, expect=None)
    assert refused.returncode != 0 and "being worked on right now" in refused.stdout + refused.stderr, refused

    started = time.monotonic()
    successor = start_daemon(config, env)  # a new process: its breaker starts closed, the balance is back
    counts = wait_settled(config, env, ORDERS + 1, timeout=120)
    elapsed = time.monotonic() - started
    assert {k: n for k, n in counts.items() if n} == {"delivered": ORDERS - len(held), "review": 1 + len(held)}, counts
    time.sleep(1.0)  # a few more of the successor's polls: still nothing for the held ones
    for view in order_views(config, env):
        if view["ref"] in held:
            assert (view["status"], view["attempts"]) == ("review", []), view
    for ref in held:  # the operator lets them go: bought now, once each
        fulfil("review", "retry", ref, "--operator", "night-shift", config=config, env=env)
    counts = wait_settled(config, env, ORDERS + 1, timeout=60)
    assert successor.stop() == 0
    assert {k: n for k, n in counts.items() if n} == {"delivered": ORDERS, "review": 1}, counts
    views = order_views(config, env)
    for view in views:
        if view["ref"] in refs:
            assert len(view["attempts"]) == 1 and len(view["cards"]) == view["qty"], view["ref"]
    books = reconcile(views, claims_json(config, env), {MAIN: sim.ledger()})
    assert not books.problems, "\n".join(books.problems)
    print(
        f"\n{ORDERS} orders waited out an open breaker ({len(waited)} logged waiting); killed with {len(leased)} "
        f"leased on the way to waiting and {len(waiting)} waiting, {len(held)} of those held by an operator; the "
        f"rest delivered {elapsed:.1f}s after the restart, the held ones after their retry, each bought once; "
        f"{books.summary()}"
    )
