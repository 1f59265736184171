"""The chaos fault proxy on loopback: bytes pass; a reset after the request reaches the server and never the
answer back; a reset before never reaches the server; a half-open connection stays silent."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from chaos.proxy import FaultProxy, Faults


class Upstream:
    """A line server that records what it received and answers each line with `ok <line>`."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            self.received.append(line)
            writer.write(b"ok " + line)
            await writer.drain()
        writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    server_side = Upstream()
    server = await asyncio.start_server(server_side.handle, "127.0.0.1", 0)
    async with server:
        yield server_side, server.sockets[0].getsockname()[1]
        await asyncio.sleep(0.3)  # every connection of the test winds down (the proxy closes both sides)


async def _through(port: int, faults: Faults) -> tuple[FaultProxy, int, asyncio.AbstractServer]:
    proxy = FaultProxy(("127.0.0.1", port), faults, random.Random(1))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    return proxy, server.sockets[0].getsockname()[1], server


async def _ask(port: int, line: bytes, timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(line)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()


async def test_clean_network_passes_bytes_with_latency(upstream: tuple[Upstream, int]) -> None:
    server_side, port = upstream
    proxy, proxy_port, server = await _through(port, Faults(latency_ms=(10, 20), bandwidth=100_000))
    async with server:
        assert await _ask(proxy_port, b"buy 1\n") == b"ok buy 1\n"
    assert server_side.received == [b"buy 1\n"] and proxy.stats["requests"] == 1


async def test_reset_after_the_request_reaches_the_server_and_loses_the_answer(
    upstream: tuple[Upstream, int],
) -> None:
    server_side, port = upstream
    proxy, proxy_port, server = await _through(port, Faults(reset_after=1.0))
    async with server:
        with pytest.raises(ConnectionResetError):
            await _ask(proxy_port, b"buy 2\n")
    assert server_side.received == [b"buy 2\n"] and proxy.stats["reset_after"] == 1


async def test_reset_before_never_reaches_the_server(upstream: tuple[Upstream, int]) -> None:
    server_side, port = upstream
    proxy, proxy_port, server = await _through(port, Faults(reset_before=1.0))
    async with server:
        with pytest.raises(ConnectionResetError):
            await _ask(proxy_port, b"buy 3\n")
    assert server_side.received == [] and proxy.stats["reset_before"] == 1


async def test_half_open_and_blackhole_stay_silent(upstream: tuple[Upstream, int]) -> None:
    server_side, port = upstream
    for faults in (Faults(half_open=1.0), Faults(blackhole=1.0)):
        _, proxy_port, server = await _through(port, faults)
        async with server:
            with pytest.raises(TimeoutError):
                await _ask(proxy_port, b"buy 4\n", timeout=0.5)
    assert server_side.received == [b"buy 4\n"]  # half-open forwarded it; the blackhole never read it
