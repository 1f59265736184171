"""Helpers for the notification tests: routes from a small notify config, a loopback receiver."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fulfil.config import NotifyConfig
from fulfil.notify.events import Routes, build_routes

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def notify_config(url: str = "http://127.0.0.1:9/hook", **changes: Any) -> NotifyConfig:
    data: dict[str, Any] = {
        "webhooks": [{"name": "shop", "url": url, "secret": SECRET, "events": ["order.*"], "retry_schedule": [0, 0.2]}]
    }
    data.update(changes)
    return NotifyConfig.model_validate(data)


def routes(**changes: Any) -> Routes:
    return build_routes(notify_config(**changes))


@dataclass
class Receiver:
    """A loopback HTTP server that records every request and answers what `answer` says."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[web.Request, bytes], Any] | None = None

    def bodies(self) -> list[bytes]:
        return [r["body"] for r in self.requests]


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    got = Receiver()

    async def handle(request: web.Request) -> web.StreamResponse:
        data = await request.read()
        got.requests.append({"path": request.path_qs, "headers": dict(request.headers), "body": data})
        if got.answer is not None:
            result = got.answer(request, data)
            if hasattr(result, "__await__"):
                result = await result
            if result is not None:
                return result  # type: ignore[no-any-return]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    got.url = f"http://127.0.0.1:{port}"
    try:
        yield got
    finally:
        await runner.cleanup()
