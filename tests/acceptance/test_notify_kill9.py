"""Issue 10 acceptance: webhooks from the real daemon through kill -9s, one daemon and two on PostgreSQL; delay
warnings.

A storefront's receiver runs on loopback (notifykit.ReceiverThread): it verifies every request with the
`standardwebhooks` package, fails 30 % of them with a 500 and answers 5 % too late (a timeout at the daemon).
Orders come in batches through `fulfil orders import` (their `order.accepted` rows committed while no daemon
runs, or while one does), are delivered from local stock, and the daemon is killed with SIGKILL mid-stream
several times; `FULFIL_FAILPOINTS=notify_after_send` widens the window between a request answered and its
outcome written, so kills land there too. At the end every event in the outbox was answered 2xx at least
once, nothing arrived that is not in the outbox, every id's body is the same bytes on every try, and an event
arrived twice only if its row was being sent by the daemon that was killed.

Sizes: NOTIFY_ORDERS (200) and NOTIFY_KILLS (3) for `make test`; the issue's run by hand:
    NOTIFY_ORDERS=1000 NOTIFY_KILLS=5 .venv/bin/python -m pytest -s tests/acceptance/test_notify_kill9.py
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from daemonkit import (
    CARD_PATTERN,
    SKU,
    _with_store,
    fulu_supplier,
    import_orders,
    import_stock,
    latency,
    make_keys,
    order_line,
    start_daemon,
    start_sim,
    status_counts,
    upgrade,
    wait_until,
    write_config,
    write_scenario,
)
from hookreceiver import SECRET, ReceiverThread

pytestmark = pytest.mark.slow

ORDERS = int(os.environ.get("NOTIFY_ORDERS", "200"))
KILLS = int(os.environ.get("NOTIFY_KILLS", "3"))
SCHEDULE = ["0s", "100ms", "200ms", "300ms", "500ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]


def _notify(url: str) -> dict[str, Any]:
    hook = {
        "name": "shop",
        "url": url,
        "secret": SECRET,
        "events": ["order.*"],
        "timeout": "1s",
        "concurrency": 8,
        "retry_schedule": SCHEDULE,
    }
    return {"webhooks": [hook], "lease": "5s"}


def _outbox(config: Path, env: dict[str, str]) -> list[Any]:
    async def read(store: Any) -> list[Any]:
        return await store.outbox_rows(limit=1_000_000)

    rows: list[Any] = _with_store(config, env, read)
    return rows


def _all_delivered(config: Path, env: dict[str, str], expected: int) -> bool:
    rows = _outbox(config, env)
    return len(rows) == expected and all(r.state == "delivered" for r in rows)


def _run(db_url: str, tmp_path: Path, env: dict[str, str], daemons: int) -> None:
    rng = random.Random(10)
    with ReceiverThread(fail=0.30, slow=0.05, slow_seconds=1.5, seed=7) as rx:
        config = write_config(
            tmp_path,
            db_url=db_url,
            daemon={"lease": "3s" if db_url.startswith("postgresql") else "120s", "concurrency": 16},
            notify=_notify(rx.url),
        )
        env = {**env, "FULFIL_FAILPOINTS": "notify_after_send=0.05"}
        upgrade(config, env)
        import_stock(config, env, SKU, make_keys(ORDERS), tmp_path / "keys.txt")
        refs = [f"N{i:05d}" for i in range(ORDERS)]
        batches = [refs[i :: KILLS + 1] for i in range(KILLS + 1)]
        sending_at_kills: set[str] = set()
        pending_at_kills = 0
        running = [start_daemon(config, env) for _ in range(daemons)]
        started = time.monotonic()
        for round_, batch in enumerate(batches):
            import_orders(config, env, [order_line(ref) for ref in batch], tmp_path / f"orders-{round_}.jsonl")
            if round_ == KILLS:
                break
            seen = len(rx.snapshot())
            goal = seen + len(batch) // 3
            wait_until(lambda g=goal: len(rx.snapshot()) >= g, timeout=60, interval=0.05)
            time.sleep(rng.uniform(0.0, 0.3))
            victim = round_ % daemons
            running[victim].kill()
            assert running[victim].proc.returncode == -signal.SIGKILL
            rows = _outbox(config, env)
            sending_at_kills |= {r.event_id for r in rows if r.state == "sending"}
            pending_at_kills += sum(1 for r in rows if r.state == "pending")
            running[victim] = start_daemon(config, env)
        expected = 2 * ORDERS  # order.accepted and order.delivered of each
        wait_until(lambda: _all_delivered(config, env, expected), timeout=300, interval=0.5, message="all delivered")
        took = time.monotonic() - started
        for d in running:
            assert d.stop() == 0, d.tail()
        assert status_counts(config, env)["delivered"] == ORDERS

        rows = _outbox(config, env)
        ids = {r.event_id for r in rows}
        accepted = rx.accepted()
        assert rx.unverified == 0
        assert set(accepted) == ids, "an event was lost"
        assert set(rx.bodies_by_id()) <= ids, "an event arrived that the outbox does not have"
        assert all(len(bodies) == 1 for bodies in rx.bodies_by_id().values()), "a retry changed the body"
        by_type: dict[str, set[str]] = {}
        for row in rows:
            by_type.setdefault(row.type, set()).add(row.event_id)
        refs_seen = {(s.type, s.data["ref"]) for got in accepted.values() for s in got}
        assert refs_seen == {(t, ref) for t in ("order.accepted", "order.delivered") for ref in refs}
        duplicates = {event_id for event_id, got in accepted.items() if len(got) > 1}
        assert duplicates <= sending_at_kills, "an event was sent twice without a kill in its way"
        answers = rx.answers()
        print(
            f"\n{'postgresql' if db_url.startswith('postgresql') else 'sqlite'} x{daemons}: {ORDERS} orders, "
            f"{len(ids)} events, {KILLS} kills, {len(rx.snapshot())} requests "
            f"(200: {answers[200]}, 500: {answers[500]}, late: {answers[0]}), every event answered 2xx; "
            f"at the kills {pending_at_kills} rows committed not yet sent, "
            f"{len(sending_at_kills)} leased (claimed or mid-send); "
            f"duplicates {len(duplicates)} (all leased at a kill); tries {sum(r.attempts for r in rows)}; "
            f"{took:.1f}s"
        )


def test_every_event_arrives_through_kill_9s(db_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    _run(db_url, tmp_path, env, daemons=1)


@pytest.mark.pg
def test_two_daemons_on_postgresql_lose_nothing(pg_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    _run(pg_url, tmp_path, env, daemons=2)


def test_a_slow_order_gets_one_delayed_event_and_a_fast_one_none(tmp_path: Path, env: dict[str, str]) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=[latency(4.0)]))
    with ReceiverThread() as rx:
        config = write_config(
            tmp_path,
            suppliers=[{"name": "shelf", "type": "stock"}, fulu_supplier("fulu-sim", sim)],
            products={
                SKU: {"card_pattern": CARD_PATTERN, "promise": "1s", "offers": [{"supplier": "shelf"}]},
                "slow-10": {"promise": "1s", "offers": [{"supplier": "fulu-sim", "product_id": "10002"}]},
            },
            notify={**_notify(rx.url), "delay": {"interval": "100ms"}},
        )
        upgrade(config, env)
        import_stock(config, env, SKU, make_keys(5), tmp_path / "keys.txt")
        daemon = start_daemon(config, env)
        import_orders(
            config, env, [order_line(f"F{i}") for i in range(5)] + [order_line("S1", "slow-10")], tmp_path / "o.jsonl"
        )
        wait_until(lambda: status_counts(config, env)["delivered"] == 6, timeout=60)
        wait_until(lambda: _all_delivered(config, env, 13), timeout=30, message="13 events delivered")
        assert daemon.stop() == 0
    delayed = [s for got in rx.accepted().values() for s in got if s.type == "order.delayed"]
    assert [s.data["ref"] for s in delayed] == ["S1"]
    assert delayed[0].data["status"] == "processing" and delayed[0].data["waited_seconds"] > 1.0
    delivered = {s.data["ref"] for got in rx.accepted().values() for s in got if s.type == "order.delivered"}
    assert "S1" in delivered
