"""The buyer's after-sales endpoints, public (no bearer token: a storefront may proxy them) and guarded by the
proof and the wrong-proof limits instead:

- `POST /aftersales` `{ref, proof, problem, keys?, text?, attachments?}` -> 201 a new case, 200 the open case
  the report repeats;
- `GET /aftersales/{case_no}?proof=...` -> the case as the buyer sees it (with the new keys once reissued);
- `GET /aftersales/options/{ref}?proof=...` -> what the buyer can do now, the automatic reissue first.

An unknown order (or case) and a wrong proof get the same 404 answer, and the eleventh wrong proof within a
minute from one address or for one ref gets 429 before the proof is even looked at.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fulfil.aftersales.desk import Desk
from fulfil.aftersales.l1 import decide
from fulfil.aftersales.model import Problem, Report, Step, buyer_view
from fulfil.aftersales.proof import MAX_PROOF, Guard, proof_matches
from fulfil.config import Config
from fulfil.crypto import mask
from fulfil.intake import MAX_REF_LENGTH
from fulfil.storage import Store
from suppliers import values

log = logging.getLogger("fulfil.aftersales")

NOT_FOUND = "no order or case with this reference and proof"
MAX_KEYS = 50
MAX_KEY = 256
MAX_TEXT = 2000
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT = 500


class BadReport(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def parse_report(body: Any) -> tuple[str, str, Report]:
    """(ref, proof, report) from a request body; BadReport naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadReport("body must be a JSON object with ref, proof and problem", "body")
    ref = _text(body, "ref", MAX_REF_LENGTH, required=True)
    proof = _text(body, "proof", MAX_PROOF, required=True)
    problem = body.get("problem")
    if not isinstance(problem, str) or problem not in {p.value for p in Problem}:
        raise BadReport(f"problem must be one of {', '.join(p.value for p in Problem)}", "problem")
    keys = _strings(body, "keys", MAX_KEYS, MAX_KEY)
    attachments = _strings(body, "attachments", MAX_ATTACHMENTS, MAX_ATTACHMENT)
    text = _text(body, "text", MAX_TEXT, required=False)
    if problem == Problem.KEY_INVALID and not keys:
        raise BadReport("key_invalid needs keys: the keys that do not work", "keys")
    if problem == Problem.OTHER and not text:
        raise BadReport("other needs text: what is wrong", "text")
    unknown = set(body) - {"ref", "proof", "problem", "keys", "text", "attachments"}
    if unknown:
        raise BadReport(f"unknown field(s): {', '.join(sorted(unknown))[:200]}", "body")
    return ref or "", proof or "", Report(Problem(problem), tuple(keys), text or None, tuple(attachments))


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadReport(f"{name} must be a non-empty string", name)
    if len(value) > limit or not _storable(value):
        raise BadReport(f"{name} must be at most {limit} characters of text (no NUL, valid UTF-8)", name)
    return value


