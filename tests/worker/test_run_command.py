"""`fulfil run` as systemd runs it: real processes, real signals, a real notify socket."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fulfil.crypto import generate_key

pytestmark = pytest.mark.slow


class Daemon:
    """A `fulfil` process whose JSON log lines (stderr) can be waited for."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fulfil", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.lines: list[str] = []
        self._partial = ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait_for(self, match: Callable[[dict[str, Any]], bool], within: float = 10.0) -> dict[str, Any]:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()  # raw reads: a buffered readline would hide lines behind select()
        deadline = time.monotonic() + within
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                for event in self.events():
                    if match(event):
                        return event
                if sel.select(timeout=0.1):
                    chunk = os.read(fd, 65536).decode()
                    if not chunk:
                        break
                    self._partial += chunk
                    *complete, self._partial = self._partial.split("\n")
                    self.lines.extend(line + "\n" for line in complete)
        raise AssertionError(f"no such log event; saw:\n{''.join(self.lines)}")

    def finish(self, within: float = 15.0) -> int:
        _, err = self.proc.communicate(timeout=within)
        self.lines.extend((self._partial + err).splitlines(keepends=True))
        self._partial = ""
        return self.proc.returncode

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.finish()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    config = tmp_path / "fulfil.yaml"
    write(config)
    env = {**os.environ, "FULFIL_CARD_KEY": generate_key(), "FULFIL_LOG_FORMAT": "json"}
    env.pop("NOTIFY_SOCKET", None)
    yield config, env


def write(config: Path, **daemon: Any) -> None:
    data = {
        "database": {"url": f"sqlite:///{config.parent / 'fulfil.db'}"},
        "http": {"enabled": False},
        "daemon": {"poll_interval": "50ms", "lease": "5s", "shutdown_timeout": "2s", **daemon},
        "suppliers": [{"name": "shelf", "type": "stock"}],
        "products": {"steam-100": {"offers": [{"supplier": "shelf"}]}},
    }
    config.write_text(yaml.safe_dump(data), encoding="utf-8")


def fulfil(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fulfil", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def named(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("event") == name


def test_refuses_an_out_of_date_schema(setup: tuple[Path, dict[str, str]]) -> None:
    config, env = setup
    result = fulfil(config, env, "run")
    assert result.returncode == 2
    assert "fulfil db upgrade" in result.stderr


def test_serves_reloads_refuses_a_second_daemon_and_stops_on_sigterm(
    setup: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, env = setup
    assert fulfil(config, env, "db", "upgrade").returncode == 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(10)
        first = Daemon(
            ["--config", str(config), "run"], {**env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
        )
        with first:
            first.wait_for(named("worker.ready"))
            messages = [notify.recv(4096).decode() for _ in range(2)]
            assert messages[0] == "STATUS=starting" and messages[1].startswith("READY=1\n")

            second = fulfil(config, env, "run")
            assert second.returncode == 1
            assert f"pid {first.proc.pid}" in second.stderr

            config.write_text("daemon: {concurrency: lots}\n", encoding="utf-8")
            first.proc.send_signal(signal.SIGHUP)
            refused = first.wait_for(named("config.reload_refused"))
            assert refused["level"] == "error" and refused["error"].startswith("daemon.concurrency")
            write(config, concurrency=7)
            first.proc.send_signal(signal.SIGHUP)
            first.wait_for(named("config.reloaded"))

            first.proc.send_signal(signal.SIGTERM)
            assert first.finish() == 0
            notify.setblocking(False)
            rest = []
            with contextlib.suppress(BlockingIOError):
                while True:
                    rest.append(notify.recv(4096).decode())
            assert any(m.startswith("STOPPING=1") for m in rest)
    names = [event.get("event") for event in first.events()]
    assert "worker.stopping" in names and "worker.stopped" in names
    # The lock went with the first daemon: another may start now.
    with Daemon(["--config", str(config), "run"], env) as again:
        again.wait_for(named("worker.ready"))
        again.proc.send_signal(signal.SIGINT)
        assert again.finish() == 0
