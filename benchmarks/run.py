"""`make bench`: the daemon benchmark over a set of configurations, one summary line each, and a JSON file.

    python -m benchmarks.run                                   # SQLite 1 daemon, then PostgreSQL 1 daemon
    python -m benchmarks.run --db pg --daemons 1,2,4           # PostgreSQL with 1, 2 and 4 daemons
    python -m benchmarks.run --db sqlite,pg --runs 3           # each three times in turn, then the medians
    python -m benchmarks.run --db sqlite --orders 300 --duration 5
    make bench ARGS="--db pg --daemons 2"

Each configuration starts its own simulator and database (SQLite file, or a PostgreSQL database of its own
on --pg-url's server) and runs `benchmarks.daemon_bench` (throughput, latency at a fixed rate, the
bare-client ceiling). The JSON goes to --json (default benchmarks/results/<timestamp>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import daemon_bench, medians, procs

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _configs(args: argparse.Namespace) -> list[tuple[str, int]]:
    dbs = args.db.split(",") if args.db else ["sqlite", "pg"]
    counts = [int(n) for n in args.daemons.split(",")] if args.daemons else [1]
    out = []
    for db in dbs:
        if db not in ("sqlite", "pg"):
            raise SystemExit(f"--db: expected sqlite or pg, got {db!r}")
        for n in counts:
            if db == "sqlite" and n != 1:
                print(f"bench: skipping sqlite with {n} daemons (one daemon per SQLite database)", file=sys.stderr)
                continue
            out.append((db, n))
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=procs.ROOT, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--db", help="sqlite, pg or sqlite,pg (default: both)")
    parser.add_argument("--daemons", help="daemons per configuration, e.g. 1,2,4 (default 1; SQLite takes 1)")
    parser.add_argument("--orders", type=int, default=3000, help="orders in the throughput phase")
    parser.add_argument("--concurrency", type=int, default=64, help="daemon.concurrency (and the ceiling's)")
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s through POST /orders (latency)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the latency phase")
    parser.add_argument("--ceiling-pairs", type=int, help="pairs for the ceiling (default: --orders)")
    parser.add_argument("--poll-interval", default="500ms", help="daemon.poll_interval (example config: 500ms)")
    parser.add_argument("--batch-size", type=int, default=100, help="daemon.batch_size")
    parser.add_argument("--supplier-poll-interval", default="200ms", help="the fulu supplier's poll_interval")
    parser.add_argument("--supplier-max-concurrency", type=int, help="the fulu supplier's max_concurrency "
                        "(default: --concurrency)")
    parser.add_argument("--pg-url", default=os.environ.get("FULFIL_BENCH_PG_URL", DEFAULT_PG),
                        help="PostgreSQL server (a database is created and dropped on it per configuration)")
    parser.add_argument("--json", type=Path, help="where the JSON goes (default benchmarks/results/<timestamp>.json)")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of daemon 0 over the throughput phase "
                        "(the figures of a profiled run are not comparable)")
    parser.add_argument("--profile-gil", action="store_true", help="py-spy --gil: sample only the thread "
                        "holding the GIL (where Python's own CPU goes; C work without the GIL is not seen)")
    parser.add_argument("--runs", type=int, default=1, help="run every configuration this many times, taking "
                        "turns (a drifting machine touches each alike), then a median line each (the budgets are "
                        "medians of >= 2 runs)")
    parser.add_argument("--keep", action="store_true", help="keep each configuration's folder (logs, configs)")
    parser.add_argument("--webhook", choices=["off", "on", "both"], default="off", help="one webhook endpoint "
                        "(order.*) on a loopback receiver; both: each configuration without, then with it")
    args = parser.parse_args(argv)  # fmt: skip

    settings = procs.DaemonSettings(
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        batch_size=args.batch_size,
        supplier_poll_interval=args.supplier_poll_interval,
        supplier_max_concurrency=args.supplier_max_concurrency,
    )
    started = datetime.now(UTC)
    path = args.json or procs.ROOT / "benchmarks" / "results" / f"{started:%Y%m%dT%H%M%SZ}.json"
    document: dict[str, Any] = {
        "started": started.isoformat(),
        "commit": _git_commit(),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "cpus": os.cpu_count(),
        "results": [],
    }
    failed = False
    hooks = {"off": [False], "on": [True], "both": [False, True]}[args.webhook]
    if args.runs < 1:
        raise SystemExit(f"--runs: expected 1 or more, got {args.runs}")
    rounds = [(c, w) for _ in range(args.runs) for c in _configs(args) for w in hooks]
    for (db, daemons), webhook in rounds:
        config = daemon_bench.BenchConfig(
            webhook=webhook,
            db=db,
            daemons=daemons,
            orders=args.orders,
            rate=args.rate,
            duration=args.duration,
            ceiling_pairs=args.ceiling_pairs,
            settings=settings,
            pg_url=args.pg_url,
            profile=args.profile,
            profile_gil=args.profile_gil,
            keep=args.keep,
        )
        try:
            result = daemon_bench.run(config)
        except Exception as exc:  # noqa: BLE001 - report it, go on with the next configuration
            print(f"{config.name:<9} FAILED: {exc}", file=sys.stderr)
            document["results"].append({"config": config.name, "ok": False, "error": str(exc)})
            failed = True
            continue
        print(daemon_bench.summary_line(result), flush=True)
        document["results"].append(result)
        failed = failed or not result["ok"]
    if args.runs > 1:
        document["medians"] = medians.of(document["results"])
        for line in medians.lines(document["medians"]):
            print(line, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"bench: JSON in {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
