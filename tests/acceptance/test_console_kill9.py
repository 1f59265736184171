"""The console drives money: an agent retries orders in review from the browser's endpoints of a running daemon,
the daemon is killed with SIGKILL while those purchases are in flight, restarted, and the rest are retried from
the new daemon's console. Every order is delivered once, the simulator charged exactly what was delivered, no key
went to two orders, and every retry is an event with the agent's name.

The orders reach review honestly: the simulator answers its first order calls "out of stock" (the only offer, so
the engine hands them to a person).
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemonkit import (
    CARD_PATTERN,
    SKU,
    charged_units,
    fulfil,
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
from test_daemon_kill9 import _check_deliveries

pytestmark = pytest.mark.slow

ORDERS = 30
PASSWORD = "agent password here"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _agent(base: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=10)
    page = client.get("/console/login")
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    answer = client.post("/console/login", data={"name": "agent", "password": PASSWORD, "csrf": csrf})
    assert answer.status_code == 302, answer.text
    home = client.get("/console/queues")
    return client, CSRF.search(home.text).group(1)  # type: ignore[union-attr]


def _review_refs(config: Path, env: dict[str, str]) -> list[str]:
    return sorted(v["ref"] for v in order_views(config, env, "review"))


def test_console_retries_across_a_kill_9_buy_each_order_once(
    db_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    faults: list[dict[str, Any]] = [
        {"kind": "out_of_stock", "on": ["order"], "requests": f"1-{ORDERS}"},
        latency(0.3, jitter=0.1),
    ]
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=faults))
    port = _free_port()
    env = {**env, "FULFIL_ADMIN_TOKEN": "t0ken"}
    config = write_config(
        tmp_path,
        db_url=db_url,
        http={"enabled": True, "listen": f"127.0.0.1:{port}"},
        daemon={"lease": "3s" if db_url.startswith("postgresql") else "120s"},
        cooldown={"product_unavailable": "1ms", "stock_empty": "1ms", "stock_check": "1ms"},
        suppliers=[fulu_supplier("fulu-sim", sim)],
        products={SKU: {"card_pattern": CARD_PATTERN, "offers": [
            {"supplier": "fulu-sim", "product_id": "10001", "cost": "95.00"}]}},
    )
    upgrade(config, env)
    fulfil("operators", "add", "agent", "--role", "agent", "--password-stdin", config=config, env=env,
           input=PASSWORD + "\n")
    orders = [order_line(f"C{i:03d}", SKU, 1) for i in range(ORDERS)]
    import_orders(config, env, orders, tmp_path / "orders.jsonl")

    first = start_daemon(config, env)
    wait_until(lambda: len(_review_refs(config, env)) == ORDERS, timeout=60, interval=0.2, message="all in review")
    client, csrf = _agent(f"http://127.0.0.1:{port}")
    half = _review_refs(config, env)[: ORDERS // 2]
    for ref in half:
        clicked = client.post(f"/console/orders/{ref}/retry", data={"csrf": csrf})
        assert clicked.status_code == 303, clicked.text
    # Kill while those purchases are in flight at the simulator (each takes 200-400 ms there).
    wait_until(lambda: sim_ledger(sim.control_url)["orders"], timeout=20, interval=0.02, message="a purchase")
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    client.close()
    left_open = open_attempts(config, env)

    second = start_daemon(config, env)
    client, csrf = _agent(f"http://127.0.0.1:{port}")
    for ref in _review_refs(config, env):
        clicked = client.post(f"/console/orders/{ref}/retry", data={"csrf": csrf})
        assert clicked.status_code == 303, clicked.text
    again = client.post(f"/console/orders/{half[0]}/retry", data={"csrf": csrf})
    assert again.status_code == 409  # no longer in review: nothing happens
    client.close()
    wait_until(
        lambda: status_counts(config, env)["delivered"] == ORDERS or status_counts(config, env)["failed"] > 0,
        timeout=90, interval=0.3, message="every order delivered after the restart",
    )
    assert second.stop() == 0, second.tail()

    counts = status_counts(config, env)
    assert counts == {"pending": 0, "processing": 0, "delivered": ORDERS, "failed": 0, "review": 0}, counts
    ledger = sim_ledger(sim.control_url)
    units = _check_deliveries(order_views(config, env), orders, [], ledger)
    assert units["fulu-sim"] == ORDERS == charged_units(ledger)
    assert not open_attempts(config, env)
    unanswered = {a["number"] for a in left_open}
    assert unanswered <= {e.get("number") for e in second.events("attempt.settling")}

    async def retries(store: Any) -> list[Any]:
        return await store.events(name="review.retry", limit=1000)

    from daemonkit import _with_store

    events = _with_store(config, env, retries)
    assert len(events) == ORDERS and {e.operator for e in events} == {"agent"}
    print(f"\nkilled with {len(unanswered)} purchases unanswered; {ORDERS} delivered once; charged {units['fulu-sim']}")
