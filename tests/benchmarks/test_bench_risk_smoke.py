"""Smoke test of `python -m benchmarks.risk`: a tiny history, a few decisions, on SQLite (and PostgreSQL when
configured); it must run end to end and print its five lines. No timing thresholds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^  .+: p50 [0-9.]+ ms, p95 [0-9.]+ ms, p99 [0-9.]+ ms, max [0-9.]+ ms$", re.M)


def _run(*extra: str) -> str:
    args = [sys.executable, "-m", "benchmarks.risk", "--orders", "3000", "--buyers", "300", "--decisions", "40"]
    done = subprocess.run([*args, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_risk_benchmark_runs_on_sqlite() -> None:
    out = _run()
    assert "risk sqlite: 3,000 orders in the database, 40 decisions" in out
    assert len(LINE.findall(out)) == 5, out


@pytest.mark.pg
def test_the_risk_benchmark_runs_on_postgresql() -> None:
    url = os.environ.get("FULFIL_TEST_PG_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("FULFIL_TEST_PG_URL is not set but CI=true")
        pytest.skip("FULFIL_TEST_PG_URL not set")
    out = _run("--pg-url", url)
    assert "risk postgresql: 3,000 orders in the database, 40 decisions" in out
    assert len(LINE.findall(out)) == 5, out
