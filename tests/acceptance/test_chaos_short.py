"""Issue 15, the short proving ground in CI: `chaos` (the package behind `make chaos`) at a size that fits the
test suite's time budget. Real daemons and simulators, flaky suppliers, kill -9s, CLI writers; on PostgreSQL
two daemons and one restart of the server itself. Every money invariant the full runs check must hold here
too (chaos.audit), so a regression in the money rules fails CI. The audit also scans every daemon and CLI log
line of the run for every key the simulators issued and every configured secret (the SQLite run logs at DEBUG,
the most fulfil ever logs): one found fails the run, naming the file and line.

The PostgreSQL restart cuts every connection to the server, including other tests' — the suite runs one test
at a time, and this one returns only once the server accepts connections again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos import audit, pgserver
from chaos.presets import PRESETS
from chaos.run import ChaosRun, Options


@pytest.fixture
def pg_server_url() -> str:
    """The test server (FULFIL_TEST_PG_URL): the run makes a schema of its own there and drops it after."""
    url = os.environ.get("FULFIL_TEST_PG_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("FULFIL_TEST_PG_URL is not set but CI=true: PostgreSQL tests must run in CI")
        pytest.skip("FULFIL_TEST_PG_URL not set")
    return url


def _run(options: Options) -> None:
    outcome = ChaosRun(options).run()
    print(f"\n{outcome.line}\nnotes: {outcome.figures.get('notes')}; claims: {outcome.figures.get('claims')}; "
          f"logs scanned: {outcome.figures.get('log_scan')}")
    assert outcome.verdict is not None
    assert outcome.exit_code == 0, f"{outcome.line}\n{audit.summarise_broken(outcome.verdict)}"
    assert outcome.figures["log_scan"]["files"] >= 2 and outcome.figures["log_scan"]["needles"] > 100


@pytest.mark.slow
def test_chaos_short_sqlite(tmp_path: Path) -> None:
    preset = PRESETS["sqlite"].sized(orders=200, kills=5, give_up_after="20s", drain_timeout=90.0)
    _run(Options(preset, seed=15, workdir=tmp_path, quiet=True, log_level="DEBUG"))


@pytest.mark.slow
@pytest.mark.pg
def test_chaos_short_pg_two_daemons_one_server_restart(pg_server_url: str, tmp_path: Path) -> None:
    preset = PRESETS["pg"].sized(orders=200, kills=4, daemons=2, pg_restarts=1, give_up_after="20s",
                                 drain_timeout=90.0)
    try:
        _run(Options(preset, seed=16, workdir=tmp_path, pg_url=pg_server_url, quiet=True, keep_failed=False))
    finally:
        pgserver.wait_ready(pg_server_url, timeout=120)
