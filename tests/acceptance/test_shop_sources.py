"""Issue 9 acceptance: a real `fulfil run` beside a dujiaoka or acg-faka shop in MariaDB, a fulu simulator upstream.

- dujiaoka: paid manual-goods orders and abnormal automatic-goods orders end `status = 4` with exactly their keys
  in `info` (the buyer's inputs kept, the shop's error text replaced), through kill -9s of the daemon at random
  moments; orders fulfil must leave alone are untouched; the supplier charged each order once.
- each step of the two-database hand-over, with a failpoint holding the daemon there for the kill: after fulfil's
  record, after the shop's mark, before the write-back, inside the shop's write-back transaction, after the
  shop's commit and before fulfil's: on restart, no second purchase, no second write-back.
- acg-faka: paid manual-delivery orders end `delivery_status = 1` with their keys in `secret`.
- the shop's database away mid-run (a loopback proxy cut: MariaDB itself keeps running for other tests):
  nothing lost, write-backs catch up, no double purchase.

Small in CI; `FULFIL_SHOP_SCALE=full` runs the issue's sizes (see shopkit.py).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from daemonkit import Daemon, latency, sim_ledger, start_daemon, start_sim, upgrade, wait_until, write_scenario
from shopkit import (
    SIZES,
    acg_orders,
    acg_source,
    check_books,
    check_left_alone,
    check_logs_clean,
    dujiaoka_orders,
    dujiaoka_source,
    shop_daemon_config,
    source_events,
    source_states,
    with_store,
    written,
)

from tests.shopdb import (
    acg_rows,
    create_database,
    drop_database,
    dujiaoka_rows,
    insert_acg,
    insert_dujiaoka,
    mysql_server_or_skip,
    run,
)
from tests.tcpcut import CuttableProxy

pytestmark = [pytest.mark.slow, pytest.mark.mysql]


@pytest.fixture
def shop_url() -> Any:
    url = run(create_database(mysql_server_or_skip()))
    try:
        yield url
    finally:
        run(drop_database(url))


def _proxied(url: str, port: int) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _settle(config: Path, env: dict[str, str], name: str, total: int, daemon: Daemon, timeout: float) -> None:
    def done() -> bool:
        if not daemon.alive():
            raise AssertionError(f"the daemon died:\n{daemon.tail()}")
        return written(config, env, name) >= total

    wait_until(done, timeout=timeout, interval=0.5, message=f"{total} orders written back to {name}")


# --- dujiaoka, kill -9 at random moments -------------------------------------------------------------------


def test_dujiaoka_orders_end_in_the_shop_with_their_keys_through_kill_9s(
    shop_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=[latency(0.15, jitter=0.1)]))
    mapped, alone = dujiaoka_orders(SIZES.manual, SIZES.abnormal)
    run(insert_dujiaoka(shop_url, mapped + alone))
    before = run(dujiaoka_rows(shop_url))
    config = shop_daemon_config(tmp_path, sim, [dujiaoka_source(shop_url)])
    upgrade(config, env)
    total = len(mapped)
    rng = random.Random(4)
    started = time.monotonic()
    daemon = start_daemon(config, env)
    kills = 0
    while kills < SIZES.kills and written(config, env, "shop") < total:
        time.sleep(rng.uniform(0.5, 2.5))
        daemon.kill()
        kills += 1
        daemon = start_daemon(config, env)
    _settle(config, env, "shop", total, daemon, timeout=300)
    took = time.monotonic() - started
    assert daemon.stop() == 0, daemon.tail()

    after = run(dujiaoka_rows(shop_url))
    figures = check_books(config, env, sim_ledger(sim.control_url), after, {o["order_sn"]: before[o["order_sn"]]
                          for o in mapped}, shop="dujiaoka")  # fmt: skip
    check_left_alone({o["order_sn"]: before[o["order_sn"]] for o in alone}, after)
    states = source_states(config, env, "shop")
    assert states == {"refused": 0, "taking": 0, "taken": 0, "written": total, "review": 0}, states
    writes = source_events(config, env, "source.written")
    assert len(writes) == total and len({w["ref"] for w in writes}) == total  # one write-back each
    check_logs_clean(tmp_path, config, env, ["buyer@example.com"])
    print(
        f"\ndujiaoka: {SIZES.manual} manual + {SIZES.abnormal} abnormal orders, {len(alone)} left alone, "
        f"{kills} kill -9s, {took:.1f}s: {figures}, "
        f"{sum(1 for w in writes if w['already'])} write-backs found already done after a kill"
    )


# --- kill -9 at each step of the hand-over ------------------------------------------------------------------

STEPS = [
    # (failpoint, the log event that says the daemon is there, extra seconds before the kill)
    ("source_after_taking", "source.taking", 0.3),
    ("source_after_mark", "source.marked", 0.3),
    ("source_before_write", "source.writing", 0.3),
    ("source_in_write", "source.writing", 1.0),  # inside the shop's transaction (its timeout is 5 s)
    ("source_after_write", "source.shop_written", 0.3),
]


def test_kill_9_at_each_step_of_the_two_database_hand_over(shop_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml"))
    config = shop_daemon_config(tmp_path, sim, [dujiaoka_source(shop_url)])
    upgrade(config, env)
    total = 0
    expected: dict[str, Any] = {}
    for n, (point, event, settle) in enumerate(STEPS):
        mapped, _ = dujiaoka_orders(2, 1, tag=f"K{n}")
        run(insert_dujiaoka(shop_url, mapped))
        rows = run(dujiaoka_rows(shop_url))
        expected.update({o["order_sn"]: rows[o["order_sn"]] for o in mapped})
        total += len(mapped)
        paused = start_daemon(config, {**env, "FULFIL_FAILPOINTS": f"{point}=30", "FULFIL_LOG_LEVEL": "DEBUG"})
        paused.wait_for(event, timeout=60)
        time.sleep(settle)
        paused.kill()
        daemon = start_daemon(config, env)
        _settle(config, env, "shop", total, daemon, timeout=120)
        assert daemon.stop() == 0, daemon.tail()
    figures = check_books(config, env, sim_ledger(sim.control_url), run(dujiaoka_rows(shop_url)), expected,
                          shop="dujiaoka")  # fmt: skip
    writes = source_events(config, env, "source.written")
    assert sorted(w["ref"] for w in writes) == sorted(expected)  # one write-back each, never two
    already = sorted(w["ref"] for w in writes if w["already"])
    assert already and all(ref.startswith("K4") for ref in already)  # the shop's commit landed before the kill
    check_logs_clean(tmp_path, config, env, ["buyer@example.com"])  # DEBUG logs included
    print(f"\nhand-over kills at {len(STEPS)} steps: {figures}; found written after the kill: {already}")


# --- acg-faka ---------------------------------------------------------------------------------------------


def test_acg_faka_orders_end_delivered_with_their_keys_in_secret(
    shop_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=[latency(0.05, jitter=0.04)]))
    orders = acg_orders(SIZES.acg)
    run(insert_acg(shop_url, orders))
    before = run(acg_rows(shop_url))
    config = shop_daemon_config(tmp_path, sim, [acg_source(shop_url)])
    upgrade(config, env)
    started = time.monotonic()
    daemon = start_daemon(config, env)
    time.sleep(1.0)
    daemon.kill()  # once, mid-run: fulfil's own record is acg-faka's only "taken" mark
    daemon = start_daemon(config, env)
    _settle(config, env, "faka", len(orders), daemon, timeout=300)
    took = time.monotonic() - started
    assert daemon.stop() == 0, daemon.tail()
    after = run(acg_rows(shop_url))
    figures = check_books(config, env, sim_ledger(sim.control_url), after,
                          {o["trade_no"]: before[o["trade_no"]] for o in orders}, shop="acg")  # fmt: skip
    check_logs_clean(tmp_path, config, env, ["buyer@example.com"])
    print(f"\nacg-faka: {len(orders)} orders, 1 kill -9, {took:.1f}s: {figures}")


# --- the shop's database away mid-run ----------------------------------------------------------------------


class _StoppedServer:
    """The outage as MariaDB itself stopped and started again (`FULFIL_SHOP_OUTAGE=stop`: needs root, and no one
    else using the server); the default cuts a loopback proxy in front of it instead."""

    port = 3306

    def __enter__(self) -> _StoppedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if not _port_open(self.port):
            self.restore()

    def cut(self) -> None:
        subprocess.run(["mariadb-admin", "-uroot", "-h127.0.0.1", "shutdown"], check=True, timeout=60)
        wait_until(lambda: not _port_open(self.port), timeout=60, message="MariaDB stopped")

    def restore(self) -> None:
        subprocess.run(["service", "mariadb", "start"], check=False, timeout=120, capture_output=True)
        wait_until(lambda: _port_open(self.port), timeout=120, message="MariaDB started")


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_shop_database_away_mid_run_loses_nothing(shop_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=[latency(0.2, jitter=0.1)]))
    mapped, alone = dujiaoka_orders(SIZES.manual, SIZES.abnormal, tag="O")
    run(insert_dujiaoka(shop_url, mapped + alone))
    before = run(dujiaoka_rows(shop_url))
    stop = os.environ.get("FULFIL_SHOP_OUTAGE") == "stop"
    outage: Any = _StoppedServer() if stop else CuttableProxy("127.0.0.1", 3306)
    late, _ = dujiaoka_orders(10, 0, tag="L")  # paid at the shop while fulfil cannot see it
    with outage:
        config = shop_daemon_config(tmp_path, sim, [dujiaoka_source(_proxied(shop_url, outage.port))])
        upgrade(config, env)
        daemon = start_daemon(config, env)
        total = len(mapped) + len(late)
        wait_until(lambda: written(config, env, "shop") >= len(mapped) // 5, timeout=120, interval=0.2)
        outage.cut()
        cut_at = time.monotonic()
        at_cut = source_states(config, env, "shop")
        if not stop:  # straight to MariaDB, not through the cut proxy
            run(insert_dujiaoka(shop_url, late))
        time.sleep(max(0.0, SIZES.outage - (time.monotonic() - cut_at)))
        waiting = source_states(config, env, "shop")
        waiting_write_back = with_store(config, env, _waiting_write_back)
        outage.restore()
        back_at = time.monotonic()
        if stop:
            run(insert_dujiaoka(shop_url, late))
        rows = run(dujiaoka_rows(shop_url))
        before.update({o["order_sn"]: rows[o["order_sn"]] for o in late})
        _settle(config, env, "shop", total, daemon, timeout=300)
        caught_up = time.monotonic() - back_at
        assert daemon.stop() == 0, daemon.tail()
        unavailable = daemon.count("source.unavailable")
    after = run(dujiaoka_rows(shop_url))
    figures = check_books(config, env, sim_ledger(sim.control_url), after,
                          {o["order_sn"]: before[o["order_sn"]] for o in mapped + late}, shop="dujiaoka")  # fmt: skip
    check_left_alone({o["order_sn"]: before[o["order_sn"]] for o in alone}, after)
    assert waiting["written"] == at_cut["written"] and waiting["review"] == 0
    assert 1 <= unavailable <= 3 + SIZES.outage // 60, unavailable  # said when it went, not on every poll
    how = "MariaDB stopped" if stop else "proxy cut"
    print(
        f"\nshop database away {SIZES.outage:.0f}s ({how}) at {at_cut}; at its end {waiting}, "
        f"{waiting_write_back} delivered in fulfil and waiting to be written back; 10 new orders paid at the shop; "
        f"caught up {caught_up:.1f}s after it came back: {figures}"
    )


async def _waiting_write_back(store: Any) -> int:
    return int((await store.source_summaries(["shop"]))["shop"].waiting_write_back)
