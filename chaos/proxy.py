"""A fault-injecting TCP proxy on loopback: the faults a real network gives and a simulator inside the server
cannot. `python -m chaos.proxy --target HOST:PORT --seed N --faults JSON` prints
`proxy listening on HOST:PORT control CPORT` once it serves.

It knows nothing of HTTP beyond this: bytes from the client after the server last spoke start a new
request. For each new connection and each new request it draws (one seeded draw, the shares exclusive):

- `blackhole` (new connection): accepted, never answered, held open until the client gives up;
- `reset_before`: the request is read, never forwarded, and the connection reset (RST);
- `reset_after`: the request is forwarded, the server's answer dropped, and the connection reset — the
  server did the work (a purchase was charged) and the client never hears of it;
- `half_open`: the request is forwarded and the answer swallowed; the connection stays open, silent;
- otherwise the bytes pass, each chunk delayed by `latency_ms` [min, max] and throttled to `bandwidth`
  bytes per second per direction.

The control port takes `POST /faults` (a new fault mapping, e.g. `{}` for a clean network) and answers
`GET /stats` (counts per fault).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

REQUEST_FAULTS = ("reset_before", "reset_after", "half_open")


@dataclass
class Faults:
    latency_ms: tuple[float, float] = (0.0, 0.0)
    bandwidth: float = 0.0  # bytes/s; 0: unlimited
    reset_before: float = 0.0
    reset_after: float = 0.0
    half_open: float = 0.0
    blackhole: float = 0.0

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Faults:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown proxy fault(s): {sorted(unknown)}")
        latency = data.get("latency_ms", (0, 0))
        return cls(
            latency_ms=(float(latency[0]), float(latency[1])),
            bandwidth=float(data.get("bandwidth", 0)),
            **{name: float(data.get(name, 0.0)) for name in (*REQUEST_FAULTS, "blackhole")},
        )


@dataclass
class _Conn:
    fault: str | None = None
    new_request: bool = True


@dataclass
class FaultProxy:
    target: tuple[str, int]
    faults: Faults
    rng: random.Random
    stats: Counter[str] = field(default_factory=Counter)

    # --- decisions ------------------------------------------------------------------------------------

    def draw_request(self) -> str | None:
        draw, band = self.rng.random(), 0.0
        for name in REQUEST_FAULTS:
            band += getattr(self.faults, name)
            if draw < band:
                return name
        return None

    async def _pace(self, size: int) -> None:
        low, high = self.faults.latency_ms
        delay = self.rng.uniform(low, high) / 1000.0 if high > 0 else 0.0
        if self.faults.bandwidth > 0:
            delay += size / self.faults.bandwidth
        if delay > 0:
            await asyncio.sleep(delay)

    # --- connections ----------------------------------------------------------------------------------

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        if self.rng.random() < self.faults.blackhole:
            self.stats["blackhole"] += 1
            await _swallow(client_r)
            _close(client_w)
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats["upstream_refused"] += 1
            _reset(client_w)
            return
        conn = _Conn()
        tasks = [
            asyncio.create_task(self._client_to_server(conn, client_r, client_w, upstream_w)),
            asyncio.create_task(self._server_to_client(conn, upstream_r, client_w)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            _close(upstream_w)
            _close(client_w)

    async def _client_to_server(
        self, conn: _Conn, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
        upstream_w: asyncio.StreamWriter,
    ) -> None:
        while data := await client_r.read(65536):
            if conn.new_request:
                conn.new_request = False
                conn.fault = self.draw_request()
                self.stats["requests"] += 1
                if conn.fault is not None:
                    self.stats[conn.fault] += 1
                if conn.fault == "reset_before":
                    _reset(client_w)
                    return
            await self._pace(len(data))
            upstream_w.write(data)
            await upstream_w.drain()

    async def _server_to_client(
        self, conn: _Conn, upstream_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        while data := await upstream_r.read(65536):
            if conn.fault == "reset_after":
                _reset(client_w)
                return
            if conn.fault == "half_open":
                continue  # swallowed: the client waits until it gives up
            await self._pace(len(data))
            client_w.write(data)
            await client_w.drain()
            conn.new_request = True
        if conn.fault == "half_open":
            await asyncio.Event().wait()  # the server hung up; the client is still left hanging


async def _swallow(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, not a FIN: SO_LINGER on with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        writer.close()


def _control_app(proxy: FaultProxy) -> web.Application:
    async def set_faults(request: web.Request) -> web.Response:
        try:
            proxy.faults = Faults.from_data(await request.json())
        except (ValueError, TypeError, IndexError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(proxy.stats))

    app = web.Application()
    app.router.add_post("/faults", set_faults)
    app.router.add_get("/stats", stats)
    return app


async def serve(target: tuple[str, int], faults: Faults, seed: int, listen: tuple[str, int]) -> None:
    proxy = FaultProxy(target, faults, random.Random(seed))
    server = await asyncio.start_server(proxy.handle, *listen)
    runner = web.AppRunner(_control_app(proxy), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, listen[0], 0)
    await site.start()
    host, port = server.sockets[0].getsockname()[:2]
    control_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"proxy listening on {host}:{port} control {control_port}", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", default="{}", help="JSON fault mapping (see the module's docstring)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(_address(args.target), Faults.from_data(json.loads(args.faults)), args.seed,
                          _address(args.listen)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
