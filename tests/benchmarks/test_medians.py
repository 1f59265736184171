"""`benchmarks.medians`: the medians of repeated runs, judged against issue 14's budgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import medians

ROOT = Path(__file__).resolve().parents[2]


def result(
    config: str, *, orders_per_s: float, cpu: float = 2.0, ratio: float = 0.35, ok: bool = True
) -> dict[str, Any]:
    db, _, daemons = config.partition("/")
    return {
        "config": config,
        "db": db,
        "daemons": int(daemons.split("+")[0]),
        "ok": ok,
        "orders_per_s": orders_per_s,
        "cpu_ms_per_order": cpu,
        "stmts_per_order": 9.2,
        "tx_per_order": 3.2,
        "latency_window": {"conns_per_1k": 0.0},
        "overhead_p99_ms": 12.0,
        "ceiling_pairs_per_s": orders_per_s / ratio,
        "ratio": ratio,
        "bounds": {"daemon_cores_orders_per_s": 1000 / cpu, "machine_orders_per_s": 700.0},
        "drain_window": {"event_loop": {"on_core": 0.88, "waiting_for_core": 0.1}},
    }


def test_medians_per_configuration_and_budgets() -> None:
    results = [
        result("pg/1", orders_per_s=500, ratio=0.28),
        result("pg/2", orders_per_s=560),
        result("pg/1", orders_per_s=540, ratio=0.31),
        result("pg/2", orders_per_s=600),
        result("pg/1", orders_per_s=520, ratio=0.26, cpu=3.5),
        result("pg/2", orders_per_s=0, ok=False),  # a failed run: counted, not in the medians
    ]
    m = medians.of(results)
    one, two = m["pg/1"], m["pg/2"]
    assert one["runs"] == 3 and one["failed_runs"] == 0
    assert one["orders_per_s"] == 520 and one["ratio"] == 0.28 and one["cpu_ms_per_order"] == 2.0
    assert one["budgets"] == {
        "cpu <= 3 ms": True,
        "stmts <= 10": True,
        "tx <= 4": True,
        "steady conns 0": True,
        "overhead p99 <= 50 ms": True,
        ">= 300 orders/s": True,
        "ratio >= 0.3": False,
    }
    assert two["runs"] == 2 and two["failed_runs"] == 1
    assert two["scaling_vs_one"] == pytest.approx(580 / 520)
    assert two["budgets"]["x1.7 one daemon"] is False
    assert ">= 300 orders/s" not in two["budgets"]  # the throughput budgets are one daemon's
    lines = medians.lines(m)
    assert lines[0].startswith("median of 3 pg/1") and "missed: ratio >= 0.3" in lines[0]
    assert "(x1.12 one daemon)" in lines[1] and "failed runs 1" in lines[1] and "x1.7 one daemon" in lines[1]


def test_budgets_need_two_good_runs_and_a_webhook_run_scales_against_its_own_kind() -> None:
    results = [
        result("pg/1+hook", orders_per_s=400),
        result("pg/2+hook", orders_per_s=500),
        result("pg/1+hook", orders_per_s=0, ok=False),
        result("pg/2+hook", orders_per_s=520),
    ]
    m = medians.of(results)
    assert m["pg/1+hook"]["runs"] == 1 and m["pg/1+hook"]["budgets"] == {}
    assert m["pg/2+hook"]["scaling_vs_one"] == pytest.approx(510 / 400)
    assert "x1.7 one daemon" not in m["pg/2+hook"]["budgets"]  # its baseline had one good run
    lines = medians.lines(m)
    assert lines[0].endswith("budgets not judged (fewer than 2 runs)")


def test_a_configuration_with_no_good_run_says_so() -> None:
    m = medians.of([result("sqlite/1", orders_per_s=0, ok=False)])
    assert m["sqlite/1"]["runs"] == 0 and m["sqlite/1"]["failed_runs"] == 1
    assert medians.lines(m) == ["median    sqlite/1  no run succeeded (1 failed)"]


def test_runs_below_one_is_refused_before_anything_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--runs", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "--runs: expected 1 or more, got 0" in done.stderr
