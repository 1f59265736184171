"""Storefront figures: `GET /public/products/{sku}/figures` (JSON) and `…/figures.svg` (a badge to embed).

Public on purpose and harmless: per product, over the last 7 days, how many orders ended, the share delivered
with no person involved, and intake-to-delivery p50/p95 — no order, no buyer, no supplier. Computed from the
database by indexed queries at most once a minute per product (a crowd of product pages costs one query set a
minute), served with `Access-Control-Allow-Origin: *` so a shop's page can fetch it. Fewer ended orders than
`figures.min_orders`: `enough_data: false` and no rate or times, rather than a number that means nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from html import escape
from typing import Any

from aiohttp import web

from fulfil import render
from fulfil.clock import Clock
from fulfil.config import Config
from fulfil.storage import Store
from fulfil.storage.store_console import window_start

WINDOW_DAYS = 7
TTL = 60.0
CORS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=60"}


class PublicFigures:
    def __init__(self, store: Store, config: Callable[[], Config], clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def figures(self, sku: str) -> dict[str, Any]:
        """The product's figures, computed at most once per TTL (concurrent askers wait for one computation)."""
        lock = self._locks.setdefault(sku, asyncio.Lock())
        async with lock:
            cached = self._cache.get(sku)
            if cached is not None and time.monotonic() - cached[0] < TTL:
                return cached[1]
            value = await self._compute(sku)
            self._cache[sku] = (time.monotonic(), value)
            return value

    async def _compute(self, sku: str) -> dict[str, Any]:
        now = self.clock.now()
        w = await self.store.window_figures(window_start(now, WINDOW_DAYS), sku=sku, detail=False)
        enough = w.ended >= self.config().figures.min_orders
        return {
            "sku": sku,
            "window_days": WINDOW_DAYS,
            "orders": w.ended,
            "success_rate": round(w.success_rate, 4) if enough and w.success_rate is not None else None,
            "p50_seconds": round(w.p50_seconds, 1) if enough and w.p50_seconds is not None else None,
            "p95_seconds": round(w.p95_seconds, 1) if enough and w.p95_seconds is not None else None,
            "enough_data": enough,
            "updated_at": now.isoformat(),
        }

    # --- HTTP ------------------------------------------------------------------------------------------

    def _sku(self, request: web.Request) -> str:
        sku = request.match_info["sku"]
        if sku not in self.config().products:  # only configured products: nothing to learn by guessing
            raise web.HTTPNotFound(text=f"no product {render_sku(sku)}", headers=CORS)
        return sku

    async def json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.figures(self._sku(request)), headers=CORS)

    async def svg(self, request: web.Request) -> web.Response:
        lang = request.query.get("lang", "en")
        if lang not in ("en", "zh"):
            raise web.HTTPBadRequest(text="lang must be en or zh", headers=CORS)
        body = badge(await self.figures(self._sku(request)), lang)
        return web.Response(text=body, content_type="image/svg+xml", headers=CORS)

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={**CORS, "Access-Control-Allow-Methods": "GET, OPTIONS"})


def render_sku(sku: str) -> str:
    return render.to_json(sku[:64])


def _duration(seconds: float, lang: str) -> str:
    if seconds < 90:
        return f"{seconds:.0f} 秒" if lang == "zh" else f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} 分钟" if lang == "zh" else f"{minutes:.0f} min"


def badge(fig: dict[str, Any], lang: str = "en") -> str:
    """A shields-style two-part badge: what it is, and the figure (or "not enough orders yet")."""
    zh = lang == "zh"
    label = f"近{fig['window_days']}日自动到账" if zh else f"{fig['window_days']}-day auto delivery"
    if fig["enough_data"] and fig["success_rate"] is not None:
        value = f"{fig['success_rate'] * 100:.1f}%"
        if fig["p95_seconds"] is not None:
            p95 = _duration(fig["p95_seconds"], lang)
            value += f" · 95% {p95}内" if zh else f" · 95% within {p95}"
        colour = "#16a34a" if fig["success_rate"] >= 0.95 else "#ca8a04"
    else:
        value, colour = ("订单尚少" if zh else "not enough orders yet"), "#64748b"
    # Width by character count (CJK about twice as wide): no font metrics on the server.
    def width(text: str) -> int:
        return 12 + sum(12 if ord(ch) > 0x2E80 else 7 for ch in text)

    lw, vw = width(label), width(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + vw}" height="20" role="img" '
        f'aria-label="{escape(label)}: {escape(value)}"><title>{escape(label)}: {escape(value)}</title>'
        f'<rect width="{lw}" height="20" fill="#334155"/><rect x="{lw}" width="{vw}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="6" y="14">{escape(label)}</text><text x="{lw + 6}" y="14">{escape(value)}</text></g></svg>'
    )
