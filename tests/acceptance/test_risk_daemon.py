"""Issue 11 acceptance: a real `fulfil run` against the fulu simulator decides on risk before buying.

- a scripted flood: one IP posts 50 orders over HTTP within 10 s: the first 5 are fulfilled, the rest held;
- a buyer trying 4 face values of one family within a minute is held at the 4th;
- a blocked contact is refused (failed, `risk:` reason); a buyer at credit 55 is held;
- releasing a held order fulfils it;
- the simulator's ledger: nothing was bought for a held or refused order (one charge per delivered order,
  each under a delivered order's attempt number).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemonkit import (
    SKU,
    charged_orders,
    fulfil,
    fulu_supplier,
    import_orders,
    import_stock,
    make_keys,
    order_line,
    start_daemon,
    start_sim,
    status_counts,
    stock_counts,
    upgrade,
    wait_until,
    write_config,
    write_scenario,
)

pytestmark = pytest.mark.slow

TOKEN = "risk-acceptance-token"
FACES = ("steam-20", "steam-50", "steam-100", "steam-200")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _settled(config: Path, env: dict[str, str], total: int) -> bool:
    counts = status_counts(config, env)
    return counts["pending"] == 0 and counts["processing"] == 0 and sum(counts.values()) == total


def _orders(config: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    views = json.loads(fulfil("orders", "list", "--json", "--limit", "0", config=config, env=env).stdout)
    return {v["ref"]: v for v in views}


def test_flood_face_values_blocks_credit_and_release_buy_nothing_for_held_orders(
    tmp_path: Path, env: dict[str, str]
) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml"))
    port = _free_port()
    product = {"kind": "card", "max_qty": 5, "card_pattern": "^[A-Z0-9]{16}$",
               "offers": [{"supplier": "up", "product_id": "10001", "cost": "95"}]}  # fmt: skip
    config = write_config(
        tmp_path,
        http={"enabled": True, "listen": f"127.0.0.1:{port}", "token_env": "RISK_TOKEN"},
        suppliers=[fulu_supplier("up", sim)],
        products={sku: {**product, "family": "steam"} for sku in FACES},
        risk={
            "rules": [
                {"name": "ip-burst", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 5},
                {"name": "face-values", "kind": "denominations", "per": "account", "window": "60s", "max_skus": 3},
            ]
        },
    )
    env = {**env, "RISK_TOKEN": TOKEN}
    upgrade(config, env)
    fulfil("risk", "block", "--contact", "thief@example.com", "--reason", "stolen cards", "--operator", "ops",
           config=config, env=env)  # fmt: skip
    fulfil("risk", "credit", "user:u-55", "--set", "55", "--reason", "disputes", config=config, env=env)
    daemon = start_daemon(config, env, log_path=tmp_path / "daemon.log")

    # The flood, over HTTP, 50 orders in 10 s from one address.
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        started = time.monotonic()
        for i in range(50):
            body = {"ref": f"F{i:02d}", "sku": "steam-100", "qty": 1, "amount": "100", "ip": "203.0.113.66"}
            answer = http.post("/orders", json=body)
            assert answer.status_code == 201, answer.text
            time.sleep(max(0.0, started + (i + 1) * 0.2 - time.monotonic()))
        assert time.monotonic() - started <= 11
    # Four face values from one account, one at a time; a blocked contact; a buyer at credit 55.
    for i, sku in enumerate(FACES):
        import_orders(config, env, [order_line(f"D{i}", sku, account="acct-9")], tmp_path / f"d{i}.jsonl")
        wait_until(lambda n=51 + i: _settled(config, env, n), timeout=60, message=f"D{i} decided")
    import_orders(config, env, [order_line("B1", contact="Thief@example.com"), order_line("C1", user="u-55"),
                                order_line("OK1", contact="fine@example.com", ip="198.51.100.7")],
                  tmp_path / "rest.jsonl")  # fmt: skip
    wait_until(lambda: _settled(config, env, 57), timeout=60, message="every order decided")

    got = _orders(config, env)
    delivered = sorted(ref for ref, v in got.items() if v["status"] == "delivered")
    assert delivered == ["D0", "D1", "D2", "F00", "F01", "F02", "F03", "F04", "OK1"]
    held = {ref: v["reason"] for ref, v in got.items() if v["status"] == "review"}
    assert sorted(held) == sorted([f"F{i:02d}" for i in range(5, 50)] + ["D3", "C1"])
    assert all(held[f"F{i:02d}"].startswith("risk: ip-burst: ") for i in range(5, 50))
    assert held["D3"] == "risk: face-values: 4 skus of one family per account in 1m (max 3)"
    assert held["C1"] == "risk: credit 55 is below 60"
    assert got["B1"]["status"] == "failed" and got["B1"]["reason"] == "risk: blocked contact: stolen cards"
    assert all(not got[ref]["attempts"] for ref in [*held, "B1"])
    review = json.loads(fulfil("review", "list", "--json", config=config, env=env).stdout)
    assert {v["ref"] for v in review} == set(held)

    # Release one held order: fulfilled normally.
    fulfil("review", "release", "F30", "--operator", "alice", config=config, env=env)
    wait_until(lambda: _orders(config, env)["F30"]["status"] == "delivered", timeout=60, message="F30 delivered")
    explained = fulfil("risk", "explain", "F30", config=config, env=env).stdout
    assert "HIT ip-burst (velocity, hold): 6 orders (max 5) per ip in 1m" in explained

    # The supplier's books: one charge per delivered order, under that order's attempt number.
    got = _orders(config, env)
    numbers = {a["supplier_order_no"] for v in got.values() if v["status"] == "delivered" for a in v["attempts"]}
    charged = charged_orders(sim.ledger())
    assert len(charged) == 10 == len(numbers)
    assert {o["number"] for o in charged} == numbers
    assert daemon.stop() == 0, daemon.tail()
    # Never logged: the buyers' contacts, the flood's address.
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert "203.0.113.66" not in log and "thief@example.com" not in log.lower()


@pytest.mark.pg
def test_two_daemons_on_postgresql_let_exactly_ten_of_one_buyers_200_orders_through(
    pg_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    config = write_config(
        tmp_path,
        db_url=pg_url,
        daemon={"poll_interval": "50ms", "batch_size": 10, "concurrency": 16, "lease": "10s"},
        risk={"rules": [{"name": "ten", "kind": "velocity", "per": "contact", "window": "1h", "max_orders": 10}]},
    )
    upgrade(config, env)
    import_stock(config, env, SKU, make_keys(200), tmp_path / "keys.txt")
    a = start_daemon(config, env, log_path=tmp_path / "daemon-a.log")
    b = start_daemon(config, env, log_path=tmp_path / "daemon-b.log")
    import_orders(config, env, [order_line(f"P{i:03d}", contact="bulk@example.com") for i in range(200)],
                  tmp_path / "orders.jsonl")  # fmt: skip
    wait_until(lambda: _settled(config, env, 200), timeout=180, interval=0.5, message="every order decided")
    assert a.stop() == 0, a.tail()
    assert b.stop() == 0, b.tail()

    counts = status_counts(config, env)
    assert counts["delivered"] == 10, counts
    assert counts["delivered"] + counts["review"] + counts["failed"] == 200
    # Both daemons decided, and stock went out for exactly the ten.
    assert a.count("risk.held") + a.count("risk.refused") > 0 and b.count("risk.held") + b.count("risk.refused") > 0
    assert stock_counts(config, env)[SKU]["used"] == 10
    got = _orders(config, env)
    assert all(not v["attempts"] for v in got.values() if v["status"] != "delivered")
