"""The real processes of a chaos run: `fulfil run` daemons, `fulfil sim` simulators, fault proxies, and
one-shot `fulfil` commands.

Every child writes to a log file in the run's directory (never to a pipe nothing reads); `Children` keeps
them all, so the run can kill and reap whatever is left however it ends.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
_SIM_READY = re.compile(r"^sim listening on (http://\S+) protocol=(\w+) control=(http://\S+)$")
_PROXY_READY = re.compile(r"^proxy listening on (\S+):(\d+) control (\d+)$")


def fulfil_command() -> list[str]:
    """The console script next to this interpreter, else `python -m fulfil`."""
    script = Path(sys.executable).with_name("fulfil")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fulfil"]


@dataclass
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout)


_CLI_LOG_LOCK = threading.Lock()


def run_fulfil(
    *args: str, config: Path, env: Mapping[str, str], timeout: float = 300.0, log: Path | None = None
) -> CommandResult:
    """`fulfil --config CONFIG ARGS...` to completion (never raises on a non-zero exit). With `log`, the
    command's stderr (its log lines) is appended there, to be scanned for secrets after the run."""
    result = _run_fulfil(args, config, env, timeout)
    if log is not None:
        with _CLI_LOG_LOCK, log.open("a", encoding="utf-8") as out:
            out.write(f"# fulfil {' '.join(args[:2])} exit {result.returncode}\n{result.stderr}")
            if result.stderr and not result.stderr.endswith("\n"):
                out.write("\n")
    return result


def _run_fulfil(args: tuple[str, ...], config: Path, env: Mapping[str, str], timeout: float) -> CommandResult:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*fulfil_command(), "--config", str(config), *args],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return CommandResult(args, -9, out, f"timed out after {timeout}s", time.monotonic() - started)
    return CommandResult(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@dataclass
class Children:
    """Every process the run started, for a final kill-and-reap."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
              stdout_pipe: bool = False) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                cwd=ROOT,
            )
        self.procs.append(proc)
        return proc

    def reap_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """One line of a child's stdout without blocking past `timeout`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in data and time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
    return data.decode(errors="replace").split("\n", 1)[0]


# --- simulators --------------------------------------------------------------------------------------------


@dataclass
class Sim:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    control_url: str

    def ledger(self) -> dict[str, Any]:
        response = httpx.get(self.control_url + "/_sim/ledger", timeout=60.0)
        response.raise_for_status()
        ledger: dict[str, Any] = response.json()
        return ledger

    def set_faults(self, faults: Sequence[Mapping[str, Any]]) -> None:
        response = httpx.post(self.control_url + "/_sim/scenario", json={"faults": list(faults)}, timeout=30.0)
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: faults refused: {response.text}")

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_sim(children: Children, name: str, scenario: Path, workdir: Path) -> Sim:
    proc = children.spawn(
        [*fulfil_command(), "sim", "--listen", "127.0.0.1:0", "--scenario", str(scenario)],
        workdir / f"sim-{name}.log",
        stdout_pipe=True,
    )
    line = read_line(proc, 30.0)
    match = _SIM_READY.match(line.strip())
    if match is None:
        proc.kill()
        raise RuntimeError(f"simulator {name} did not start: {line!r}")
    return Sim(name, proc, match.group(1), match.group(3))


# --- fault proxies -----------------------------------------------------------------------------------------


@dataclass
class Proxy:
    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    control_port: int

    def set_faults(self, faults: Mapping[str, Any]) -> None:
        response = httpx.post(f"http://{self.host}:{self.control_port}/faults", json=dict(faults), timeout=10.0)
        response.raise_for_status()

    def stats(self) -> dict[str, int]:
        response = httpx.get(f"http://{self.host}:{self.control_port}/stats", timeout=10.0)
        response.raise_for_status()
        stats: dict[str, int] = response.json()
        return stats


def start_proxy(
    children: Children, name: str, target: str, faults: Mapping[str, Any], seed: int, workdir: Path
) -> Proxy:
    """`python -m chaos.proxy` in front of `target` (host:port), with these faults."""
    proc = children.spawn(
        [sys.executable, "-m", "chaos.proxy", "--target", target, "--seed", str(seed),
         "--faults", json.dumps(dict(faults))],
        workdir / f"proxy-{name}.log",
        stdout_pipe=True,
    )
    line = read_line(proc, 30.0)
    match = _PROXY_READY.match(line.strip())
    if match is None:
        proc.kill()
        raise RuntimeError(f"proxy {name} did not start: {line!r}")
    return Proxy(name, proc, match.group(1), int(match.group(2)), int(match.group(3)))


# --- daemons -----------------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """One `fulfil run` slot: the process now in it, restarted many times under the same name."""

    name: str
    config: Path
    env: Mapping[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    kills: int = 0
    self_exits: list[int] = field(default_factory=list)  # exit codes of runs that ended on their own
    _ready_offset: int = 0

    def start(self, children: Children) -> None:
        with self.log_path.open("ab") as log:
            self._ready_offset = log.tell()
        self.proc = children.spawn(
            [*fulfil_command(), "--config", str(self.config), "run"], self.log_path, env=self.env
        )
        self.started_at = time.monotonic()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """Whether the current run logged `worker.ready` (it serves)."""
        with self.log_path.open("rb") as log:
            log.seek(self._ready_offset)
            return b'"worker.ready"' in log.read()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        if self.proc is not None:
            self.proc.wait()

    def check_exited(self) -> int | None:
        """If the run ended on its own: its exit code (recorded once)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        self.self_exits.append(code)
        self.proc = None
        return code

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop within `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code
