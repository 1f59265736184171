"""A webhook receiver for acceptance tests: an aiohttp server on loopback in a thread of its own, as a
storefront would run one: it verifies each request with `standardwebhooks`, records it, and fails a share of
them (500) or answers too late (longer than the daemon's timeout), by a seeded draw."""

from __future__ import annotations

import asyncio
import base64
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from benchmarks.loopback import LoopbackThread

SECRET = "whsec_" + base64.b64encode(b"acceptance-webhook-secret-32byte").decode()


@dataclass
class Seen:
    id: str
    type: str
    body: bytes
    answered: int  # the status we answered (0: we answered too late on purpose)
    data: dict[str, Any] = field(default_factory=dict)


class ReceiverThread(LoopbackThread):
    name = "webhook-receiver"

    def __init__(self, *, fail: float = 0.0, slow: float = 0.0, slow_seconds: float = 2.0, seed: int = 1) -> None:
        super().__init__()
        self.fail = fail
        self.slow = slow
        self.slow_seconds = slow_seconds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self.unverified = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = Webhook(SECRET).verify(body, dict(request.headers))
        except Exception:
            with self._lock:
                self.unverified += 1
            return web.Response(status=400)
        with self._lock:
            draw = self._rng.random()
        status = 500 if draw < self.fail else (0 if draw < self.fail + self.slow else 200)
        seen = Seen(request.headers["webhook-id"], event["type"], body, status, event["data"])
        with self._lock:
            self.seen.append(seen)
        if status == 0:
            await asyncio.sleep(self.slow_seconds)  # the daemon has given up by now: a timeout
            return web.Response(status=200)
        return web.Response(status=status)

    # -- what the test reads -----------------------------------------------------------------------------

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def accepted(self) -> dict[str, list[Seen]]:
        """Requests answered 2xx in time, by event id."""
        out: dict[str, list[Seen]] = defaultdict(list)
        for seen in self.snapshot():
            if seen.answered == 200:
                out[seen.id].append(seen)
        return dict(out)

    def bodies_by_id(self) -> dict[str, set[bytes]]:
        out: dict[str, set[bytes]] = defaultdict(set)
        for seen in self.snapshot():
            out[seen.id].add(seen.body)
        return dict(out)

    def answers(self) -> Counter[int]:
        return Counter(seen.answered for seen in self.snapshot())
