"""Processes and readings for the benchmarks: the simulator, `fulfil run` daemons, /proc, logs, databases.

Everything is driven as an operator drives it (the `fulfil` console script with a YAML config, the card key
and admin token in the environment, JSON log lines), the way tests/acceptance/daemonkit.py does it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from benchmarks.ceiling import Supplier
from fulfil.crypto import generate_key

ROOT = Path(__file__).resolve().parents[1]
APP_KEY = "bench-app"
SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters: the AES-256 key of fulu card fields
PRODUCT = 10001
SKU = "bench-card"
CARD_PATTERN = "^[A-Z0-9]{16}$"
_SIM_READY = re.compile(r"^sim listening on (http://\S+) protocol=(\w+) control=(http://\S+)$")


class Workdir:
    """A temporary folder for configs, logs and the SQLite file; kept with `keep` (or when a run failed)."""

    def __init__(self, keep: bool) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="fulfil-bench-"))
        self.keep = keep

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.keep or kind is not None:
            print(f"bench: files kept in {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def fulfil_command() -> list[str]:
    script = Path(sys.executable).with_name("fulfil")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fulfil"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- /proc --------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its children not included)."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of the process in seconds: Python's own work, and the kernel's for it (syscalls, fsync)."""
    utime, stime, _, _ = _cpu_ticks(Path(f"/proc/{pid}"))
    tick = os.sysconf("SC_CLK_TCK")
    return utime / tick, stime / tick


def loop_sched(pid: int) -> tuple[float, float]:
    """(on a core, waiting for a core) of the process's main thread, the daemon's event loop, in seconds since it
    started (/proc/<pid>/schedstat): what is left of the wall time it spent idle, waiting for I/O."""
    ran, waited, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(ran) / 1e9, int(waited) / 1e9


def _cpu_ticks(proc: Path) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime of /proc/<pid>, in clock ticks (the name may hold spaces and parentheses)."""
    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL server process on this host: its backends' utime + stime, and what the postmaster
    collected from the ones that exited. The server this machine's benchmarks run against is local."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in ("postgres", "postmaster"):
                continue
            total += sum(_cpu_ticks(entry))
        except OSError:  # exited meanwhile
            continue
    return total / tick


def machine_busy_seconds() -> float:
    """CPU time every core of this machine spent busy since boot (all processes: /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the resident set's high-water mark, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- the simulator ------------------------------------------------------------------------------------


@dataclass
class Sim:
    proc: subprocess.Popen[str]
    url: str
    control_url: str

    @property
    def supplier(self) -> Supplier:
        return Supplier(url=self.url + "/api/getway", app_key=APP_KEY, secret=SECRET, product_id=PRODUCT)

    def request_count(self) -> int:
        import httpx

        count: int = httpx.get(self.control_url + "/_sim/status", timeout=10.0).json()["requests"]
        return count

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_sim(directory: Path) -> Sim:
    """A clean fulu simulator: no faults, no processing time, stock and balance beyond any run."""
    scenario = {
        "protocol": "fulu",
        "app_key": APP_KEY,
        "secret": SECRET,
        "balance": "1000000000.00",
        "seed": 7,
        "processing_time": "0s",
        "products": {PRODUCT: {"name": "Bench card", "kind": "card", "price": "1.00", "card_pattern": "[A-Z0-9]{16}"}},
        "faults": [],
    }
    path = directory / "sim.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    with (directory / "sim.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suppliers.sim", "--listen", "127.0.0.1:0", "--scenario", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = _SIM_READY.match(line.strip())
    if match is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the simulator did not start: {line!r}\n{(directory / 'sim.log').read_text()}")
    return Sim(proc, match.group(1), match.group(3))


# --- configuration and the fulfil command -------------------------------------------------------------


@dataclass(frozen=True)
class DaemonSettings:
    concurrency: int = 64
    poll_interval: str = "500ms"  # fulfil.example.yaml's
    batch_size: int = 100
    supplier_poll_interval: str = "200ms"  # how soon an accepted fulu purchase is first queried
    supplier_max_concurrency: int | None = None  # None: the daemon's concurrency
    notify: dict[str, Any] | None = None  # a `notify:` section (--webhook: one endpoint on a loopback receiver)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "poll_interval": self.poll_interval,
            "batch_size": self.batch_size,
            "supplier_poll_interval": self.supplier_poll_interval,
            "supplier_max_concurrency": self.supplier_max_concurrency or self.concurrency,
        }


