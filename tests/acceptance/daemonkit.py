"""Acceptance-test kit: the real `fulfil` command and the real supplier simulator, as subprocesses.

Everything here drives what an operator drives: the installed `fulfil` console script (or `python -m fulfil`
when the venv has none), a YAML config file, the card key in the environment, JSON log lines on stderr, and
`python -m suppliers.sim` for an upstream supplier. Test files in tests/acceptance import it directly
(`from daemonkit import ...`); tests/acceptance/conftest.py kills whatever a test left running.

    env = base_env()                                   # FULFIL_CARD_KEY, JSON logs, no NOTIFY_SOCKET
    config = write_config(tmp_path, db_url=pg_url, daemon={"lease": "3s"})
    fulfil("db", "upgrade", config=config, env=env)    # asserts exit 0 unless expect= says otherwise
    import_stock(config, env, "steam-100", make_keys(100), tmp_path / "keys.txt")
    import_orders(config, env, [order_line("R1")], tmp_path / "orders.jsonl")
    sim = start_sim(write_scenario(tmp_path / "sim.yaml", faults=[latency(0.2)]))
    d = start_daemon(config, env)                      # returns once the worker logged `worker.ready`
    wait_until(lambda: status_counts(config, env)["delivered"] == 1, timeout=30)
    assert d.stop() == 0                               # SIGTERM, then the exit status
    views = order_views(config, env)                   # `fulfil orders list --json --reveal --limit 0`
    ledger = sim_ledger(sim.control_url)               # the simulator's books, keys in plaintext

Processes write their stderr to a file (never a pipe nothing reads: a busy daemon would block on it), so a
failing test can print the daemon's log (`Daemon.log_text()`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import httpx
import yaml

from chaos.procs import read_line
from fulfil.crypto import CardCipher, generate_key, load_card_key

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
SKU = "steam-100"
CARD_PATTERN = "^[A-Z0-9]{16}$"

# The simulator's credentials (the secret is the AES-256 key of fulu card fields: 32 characters).
SIM_APP_KEY = "acceptance-app"
SIM_SECRET = "0123456789abcdef0123456789abcdef"

_SIM_READY = re.compile(r"^sim listening on (http://\S+) protocol=(\w+) control=(http://\S+)$")
_started: list[subprocess.Popen[str]] = []  # every process this module started, for reap_all()


def fulfil_command() -> list[str]:
    """The console script installed next to this interpreter, else `python -m fulfil`."""
    script = Path(sys.executable).with_name("fulfil")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fulfil"]


# --- environment and config ---------------------------------------------------------------------------


def base_env(card_key: str | None = None, **extra: str) -> dict[str, str]:
    """The test process's environment plus a card key and JSON logs; nothing that would redirect the
    daemon (a config path, a systemd notify socket) leaks in from the outside."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "FULFIL_CONFIG", "WATCHDOG_USEC")}
    env.update(
        FULFIL_CARD_KEY=card_key or generate_key(),
        FULFIL_LOG_FORMAT="json",
        FULFIL_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in: mappings merge key by key, anything else replaces, None deletes."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_data(db_url: str, **overrides: Any) -> dict[str, Any]:
    """A valid config for a test daemon: one stock supplier, SKU served from it, short intervals, no HTTP
    listener (several daemons share a host). Sections in `overrides` merge in (see `merge`)."""
    base: dict[str, Any] = {
        "database": {"url": db_url},
        "http": {"enabled": False},
        "daemon": {
            "poll_interval": "50ms",
            "batch_size": 50,
            "concurrency": 16,
            "lease": "10s",
            "shutdown_timeout": "5s",
        },
        "retry": {"budget": "10s", "initial_backoff": "100ms", "max_backoff": "1s"},
        "ambiguity": {"query_interval": "300ms", "give_up_after": "10m", "policy": "wait"},
        "suppliers": [{"name": "shelf", "type": "stock"}],
        "products": {
            SKU: {"kind": "card", "max_qty": 10, "card_pattern": CARD_PATTERN, "offers": [{"supplier": "shelf"}]}
        },
    }
    return merge(base, overrides)


def write_config(directory: Path, *, db_url: str | None = None, name: str = "fulfil.yaml", **overrides: Any) -> Path:
    """Write `config_data(...)` to directory/name; the database defaults to a SQLite file beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    url = db_url or f"sqlite:///{directory / 'fulfil.db'}"
    path.write_text(yaml.safe_dump(config_data(url, **overrides), sort_keys=False), encoding="utf-8")
    return path


def read_config(config: Path) -> dict[str, Any]:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def fulu_supplier(name: str, sim: Sim, **overrides: Any) -> dict[str, Any]:
    """A `suppliers:` entry for a fulu simulator started with `start_sim`."""
    return {
        "name": name,
        "type": "fulu",
        "base_url": sim.gateway_url,
        "app_key": SIM_APP_KEY,
        "secret": SIM_SECRET,
        "timeout": "5s",
        "connect_timeout": "2s",
        "poll_interval": "200ms",
        **overrides,
    }


# --- the fulfil command ---------------------------------------------------------------------------------


def fulfil(
    *args: str,
    config: Path | None,
    env: Mapping[str, str],
    expect: int | None = 0,
    timeout: float = 120.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `fulfil [--config CONFIG] ARGS...` to completion. With `expect` (default 0) the exit status must
    be that, else the test fails showing the command's output; `expect=None` checks nothing."""
    command = [*fulfil_command(), *(["--config", str(config)] if config is not None else []), *args]
    result = subprocess.run(
        command, env=dict(env), capture_output=True, text=True, timeout=timeout, input=input, cwd=ROOT
    )
    if expect is not None and result.returncode != expect:
        raise AssertionError(
            f"`fulfil {' '.join(args)}` exited {result.returncode}, expected {expect}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def upgrade(config: Path, env: Mapping[str, str]) -> None:
    fulfil("db", "upgrade", config=config, env=env)


def make_keys(count: int, prefix: str = "K") -> list[str]:
    """`count` distinct keys matching CARD_PATTERN: the prefix, a random tag, then a counter."""
    tag = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(4))
    head = (prefix + tag).upper()
    return [f"{head}{i:0{16 - len(head)}d}" for i in range(count)]


def import_stock(config: Path, env: Mapping[str, str], sku: str, keys: Sequence[str], path: Path) -> None:
    """`fulfil stock import SKU FILE`; every key must go in."""
    path.write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")
    out = fulfil("stock", "import", sku, str(path), config=config, env=env).stdout
    added = re.search(r"^added:\s+(\d+)$", out, re.M)
    assert added is not None and int(added.group(1)) == len(keys), out


def order_line(ref: str, sku: str = SKU, qty: int = 1, **fields: Any) -> dict[str, Any]:
    return {"ref": ref, "sku": sku, "qty": qty, **fields}


def import_orders(
    config: Path, env: Mapping[str, str], orders: Iterable[Mapping[str, Any]], path: Path
) -> dict[str, Any]:
    """`fulfil orders import FILE --json` (JSON lines); every order must be accepted. Returns the summary."""
    lines = [json.dumps(dict(order)) for order in orders]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    summary: dict[str, Any] = json.loads(fulfil("orders", "import", str(path), "--json", config=config, env=env).stdout)
    assert summary["accepted"] == len(lines) and not summary["rejected"], summary
    return summary


def order_views(config: Path, env: Mapping[str, str], status: str | None = None) -> list[dict[str, Any]]:
    """Every order as `fulfil orders list --json --reveal --limit 0` prints it (cards in plaintext)."""
    args = ["orders", "list", "--json", "--reveal", "--limit", "0"]
    if status is not None:
        args += ["--status", status]
    views: list[dict[str, Any]] = json.loads(fulfil(*args, config=config, env=env).stdout)
    return views


def stock_counts(config: Path, env: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """`fulfil stock list --json`: {sku: {available, used}}."""
    counts: dict[str, dict[str, int]] = json.loads(fulfil("stock", "list", "--json", config=config, env=env).stdout)
    return counts


def status_counts(config: Path, env: Mapping[str, str]) -> dict[str, int]:
    """Orders per status, read from the database directly: cheap enough to poll (a `fulfil orders list`
    of thousands of orders is not). Always has every status as a key."""
    return _with_store(config, env, lambda store: store.count_by_status())  # type: ignore[no-any-return]


def open_attempts(config: Path, env: Mapping[str, str]) -> list[dict[str, str]]:
    """Attempts left `sent`/`ambiguous` (purchases that may have been made with no answer recorded), as
    {number, supplier, state}."""

    async def read(store: Any) -> list[dict[str, str]]:
        return [
            {"number": a.number, "supplier": a.supplier, "state": str(a.state)}
            for a in await store.open_attempts(limit=100_000)
        ]

    return _with_store(config, env, read)  # type: ignore[no-any-return]


def _with_store(config: Path, env: Mapping[str, str], fn: Callable[[Any], Any]) -> Any:
    from fulfil.storage import Store

    url = read_config(config)["database"]["url"]
    cipher = CardCipher(load_card_key(None, env))

    async def body() -> Any:
        store = await Store.open(url, cipher)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(body())


# --- the daemon ------------------------------------------------------------------------------------------


class Daemon:
    """A running `fulfil run`. Its JSON log lines (stderr) go to `log_path` and are read back incrementally."""

    def __init__(self, proc: subprocess.Popen[str], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self._events: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every JSON log line so far (non-JSON lines, e.g. a traceback, are skipped), or those named so."""
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for raw in complete:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._events.append(event)
        return [e for e in self._events if name is None or e.get("event") == name]

    def count(self, name: str) -> int:
        return len(self.events(name))

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(
        self, name: str, timeout: float = 30.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The first log event `name` (matching `where`); fails if the daemon exits or time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events(name):
                if where is None or where(event):
                    return event
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon {self.pid} exited {self.proc.returncode} before logging {name}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon {self.pid} did not log {name} within {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit status; fails (after killing it) if the daemon is still running after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"daemon {self.pid} still running after {timeout}s:\n{self.tail()}") from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (as `kill -9`) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_daemon(
    config: Path,
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    args: Sequence[str] = (),
    ready: bool = True,
    ready_timeout: float = 30.0,
) -> Daemon:
    """Start `fulfil --config CONFIG run ARGS...`; with `ready`, return once it logged `worker.ready` (its
    first poll of the database succeeded: it is serving). The log goes to `log_path` (default: a new
    `daemon-N.log` beside the config)."""
    if log_path is None:
        n = 1
        while (config.parent / f"daemon-{n}.log").exists():
            n += 1
        log_path = config.parent / f"daemon-{n}.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [*fulfil_command(), "--config", str(config), "run", *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
    _started.append(proc)
    daemon = Daemon(proc, log_path)
    if ready:
        daemon.wait_for("worker.ready", timeout=ready_timeout)
    return daemon


# --- the supplier simulator -----------------------------------------------------------------------------


class Sim(NamedTuple):
    """A running `python -m suppliers.sim`; unpacks as (proc, url, control_url)."""

    proc: subprocess.Popen[str]
    url: str
    control_url: str

    @property
    def gateway_url(self) -> str:
        return self.url + "/api/getway"

    def ledger(self) -> dict[str, Any]:
        return sim_ledger(self.control_url)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            _close(self.proc.stdout)


def latency(seconds: float, *, jitter: float = 0.0, on: Sequence[str] = ("order",)) -> dict[str, Any]:
    """A latency fault rule: every matching request waits this long (± jitter) before it is handled
    (so before the purchase is made)."""
    if jitter:
        return {
            "kind": "latency",
            "distribution": "uniform",
            "min": f"{int((seconds - jitter) * 1000)}ms",
            "max": f"{int((seconds + jitter) * 1000)}ms",
            "on": list(on),
        }
    return {"kind": "latency", "distribution": "fixed", "delay": f"{int(seconds * 1000)}ms", "on": list(on)}


def scenario_data(*, faults: Sequence[Mapping[str, Any]] = (), **changes: Any) -> dict[str, Any]:
    """A clean fulu supplier: product 10001 (16-character keys like CARD_PATTERN), 10002 (number and
    password), 10003 (direct top-up); plenty of stock and balance; `faults` as the scenario format has them."""
    data: dict[str, Any] = {
        "protocol": "fulu",
        "app_key": SIM_APP_KEY,
        "secret": SIM_SECRET,
        "balance": "10000000.00",
        "seed": 7,
        "processing_time": "0s",
        "products": {
            10001: {"name": "Steam 100", "kind": "card", "price": "95.00", "stock": 100000,
                    "card_pattern": "[A-Z0-9]{16}"},
            10002: {"name": "NetEase 50", "kind": "card", "price": "48.50", "stock": 100000,
                    "number_pattern": "[0-9]{12}", "card_pattern": "[A-Z0-9]{16}"},
            10003: {"name": "QQ coins", "kind": "direct", "price": "9.80"},
        },
        "faults": [dict(f) for f in faults],
    }  # fmt: skip
    return merge(data, changes)


def write_scenario(path: Path, *, faults: Sequence[Mapping[str, Any]] = (), **changes: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(scenario_data(faults=faults, **changes), sort_keys=False), encoding="utf-8")
    return path


def start_sim(scenario_path: Path, *, log_path: Path | None = None, timeout: float = 20.0) -> Sim:
    """Start the simulator on a free loopback port; returns once it printed its listening line."""
    log_path = log_path or scenario_path.with_suffix(".log")
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suppliers.sim", "--listen", "127.0.0.1:0", "--scenario", str(scenario_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
    _started.append(proc)
    line = read_line(proc, timeout)  # type: ignore[arg-type]  # reads the raw fd: text or bytes mode alike
    match = _SIM_READY.match(line.strip())
    if match is None:
        proc.kill()
        proc.wait()
        _close(proc.stdout)
        raise AssertionError(f"the simulator did not start: {line!r}\n{log_path.read_text(errors='replace')}")
    return Sim(proc, match.group(1), match.group(3))


def sim_ledger(control_url: str) -> dict[str, Any]:
    """GET /_sim/ledger: balance, stock, and every order the simulator took, with its keys in plaintext."""
    response = httpx.get(control_url + "/_sim/ledger", timeout=10.0)
    response.raise_for_status()
    ledger: dict[str, Any] = response.json()
    return ledger


def charged_orders(ledger: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ledger's orders the supplier kept the money for (refunded failures excluded)."""
    return [o for o in ledger["orders"] if o["charged"]]


def charged_units(ledger: Mapping[str, Any]) -> int:
    return sum(int(o["qty"]) for o in charged_orders(ledger))


# --- waiting and clean-up -------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T], timeout: float, *, interval: float = 0.2, message: str = "") -> T:
    """Call `predicate` until it returns something truthy (returned); fail the test after `timeout` seconds,
    showing its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message or predicate!r} (last: {value!r})")
        time.sleep(interval)


def reap_all() -> None:
    """Kill every process this module started that is still running, and reap them all."""
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _close(proc.stdout)


def _close(stream: IO[str] | None) -> None:
    if stream is not None and not stream.closed:
        stream.close()
