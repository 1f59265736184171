"""A webhook receiver for `make bench --webhook`: aiohttp on loopback in a thread of the bench process, answering
204 at once (as the README's receiver example advises) and counting what it got. It does not verify
signatures (the tests do): it stands for a storefront that is fast, so the figure is the daemon's cost."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from benchmarks.loopback import LoopbackThread

SECRET = "whsec_" + base64.b64encode(b"benchmark-webhook-secret-32bytes").decode()


class Receiver(LoopbackThread):
    name = "bench-receiver"

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.ids: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received += 1
        self.ids.add(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    def notify_section(self) -> dict[str, Any]:
        return {"webhooks": [{"name": "bench", "url": self.url, "secret": SECRET, "events": ["order.*"]}]}
