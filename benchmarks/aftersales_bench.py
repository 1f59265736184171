"""After-sales: how long a buyer waits, from a `key_invalid` report over HTTP to the reissued keys in the
database, on a real `fulfil run` against the fulu simulator.

    python -m benchmarks.aftersales_bench                       # SQLite, 300 orders, 60 reports at 10/s
    python -m benchmarks.aftersales_bench --db pg --reports 100 --rate 20

It delivers the orders, then posts the reports at a fixed rate (each naming one of the order's keys, the proof
being the order's contact), waits until every case is closed, and prints one line: the HTTP answer time of a
report and the time from the case's `opened_at` to the reissue order's `delivered_at` (both written by the
daemon), p50 / p95 / max. Hotspots are off (the one offer would be paused: the run measures the reissue path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks import procs

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pct(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


async def _read(url: str, key: str, fn: Any) -> Any:
    from fulfil.crypto import CardCipher, load_card_key
    from fulfil.storage import Store

    store = await Store.open(url, CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": key})))
    try:
        return await fn(store)
    finally:
        await store.close()


def _post_reports(base: str, refs: list[str], cards: dict[str, str], rate: float) -> list[float]:
    """Post one report per ref at `rate` per second; the answer time of each."""
    answers: list[float] = []
    start = time.monotonic()
    with httpx.Client(timeout=30.0) as client:
        for n, ref in enumerate(refs):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            body = {"ref": ref, "proof": f"b{int(ref[1:])}@example.com", "problem": "key_invalid", "keys": [cards[ref]]}
            sent = time.monotonic()
            response = client.post(f"{base}/aftersales", json=body)
            answers.append(time.monotonic() - sent)
            if response.status_code != 201:
                raise RuntimeError(f"report {ref}: {response.status_code} {response.text}")
    return answers


def _wait_closed(url: str, key: str, timeout: float = 300.0) -> list[float]:
    """Once every case is closed: seconds from each case's report to its reissue's delivery."""

    async def delays(store: Any) -> list[float] | None:
        out = []
        for case in await store.list_cases():
            if str(case.status) == "open":
                return None
            child = await store.get_order(case.reissue_refs[0])
            out.append((child.order.delivered_at - case.opened_at).total_seconds())
        return out

    deadline = time.monotonic() + timeout
    while (waits := asyncio.run(_read(url, key, delays))) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"cases still open after {timeout:g} s")
        time.sleep(0.2)
    return waits


def run(args: argparse.Namespace) -> dict[str, Any]:
    with procs.Workdir(args.keep) as work:
        sim = procs.start_sim(work.path)
        pg = procs.PgDatabase(args.pg_url) if args.db == "pg" else None
        daemon = None
        try:
            url = pg.url if pg else f"sqlite:///{work.path / 'fulfil.db'}"
            port = procs.free_port()
            config = procs.write_config(work.path / "fulfil.yaml", url, sim, port, procs.DaemonSettings())
            data = yaml.safe_load(config.read_text(encoding="utf-8"))
            data["aftersales"] = {"hotspots": {"enabled": False}, "rate_limit": {"tries": 1_000_000}}
            config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            env = procs.base_env()
            procs.fulfil("db", "upgrade", config=config, env=env)
            lines = [
                json.dumps({"ref": f"B{i:05d}", "sku": procs.SKU, "qty": 1, "contact": f"b{i}@example.com"})
                for i in range(args.orders)
            ]
            (work.path / "orders.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            procs.fulfil("orders", "import", str(work.path / "orders.jsonl"), config=config, env=env)
            daemon = procs.start_daemon(config, env, 0, port)
            key = env["FULFIL_CARD_KEY"]

            async def delivered(store: Any) -> int:
                return int((await store.count_by_status())["delivered"])

            while asyncio.run(_read(url, key, delivered)) < args.orders:
                time.sleep(0.2)
            refs = [f"B{i:05d}" for i in range(args.reports)]

            async def keys(store: Any) -> dict[str, str]:
                return {ref: (await store.get_order(ref)).cards[0].password for ref in refs}

            cards = asyncio.run(_read(url, key, keys))
            answers = _post_reports(f"http://127.0.0.1:{port}", refs, cards, args.rate)
            waits = _wait_closed(url, key)
            daemon.stop()
            daemon = None
            result = {
                "db": args.db,
                "orders": args.orders,
                "reports": args.reports,
                "rate": args.rate,
                "answer_ms": {
                    p: round(_pct(answers, q) * 1000, 1) for p, q in (("p50", 50), ("p95", 95), ("max", 100))
                },
                "reissued_s": {p: round(_pct(waits, q), 3) for p, q in (("p50", 50), ("p95", 95), ("max", 100))},
                "load": procs.loadavg(),
            }
        finally:
            if daemon is not None:
                daemon.stop(10)
            sim.stop()
            if pg is not None:
                pg.drop()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aftersales_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--reports", type=int, default=60)
    parser.add_argument("--rate", type=float, default=10.0, help="reports per second")
    parser.add_argument("--pg-url", default=os.environ.get("FULFIL_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if not 0 < args.reports <= args.orders:
        parser.error("--reports must be between 1 and --orders")
    result = run(args)
    a, r = result["answer_ms"], result["reissued_s"]
    print(
        f"aftersales {args.db}: {args.reports} reports at {args.rate}/s over {args.orders} orders: "
        f"answer p50 {a['p50']} ms p95 {a['p95']} ms; report -> reissued keys p50 {r['p50']} s "
        f"p95 {r['p95']} s max {r['max']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
