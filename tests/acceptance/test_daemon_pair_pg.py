"""Issue 2 acceptance: two `fulfil run` processes on one PostgreSQL database share 2,000 orders over exactly
2,000 stock keys. Every order is delivered once, every key used once, nothing is left `processing`, both
daemons did part of the work, and both stop cleanly on SIGTERM."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from daemonkit import (
    SKU,
    import_orders,
    import_stock,
    make_keys,
    order_line,
    order_views,
    start_daemon,
    status_counts,
    stock_counts,
    upgrade,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.pg]

ORDERS = 2000


def test_two_daemons_on_one_postgresql_deliver_every_order_once(
    pg_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    config = write_config(
        tmp_path,
        db_url=pg_url,
        daemon={
            "poll_interval": "50ms",
            "batch_size": 20,
            "concurrency": 16,
            "lease": "10s",
            "shutdown_timeout": "10s",
        },
        ambiguity={"query_interval": "2s"},  # the resolver tick: nothing here is ever ambiguous
    )
    upgrade(config, env)
    keys = make_keys(ORDERS)
    import_stock(config, env, SKU, keys, tmp_path / "keys.txt")
    # Both serving before the orders arrive, so neither gets a head start on the whole batch.
    a = start_daemon(config, env, log_path=tmp_path / "daemon-a.log")
    b = start_daemon(config, env, log_path=tmp_path / "daemon-b.log")

    started = time.monotonic()
    import_orders(config, env, [order_line(f"P{i:05d}") for i in range(ORDERS)], tmp_path / "orders.jsonl")
    wait_until(
        lambda: status_counts(config, env)["delivered"] == ORDERS or _stuck(config, env),
        timeout=240,
        interval=0.5,
        message="every order delivered",
    )
    elapsed = time.monotonic() - started
    assert status_counts(config, env) == {"pending": 0, "processing": 0, "delivered": ORDERS, "failed": 0,
                                          "review": 0}  # fmt: skip

    assert a.stop() == 0, a.tail()
    assert b.stop() == 0, b.tail()

    # Both did work, and between them delivered each order exactly once (the logs agree with the database).
    by_a, by_b = a.count("order.delivered"), b.count("order.delivered")
    print(f"\n{ORDERS} orders, two daemons, {elapsed:.1f}s; daemon A {by_a} / daemon B {by_b}")
    assert by_a > 0 and by_b > 0
    assert by_a + by_b == ORDERS
    delivered_refs = Counter(e["order"] for d in (a, b) for e in d.events("order.delivered"))
    assert len(delivered_refs) == ORDERS and set(delivered_refs.values()) == {1}

    views = order_views(config, env)
    assert len(views) == ORDERS
    assert all(v["status"] == "delivered" for v in views)
    # One key per order, one successful attempt per order, and no key in two orders.
    assert all(len(v["cards"]) == 1 for v in views)
    assert all([a["state"] for a in v["attempts"]] == ["succeeded"] for v in views)
    delivered_keys = [card["password"] for v in views for card in v["cards"]]
    assert len(set(delivered_keys)) == ORDERS
    assert set(delivered_keys) == set(keys)
    assert stock_counts(config, env)[SKU] == {"available": 0, "used": ORDERS}


def _stuck(config: Path, env: dict[str, str]) -> bool:
    """An order in an end state other than delivered will never turn delivered: stop waiting, fail below."""
    counts = status_counts(config, env)
    return counts["failed"] + counts["review"] > 0
