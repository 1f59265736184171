"""A webhook receiver for `make bench --webhook`: aiohttp on loopback in a thread of the bench process, answering
204 at once (as the README's receiver example advises) and counting what it got. It does not verify
signatures (the tests do): it stands for a storefront that is fast, so the figure is the daemon's cost."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

from aiohttp import web

SECRET = "whsec_" + base64.b64encode(b"benchmark-webhook-secret-32bytes").decode()


class Receiver:
    def __init__(self) -> None:
        self.received = 0
        self.ids: set[str] = set()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="bench-receiver", daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def __exit__(self, *_: Any) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received += 1
        self.ids.add(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    def notify_section(self) -> dict[str, Any]:
        return {"webhooks": [{"name": "bench", "url": self.url, "secret": SECRET, "events": ["order.*"]}]}
