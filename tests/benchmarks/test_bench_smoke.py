"""Smoke test of the daemon benchmark (`make bench`): a tiny run end to end, checking the JSON it writes.

It runs `python -m benchmarks.run` as `make bench` does (real `fulfil run`, real simulator) with 100 orders
and a short latency phase, and asserts that every field is there with a sane value. No timing thresholds:
this machine's speed is not what the suite tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 100
LATENCY_ORDERS = 40  # --rate 20 --duration 2

SUMMARY_FIELDS = (
    "orders_per_s",
    "cpu_ms_per_order",
    "stmts_per_order",
    "tx_per_order",
    "conns_per_1k",
    "rss_mb",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "overhead_p99_ms",
    "ceiling_pairs_per_s",
    "ratio",
)


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "benchmarks.run", "--orders", str(ORDERS), "--rate", "20", "--duration", "2",
        "--ceiling-pairs", "100", "--json", str(out), *args,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if "orders/s" in line]
    assert len(lines) == 1, result.stdout  # one summary line per configuration
    assert " conns/1k (steady " in lines[0], lines[0]  # the pools' opening told apart from steady state
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert len(document["results"]) == 1
    result_: dict[str, Any] = document["results"][0]
    return result_


def check_result(r: dict[str, Any], db: str) -> None:
    assert r["ok"] is True
    assert r["db"] == db and r["daemons"] == 1
    assert r["statuses"] == {"delivered": ORDERS + LATENCY_ORDERS}
    assert r["exit_codes"] == [0]
    for name in SUMMARY_FIELDS:
        value = r[name]
        assert isinstance(value, int | float) and math.isfinite(value) and value >= 0, (name, value)
    assert r["orders_per_s"] > 0 and r["ceiling_pairs_per_s"] > 0 and 0 < r["ratio"] < 10
    assert 0 < r["cpu_ms_per_order"] < 10_000
    assert r["stmts_per_order"] >= 1 and r["tx_per_order"] >= 1  # every order is written to the database
    assert 0 < r["rss_mb"] < 4096
    assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert r["latency"]["delivered"] == LATENCY_ORDERS
    assert r["latency"]["http_statuses"] == {"201": LATENCY_ORDERS}
    assert r["supplier_pair_ms"]["p50_ms"] > 0
    # The ceiling: one run before the daemons and one after, pooled.
    runs = r["ceiling_runs"]
    assert [runs["before_daemons"]["pairs"], runs["after_daemons"]["pairs"]] == [100, 100]
    assert r["ceiling"]["failures"] == 0 and r["ceiling"]["pairs"] == 200
    seconds = runs["before_daemons"]["seconds"] + runs["after_daemons"]["seconds"]
    assert r["ceiling_pairs_per_s"] == pytest.approx(200 / seconds)
    window = r["throughput_window"]
    assert window["orders"] == ORDERS
    steady = r["latency_window"]
    assert steady["orders"] == LATENCY_ORDERS and math.isfinite(steady["conns_per_1k"]) and steady["conns_per_1k"] >= 0
    assert window["sim_requests_per_order"] >= 2  # a purchase and a query at least
    assert window["top_statements"], "the FULFIL_SQL_COUNT hook wrote nothing"
    split = window["cpu_split_ms_per_order"]
    assert split["daemons"] == pytest.approx(window["cpu_ms_per_order"])
    assert split["simulator"] > 0, "the simulator answered every order: it used some CPU"
    # The machine's busy time holds every process of the window, the daemon and the simulator among them.
    assert split["machine"] >= split["daemons"] + split["simulator"] - 1.0
    assert 0 < window["machine_busy_share"] <= 1.0
    assert (split["database_server"] > 0) == (db == "pg")
    # The bounds come from the drain (after the import, the backlog cleared with nothing else running).
    drain = r["drain_window"]
    assert 0 <= drain["orders"] <= ORDERS  # 100 orders may (rarely) all be delivered before the import exits
    drain_split = drain["cpu_split_ms_per_order"]
    bounds = r["bounds"]
    assert bounds["ratio_target_orders_per_s"] == pytest.approx(0.3 * r["ceiling_pairs_per_s"])
    if drain["orders"]:
        assert drain_split["daemons"] > 0 and drain_split["machine"] >= drain_split["daemons"] - 1.0
        cores = os.cpu_count() or 1
        assert bounds["machine_orders_per_s"] == pytest.approx(cores * 1000 / drain_split["machine"])
        assert bounds["daemon_cores_orders_per_s"] == pytest.approx(1000 / drain_split["daemons"])
        # The event loop's wall time in the drain: on a core, waiting for one, or idle (the rest).
        loop = drain["event_loop"]
        assert 0 < loop["on_core"] <= 1.01 and 0 <= loop["waiting_for_core"] <= 1.01
        assert loop["on_core"] + loop["waiting_for_core"] <= 1.05


def test_bench_sqlite(tmp_path: Path) -> None:
    r = run_bench(tmp_path, "--db", "sqlite")
    check_result(r, "sqlite")
    assert r["pg_stat_database_lifetime"] is None


@pytest.mark.pg
def test_bench_pg(tmp_path: Path, pg_url: str) -> None:
    r = run_bench(tmp_path, "--db", "pg", "--pg-url", pg_url)
    check_result(r, "pg")
    life = r["pg_stat_database_lifetime"]
    assert life["sessions"] >= 1 and life["xact_commit"] >= ORDERS
