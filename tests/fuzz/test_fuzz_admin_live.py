"""Schemathesis against a live daemon: a real `fulfil run` serving the admin API on loopback, a real Fulu
simulator behind it, and the API's own OpenAPI document (GET /openapi.json) as the only description.

Every operation is fuzzed with and without the bearer token: valid and invalid bodies, paths and query
strings (examples, coverage and fuzzing phases). No answer may be a 5xx, and every answer must be one the
document names, with its content type and body schema (`--checks all` but the two that need a model of the
shop the document cannot carry: positive data acceptance — a schema-valid order for an unknown sku is
refused — and resource availability after a POST).

Bounded and reproducible: a fixed number of examples per operation and a fixed seed. Failing inputs are kept
in Hypothesis' example database: the run starts from a copy of tests/fuzz/corpus/schemathesis (so a failure
found once is tried first on every later run), and a failing run leaves its database and a pytest file
reproducing the failures in the work directory it names. Every failure found so far also has a plain
regression test in test_fuzz_admin_findings.py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.acceptance import daemonkit as kit
from tests.conftest import fresh_pg_schema, pg_url_or_skip

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parent / "corpus" / "schemathesis"
TOKEN = "fuzz-admin-token-0123456789"
SEED = 20261121
MAX_EXAMPLES = 100
# Checks that need knowledge the document cannot carry (see the module docstring).
EXCLUDED = ("positive_data_acceptance", "ensure_resource_availability", "use_after_free")


class Live(NamedTuple):
    base_url: str
    daemon: kit.Daemon
    workdir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One daemon with HTTP on, a fulu simulator (its first batch of keys invalid: that order carries a claim
    and ends in review), stock for the first offer, and three orders settled before the fuzzing starts."""
    workdir = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    with ExitStack() as stack:
        db_url = stack.enter_context(fresh_pg_schema(pg_url_or_skip())) if request.param == "pg" else None
        stack.callback(kit.reap_all)  # whatever happens, before the PostgreSQL schema is dropped
        sim = kit.start_sim(
            kit.write_scenario(workdir / "sim.yaml", faults=[{"kind": "invalid_keys", "requests": "1-1"}])
        )
        port = _free_port()
        config = kit.write_config(
            workdir,
            db_url=db_url,
            http={"enabled": True, "listen": f"127.0.0.1:{port}"},
            # The wrong-proof limit would answer most of the fuzzer's requests 429 before any logic runs.
            aftersales={"rate_limit": {"tries": 1_000_000}},
            suppliers=[{"name": "shelf", "type": "stock"}, kit.fulu_supplier("fulu-main", sim)],
            products={
                kit.SKU: {
                    "kind": "card",
                    "max_qty": 3,
                    "card_pattern": kit.CARD_PATTERN,
                    "offers": [{"supplier": "shelf"}, {"supplier": "fulu-main", "product_id": "10001"}],
                },
                "qq-coins": {"kind": "direct", "offers": [{"supplier": "fulu-main", "product_id": "10003"}]},
            },
        )
        env = kit.base_env(FULFIL_ADMIN_TOKEN=TOKEN)
        kit.upgrade(config, env)
        kit.import_stock(config, env, kit.SKU, kit.make_keys(1), workdir / "keys.txt")
        # fuzz-1's contact is the example proof of /aftersales: the fuzzer reaches the case logic, not only 404s.
        orders = [
            kit.order_line("fuzz-1", contact="buyer@example.com"),
            kit.order_line("fuzz-2", qty=2, amount="190.00"),
            kit.order_line("fuzz-3"),
        ]
        kit.import_orders(config, env, orders, workdir / "orders.jsonl")
        daemon = kit.start_daemon(config, env)
        daemon.wait_for("admin.listening")
        kit.wait_until(lambda: _settled(kit.status_counts(config, env)), timeout=60)
        yield Live(f"http://127.0.0.1:{port}", daemon, workdir)
        assert daemon.alive(), daemon.tail()
        assert daemon.stop() == 0, daemon.tail()


def _settled(counts: dict[str, int]) -> bool:
    return counts["delivered"] == 2 and counts["review"] == 1


def schemathesis(live: Live, name: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`st run` against the live daemon's /openapi.json; its database starts as a copy of the corpus."""
    out = live.workdir / name
    shutil.copytree(CORPUS, out / "corpus")
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{live.base_url}/openapi.json",
        "--checks", "all",
        "--exclude-checks", ",".join(EXCLUDED),
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--generation-database", str(out / "corpus"),
        "--phases", "examples,coverage,fuzzing",
        "--workers", "1",
        "--request-timeout", "10",
        "--max-failures", "20",
        "--suppress-health-check", "all",
        "--report", "junit,pytest",
        "--report-dir", str(out),
        "--no-color",
        *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=out)
    assert result.returncode == 0, (
        f"schemathesis found problems (work directory {out}: corpus/, the pytest reproduction)\n"
        f"{result.stdout[-20000:]}\n{result.stderr[-4000:]}\n--- daemon log\n{live.daemon.tail(60)}"
    )
    assert live.daemon.alive(), live.daemon.tail()
    return result


def test_schemathesis_with_the_token(live: Live) -> None:
    schemathesis(live, "with-token", "--header", f"Authorization: Bearer {TOKEN}")


def test_schemathesis_without_a_token(live: Live) -> None:
    schemathesis(live, "without-token")


def test_schemathesis_with_a_wrong_token(live: Live) -> None:
    schemathesis(live, "wrong-token", "--header", "Authorization: Bearer not-the-token")