def write_config(path: Path, db_url: str, sim: Sim, port: int, settings: DaemonSettings) -> Path:
    """One Fulu offer for SKU; the example config's daemon settings unless `settings` says otherwise."""
    data = {
        "database": {"url": db_url},
        "http": {"enabled": True, "listen": f"127.0.0.1:{port}", "token_env": "FULFIL_ADMIN_TOKEN"},
        "daemon": {
            "poll_interval": settings.poll_interval,
            "batch_size": settings.batch_size,
            "concurrency": settings.concurrency,
            "lease": "60s",
            "shutdown_timeout": "10s",
        },
        "suppliers": [
            {
                "name": "fulu",
                "type": "fulu",
                "base_url": sim.supplier.url,
                "app_key": APP_KEY,
                "secret": SECRET,
                "timeout": "10s",
                "connect_timeout": "3s",
                "max_concurrency": settings.supplier_max_concurrency or settings.concurrency,
                "poll_interval": settings.supplier_poll_interval,
            }
        ],
        "products": {
            SKU: {
                "kind": "card",
                "max_qty": 10,
                "card_pattern": CARD_PATTERN,
                "offers": [{"supplier": "fulu", "product_id": str(PRODUCT), "cost": "1.00"}],
            }
        },
    }
    if settings.notify is not None:
        data["notify"] = settings.notify
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "FULFIL_CONFIG", "WATCHDOG_USEC")}
    env.update(
        FULFIL_CARD_KEY=generate_key(),
        FULFIL_ADMIN_TOKEN=secrets.token_urlsafe(16),
        FULFIL_LOG_FORMAT="json",
        FULFIL_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    env.pop("FULFIL_SQL_COUNT", None)
    return env


def fulfil(*args: str, config: Path, env: dict[str, str], timeout: float = 300.0) -> str:
    result = subprocess.run(
        [*fulfil_command(), "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`fulfil {' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- daemons and their logs ---------------------------------------------------------------------------


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    log_path: Path
    port: int
    sql_path: Path
    _offset: int = 0
    _partial: bytes = b""
    events: dict[str, list[datetime]] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_log(self) -> None:
        """Read new JSON log lines; keep the timestamps of each event name."""
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("event"), str) and isinstance(event.get("ts"), str):
                ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
                self.events.setdefault(event["event"], []).append(ts)

    def count(self, name: str) -> int:
        return len(self.events.get(name, ()))

    def sql_counts(self) -> dict[str, Any]:
        """The FULFIL_SQL_COUNT snapshot (rewritten by the daemon every 0.2 s and at exit)."""
        try:
            data: dict[str, Any] = json.loads(self.sql_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_daemon(config: Path, env: dict[str, str], index: int, port: int, timeout: float = 60.0) -> Daemon:
    log_path = config.parent / f"daemon-{index}.log"
    sql_path = config.parent / f"sql-{index}.json"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [*fulfil_command(), "--config", str(config), "run"],
            env={**env, "FULFIL_SQL_COUNT": str(sql_path)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
    daemon = Daemon(proc, log_path, port, sql_path)
    deadline = time.monotonic() + timeout
    while not daemon.count("worker.ready"):
        if not daemon.alive() or time.monotonic() > deadline:
            daemon.stop(5)
            raise RuntimeError(f"daemon {index} did not become ready:\n{daemon.tail()}")
        time.sleep(0.05)
        daemon.read_log()
    return daemon


# --- PostgreSQL: a database of its own per configuration ------------------------------------------------

PG_STAT_FIELDS = (
    "xact_commit",
    "xact_rollback",
    "sessions",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
)


class PgDatabase:
    """CREATE DATABASE bench_<pid>_<hex> on the server, dropped at the end; `pg_stat_database` readings of it
    (read from the server URL's own database, so the readings are not counted in it)."""

    def __init__(self, server_url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from fulfil.storage.database import parse_url

        _, url = parse_url(server_url)
        self._admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.name = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
        self._exec(f'CREATE DATABASE "{self.name}"')
        self.url = url.set(database=self.name, query={}).render_as_string(hide_password=False)

    def _exec(self, sql: str) -> None:
        from sqlalchemy import text

        with self._admin.connect() as conn:
            conn.execute(text(sql))

    def stats(self) -> dict[str, int]:
        from sqlalchemy import text

        with self._admin.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = conn.execute(
                text(f"SELECT {', '.join(PG_STAT_FIELDS)} FROM pg_stat_database WHERE datname = :name"),
                {"name": self.name},
            ).one()
        return {name: int(value or 0) for name, value in zip(PG_STAT_FIELDS, row, strict=True)}

    def drop(self) -> None:
        try:
            self._exec(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            self._admin.dispose()
