"""One chaos run, start to verdict.

1. Set up: simulators (and fault proxies) on loopback, a database (a SQLite file, or a schema of its own on
   PostgreSQL), fulfil's config, `fulfil db upgrade`, the first share of the orders imported.
2. Chaos: the daemons work; CLI writers import the rest of the orders and act on the review queue; daemons
   are killed with SIGKILL at random moments and started again; PostgreSQL is restarted. After the last
   kill the faults stay on until no order is pending.
3. Drain: faults off (simulators and proxies), daemons started clean, no kills, until no order is pending or
   processing and no attempt is open outside review.
4. Audit (chaos.audit) and one line of figures; the exit status names what broke.

The fault schedule (kill gaps and targets, restarts, writer actions, the simulators' and proxies' fault
draws, the orders) comes from the seed; only the timing depends on the machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.exc import SQLAlchemyError

from chaos import audit, pgserver, scenarios
from chaos.presets import Preset
from chaos.procs import Children, Daemon, Proxy, Sim, run_fulfil, start_proxy, start_sim
from chaos.writers import Writers
from fulfil import durations
from fulfil.crypto import generate_key


@dataclass(frozen=True)
class Options:
    preset: Preset
    seed: int
    workdir: Path | None = None  # default: a new temporary directory (kept when the run fails)
    keep: bool = False  # keep the work directory (and the PostgreSQL schema) even when the run passes
    pg_url: str | None = None  # the server for preset pg (default $FULFIL_TEST_PG_URL or the local one)
    quiet: bool = False
    keep_failed: bool = True  # keep the work directory and schema of a failed run for inspection
    log_level: str = "INFO"  # the daemons' and commands' (DEBUG: the secret scan reads the most they log)


@dataclass(frozen=True)
class Step:
    """One step of the schedule: wait `gap` seconds, then kill daemon `target`, or restart PostgreSQL. The wait
    starts once the target serves (logged `worker.ready`), or, for a share of kills, at once: those land while
    it starts up and recovers."""

    gap: float
    target: int
    pg_restart: bool = False
    during_startup: bool = False


def schedule(preset: Preset, seed: int) -> list[Step]:
    """The kills and database restarts, in order, from the seed alone."""
    rng = random.Random(f"kills-{seed}")
    steps = [
        Step(rng.uniform(*preset.kill_gap), rng.randrange(preset.daemons), during_startup=rng.random() < 0.2)
        for _ in range(preset.kills)
    ]
    for i in range(preset.pg_restarts, 0, -1):
        at = len(steps) * i // (preset.pg_restarts + 1)
        steps.insert(at, Step(rng.uniform(*preset.kill_gap), -1, pg_restart=True))
    return steps


@dataclass
class Outcome:
    exit_code: int
    line: str
    verdict: audit.Verdict | None
    workdir: Path
    figures: dict[str, Any] = field(default_factory=dict)


class ChaosRun:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.p = options.preset
        self.children = Children()
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{self.p.name}-{options.seed}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "FULFIL_CONFIG")}
        self.env.update(FULFIL_CARD_KEY=generate_key(), FULFIL_LOG_FORMAT="json",
                        FULFIL_LOG_LEVEL=options.log_level, PYTHONUNBUFFERED="1")
        self.sims: dict[str, Sim] = {}
        self.proxies: dict[str, Proxy] = {}
        self.daemons: list[Daemon] = []
        self.db_url = ""
        self.pg_server = options.pg_url or pgserver.server_url()
        self.pg_schema: str | None = None
        self.config = self.workdir / "fulfil.yaml"
        self.cli_log = self.workdir / "cli.log"  # every CLI command's log lines (the writers' too)
        self.kills = 0
        self.kills_idle = 0  # kills that landed with nothing open (not counted)
        self.pg_restarts = 0
        self.pg_restart_seconds: list[float] = []
        self.notes: list[str] = []

    def say(self, text: str) -> None:
        if not self.o.quiet:
            print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # --- the run ----------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        started = time.monotonic()
        outcome: Outcome | None = None
        try:
            orders = scenarios.make_orders(self.p.orders, random.Random(f"orders-{self.o.seed}"))
            self.set_up(orders)
            writers = self.chaos(orders)
            drained = self.drain()
            outcome = self.verdict(orders, writers, drained, time.monotonic() - started)
            return outcome
        finally:
            for daemon in self.daemons:
                daemon.stop(timeout=20)
            self.children.reap_all()
            passed = outcome is not None and outcome.exit_code == 0
            if self.pg_schema is not None and not self.o.keep and (passed or not self.o.keep_failed):
                pgserver.drop_schema(self.pg_server, self.pg_schema)
            if passed and not self.o.keep and self.o.workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            elif not passed and self.o.keep_failed:
                self.say(f"kept for inspection: {self.workdir}" + (f", schema {self.pg_schema}" if self.pg_schema
                                                                   else ""))

    def set_up(self, orders: list[dict[str, Any]]) -> None:
        base_urls: dict[str, str] = {}
        for i, name in enumerate(scenarios.SUPPLIERS):
            path = self.workdir / f"sim-{name}.yaml"
            data = scenarios.scenario(name, self.o.seed * 10 + i, self.p.sim_faults)
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
            sim = self.sims[name] = start_sim(self.children, name, path, self.workdir)
            base_urls[name] = sim.url
            if self.p.proxy:
                target = sim.url.removeprefix("http://")
                proxy = start_proxy(self.children, name, target, self.p.proxy_faults, self.o.seed * 10 + i,
                                    self.workdir)
                self.proxies[name] = proxy
                base_urls[name] = f"http://{proxy.host}:{proxy.port}"
        if self.p.database == "pg":
            pgserver.wait_ready(self.pg_server, timeout=60)
            self.pg_schema, self.db_url = pgserver.create_schema(self.pg_server)
        else:
            self.db_url = f"sqlite:///{self.workdir / 'fulfil.db'}"
        config = scenarios.fulfil_config(self.db_url, base_urls, postgres=self.p.database == "pg",
                                         give_up_after=self.p.give_up_after)
        self.config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.must("db", "upgrade")
        self.daemons = [Daemon(f"d{i + 1}", self.config, self.env, self.workdir / f"daemon-d{i + 1}.log")
                        for i in range(self.p.daemons)]
        first = max(1, int(len(orders) * self.p.initial_share))
        path = self.workdir / "import-0000.jsonl"
        path.write_text("".join(json.dumps(o) + "\n" for o in orders[:first]), encoding="utf-8")
        self.must("orders", "import", str(path))
        self.say(f"set up in {self.workdir}: {self.p.orders} orders ({first} imported), {self.p.daemons} daemon(s)"
                 f" on {self.p.database}, proxies: {bool(self.proxies)}")

    def must(self, *args: str) -> None:
        result = run_fulfil(*args, config=self.config, env=self.env, log=self.cli_log)
        if result.returncode != 0:
            raise RuntimeError(f"`fulfil {' '.join(args)}` exited {result.returncode}:\n{result.stderr[-2000:]}")

    def chaos(self, orders: list[dict[str, Any]]) -> Writers:
        first = max(1, int(len(orders) * self.p.initial_share))
        rest = orders[first:]
        size = max(1, -(-len(rest) // 20))
        chunks = [rest[i:i + size] for i in range(0, len(rest), size)]
        writers = Writers(self.config, self.env, chunks, self.o.seed, self.workdir,
                          review_actions=self.p.review_actions, server_restarts=self.p.pg_restarts > 0)
        writers.log.imported.update(o["ref"] for o in orders[:first])
        for daemon in self.daemons:
            daemon.start(self.children)
        writers.start()
        steps = schedule(self.p, self.o.seed)
        try:
            for n, step in enumerate(steps):
                if not self.step(step, writers):
                    self.notes.append(f"schedule ended at step {n + 1}/{len(steps)}: nothing open")
                    break
                if n % 10 == 9:
                    self.say(f"step {n + 1}/{len(steps)}: kills {self.kills}, pg restarts {self.pg_restarts}, "
                             f"{dict(self.counts() or {})}")
        finally:
            writers.stop()
        writers.flush()
        self.faulty_tail()
        return writers

    def faulty_tail(self) -> None:
        """After the last kill, faults stay on until every order has been taken up at least once."""
        deadline = time.monotonic() + self.p.drain_timeout / 2
        while time.monotonic() < deadline:
            self.revive()
            counts = self.counts()
            if counts is not None and counts["pending"] == 0:
                return
            time.sleep(1.0)
        self.notes.append("orders still pending when the faults were turned off")

    def step(self, step: Step, writers: Writers) -> bool:
        """Wait, then kill or restart; False once there is nothing left to disturb."""
        target = self.daemons[max(step.target, 0)]
        if not step.during_startup and not step.pg_restart:
            ready_by = time.monotonic() + 60
            while not target.ready() and time.monotonic() < ready_by:
                self.revive()
                time.sleep(0.05)
        deadline = time.monotonic() + step.gap
        while time.monotonic() < deadline:
            self.revive()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        counts = self.counts()
        if counts is not None and counts["pending"] + counts["processing"] == 0 and writers.all_imported():
            return False
        if step.pg_restart:
            self.say("restarting PostgreSQL")
            took = pgserver.restart(self.pg_server)
            self.pg_restarts += 1
            self.pg_restart_seconds.append(took)
            self.say(f"PostgreSQL back after {took:.1f}s")
            return True
        daemon = self.daemons[step.target]
        if not daemon.alive():
            daemon.check_exited()
            daemon.start(self.children)
            return True
        daemon.kill9()
        self.kills += 1
        daemon.start(self.children)
        return True

    def revive(self) -> None:
        """A daemon that stopped on its own (e.g. it lost its database) is started again, as systemd would."""
        for daemon in self.daemons:
            code = daemon.check_exited()
            if code is not None:
                self.notes.append(f"{daemon.name} exited by itself with {code}")
                daemon.start(self.children)

    def counts(self) -> Counter[str] | None:
        try:
            return audit.status_counts(self.db_url)
        except SQLAlchemyError:
            return None  # the database is restarting

    def stop_all(self, when: str) -> None:
        for daemon in self.daemons:
            code = daemon.stop(timeout=60)
            if code not in (0, None):
                self.notes.append(f"{daemon.name} stopped with {code} {when}")

    def start_all_ready(self, timeout: float = 60.0) -> None:
        for daemon in self.daemons:
            daemon.start(self.children)
        ready_by = time.monotonic() + timeout
        while not all(d.ready() for d in self.daemons) and time.monotonic() < ready_by:
            time.sleep(0.1)

    def drain(self) -> bool:
        """Faults off, daemons started clean, no kills: wait until nothing is open. True when it got there."""
        for daemon in self.daemons:
            daemon.stop(timeout=30)
        for sim in self.sims.values():
            sim.set_faults([])
        for proxy in self.proxies.values():
            proxy.set_faults({})
        self.start_all_ready()
        self.say("draining: no faults, no kills")
        deadline = time.monotonic() + self.p.drain_timeout
        # Attempts left open on orders that ended anyway never close (the audit names them): once nothing
        # has moved for longer than an unanswerable purchase may wait, the drain is over.
        settle = durations.parse_duration(self.p.give_up_after) + 30.0
        last: Counter[str] | None = None
        changed = time.monotonic()
        drained = False
        while time.monotonic() < deadline:
            self.revive()
            counts = self.counts()
            if counts is None:
                time.sleep(1.0)
                continue
            if counts != last:
                last, changed = counts, time.monotonic()
            if counts["pending"] + counts["processing"] == 0 and (
                counts["open_attempts"] == 0 or time.monotonic() - changed > settle
            ):
                drained = True
                break
            time.sleep(1.0)
        self.stop_all("after the drain")
        if not drained:
            self.notes.append(f"not drained within {self.p.drain_timeout:.0f}s: {dict(last or {})}")
        return drained

    # --- the verdict ------------------------------------------------------------------------------------

    def verdict(self, orders: list[dict[str, Any]], writers: Writers, drained: bool, seconds: float) -> Outcome:
        views_cmd = run_fulfil("orders", "list", "--json", "--reveal", "--limit", "0", config=self.config,
                               env=self.env, log=self.cli_log)
        claims_cmd = run_fulfil("claims", "export", "--format", "json", "--no-evidence", config=self.config,
                                env=self.env, log=self.cli_log)
        for result in (views_cmd, claims_cmd):
            if result.returncode != 0:
                raise RuntimeError(f"`fulfil {' '.join(result.args)}` failed: {result.stderr[-2000:]}")
        returned, held, resellable = audit.db_counts(self.db_url)
        facts = audit.Facts(
            expected_refs=set(writers.log.imported),
            views=views_cmd.json(),
            claims=claims_cmd.json(),
            ledgers={name: sim.ledger() for name, sim in self.sims.items()},
            returned=returned,
            held=held,
            resellable_delivered=resellable,
        )
        audit.save_facts(facts, self.workdir / "facts.json")
        verdict = audit.audit(facts)
        scanned = self.scan_logs(verdict, facts.ledgers)
        if not writers.all_imported():
            verdict.fail("all_orders_known", f"{len(writers.pending_chunks)} chunk(s) never imported")
        if not drained:
            verdict.fail("drained", self.notes[-1])
        if writers.log.counts["error"]:
            verdict.fail("cli_writers", "; ".join(writers.log.errors[:5]))
        if self.p.pg_restarts and self.pg_restarts < self.p.pg_restarts:
            self.notes.append(f"only {self.pg_restarts} of {self.p.pg_restarts} PostgreSQL restarts happened")
        line = self.figure_line(verdict, writers, seconds)
        proxy_stats = {name: p.stats() for name, p in self.proxies.items()} if self.proxies else {}
        return Outcome(0 if verdict.ok else 1, line, verdict, self.workdir,
                       {"notes": self.notes, "proxy": proxy_stats, "cli": writers.log.text(),
                        "claims": dict(verdict.claims_by_reason), "pg_restart_s": self.pg_restart_seconds,
                        "log_scan": scanned})

    def secrets(self) -> dict[str, str]:
        """Every secret the run configured, by name: none may reach a log."""
        return {"FULFIL_CARD_KEY": self.env["FULFIL_CARD_KEY"], "fulu app_key": scenarios.FULU_KEY,
                "fulu secret": scenarios.FULU_SECRET, "acg-faka app_key": scenarios.ACG_KEY}

    def scan_logs(self, verdict: audit.Verdict, ledgers: dict[str, Any]) -> dict[str, int]:
        """Every daemon and CLI log line of the run, for every key the simulators issued and every secret."""
        logs = sorted(self.workdir.glob("daemon-*.log")) + [p for p in (self.cli_log,) if p.exists()]
        needles = audit.log_needles(ledgers, self.secrets())
        for finding in audit.scan_logs(logs, needles):
            verdict.fail("no_secret_in_logs", finding)
        return {"files": len(logs), "needles": len(needles)}

    def figure_line(self, verdict: audit.Verdict, writers: Writers, seconds: float) -> str:
        s = verdict.statuses
        exits = sum(len(d.self_exits) for d in self.daemons)
        parts = [
            f"chaos preset={self.p.name} seed={self.o.seed} orders={sum(s.values())} delivered={s['delivered']}"
            f" failed={s['failed']} review={s['review']} kills={self.kills} pg_restarts={self.pg_restarts}"
            f" daemons={self.p.daemons} self_exits={exits} cli={writers.log.text()}",
            *(f"{name}: {figures.line()}" for name, figures in verdict.suppliers.items()),
            f"duration={seconds:.0f}s",
            "result=OK" if verdict.ok else "result=BROKEN(" + ",".join(sorted(verdict.broken)) + ")",
        ]
        return " | ".join(parts)
