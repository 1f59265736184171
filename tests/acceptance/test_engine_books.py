"""Issue 4 acceptance: 1,000 orders over two fulu simulators, the primary flaky; the books must balance.

The primary loses 10 % of answers after charging, answers system errors on 10 % and sells invalid keys on
5 % (the faults of config/scenarios/fulu-flaky.yaml); the backup is clean. Every order must end delivered,
every unit either simulator charged for must be delivered or claimed (`reconcile`), no key may be delivered
twice, and every batch the primary's ledger marks invalid must have its invalid_key claim. The second test
does the same while the daemon is killed with SIGKILL at random moments and restarted.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from daemonkit import (
    SKU,
    Sim,
    import_orders,
    latency,
    open_attempts,
    order_views,
    start_daemon,
    start_sim,
    status_counts,
    stock_counts,
    upgrade,
    write_scenario,
)
from test_engine_kit import (
    BACKUP,
    PRIMARY,
    Books,
    claims_json,
    flaky_faults,
    log_counts,
    mixed_orders,
    open_orders,
    overlapping_attempts,
    reconcile,
    sim_requests,
    two_fulu_config,
    wait_settled,
)

pytestmark = pytest.mark.slow

ORDERS = 1000
KILLS = 22  # at least 20, each with orders still open


def flaky_primary_faults() -> list[dict[str, Any]]:
    """fulu-flaky's faults, the resold share held back until the supplier has sold a while.

    The simulator resells its *first* keys; in the opening burst of concurrent orders those may not be
    delivered yet, or be fewer than the batch needs (it would repeat keys inside one batch, which is a partly
    valid batch: rightly held for review). Later, reselling them is what an invalid resold batch looks like.
    """
    faults = flaky_faults()
    for fault in faults:
        if fault.get("mode") == "resold":
            fault["requests"] = "150-"
    return faults


# The primary fails a quarter of its calls by design; five in a row happen somewhere in a thousand orders, and a
# breaker opened early ejects it for 30 s, longer than the daemon needs for the whole run: every order would go
# to the clean backup and none of the faults under test would be met. These tests are about the books, not
# the breaker (tests/engine has its own), so it opens only on a run no flaky-but-working supplier makes.
NO_EARLY_BREAKER = {"consecutive_failures": 50}


def start_pair(tmp_path: Path, *, answer_time: float = 0.0) -> tuple[Sim, Sim]:
    """The flaky primary and the clean backup; `answer_time` (seconds, ± a third) delays every purchase and
    query at both, as a real supplier's round trip would."""
    slow = [latency(answer_time, jitter=answer_time / 3, on=("order", "query"))] if answer_time else []
    primary = start_sim(write_scenario(tmp_path / "primary.yaml", faults=[*flaky_primary_faults(), *slow]))
    backup = start_sim(write_scenario(tmp_path / "backup.yaml", seed=8, faults=slow))
    return primary, backup


def final_books(config: Path, env: dict[str, str], primary: Sim, backup: Sim) -> tuple[list[dict[str, Any]], Books]:
    views = order_views(config, env)
    returned = stock_counts(config, env).get(SKU, {}).get("available", 0)
    ledgers = {PRIMARY: primary.ledger(), BACKUP: backup.ledger()}
    return views, reconcile(views, claims_json(config, env), ledgers, returned_keys=returned)


def primary_faults(primary: Sim) -> Counter[str]:
    """How often each fault fired at the primary, from its request log."""
    return Counter(e["fault"] for e in sim_requests(primary) if e["fault"])


def assert_all_delivered_and_balanced(views: list[dict[str, Any]], books: Books, faults: Counter[str]) -> None:
    not_delivered = [(v["ref"], v["status"], v["reason"]) for v in views if v["status"] != "delivered"]
    assert len(views) == ORDERS
    assert not not_delivered, not_delivered[:10]
    assert not books.problems, "\n".join(books.problems[:20])
    # Policy `wait`: never bought elsewhere while an earlier purchase for the order might exist.
    overlaps = overlapping_attempts(views)
    assert not overlaps, "\n".join(overlaps[:20])
    # The faults really happened: answers lost after the charge, system errors, invalid batches claimed and
    # reissued by the backup.
    assert faults["lost_after_commit"] > 0 and faults["system_error"] > 0
    assert books.invalid_modes["not_matching"] > 0 and books.invalid_modes["resold"] > 0
    primary = books.suppliers[PRIMARY]
    assert books.claims_by_reason["invalid_key"] == primary.invalid_batches
    assert books.suppliers[BACKUP].delivered > 0


def test_engine_thousand_orders_two_flaky_suppliers_balance(tmp_path: Path, env: dict[str, str]) -> None:
    primary, backup = start_pair(tmp_path)
    config = two_fulu_config(tmp_path, primary, backup, breaker=NO_EARLY_BREAKER)
    upgrade(config, env)
    import_orders(config, env, mixed_orders(ORDERS, random.Random(4)), tmp_path / "orders.jsonl")
    started = time.monotonic()
    daemon = start_daemon(config, env)
    counts = wait_settled(config, env, ORDERS, timeout=240)
    elapsed = time.monotonic() - started
    assert open_attempts(config, env) == []
    assert daemon.stop() == 0
    views, books = final_books(config, env, primary, backup)
    faults = primary_faults(primary)
    print(f"\n{ORDERS} orders settled in {elapsed:.1f}s: {counts}\nprimary faults {dict(faults)}\n{books.summary()}")
    assert_all_delivered_and_balanced(views, books, faults)


def test_engine_thousand_orders_survive_kill_9(tmp_path: Path, env: dict[str, str]) -> None:
    # Suppliers answering in 0.27-0.53 s bound the pace (32 in flight, a purchase and a query each: at most
    # ~60 orders/s while serving), so every kill lands on open orders on any machine; against an instant
    # simulator a fast machine cleared the thousand within 21 restarts.
    primary, backup = start_pair(tmp_path, answer_time=0.4)
    config = two_fulu_config(tmp_path, primary, backup, daemon={"concurrency": 32}, breaker=NO_EARLY_BREAKER)
    upgrade(config, env)
    import_orders(config, env, mixed_orders(ORDERS, random.Random(5)), tmp_path / "orders.jsonl")
    rng = random.Random(9)
    kills = kills_serving = 0
    started = time.monotonic()
    daemon = start_daemon(config, env, ready=False)
    while kills < KILLS:
        # A random moment after the start: while starting up, recovering, claiming, placing, delivering.
        time.sleep(rng.uniform(0.3, 2.5))
        kills_serving += 1 if daemon.events("worker.ready") else 0
        daemon.kill()
        if open_orders(status_counts(config, env)) == 0:
            break  # everything was done before this kill: it does not count
        kills += 1
        daemon = start_daemon(config, env, ready=False)
    assert kills == KILLS, f"only {kills} kills landed while orders were open"
    counts = wait_settled(config, env, ORDERS, timeout=240)
    elapsed = time.monotonic() - started
    assert open_attempts(config, env) == []
    assert daemon.stop() == 0
    views, books = final_books(config, env, primary, backup)
    print(
        f"\n{ORDERS} orders settled in {elapsed:.1f}s through {kills} kills with orders open "
        f"({kills_serving} once serving, the others during start-up): {counts}"
    )
    faults = primary_faults(primary)
    events = log_counts(tmp_path, ("attempt.settling", "attempt.resend", "attempt.ambiguous", "claim.opened"))
    print(f"primary faults {dict(faults)}; daemon log events {events}\n{books.summary()}")
    assert_all_delivered_and_balanced(views, books, faults)
