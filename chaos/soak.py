"""`python -m chaos.soak` (`make soak`): resource bounds under a steady load. Does anything grow without bound?

One real `fulfil run` daemon (SQLite by default, `--db pg` for PostgreSQL) against the chaos simulators on
loopback, fed paid orders through its admin HTTP API (`POST /orders`) at a steady rate: half of its capacity,
measured first with a burst of orders (or `--rate`). Every `--interval` seconds the daemon is sampled:

- RSS (`VmRSS` of /proc/PID/status) and CPU time;
- open file descriptors (/proc/PID/fd);
- database connections: PostgreSQL rows of `pg_stat_activity` with the daemon's own `application_name`;
  SQLite descriptors the daemon holds on the database, its -wal and -shm files;
- the backlog (orders pending or processing), which shows whether the daemon keeps up;
- the rows of the event log, pruned by the daemon's retention job (kept as long as the warm-up here).

For each figure: start, end, max, the medians of the first and last thirds and a least-squares slope per ten
minutes, after a warm-up. A figure **grows without bound** when the last third's median exceeds the first
third's by more than its tolerance (a share of the first and a floor, below) *and* the slope is positive; then
the run fails (exit 1). Every log line the daemon wrote is also scanned for the keys the simulators issued and
the configured secrets (chaos.audit.scan_logs). One line of figures at the end; `--json PATH` for all samples.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from chaos import audit, pgserver, scenarios
from chaos.procs import Children, Daemon, Sim, run_fulfil, start_sim
from fulfil.crypto import generate_key

# (share of the first third's median, floor) a figure may grow by before it counts as growing.
TOLERANCE: dict[str, tuple[float, float]] = {
    "rss_kib": (0.10, 8 * 1024),  # 10 %, at least 8 MiB: allocator arenas settle for a while
    "fds": (0.10, 4),
    "db_conns": (0.0, 2),
    "events": (0.10, 1000),  # rows of the event log: pruned by retention (set to the warm-up here)
}
END_STATES = ("delivered", "failed", "review")


@dataclass
class Sample:
    t: float  # seconds since the steady load began
    rss_kib: int
    fds: int
    db_conns: int
    cpu_s: float
    backlog: int
    done: int
    posted: int
    events: int = 0


@dataclass
class Trend:
    start: float
    end: float
    max: float
    first_median: float
    last_median: float
    slope_per_10min: float
    growing: bool


@dataclass
class SoakResult:
    db: str
    minutes: float
    rate: float
    capacity: float | None
    samples: list[Sample] = field(default_factory=list)
    trends: dict[str, Trend] = field(default_factory=dict)
    post_errors: int = 0
    leaks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.trends) and not any(t.growing for t in self.trends.values()) and not self.leaks


# --- the rule -----------------------------------------------------------------------------------------------


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope (units per second)."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 0.0 if var == 0 else sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def trend(points: Sequence[tuple[float, float]], share: float, floor: float) -> Trend:
    """A figure's trend, and whether it grows without bound: the last third's median above the first third's
    by more than max(share x first, floor), with a positive slope."""
    values = [v for _, v in points]
    third = max(1, len(values) // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    per_second = slope(points)
    growing = last - first > max(share * first, floor) and per_second > 0
    return Trend(values[0], values[-1], max(values), first, last, per_second * 600, growing)


def analyse(samples: Sequence[Sample], warmup: float, rate: float) -> dict[str, Trend]:
    kept = [s for s in samples if s.t >= warmup]
    if len(kept) < 6:
        return {}
    tolerance = {**TOLERANCE, "backlog": (0.0, max(20.0, rate * 10))}  # more than ten seconds behind
    return {name: trend([(s.t, float(getattr(s, name))) for s in kept], *limits)
            for name, limits in tolerance.items()}


# --- reading the daemon ---------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def fd_targets(pid: int) -> list[str]:
    out = []
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(os.readlink(entry))
        except OSError:
            continue  # closed meanwhile
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the run ------------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.children = Children()
        self.workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix=f"soak-{args.db}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_urlsafe(24)
        self.env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "FULFIL_CONFIG")}
        self.env.update(FULFIL_CARD_KEY=generate_key(), FULFIL_ADMIN_TOKEN=self.token, FULFIL_LOG_FORMAT="json",
                        FULFIL_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        self.sims: dict[str, Sim] = {}
        self.config = self.workdir / "fulfil.yaml"
        self.app = f"fulfil-soak-{secrets.token_hex(4)}"
        self.read_url = ""  # the sampler's own connections (not counted as the daemon's)
        self.pg_schema: str | None = None
        self.daemon: Daemon | None = None
        self.port = free_port()
        self.rng = random.Random(args.seed)
        self.next_ref = 0
        self.posted = 0
        self.post_errors = 0
        self._lock = threading.Lock()

    def say(self, text_: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {text_}", file=sys.stderr, flush=True)

    def run(self) -> SoakResult:
        result = SoakResult(self.a.db, self.a.minutes, self.a.rate or 0.0, None)
        try:
            self.set_up()
            if not self.a.rate:
                result.capacity = self.measure_capacity()
                result.rate = round(result.capacity / 2, 1)
                self.say(f"capacity {result.capacity:.1f} orders/s: steady load at {result.rate}/s")
            result.samples = self.steady(result.rate)
            result.trends = analyse(result.samples, self.warmup, result.rate)
            if not result.trends:
                result.notes.append("too few samples after the warm-up to judge a trend")
            result.post_errors = self.post_errors
            result.leaks = self.scan_logs()
        finally:
            if self.daemon is not None:
                code = self.daemon.stop(timeout=60)
                if code not in (0, None):
                    result.notes.append(f"the daemon stopped with {code}")
            self.children.reap_all()
            if self.pg_schema is not None:
                pgserver.drop_schema(self.server, self.pg_schema)
            if result.ok and self.a.workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                self.say(f"kept: {self.workdir}")
        return result

    @property
    def warmup(self) -> float:
        return float(min(self.a.warmup, self.a.minutes * 60 / 3))

    def event_rows(self) -> int:
        engine = create_engine(audit.sync_url(self.read_url), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
        except SQLAlchemyError:
            return -1
        finally:
            engine.dispose()

    @property
    def server(self) -> str:
        return str(self.a.pg_url or pgserver.server_url())

    def set_up(self) -> None:
        base_urls = {}
        for i, name in enumerate(scenarios.SUPPLIERS):
            path = self.workdir / f"sim-{name}.yaml"
            data = scenarios.scenario(name, self.a.seed * 10 + i, "light")
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
            sim = self.sims[name] = start_sim(self.children, name, path, self.workdir)
            if self.a.faults == "none":
                sim.set_faults([])
            base_urls[name] = sim.url
        if self.a.db == "pg":
            pgserver.wait_ready(self.server, timeout=60)
            self.pg_schema, self.read_url = pgserver.create_schema(self.server)
            db_url = make_url(self.read_url).update_query_dict({"application_name": self.app}).render_as_string(
                hide_password=False)
        else:
            db_url = self.read_url = f"sqlite:///{self.workdir / 'fulfil.db'}"
        config = scenarios.fulfil_config(db_url, base_urls, postgres=self.a.db == "pg")
        config["http"] = {"enabled": True, "listen": f"127.0.0.1:{self.port}"}
        # The event log kept as long as the warm-up: past it, its size must plateau like everything else.
        config["retention"] = {"events": f"{max(30, int(self.warmup))}s", "interval": "10s"}
        self.config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        upgraded = run_fulfil("db", "upgrade", config=self.config, env=self.env)
        if upgraded.returncode != 0:
            raise RuntimeError(f"fulfil db upgrade failed: {upgraded.stderr[-2000:]}")
        self.daemon = Daemon("d1", self.config, self.env, self.workdir / "daemon-d1.log")
        self.daemon.start(self.children)
        ready_by = time.monotonic() + 60
        while not self.daemon.ready():
            if time.monotonic() > ready_by or not self.daemon.alive():
                raise RuntimeError(f"the daemon did not become ready; see {self.daemon.log_path}")
            time.sleep(0.1)
        self.say(f"daemon ready on {self.a.db} in {self.workdir}, HTTP port {self.port}, "
                 f"{'no faults' if self.a.faults == 'none' else 'light faults'}")

    # --- load -------------------------------------------------------------------------------------------

    def order(self) -> dict[str, Any]:
        with self._lock:
            self.next_ref += 1
            ref = f"S{self.next_ref:08d}"
        body = scenarios.make_orders(1, self.rng)[0]
        body["ref"] = ref
        return body

    def post(self, client: httpx.Client) -> None:
        try:
            response = client.post("/orders", json=self.order())
            ok = response.status_code in (200, 201)
        except httpx.HTTPError:
            ok = False
        with self._lock:
            self.posted += 1
            self.post_errors += 0 if ok else 1

    def posters(
        self, due: Callable[[int], float | None], stop: threading.Event, threads: int
    ) -> list[threading.Thread]:
        """Threads posting order n at time due(n) (None: no more), each with a keep-alive client."""
        counter = iter(range(10**9))
        lock = threading.Lock()

        def loop() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0,
                              headers={"Authorization": f"Bearer {self.token}"}) as client:
                while not stop.is_set():
                    with lock:
                        n = next(counter)
                    at = due(n)
                    if at is None:
                        return
                    wait = at - time.monotonic()
                    if wait > 0 and stop.wait(wait):
                        return
                    self.post(client)

        out = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for thread in out:
            thread.start()
        return out

    def counts(self) -> tuple[int, int]:
        """(backlog, done): orders pending or processing, and in an end state."""
        try:
            counts = audit.status_counts(self.read_url)
        except SQLAlchemyError:
            return -1, -1
        return counts["pending"] + counts["processing"], sum(counts[s] for s in END_STATES)

    def measure_capacity(self) -> float:
        """A burst of orders as fast as the API takes them; orders per second until 95 % of them ended."""
        n: int = self.a.probe_orders
        self.say(f"measuring capacity with {n} orders")
        started = time.monotonic()
        stop = threading.Event()
        for thread in self.posters(lambda i: started if i < n else None, stop, threads=8):
            thread.join()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            _, done = self.counts()
            if done >= 0.95 * n:
                break
            time.sleep(0.2)
        return 0.95 * n / (time.monotonic() - started)

    def steady(self, rate: float) -> list[Sample]:
        assert self.daemon is not None and self.daemon.proc is not None
        pid = self.daemon.proc.pid
        seconds = self.a.minutes * 60
        started = time.monotonic()
        posted_before = self.posted
        stop = threading.Event()
        threads = self.posters(lambda i: started + i / rate if i / rate < seconds else None, stop,
                               threads=max(2, min(16, int(rate / 10) + 2)))
        samples: list[Sample] = []
        db = self.sqlite_files() if self.a.db == "sqlite" else None
        engine = create_engine(self.server, poolclass=NullPool) if self.a.db == "pg" else None
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                if not self.daemon.alive():
                    raise RuntimeError(f"the daemon died; see {self.daemon.log_path}")
                targets = fd_targets(pid)
                backlog, done = self.counts()
                samples.append(Sample(
                    t=round(elapsed, 1), rss_kib=rss_kib(pid), fds=len(targets),
                    db_conns=self.pg_conns(engine) if engine is not None else sum(t in (db or ()) for t in targets),
                    cpu_s=round(cpu_seconds(pid), 2), backlog=backlog, done=done, posted=self.posted - posted_before,
                    events=self.event_rows(),
                ))
                if len(samples) % max(1, int(60 / self.a.interval)) == 0:
                    last = samples[-1]
                    self.say(f"t={last.t:.0f}s rss={last.rss_kib / 1024:.1f}MiB fds={last.fds} db={last.db_conns} "
                             f"backlog={last.backlog} events={last.events} posted={last.posted} "
                             f"errors={self.post_errors}")
                time.sleep(max(0.0, self.a.interval - (time.monotonic() - started - elapsed)))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            if engine is not None:
                engine.dispose()
        return samples

    def sqlite_files(self) -> set[str]:
        base = str((self.workdir / "fulfil.db").resolve())
        return {base, base + "-wal", base + "-shm"}

    def pg_conns(self, engine: Any) -> int:
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                                        {"a": self.app}).scalar_one())
        except SQLAlchemyError:
            return -1

    def scan_logs(self) -> list[str]:
        ledgers = {name: sim.ledger() for name, sim in self.sims.items()}
        needles = audit.log_needles(ledgers, {
            "FULFIL_CARD_KEY": self.env["FULFIL_CARD_KEY"], "FULFIL_ADMIN_TOKEN": self.token,
            "fulu app_key": scenarios.FULU_KEY, "fulu secret": scenarios.FULU_SECRET,
            "acg-faka app_key": scenarios.ACG_KEY})
        return audit.scan_logs(sorted(self.workdir.glob("daemon-*.log")), needles)


# --- output -------------------------------------------------------------------------------------------------


def _fmt(name: str, value: float) -> str:
    return f"{value / 1024:.1f}MiB" if name == "rss_kib" else f"{value:g}"


def report(result: SoakResult) -> str:
    """A table on stderr's side, and the one line of figures (returned)."""
    rows = [f"{'figure':<8} {'start':>9} {'end':>9} {'max':>9} {'1st/3 med':>10} {'last/3 med':>10} "
            f"{'slope/10min':>12}  verdict"]
    for name, t in result.trends.items():
        label = "rss" if name == "rss_kib" else name
        rows.append(f"{label:<8} {_fmt(name, t.start):>9} {_fmt(name, t.end):>9} {_fmt(name, t.max):>9} "
                    f"{_fmt(name, t.first_median):>10} {_fmt(name, t.last_median):>10} "
                    f"{_fmt(name, round(t.slope_per_10min, 1)):>12}  {'GROWING' if t.growing else 'bounded'}")
    print("\n".join(rows), file=sys.stderr)
    for leak in result.leaks:
        print(f"LEAK {leak}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    last = result.samples[-1] if result.samples else None
    parts = [f"soak db={result.db} minutes={result.minutes:g} rate={result.rate:g}/s"
             + (f" capacity={result.capacity:.1f}/s" if result.capacity else "")
             + (f" posted={last.posted} done={last.done} post_errors={result.post_errors}" if last else "")]
    for name, t in result.trends.items():
        label = "rss" if name == "rss_kib" else name
        parts.append(f"{label} {_fmt(name, t.start)}->{_fmt(name, t.end)} max={_fmt(name, t.max)}"
                     f" slope={_fmt(name, round(t.slope_per_10min, 1))}/10min{' GROWING' if t.growing else ''}")
    parts.append(f"log_leaks={len(result.leaks)}")
    parts.append("result=OK" if result.ok else "result=FAIL")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="the steady load's length (default 30)")
    parser.add_argument("--rate", type=float, help="orders per second (default: half the measured capacity)")
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--pg-url", help="PostgreSQL server (default: $FULFIL_TEST_PG_URL or the local one)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds of samples left out of the trends (at most a third of the run; default 60)")
    parser.add_argument("--probe-orders", type=int, default=300, help="orders of the capacity burst")
    parser.add_argument("--faults", choices=("light", "none"), default="light",
                        help="the simulators' faults (light: a third of chaos's flaky primary; none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep everything here (logs, config, SQLite file)")
    parser.add_argument("--json", type=Path, help="write the samples, trends and verdict here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or (args.rate is not None and args.rate <= 0):
        parser.error("--minutes, --interval and --rate must be positive")
    result = Soak(args).run()
    line = report(result)
    if args.json is not None:
        args.json.write_text(json.dumps({"line": line, "ok": result.ok, **asdict(result)}, indent=2),
                             encoding="utf-8")
    print(line, flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
