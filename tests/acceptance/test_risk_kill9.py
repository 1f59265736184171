"""Risk under kill -9: the daemon is killed inside the decision's transaction and right after a decision,
again and again (failpoints widen both windows), and restarted. Nothing is decided twice in a way that
matters: exactly the limit of a flooding buyer's orders is bought, every other order of theirs is held,
every good order is delivered, and the simulator charged once per delivered order and for nothing else."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from daemonkit import (
    charged_orders,
    fulfil,
    fulu_supplier,
    import_orders,
    order_line,
    start_daemon,
    start_sim,
    status_counts,
    upgrade,
    wait_until,
    write_config,
    write_scenario,
)

pytestmark = pytest.mark.slow

FLOOD, GOOD = 40, 40


def _open(config: Path, env: dict[str, str]) -> int:
    counts = status_counts(config, env)
    return counts["pending"] + counts["processing"]


def test_kill_9_inside_and_after_risk_decisions_keeps_the_limit_and_buys_nothing_for_held_orders(
    tmp_path: Path, env: dict[str, str]
) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml"))
    product = {"kind": "card", "max_qty": 5, "card_pattern": "^[A-Z0-9]{16}$",
               "offers": [{"supplier": "up", "product_id": "10001", "cost": "95"}]}  # fmt: skip
    config = write_config(
        tmp_path,
        daemon={"poll_interval": "50ms", "batch_size": 8, "concurrency": 8, "lease": "2s", "shutdown_timeout": "2s"},
        suppliers=[fulu_supplier("up", sim)],
        products={"steam-100": product},
        risk={"rules": [{"name": "burst", "kind": "velocity", "per": "ip", "window": "1h", "max_orders": 5}]},
    )
    upgrade(config, env)
    orders: list[dict[str, Any]] = []
    for i in range(FLOOD + GOOD):  # interleaved: the flood's orders sit among good ones in every batch
        flood = i % 2 == 0
        ip = "203.0.113.66" if flood else f"198.51.100.{i}"
        orders.append(order_line(f"{'F' if flood else 'G'}{i:03d}", "steam-100", ip=ip))
    import_orders(config, env, orders, tmp_path / "orders.jsonl")
    paused = {**env, "FULFIL_FAILPOINTS": "risk_deciding=0.15,risk_decided=0.15"}
    rng = random.Random(11)
    kills = 0
    daemon = start_daemon(config, paused)
    while kills < 8 and _open(config, paused):
        time.sleep(rng.uniform(0.2, 0.8))
        daemon.kill()
        kills += 1
        daemon = start_daemon(config, paused)
    wait_until(lambda: _open(config, paused) == 0, timeout=180, interval=0.5, message="every order decided")
    time.sleep(1.0)
    assert daemon.stop() == 0, daemon.tail()

    views = {v["ref"]: v for v in json.loads(fulfil("orders", "list", "--json", "--limit", "0", config=config,
                                                    env=env).stdout)}  # fmt: skip
    flood = {ref: v for ref, v in views.items() if ref.startswith("F")}
    good = {ref: v for ref, v in views.items() if ref.startswith("G")}
    print(f"\n{kills} kills; flood {sorted(v['status'] for v in flood.values()).count('delivered')} delivered")
    assert kills >= 5
    assert all(v["status"] == "delivered" for v in good.values())
    delivered_flood = [ref for ref, v in flood.items() if v["status"] == "delivered"]
    assert len(delivered_flood) == 5, delivered_flood
    assert all(v["status"] == "review" and v["reason"].startswith("risk: burst: ") for ref, v in flood.items()
               if ref not in delivered_flood)  # fmt: skip
    assert all(not v["attempts"] for v in views.values() if v["status"] != "delivered")
    # The supplier's books: one charge per delivered order, under its own attempt number, nothing else.
    numbers = [a["supplier_order_no"] for v in views.values() if v["status"] == "delivered" for a in v["attempts"]]
    charged = charged_orders(sim.ledger())
    assert sorted(o["number"] for o in charged) == sorted(numbers)
    assert len(numbers) == GOOD + 5
