"""sd_notify datagrams on a real unix socket, and the worker's READY/WATCHDOG/STOPPING driven by its loop."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fulfil.domain import Order
from fulfil.sdnotify import Notifier
from fulfil.storage import Store
from fulfil.worker import Worker
from tests.worker.conftest import StockProcessor, eventually, make_config


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_sends_one_datagram_per_message(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})

    assert notifier.send("READY=1", "STATUS=serving")
    assert notifier.send("WATCHDOG=1")

    assert received(sock) == ["READY=1\nSTATUS=serving", "WATCHDOG=1"]


def test_abstract_namespace_address() -> None:
    name = f"fulfil-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1)
        assert Notifier(f"@{name}").send("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_outside_systemd_it_sends_nothing(tmp_path: Path) -> None:
    assert Notifier.from_environ({}).send("READY=1") is False
    assert Notifier.from_environ({"NOTIFY_SOCKET": ""}).send("READY=1") is False
    # A socket that went away is not fatal (systemd's watchdog notices silence).
    assert Notifier(str(tmp_path / "gone.sock")).send("READY=1") is False


def test_reads_notify_socket_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert Notifier.from_environ().address == "/run/systemd/notify"


class GatedStore:
    """The real store, with claims held at a gate: a stand-in for a poll loop that stopped progressing."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = asyncio.Event()

    async def claim_orders(self, owner: str, limit: int, lease: float, now: datetime) -> list[Order]:
        await self.gate.wait()
        return await self.store.claim_orders(owner, limit, lease, now)

    async def renew_leases(self, owner: str, ids: list[int], lease: float, now: datetime) -> set[int]:
        return await self.store.renew_leases(owner, ids, lease, now)

    async def release_leases(self, owner: str, ids: list[int], now: datetime) -> int:
        return await self.store.release_leases(owner, ids, now)

    async def sweep_expired_leases(self, now: datetime) -> int:
        return await self.store.sweep_expired_leases(now)

    async def prune_events(self, before: datetime, batch_size: int) -> int:
        return await self.store.prune_events(before, batch_size)


def kinds(messages: list[str]) -> list[str]:
    """The state fields of each datagram, without STATUS."""
    return [",".join(f for f in m.split("\n") if not f.startswith("STATUS=")) for m in messages]


async def test_ready_and_watchdog_only_follow_the_loop_progress(
    store: Store, receiver: tuple[socket.socket, str], running: Any
) -> None:
    sock, path = receiver
    gated = GatedStore(store)
    worker = Worker(gated, StockProcessor(store), make_config(poll_interval="10ms"), notifier=Notifier(path))
    worker.watchdog_interval = 0.02
    handle = running(worker)

    # The first claim is stuck: a timer would ping regardless; the worker must stay silent.
    await asyncio.sleep(0.3)
    assert kinds(received(sock)) == [""]  # only STATUS=starting

    gated.gate.set()
    seen: list[str] = []

    async def progressed() -> bool:
        seen.extend(kinds(received(sock)))
        return seen.count("WATCHDOG=1") >= 3

    await eventually(progressed)
    assert seen[0] == "READY=1" and seen.count("READY=1") == 1

    # Stuck again: the pings stop.
    gated.gate.clear()
    await asyncio.sleep(0.1)
    received(sock)
    await asyncio.sleep(0.3)
    assert "WATCHDOG=1" not in kinds(received(sock))

    gated.gate.set()
    await handle.stop()
    assert "STOPPING=1" in kinds(received(sock))
