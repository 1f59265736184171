"""`python -m chaos --preset sqlite|pg|net --seed N [--orders N] [--kills N] ...`: one run, one line of
figures on stdout, exit status 0 when every invariant held, 1 naming each broken one, 2 on bad usage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chaos import audit
from chaos.presets import PRESETS
from chaos.run import ChaosRun, Options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orders", type=int, help="orders in the run (default: the preset's)")
    parser.add_argument("--kills", type=int, help="kill -9s of a daemon (default: the preset's)")
    parser.add_argument("--daemons", type=int, help="daemons (pg; default: the preset's)")
    parser.add_argument("--pg-restarts", type=int, help="PostgreSQL restarts (pg; default: the preset's)")
    parser.add_argument("--drain-timeout", type=float, help="seconds the final drain may take")
    parser.add_argument("--pg-url", help="PostgreSQL server (default: $FULFIL_TEST_PG_URL or the local one)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (logs, config, SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and schema after a pass")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"),
                        help="the daemons' and commands' log level (DEBUG: the secret scan reads the most)")
    parser.add_argument("--json", type=Path, help="also write the figures and findings here as JSON")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset].sized(orders=args.orders, kills=args.kills, daemons=args.daemons,
                                        pg_restarts=args.pg_restarts, drain_timeout=args.drain_timeout)
    if preset.database != "pg" and preset.daemons != 1:
        parser.error("SQLite runs one daemon per database")
    outcome = ChaosRun(Options(preset, args.seed, workdir=args.workdir, keep=args.keep, pg_url=args.pg_url,
                               quiet=args.quiet, log_level=args.log_level)).run()
    verdict = outcome.verdict
    if verdict is not None and not verdict.ok:
        print(audit.summarise_broken(verdict), file=sys.stderr)
        audit.write_findings(verdict, outcome.workdir / "findings.tsv")
    for note in outcome.figures.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    if outcome.figures.get("proxy"):
        print(f"proxy faults: {json.dumps(outcome.figures['proxy'], sort_keys=True)}", file=sys.stderr)
    print(f"claims by reason: {outcome.figures.get('claims')}", file=sys.stderr)
    print(f"logs scanned for keys and secrets: {outcome.figures.get('log_scan')}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "line": outcome.line, "exit": outcome.exit_code, "figures": outcome.figures,
            "broken": dict(verdict.broken) if verdict else {},
        }, indent=2, default=str), encoding="utf-8")
    print(outcome.line, flush=True)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