def _storable(value: str) -> bool:
    """No NUL (PostgreSQL refuses it) and no lone surrogate (not UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(body: dict[str, Any], name: str, count: int, limit: int) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > count:
        raise BadReport(f"{name} must be a list of at most {count} strings", name)
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > limit or not _storable(item):
            raise BadReport(f"each of {name} must be a non-empty string of at most {limit} characters", name)
    return list(value)


class AftersalesApi:
    def __init__(self, store: Store, desk: Desk, config: Callable[[], Config]) -> None:
        self.store = store
        self.desk = desk
        self.config = config
        self._limit = config().aftersales.rate_limit
        self._guard = Guard(self._limit.tries, self._limit.per)

    @property
    def guard(self) -> Guard:
        """The wrong-proof limits; new ones (counters reset) when a reload (SIGHUP) changed them."""
        limit = self.config().aftersales.rate_limit
        if (limit.tries, limit.per) != (self._limit.tries, self._limit.per):
            self._limit, self._guard = limit, Guard(limit.tries, limit.per)
        return self._guard

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/aftersales", self.post_report)
        app.router.add_get("/aftersales/options/{ref}", self.options)
        app.router.add_get("/aftersales/{case_no}", self.show_case)

    async def post_report(self, request: web.Request) -> web.Response:
        try:
            body = values.load_json(await request.read())
        except values.JsonError as exc:
            return _error(400, f"body is not JSON ({exc})")
        try:
            ref, proof, report = parse_report(body)
        except BadReport as exc:
            return _error(400 if exc.field in ("body", "ref", "proof", "problem") else 422, str(exc), exc.field)
        refused = self._refused(request, ref)
        if refused is not None:
            return refused
        found = await self._order(request, ref, proof)
        if found is None:
            return _error(404, NOT_FOUND)
        order_id, sku = found
        opened = await self.desk.report(order_id, sku, report, reporter="buyer")
        return web.json_response(buyer_view(opened.case), status=201 if opened.created else 200)

    async def show_case(self, request: web.Request) -> web.Response:
        case_no = request.match_info["case_no"]
        proof = request.query.get("proof", "")
        refused = self._refused(request, case_no)
        if refused is not None:
            return refused
        case = await self.store.get_case(case_no) if len(case_no) <= 32 and case_no.isprintable() else None
        found = await self._order(request, case.order_ref if case else "", proof, key=case_no, known=case is not None)
        if case is None or found is None:
            return _error(404, NOT_FOUND)
        out = buyer_view(case)
        if case.reissue_refs:
            # The buyer proved the order is theirs: the replacement keys, as the order's own lookup shows them.
            keys: list[str] = []
            for ref in case.reissue_refs:
                view = await self.store.get_order(ref)
                if view is not None and str(view.order.status) == "delivered":
                    keys += [card.password for card in view.cards]
            out["keys"] = keys
        return web.json_response(out)

    async def options(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        proof = request.query.get("proof", "")
        refused = self._refused(request, ref)
        if refused is not None:
            return refused
        found = await self._order(request, ref, proof)
        if found is None:
            return _error(404, NOT_FOUND)
        order_id, sku = found
        return web.json_response(await self._options(order_id, ref, sku))

    async def _options(self, order_id: int, ref: str, sku: str) -> dict[str, Any]:
        config = self.config()
        product = config.products.get(sku)
        kind = product.kind if product else None
        credit = await self.desk.credit.order_credit(order_id)
        keys = await self.store.order_passwords(order_id)
        now = self.desk.clock.now()
        options: list[dict[str, Any]] = []
        if kind == "card" and keys:
            report = Report(Problem.KEY_INVALID, tuple(keys))
            facts = await self.store.case_facts(order_id, report, credit=credit, product_kind=kind)
            automatic = decide(facts, config.aftersales, now).step is Step.REISSUE
            options.append(
                {
                    "problem": Problem.KEY_INVALID.value,
                    "action": "reissue" if automatic else "report",
                    "automatic": automatic,
                    "keys": [mask(key) for key in keys],
                }
            )
        options.append(
            {"problem": Problem.NOT_RECEIVED.value, "action": "resend", "automatic": config.aftersales.l1.enabled}
        )
        if kind == "direct":
            options.append({"problem": Problem.TOPUP_NOT_ARRIVED.value, "action": "check", "automatic": True})
        options.append({"problem": Problem.OTHER.value, "action": "report", "automatic": False})
        options.sort(key=lambda o: not o["automatic"])  # the automatic ones first, the reissue leading
        cases = await self.store.list_cases(order_id=order_id)
        return {"ref": ref, "options": options, "cases": [buyer_view(case) for case in cases]}

    # --- the guard ------------------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> str:
        return _caller(request, self.config().aftersales.rate_limit.trusted_proxies)

    def _refused(self, request: web.Request, key: str) -> web.Response | None:
        if self.guard.refused(self._caller(request), key):
            log.warning("aftersales.rate_limited", extra={"remote": self._caller(request)})
            response = _error(429, "too many wrong proofs: try again later")
            response.headers["Retry-After"] = str(int(self.config().aftersales.rate_limit.per))
            return response
        return None

    async def _order(
        self, request: web.Request, ref: str, proof: str, *, key: str | None = None, known: bool = True
    ) -> tuple[int, str] | None:
        """The order if `proof` is its buyer's; a wrong proof (or unknown order) counts against the caller."""
        # A ref intake refuses cannot exist (and a NUL is an error on PostgreSQL, not a miss): not found.
        lookup = known and 0 < len(ref) <= MAX_REF_LENGTH and ref.isprintable() and _storable(ref)
        found = await self.store.order_for_proof(ref) if lookup else None
        contact = found[2] if found is not None else None
        ok = proof_matches(proof[:MAX_PROOF], contact)  # compared even for an unknown order: same time
        if not ok or found is None:
            self.guard.wrong(self._caller(request), key or ref)
            log.info("aftersales.wrong_proof", extra={"remote": self._caller(request)})
            return None
        return found[0], found[1]


def _caller(request: web.Request, trusted: tuple[str, ...] = ()) -> str:
    """The caller's address; behind a trusted proxy, the last address it put in X-Forwarded-For."""
    remote = request.remote or "-"
    if trusted and _within(remote, trusted):
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if forwarded:
            return forwarded[:64]
    return remote


def _within(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return web.json_response(body, status=status)
