"""The operator console at `/console/`: server-rendered pages (Jinja2 through aiohttp-jinja2), Chinese and
English, for support staff and shop owners.

Security, all enforced here on the server:
- named operator accounts (`fulfil operators add|list|disable`), passwords as argon2 hashes;
- a session cookie (HttpOnly, SameSite=Strict, Secure behind TLS or `X-Forwarded-Proto: https`) whose token the
  database keeps only as a SHA-256;
- a CSRF token in every form, checked on every POST (the login form's is a double-submit cookie);
- roles viewer < agent < admin checked by each action (a viewer's forged POST is refused with 403);
- failed logins limited per client address and per account name;
- keys masked on every page; showing one is an agent's or admin's action, recorded as an event.
Every action goes through the Store method the CLI uses, with the operator's name on its event.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from fulfil import render
from fulfil.aftersales import stats
from fulfil.aftersales.desk import Desk
from fulfil.aftersales.model import Action, Level
from fulfil.clock import Clock
from fulfil.config import Config
from fulfil.crypto import mask
from fulfil.domain import OPEN_ATTEMPT_STATES, ClaimStatus, OrderStatus
from fulfil.intake import shown
from fulfil.notes import clean_note
from fulfil.notify.events import mask_contact
from fulfil.stockfile import parse_stock_text, repeated_lines
from fulfil.storage import DuplicateCard, InvalidTransition, NotFound, Store, StoreError
from fulfil.storage.store_console import PAUSE_PREFIX, window_start
from fulfil.storage.store_operators import ROLES, SessionRecord
from fulfil.storage.store_risk import RISK_PREFIX
from fulfil.web import charts, filters, i18n
from fulfil.web.accounts import LoginLimiter, needs_rehash, verify_password
from fulfil.web.cache import Revalidating
from fulfil.web.figures import PublicFigures
from fulfil.web.queues import Queue, aftersales_queue, held_queue, review_queue
from fulfil.web.search import MAX_FIELD, as_int, order_query

log = logging.getLogger("fulfil.console")

COOKIE = "fulfil_console"
PRE_CSRF = "fulfil_login_csrf"
RANK = {role: i for i, role in enumerate(ROLES)}
OVERVIEW_TTL = 15.0  # the overview's figures are read at most this often
# The suppliers' 1 h / 24 h / 7 d windows cost seconds at a million orders: recomputed at most once a minute.
SUPPLIERS_TTL = 60.0
PAGE_SIZE = 50
MAX_CARDS_TEXT = 64 * 1024

# Per-request storage: the language, the session (None on the login page), the checked form, a login page's token.
LANG = web.RequestKey("lang", str)
SESSION: web.RequestKey[SessionRecord | None] = web.RequestKey("session", object)  # type: ignore[arg-type]
FORM: web.RequestKey[MultiDictProxy[Any]] = web.RequestKey("form", MultiDictProxy)
PRE = web.RequestKey("pre_csrf", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


Method = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


def requires(role: str) -> Callable[[Method], Method]:
    """The handler runs only for an operator of at least `role`; anyone else gets 403 (and nothing happens)."""

    def wrap(method: Method) -> Method:
        @functools.wraps(method)
        async def checked(self: Any, request: web.Request) -> web.StreamResponse:
            session = request[SESSION]
            assert session is not None  # the middleware lets no one without a session this far
            if RANK[session.operator.role] < RANK[role]:
                log.warning(
                    "console.forbidden",
                    extra={"operator": session.operator.name, "role": session.operator.role, "path": request.path},
                )
                raise web.HTTPForbidden(text=f"this needs the {role} role")
            return await method(self, request)

        return checked

    return wrap


class Console:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        clock: Clock,
        figures: PublicFigures,
        desk: Desk | None = None,
    ) -> None:
        self.store = store
        self.desk = desk  # after-sales actions go through it, as `fulfil aftersales act` does
        self.config = config
        self.clock = clock
        self.figures = figures
        cfg = config().console
        self.limiter = LoginLimiter(cfg.login_attempts, cfg.login_window)
        # Window aggregates (overview, suppliers, ledger) are recomputed in the background at most this often.
        self.slow = Revalidating(OVERVIEW_TTL)
        # The queues page shows these, in order.
        self.work_queues: list[Queue] = [held_queue(store), review_queue(store)]
        if desk is not None:
            self.work_queues += [aftersales_queue(store, Level.L2), aftersales_queue(store, Level.L3)]
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("fulfil.web", "templates"), autoescape=True
        )

    def render(
        self, name: str, request: web.Request, context: dict[str, Any], *, status: int = 200
    ) -> web.Response:
        """One template per page, around the shared layout; what every page needs comes from `_context`."""
        text = self.env.get_template(name).render({**self._context(request), **context})
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    # --- the application -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._session])
        env = self.env
        env.filters.update(contact=mask_contact, key=mask, money=filters.money, when=filters.when)
        env.filters.update(ago=filters.ago, pct=filters.pct, secs=filters.secs)
        r = app.router
        r.add_get("/", self.overview)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_post("/lang", self.set_lang)
        r.add_get("/orders", self.orders)
        r.add_get("/orders/{ref}", self.order)
        r.add_post("/orders/{ref}/retry", self.retry)
        r.add_post("/orders/{ref}/refund", self.refund)
        r.add_post("/orders/{ref}/hold", self.hold)
        r.add_post("/orders/{ref}/resolve", self.resolve)
        r.add_post("/orders/{ref}/deliver", self.deliver_keys)
        r.add_post("/orders/{ref}/release", self.release)
        r.add_post("/orders/{ref}/refuse", self.refuse)
        r.add_post("/orders/{ref}/reveal", self.reveal)
        r.add_post("/cases/{case_no}/{action}", self.act_on_case)
        r.add_get("/queues", self.queues)
        r.add_get("/suppliers", self.suppliers)
        r.add_post("/suppliers/{name}/pause", self.pause)
        r.add_post("/suppliers/{name}/resume", self.resume)
        r.add_get("/claims", self.claims)
        r.add_get("/claims.csv", self.claims_csv)
        r.add_get("/webhooks", self.webhooks)
        r.add_post("/webhooks/replay", self.replay)
        r.add_static("/static", str(_static_dir()))
        return app

    def _context(self, request: web.Request) -> dict[str, Any]:
        lang = request.get(LANG, "en")
        session: SessionRecord | None = request.get(SESSION)
        return {
            "_": i18n.translator(lang),
            "lang": lang,
            "me": session.operator if session else None,
            "csrf": session.csrf if session else request.get(PRE, ""),
            "can_act": session is not None and RANK[session.operator.role] >= RANK["agent"],
            "is_admin": session is not None and session.operator.role == "admin",
            "path": request.path,
            "now": self.clock.now(),
        }

    @web.middleware
    async def _session(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[LANG] = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language"))
        public = request.path in ("/console/login", "/console/lang") or request.path.startswith("/console/static/")
        token = request.cookies.get(COOKIE, "")
        session = await self.store.session(_token_hash(token), self.clock.now()) if token else None
        if session is None and not public:
            if request.method == "GET":
                raise web.HTTPFound("/console/login")
            raise web.HTTPForbidden(text="not logged in")
        request[SESSION] = session
        if request.method == "POST":
            form = await request.post()
            given = str(form.get("csrf", ""))
            expected = session.csrf if session is not None else request.cookies.get(PRE_CSRF, "")
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning("console.csrf_refused", extra={"path": request.path})
                raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
            request[FORM] = form
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        )
        return response

    def _operator(self, request: web.Request) -> str:
        session = request[SESSION]
        assert session is not None
        return session.operator.name

    # --- login -----------------------------------------------------------------------------------------

    async def login_page(self, request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
        pre = secrets.token_urlsafe(24)
        request[PRE] = pre
        response = self.render("login.html", request, {"error": error}, status=status)
        response.set_cookie(PRE_CSRF, pre, httponly=True, samesite="Strict", secure=_secure(request), path="/console")
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = request[FORM]
        name = str(form.get("name", "")).strip()[:64]
        password = str(form.get("password", ""))
        keys = [f"ip:{request.remote}", f"name:{name.lower()}"]
        _ = i18n.translator(request[LANG])
        if self.limiter.blocked(keys):
            log.warning("console.login_limited", extra={"operator": name, "remote": request.remote})
            return await self.login_page(request, _("Too many failed logins; wait a few minutes."), 429)
        found = await self.store.get_operator(name) if name else None
        ok = verify_password(found.password_hash if found else None, password)
        if found is None or not ok or not found.active:
            self.limiter.failed(keys)
            log.warning("console.login_failed", extra={"operator": name, "remote": request.remote})
            return await self.login_page(request, _("Wrong name or password."), 401)
        self.limiter.succeeded(keys)
        if needs_rehash(found.password_hash):
            from fulfil.web.accounts import hash_password

            await self.store.set_operator_password(found.name, hash_password(password))
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self.clock.now()
        ttl = self.config().console.session_ttl
        await self.store.open_session(_token_hash(token), found.name, csrf, now + timedelta(seconds=ttl), now)
        log.info("console.login", extra={"operator": found.name, "role": found.role})
        response = web.HTTPFound("/console/")
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", secure=_secure(request), path="/console", max_age=int(ttl)
        )
        response.del_cookie(PRE_CSRF, path="/console")
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE, "")
        if token:
            await self.store.close_session(_token_hash(token))
        response = web.HTTPFound("/console/login")
        response.del_cookie(COOKIE, path="/console")
        raise response

    async def set_lang(self, request: web.Request) -> web.StreamResponse:
        lang = str(request[FORM].get("lang", ""))
        back = str(request[FORM].get("back", "/console/"))
        if not back.startswith("/console/") or "//" in back:
            back = "/console/"
        response = web.HTTPFound(back)
        if lang in i18n.LANGUAGES:
            response.set_cookie(
                i18n.COOKIE, lang, samesite="Strict", secure=_secure(request), path="/console", max_age=365 * 86400
            )
        raise response

    # --- pages -----------------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        data = dict(await self.slow.get("overview", self._overview_data))
        _ = i18n.translator(request[LANG])
        days = data["days"]
        data["chart"] = charts.bars(
            [d[5:] for d, _m, _d in days],
            [
                (_("taken in"), "#94a3b8", [m for _d, m, _x in days]),
                (_("delivered"), "#16a34a", [x for *_r, x in days]),
            ],
            title=_("Orders per day"),
        )
        return self.render("overview.html", request, data)

    async def _overview_data(self) -> dict[str, Any]:
        now = self.clock.now()
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        windows = {
            "today": await self.store.window_figures(today),
            "7d": await self.store.window_figures(window_start(now, 7)),
        }
        backlog = await self.store.backlog(now)
        review_limit = self.config().notify.alert_rules.review_age
        health = await self.store.supplier_snapshot()
        alerts: list[dict[str, Any]] = []
        for row in health:
            if row["breaker"] == "open" and (row["opened_until"] is None or row["opened_until"] > now):
                alerts.append({"kind": "breaker_open", "subject": row["supplier"], "at": row["updated_at"]})
            if (row["detail"] or {}).get("balance_low"):
                alerts.append({"kind": "balance_low", "subject": row["supplier"], "at": row["balance_at"]})
        if review_limit and backlog.oldest_review and (now - backlog.oldest_review).total_seconds() > review_limit:
            alerts.append({"kind": "review_overdue", "subject": "review", "at": backlog.oldest_review})
        for key, at in await self.store.recent_alerts(now - timedelta(hours=1)):
            kind, _, subject = key.partition(":")
            alerts.append({"kind": kind, "subject": subject, "at": at})
        # Cases opened in each window over the original orders delivered in it (reissues are not sales).
        aftersales = {
            key: stats.aftersales_rate(await self.store.case_figures(since, now), windows[key].delivered)
            for key, since in (("today", today), ("7d", window_start(now, 7)))
        }
        return {
            "windows": windows,
            "aftersales": aftersales,
            "case_queues": await self.store.case_queue_depth(),
            "backlog": backlog,
            "review_limit": review_limit,
            "alerts": alerts,
            "days": await self.store.daily_counts(window_start(today, 13)),
        }

    async def orders(self, request: web.Request) -> web.Response:
        q, problems, notes = order_query(request, self.clock.now())
        before = as_int(request.query.get("before"))
        hits = await self.store.search_orders(q, before=before, limit=PAGE_SIZE + 1) if not problems else []
        more = len(hits) > PAGE_SIZE
        hits = hits[:PAGE_SIZE]
        params = {k: v for k, v in request.query.items() if k != "before" and v}
        ctx = {
            "hits": hits,
            "q": request.query,
            "problems": problems,
            "notes": notes,
            "more": more,
            "next_before": hits[-1].id if more and hits else None,
            "params": params,
            "statuses": [s.value for s in OrderStatus],
            "skus": sorted(self.config().products),
        }
        return self.render("orders.html", request, ctx, status=400 if problems else 200)

    async def order(
        self, request: web.Request, revealed: bool = False, problems: list[str] | None = None
    ) -> web.Response:
        ref = request.match_info["ref"]
        view = await self.store.get_order(ref) if len(ref) <= 128 and ref.isprintable() else None
        if view is None:
            raise web.HTTPNotFound(text=f"no order {shown(ref)}")
        detail = await self.store.order_detail(view)
        status = view.order.status
        actions = []
        held_by_risk = (view.order.reason or "").startswith(RISK_PREFIX)
        if status is OrderStatus.REVIEW and held_by_risk:
            actions = ["release", "refuse"]
        elif status is OrderStatus.REVIEW:
            actions = ["retry", "refund"] + (["resolve"] if any(h["released_at"] is None for h in detail.held) else [])
        elif status is OrderStatus.PENDING and view.order.reissue_of is None and not any(
            a.state in OPEN_ATTEMPT_STATES for a in view.attempts
        ):
            actions = ["hold"]  # to review: a person decides (waiting out an outage, a buyer who cancelled)
        timeline = filters.timeline(detail)
        ctx = {
            "cases": await self.store.list_cases(order_id=view.order.id, limit=100),
            "reissues": await self.store.reissue_children(view.order.id),
            "view": view,
            "order": view.order,
            "detail": detail,
            "contact": mask_contact(detail.contact),
            "timeline": timeline,
            "actions": actions,
            "revealed": revealed,
            "problems": problems or [],
        }
        return self.render("order.html", request, ctx, status=422 if problems else 200)

    async def queues(self, request: web.Request) -> web.Response:
        now = self.clock.now()
        config = self.config()
        shown = []
        for queue in self.work_queues:
            limit = queue.limit(config)
            items = []
            for item in await queue.items():
                waited = (now - item.since).total_seconds()
                left = (item.due - now).total_seconds() if item.due else (limit - waited) if limit else None
                items.append({"item": item, "waited": waited, "left": left})
            shown.append({"name": queue.name, "title": queue.title, "limit": limit, "items": items,
                          "actions": queue.actions, "target": queue.target})
        return self.render("queues.html", request, {"queues": shown})

    async def suppliers(self, request: web.Request) -> web.Response:
        _ = i18n.translator(request[LANG])
        data = await self.slow.get("suppliers", self._suppliers_data, SUPPLIERS_TTL)
        rows = []
        for row in data["rows"]:
            by_hour = data["series"].get(row["name"], {})
            hours = data["hours"]
            rows.append({
                **row,
                "success_chart": charts.line(
                    [by_hour[h][1] / by_hour[h][0] if h in by_hour and by_hour[h][0] else None for h in hours],
                    title=_("success rate, last 24 h"), ceiling=1.0, colour="#16a34a",
                ),
                "latency_chart": charts.line(
                    [by_hour[h][2] if h in by_hour else None for h in hours],
                    title=_("mean latency, last 24 h"), unit="s",
                ),
            })
        return self.render("suppliers.html", request, {"rows": rows})

    async def _suppliers_data(self) -> dict[str, Any]:
        from fulfil.cli.suppliers_cmd import supplier_rows

        now = self.clock.now()
        config = self.config()
        rows = await supplier_rows(self.store, config, now)
        series = await self.store.supplier_series(now - timedelta(hours=24))
        hours = [(now - timedelta(hours=23 - i)).replace(minute=0, second=0, microsecond=0) for i in range(24)]
        fig = await self.store.window_figures(window_start(now, 7))
        for row in rows:
            claims_n = fig.claims_by_supplier.get(row["name"], 0)
            row["claims_7d"] = claims_n
            row["claims_share"] = claims_n / fig.claims if fig.claims else None
            row["paused"] = {c["product_id"] for c in row["cooldowns"] if str(c["reason"]).startswith(PAUSE_PREFIX)}
        by_supplier = {
            name: {h: (calls, ok, lat) for h, calls, ok, lat in points} for name, points in series.items()
        }
        return {"rows": rows, "series": by_supplier, "hours": hours}

    async def claims(self, request: web.Request) -> web.Response:
        days = max(1, min(as_int(request.query.get("days")) or 14, 90))
        since = window_start(self.clock.now(), days)
        ledger = await self.slow.get(("ledger", days), lambda: self.store.ledger_by_day(since), SUPPLIERS_TTL)
        open_claims = await self.store.latest_claims(ClaimStatus.OPEN.value)
        return self.render(
            "claims.html", request, {"ledger": ledger, "days": days, "open_claims": open_claims}
        )

    @requires("agent")
    async def claims_csv(self, request: web.Request) -> web.StreamResponse:
        import io

        days = max(1, min(as_int(request.query.get("days")) or 14, 90))
        found = await self.store.list_claims(since=window_start(self.clock.now(), days))
        buffer = io.StringIO()
        render.write_claims_csv(found, buffer, evidence=True)
        response = web.Response(text=buffer.getvalue(), content_type="text/csv", charset="utf-8")
        response.headers["Content-Disposition"] = f'attachment; filename="claims-{days}d.csv"'
        return response

    async def webhooks(self, request: web.Request) -> web.Response:
        counts = await self.store.outbox_counts()
        disabled = await self.store.disabled_endpoints()
        failed = await self.store.outbox_rows(failed=True, limit=100)
        configured = [w.name for w in self.config().notify.webhooks]
        ctx = {"counts": counts, "disabled": disabled, "failed": failed, "configured": configured}
        return self.render("webhooks.html", request, ctx)

    # --- actions ---------------------------------------------------------------------------------------

    async def _act(self, request: web.Request, what: str, action: Callable[[], Awaitable[Any]]) -> web.StreamResponse:
        ref = request.match_info["ref"]
        operator = self._operator(request)
        try:
            await action()
        except (NotFound, InvalidTransition) as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        except StoreError as exc:
            raise web.HTTPConflict(text=f"{what} not done: {exc}") from None
        log.info(f"console.{what}", extra={"ref": ref, "operator": operator})
        self.slow.clear()
        raise web.HTTPSeeOther(f"/console/orders/{_quote(ref)}")

    @requires("agent")
    async def retry(self, request: web.Request) -> web.StreamResponse:
        ref, who = request.match_info["ref"], self._operator(request)
        return await self._act(request, "retry", lambda: self.store.review_retry(ref, who, self.clock.now()))

    @requires("agent")
    async def refund(self, request: web.Request) -> web.StreamResponse:
        ref, who = request.match_info["ref"], self._operator(request)
        return await self._act(request, "refund", lambda: self.store.review_refund(ref, who, self.clock.now()))

    @requires("agent")
    async def hold(self, request: web.Request) -> web.StreamResponse:
        """A pending order to review (the CLI's `review hold`): no more purchases until a person decides."""
        ref, who, note = request.match_info["ref"], self._operator(request), _form_note(request)
        return await self._act(request, "hold", lambda: self.store.review_hold(ref, who, self.clock.now(), note))

    @requires("agent")
    async def release(self, request: web.Request) -> web.StreamResponse:
        """Let an order risk held through (the CLI's `review release`): it is fulfilled as any other."""
        ref, who = request.match_info["ref"], self._operator(request)
        return await self._act(request, "release", lambda: self.store.review_release(ref, who, self.clock.now()))

    @requires("agent")
    async def refuse(self, request: web.Request) -> web.StreamResponse:
        """Refuse an order risk held (the CLI's `review refuse`): failed, refundable; the buyer's credit drops."""
        ref, who = request.match_info["ref"], self._operator(request)
        return await self._act(request, "refuse", lambda: self.store.review_refuse(ref, who, self.clock.now()))

    @requires("agent")
    async def resolve(self, request: web.Request) -> web.StreamResponse:
        """Deliver the order from the keys held for it (the CLI's `review resolve --from-held`)."""
        ref, who = request.match_info["ref"], self._operator(request)

        async def run() -> Any:
            return await self.store.review_resolve_from_held(ref, None, who, self.clock.now())

        return await self._act(request, "resolve", run)

    @requires("agent")
    async def deliver_keys(self, request: web.Request) -> web.StreamResponse:
        """Deliver keys found by hand (the CLI's `review resolve --cards`): exactly qty well-formed, new keys, or
        nothing is written and the page says which lines are wrong (never quoting a key)."""
        ref, who = request.match_info["ref"], self._operator(request)
        view = await self.store.get_order(ref)
        if view is None:
            raise web.HTTPNotFound(text="no such order")
        text = str(request[FORM].get("cards", ""))[:MAX_CARDS_TEXT]
        product = self.config().products.get(view.order.sku)
        patterns = (product.card_pattern, product.number_pattern) if product else (None, None)
        parsed = parse_stock_text(text, *patterns)
        problems = [f"line {line}: {reason}" for line, reason in parsed.invalid]
        problems += [f"line {line}: same key as line {first}" for line, first in repeated_lines(parsed)]
        if not problems and len(parsed.cards) != view.order.qty:
            problems.append(f"the order is for {view.order.qty} key(s), {len(parsed.cards)} given")
        if not problems:
            try:
                await self.store.review_resolve(ref, parsed.cards, who, self.clock.now())
            except DuplicateCard:
                problems.append("a key given was already delivered to an order")
            except (NotFound, InvalidTransition) as exc:
                raise web.HTTPConflict(text=str(exc)) from None
        if problems:
            return await self.order(request, problems=problems)
        log.info("console.resolve", extra={"ref": ref, "operator": who, "qty": view.order.qty})
        self.slow.clear()
        raise web.HTTPSeeOther(f"/console/orders/{_quote(ref)}")

    @requires("agent")
    async def act_on_case(self, request: web.Request) -> web.StreamResponse:
        """One click on an after-sales case (the CLI's `aftersales act CASE ACTION [--note]`), through the desk:
        a reject costs the buyer credit, a reissue wakes the worker, the event names the operator."""
        case_no, what = request.match_info["case_no"], request.match_info["action"]
        if what not in {a.value for a in Action}:
            raise web.HTTPNotFound(text=f"no action {shown(what)}: one of {', '.join(a.value for a in Action)}")
        if self.desk is None:
            raise web.HTTPNotFound(text="after-sales is not served here")
        note = _form_note(request)
        who = self._operator(request)
        try:
            case = await self.desk.act(case_no, Action(what), note, who)
        except (NotFound, InvalidTransition) as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        except StoreError as exc:
            raise web.HTTPConflict(text=f"{what} not done: {exc}") from None
        log.info("console.aftersales", extra={"case": case_no, "action": what, "operator": who})
        self.slow.clear()
        raise web.HTTPSeeOther(f"/console/orders/{_quote(case.order_ref)}#case-{_quote(case_no)}")

    @requires("agent")
    async def reveal(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        view = await self.store.get_order(ref)
        if view is None:
            raise web.HTTPNotFound(text="no such order")
        operator = self._operator(request)
        await self.store.record_reveal(view.order.id, operator, self.clock.now())
        log.info("console.reveal", extra={"ref": ref, "operator": operator})
        return await self.order(request, revealed=True)

    @requires("admin")
    async def pause(self, request: web.Request) -> web.StreamResponse:
        name, product_id = request.match_info["name"], str(request[FORM].get("product_id", ""))[:MAX_FIELD]
        if not product_id:
            raise web.HTTPBadRequest(text="product_id is missing")
        who = self._operator(request)
        await self.store.pause_offer(name, product_id, who, self.clock.now())
        self.slow.clear()
        log.info("console.pause", extra={"supplier": name, "product_id": product_id, "operator": who})
        raise web.HTTPSeeOther("/console/suppliers")

    @requires("admin")
    async def resume(self, request: web.Request) -> web.StreamResponse:
        name, product_id = request.match_info["name"], str(request[FORM].get("product_id", ""))[:MAX_FIELD]
        who = self._operator(request)
        await self.store.resume_offer(name, product_id, who, self.clock.now())
        self.slow.clear()
        log.info("console.resume", extra={"supplier": name, "product_id": product_id, "operator": who})
        raise web.HTTPSeeOther("/console/suppliers")

    @requires("admin")
    async def replay(self, request: web.Request) -> web.StreamResponse:
        ids = [i for i in (as_int(v) for v in request[FORM].getall("id", [])) if i is not None]
        if not ids:
            raise web.HTTPBadRequest(text="no delivery chosen (id)")
        n = await self.store.replay_outbox(self.clock.now(), ids=ids)
        await self.store.record_event("webhooks.replayed", self.clock.now(), operator=self._operator(request),
                                      data={"ids": ids, "rows": n})
        raise web.HTTPSeeOther("/console/webhooks")


# --- helpers ---------------------------------------------------------------------------------------------


def _static_dir() -> Any:
    from importlib import resources

    return resources.files("fulfil.web").joinpath("static")


def _form_note(request: web.Request) -> str | None:
    """The action's optional `note` field (fulfil.notes): 400 naming what is wrong."""
    try:
        return clean_note(str(request[FORM].get("note", "")))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _quote(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


