"""The daemon's HTTP side: order intake and lookup for the storefront, metrics, and supplier callbacks.

Everything but `/healthz`, `/openapi.json` (the API's OpenAPI 3.1 document, `fulfil/openapi.json`) and the
callbacks needs `Authorization: Bearer <token>`, the token taken from the environment variable named by
`http.token_env` (never the YAML); without one those endpoints answer 401.
Callbacks are authenticated by the supplier's own signature, and are only a hint: the engine confirms them
with a query before acting. A shop's push (`POST /sources/{name}/push`, dujiaoka's goods `api_hook`) is accepted
from the source's `push.allow` addresses or with its `push.secret` as `?secret=`, and is only a wake-up for that
source's poller: the order itself is always read from the shop's database.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from fulfil.aftersales import credit_book
from fulfil.aftersales.desk import Desk
from fulfil.aftersales.web import AftersalesApi
from fulfil.clock import Clock, SystemClock
from fulfil.config import Config, PushConfig
from fulfil.engine import Engine
from fulfil.intake import MAX_REF_LENGTH, FieldError, order_from_fields, shown, validate_order
from fulfil.render import order_to_dict
from fulfil.storage import Store
from fulfil.web import Console, PublicFigures, metrics_text
from suppliers import values

if TYPE_CHECKING:
    from fulfil.sources.runner import SourceRunner

log = logging.getLogger("fulfil.admin")

# Every request body (orders and supplier callbacks, a few hundred bytes each): a larger one is answered 413.
MAX_BODY = 64 * 1024
# Paths anyone may ask for: the callbacks carry their supplier's own signature instead of the token.
PUBLIC_PATHS = ("/healthz", "/openapi.json", "/aftersales")
# Paths that carry their own authentication instead of the token: supplier callbacks (a signature), shop pushes
# (an allowed address or the source's secret).
# The buyer's after-sales endpoints carry the buyer's proof (the order's contact) under wrong-proof limits;
# the console (`/console/`) has its own login (fulfil/web/console.py); `/public/` is the storefront figures:
# public on purpose, aggregate numbers only.
PUBLIC_PREFIXES = ("/callbacks/", "/sources/", "/aftersales/", "/console/", "/public/")
# A shop sends one push at most twice (dujiaoka: a retry after its 30 s timeout): one wake-up per order number.
PUSH_DEDUP_SECONDS = 600.0
PUSH_DEDUP_SIZE = 10_000
MAX_ORDER_SN = 150


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@cache
def openapi_document() -> bytes:
    """The hand-written OpenAPI 3.1 document of this API (checked against `AdminServer.app()` by the tests)."""
    return resources.files("fulfil").joinpath("openapi.json").read_bytes()


class AdminServer:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        config: Callable[[], Config],
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        sources: SourceRunner | None = None,
        on_intake: Callable[[], None] | None = None,
        desk: Desk | None = None,
    ) -> None:
        self.store = store
        if desk is None:  # a server on its own (tests): a desk of its own, on the engine's suppliers
            suppliers = engine.suppliers if engine is not None else {}
            desk = Desk(store, config, credit_book(store), suppliers=suppliers, clock=clock or SystemClock())
        self.aftersales = AftersalesApi(store, desk, config)
        self.engine = engine
        self.config = config
        self.sources = sources
        self._pushed: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.clock = clock or SystemClock()
        # Called when an order was taken in: the worker claims it now instead of at its next poll.
        self.on_intake = on_intake
        env = os.environ if environ is None else environ
        self.token = env.get(config().http.token_env, "")
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.figures = PublicFigures(store, config, self.clock)
        self.console = Console(store, config, self.clock, self.figures, desk)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._auth])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/orders", self.add_order)
        app.router.add_get("/orders/{ref}", self.show_order)
        app.router.add_post("/callbacks/{supplier}", self.callback)
        app.router.add_post("/sources/{name}/push", self.source_push)
        self.aftersales.add_routes(app)
        app.router.add_get("/public/products/{sku}/figures", self.figures.json)
        app.router.add_get("/public/products/{sku}/figures.svg", self.figures.svg)
        app.add_subapp("/console/", self.console.app())
        return app

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port))
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else int(port)
        if not self.token:
            log.warning("admin.no_token", extra={"env": self.config().http.token_env})
        log.info("admin.listening", extra={"host": host, "port": self.port})

    async def stop(self) -> None:
        await self.console.slow.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- auth -----------------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if not is_public(request.path):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(401, "missing or wrong bearer token")
        response: web.StreamResponse = await handler(request)
        return response

    # --- handlers -------------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=openapi_document(), content_type="application/json")

    async def metrics(self, request: web.Request) -> web.Response:
        body = await metrics_text(self.store, self.clock.now())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def add_order(self, request: web.Request) -> web.Response:
        try:
            body = values.load_json(await request.read())
        except values.JsonError as exc:
            return _error(400, f"body is not JSON ({exc})")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object with ref, sku, qty, account, amount")
        try:
            order = order_from_fields(body)
        except FieldError as exc:  # missing: the request is malformed; present but wrong: refused
            return _error(400 if exc.missing else 422, str(exc), field=exc.field)
        except ValueError as exc:
            return _error(400, str(exc))
        reasons = validate_order(order, self.config())
        if reasons:
            return _error(422, "; ".join(reasons))
        result = await self.store.add_order(order, self.clock.now())
        if result.status == "conflict":
            return _error(409, f"ref '{order.ref}' already exists with different content")
        code = 201 if result.status == "accepted" else 200
        if result.status == "accepted" and self.on_intake is not None:
            self.on_intake()
        return web.json_response({"ref": order.ref, "result": result.status}, status=code)

    async def show_order(self, request: web.Request) -> web.Response:
        reveal = request.query.get("reveal", "0")
        if reveal not in ("0", "1"):  # `reveal=true` must not quietly mean "masked"
            return _error(400, "reveal must be 0 or 1")
        ref = request.match_info["ref"]
        # A ref intake refuses cannot exist (and a NUL is an error on PostgreSQL, not a miss): not found.
        view = await self.store.get_order(ref) if len(ref) <= MAX_REF_LENGTH and ref.isprintable() else None
        if view is None:
            return _error(404, f"no order '{shown(ref)}'")
        return web.json_response(order_to_dict(view, reveal=reveal == "1"))

    async def callback(self, request: web.Request) -> web.Response:
        name = request.match_info["supplier"]
        supplier = self.engine.suppliers.get(name)
        if supplier is None:
            return _error(404, f"no supplier '{name}'")
        body = await request.read()
        try:
            notice = supplier.parse_callback(body, dict(request.headers))
        except ValueError as exc:
            log.warning("callback.refused", extra={"supplier": name, "why": str(exc)})
            return _error(400, str(exc))
        if notice is None:
            return _error(404, f"supplier '{name}' has no callbacks")
        woke = self.engine.notify(notice.number)
        if not woke:
            await self.store.wake_order(notice.number, self.clock.now())
        log.info(
            "callback.received", extra={"supplier": name, "number": notice.number, "status": notice.status}
        )
        # The protocol wants the plain text `success`, or it sends again.
        return web.Response(text="success")


    async def source_push(self, request: web.Request) -> web.Response:
        """A shop says an order was paid (dujiaoka's api_hook JSON: order_sn, email, ...): wake the source's
        poller. Nothing is recorded from the push itself; the poller reads the order from the shop."""
        name = request.match_info["name"]
        entry = next((s for s in self.config().sources if s.name == name and s.enabled), None)
        if entry is None or entry.push is None or self.sources is None:
            return _error(404, f"no source '{shown(name)}' taking pushes")
        if not _push_allowed(request, entry.push):
            log.warning("source.push_refused", extra={"source": name, "remote": request.remote})
            return _error(403, "push refused: not from an allowed address and no valid secret")
        try:
            body = values.load_json(await request.read())
        except values.JsonError as exc:
            return _error(400, f"body is not JSON ({exc})")
        order_sn = body.get("order_sn") if isinstance(body, dict) else None
        if isinstance(order_sn, int) and not isinstance(order_sn, bool):
            order_sn = str(order_sn)
        if not isinstance(order_sn, str) or not 0 < len(order_sn) <= MAX_ORDER_SN or not order_sn.isprintable():
            return _error(400, "body must be a JSON object with order_sn (the shop's order number)")
        if self._seen_push(name, order_sn):
            return web.json_response({"result": "duplicate"})
        self.sources.wake(name)
        log.info("source.push", extra={"source": name, "ref": order_sn})
        return web.json_response({"result": "accepted"})

    def _seen_push(self, name: str, order_sn: str) -> bool:
        now = time.monotonic()
        while self._pushed and (len(self._pushed) > PUSH_DEDUP_SIZE or next(iter(self._pushed.values())) < now):
            self._pushed.popitem(last=False)
        key = (name, order_sn)
        if key in self._pushed:
            return True
        self._pushed[key] = now + PUSH_DEDUP_SECONDS
        return False


def _push_allowed(request: web.Request, push: PushConfig) -> bool:
    given = request.query.get("secret", "")
    if push.secret and given and hmac.compare_digest(given.encode(), push.secret.encode()):
        return True
    try:
        remote = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(remote in ipaddress.ip_network(allowed, strict=False) for allowed in push.allow)


def _error(status: int, message: str, *, field: str | None = None) -> web.Response:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return web.json_response(body, status=status)
