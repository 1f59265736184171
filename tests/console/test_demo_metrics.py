"""A demo-sized run (the real demo: simulators, worker, HTTP server): /metrics carries every family the issue
names and every metric the Grafana dashboard and the alert rules use; the storefront figures equal a direct SQL
computation on the run's database; `fulfil demo` prints the console URL and a login, a live view instead of log
lines, and the path of the log file those went to."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fulfil.crypto import CardCipher, generate_key, load_card_key
from fulfil.demo import CARD_SKU, DemoConsole, run_demo
from fulfil.storage import Store
from tests.console.test_figures import direct

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    "fulfil_orders_finished",  # counters: orders by outcome
    "fulfil_attempts",  # attempts by supplier and error class
    "fulfil_claims_opened",  # claims by reason
    "fulfil_retries",
    "fulfil_failovers",
    "fulfil_delivery_seconds",  # histograms
    "fulfil_supplier_call_seconds",
    "fulfil_event_loop_lag_seconds",  # the daemon's own delay (fulfil.loopwatch)
    "process_cpu_seconds",  # the process collector: CPU, memory, file descriptors
    "process_resident_memory_bytes",
    "fulfil_queue_depth",  # gauges
    "fulfil_oldest_age_seconds",
    "fulfil_supplier_breaker_state",
    "fulfil_supplier_score",
    "fulfil_supplier_balance",
    "fulfil_outbox_lag_seconds",
    "fulfil_last_delivery_age_seconds",
}
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def metric_names(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"\bfulfil_[a-z0-9_]+", expr):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def dashboard_exprs() -> list[str]:
    doc = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    # The parts Grafana's importer needs: a title, a uid, a schema version, panels with a type, a place and targets.
    assert doc["title"] and doc["uid"] and isinstance(doc["schemaVersion"], int)
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    exprs = []
    ids = set()
    for panel in doc["panels"]:
        assert panel["type"] in ("timeseries", "stat", "state-timeline", "gauge", "table")
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            exprs.append(target["expr"])
    return exprs


def alert_exprs() -> list[str]:
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text(encoding="utf-8"))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    names = {r["alert"] for r in rules}
    assert {"FulfilNoDeliveries", "FulfilSupplierBreakerOpen", "FulfilReviewQueueOverdue"} <= names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"} and rule["expr"]
    return [rule["expr"] for rule in rules]


async def test_a_demo_run_serves_the_metrics_the_dashboard_and_alerts_use_and_true_figures(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def look(console: DemoConsole) -> None:
        base = console.url.removesuffix("/console/")
        async with httpx.AsyncClient(base_url=base) as client:
            scrape = await client.get("/metrics", headers={"Authorization": f"Bearer {console.metrics_token}"})
            assert scrape.status_code == 200
            seen["families"] = {f.name: f for f in text_string_to_metric_families(scrape.text)}
            seen["figures"] = (await client.get(f"/public/products/{CARD_SKU}/figures")).json()
            login = await client.get("/console/login")
            assert login.status_code == 200
        key = CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": generate_key()}))  # reading needs no decryption
        store = await Store.open(console.db_url, key)
        try:
            since = datetime.fromisoformat(seen["figures"]["updated_at"]) - timedelta(days=7)
            seen["direct"] = await direct(store, CARD_SKU, since)
        finally:
            await store.close()

    async def linger() -> None:
        assert console_seen
        await look(console_seen[0])

    console_seen: list[DemoConsole] = []

    async def serving(console: DemoConsole) -> None:
        console_seen.append(console)

    out = io.StringIO()
    result = await run_demo(120, out=out, port=0, linger=linger, on_serving=serving)
    assert result.all_delivered and result.reconciled
    families = seen["families"]
    assert set(families) >= FAMILIES, FAMILIES - set(families)
    delivered = sum(s.value for s in families["fulfil_orders_finished"].samples
                    if s.name.endswith("_total") and s.labels["outcome"] == "delivered")
    assert delivered >= 120  # this process counted (at least) this run's deliveries
    assert any(s.labels.get("supplier") == "fulu-backup" for s in families["fulfil_supplier_call_seconds"].samples)
    lag_count = [s.value for s in families["fulfil_event_loop_lag_seconds"].samples if s.name.endswith("_count")]
    assert lag_count and lag_count[0] >= 1  # the daemon's loop watch ran while it served
    used = set().union(*(metric_names(e) for e in dashboard_exprs() + alert_exprs()))
    assert used and used <= set(families), used - set(families)

    figures = seen["figures"]
    assert figures["enough_data"] is True
    expected = seen["direct"]
    assert figures["orders"] == expected["orders"] > 0
    assert figures["success_rate"] == round(expected["success_rate"], 4)
    assert figures["p95_seconds"] == round(expected["p95"], 1) and figures["p50_seconds"] == round(expected["p50"], 1)


def test_fulfil_demo_prints_the_console_and_a_live_view_and_logs_to_a_file(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "fulfil", "demo", "--orders", "40"],
        capture_output=True, text=True, timeout=240, env=env, stdin=subprocess.DEVNULL, cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    log_path = Path(re.search(r"log lines go to (\S+)", run.stdout).group(1))  # type: ignore[union-attr]
    assert log_path.parent == tmp_path
    assert re.search(r"console http://127\.0\.0\.1:\d+/console/  login: demo / \S{10,}", run.stdout)
    assert "attempts" in run.stdout and "claims" in run.stdout and "books balance" in run.stdout
    assert '{"' not in run.stdout and '{"' not in run.stderr  # no JSON log lines on the terminal
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert any(line.get("event") == "order.delivered" or line.get("msg") == "order.delivered" for line in lines)
