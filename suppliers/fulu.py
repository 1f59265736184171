"""Fulu open platform v2 (福禄开放平台) as a supplier.

The protocol is in /work/shared/protocols/fulu-v2.md; signing, card encryption and the code table live in
`suppliers.fulu_codec`. What shapes this adapter:

- `*.add` answering code 0 only means *accepted*: `place` returns PENDING and the engine polls `query`.
- 4010 on `place` (customer_order_no already exists) is a repeat of an attempt the supplier already holds,
  refused without a second charge: also PENDING, so the engine queries the same number.
- An answer is trusted only when its `sign` verifies over `result`; a bad or missing sign, an HTML page or a
  truncated body is AMBIGUOUS (the purchase may exist: query before anything else).
- On `query`, the answer is about the *query*; the purchase's fate is unknown unless the order object says
  so. So every failed query is an ERROR that is TRANSIENT or AMBIGUOUS ("ask again"), never a class that
  would let the engine fail over while the first purchase may exist. 4011 is NOT_FOUND.
- A `failed` order is confirmed not charged. Its class comes from the failure text: insufficient balance is
  the supplier account; a rejected recharge account (direct top-ups) is the buyer's; anything else is
  PRODUCT_UNAVAILABLE, i.e. fail over now and cool this offer down, which is safe because nothing was charged.

Evidence keeps the raw code and message and what was sent; never the app secret, the signature, or a card
field (cipher or plain).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import aiohttp
import httpx

from suppliers import fulu_codec as codec
from suppliers import values
from suppliers.base import Balance, CallbackNotice, PlaceRequest, StockCheck, Supplier
from suppliers.http import (
    HttpSettings,
    classify_exception,
    classify_status,
    describe_exception,
    make_client,
    parsed_url,
    post,
)
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome, SupplierError

logger = logging.getLogger(__name__)

MAX_ORDER_NO: Final = 50
_REDACTED: Final = "<redacted>"
_EXCERPT: Final = 2000
_CARD_FIELDS: Final = frozenset({"card_number", "card_pwd"})

STOCK_LEVELS: Final[Mapping[str, StockCheck]] = {
    "断货": StockCheck(available=False, level="empty"),
    "警报": StockCheck(available=True, level="low"),
    "充足": StockCheck(available=True, level="plenty"),
}

# Failure texts of a `failed` order, matched as substrings (lower-cased). No dedicated codes exist for them.
BALANCE_TEXTS: Final = ("余额不足", "insufficient balance", "insufficient funds", "balance not enough")
ACCOUNT_TEXTS: Final = (
    "账号不存在",
    "账号错误",
    "账号有误",
    "账号无效",
    "账号异常",
    "黑名单",
    "invalid account",
    "account does not exist",
    "blacklist",
)

_PENDING_STATES: Final = frozenset({"processing", "untreated"})


class CallbackError(SupplierError, ValueError):
    """A Fulu callback could not be read (not a JSON object, or missing fields).

    Also a ValueError: the admin server answers any ValueError from `parse_callback` with 400.
    """


class CallbackSignatureError(CallbackError):
    """A Fulu callback's signature does not verify: it must not be acted on."""


class _Untrusted(Exception):
    """Internal: the call failed or its answer cannot be trusted; carries the class and evidence."""

    def __init__(self, error: ErrorClass, evidence: Evidence) -> None:
        super().__init__(error.value)
        self.error = error
        self.evidence = evidence


@dataclass(frozen=True)
class _Reply:
    """A signed, verified answer: `result` is the parsed `result` string (None when empty)."""

    code: int
    message: str
    result: Any
    evidence: Evidence


# Exceptions an HTTP call can raise at the edge. httpx-aiohttp re-raises aiohttp errors it has no mapping
# for, and socket errors (TimeoutError included) untranslated; all go through `classify_exception`.
_CALL_ERRORS: Final = (httpx.HTTPError, aiohttp.ClientError, OSError)


class FuluSupplier(Supplier):
    """Card-key and direct top-up purchases at Fulu, polled by customer_order_no."""

    type_name: ClassVar[str] = "fulu"
    can_query: ClassVar[bool] = True
    idempotent_place: ClassVar[bool] = True
    asynchronous: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name, settings)
        missing = [key for key in ("base_url", "app_key", "secret") if not settings.get(key)]
        if missing:
            raise SupplierError(f"fulu supplier {name!r}: missing {', '.join(missing)}")
        self._url = str(settings["base_url"])
        self._target = parsed_url(self._url)
        self._app_key = str(settings["app_key"])
        self._secret = str(settings["secret"])
        if len(self._secret.encode("utf-8")) != 32:
            # Card fields are AES-256 under the secret: any other length would make every card unreadable,
            # and unreadable cards become claims against the supplier. Refuse the configuration instead.
            raise SupplierError(f"fulu supplier {name!r}: secret must be the 32-character app secret")
        self._http = HttpSettings.from_settings(settings)
        self._client = client if client is not None else make_client(self._http)
        self._owns_client = client is None
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:  # settings hold the secret
        return f"FuluSupplier(name={self.name!r}, base_url={self._url!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # --- purchase -----------------------------------------------------------------------------------

    async def place(self, request: PlaceRequest) -> Outcome:
        biz = self._place_biz(request)
        if isinstance(biz, Outcome):
            return biz
        method = codec.METHOD_DIRECT_ADD if request.kind == "direct" else codec.METHOD_CARD_ADD
        try:
            reply = await self._call(method, biz, request.timeout)
        except _Untrusted as exc:
            return Outcome.error_of(exc.error, exc.evidence)
        if reply.code in (codec.CODE_OK, codec.CODE_DUPLICATE_ORDER):
            # Accepted, or already held under this number (4010, never charged twice): ask for the outcome.
            order = reply.result if isinstance(reply.result, Mapping) else {}
            if reply.code == codec.CODE_OK and not self._is_ours(order, request.number, required=False):
                return Outcome.error_of(ErrorClass.AMBIGUOUS, _note(reply.evidence, "answer names another order"))
            return Outcome(OrderState.PENDING, supplier_order_id=_text(order.get("order_id")), evidence=reply.evidence)
        error = codec.classify_code(reply.code) or ErrorClass.AMBIGUOUS
        if error in (ErrorClass.TRANSIENT, ErrorClass.AMBIGUOUS):
            return Outcome.error_of(error, reply.evidence)
        return Outcome.failed(error, reply.evidence)  # refused: confirmed not executed

    def _place_biz(self, request: PlaceRequest) -> dict[str, Any] | Outcome:
        """The business parameters, or a FAILED outcome when the request cannot be sent at all."""
        product = (request.product_id or "").strip()
        if not product.isdigit():
            message = f"fulu product_id must be an integer, got {request.product_id!r}"
            return Outcome.failed(ErrorClass.OUR_BUG, Evidence(message=message))
        if not 0 < len(request.number) <= MAX_ORDER_NO:
            message = f"customer_order_no must be 1..{MAX_ORDER_NO} characters"
            return Outcome.failed(ErrorClass.OUR_BUG, Evidence(message=message))
        if request.qty < 1:
            return Outcome.failed(ErrorClass.OUR_BUG, Evidence(message=f"buy_num must be positive: {request.qty}"))
        biz: dict[str, Any] = {
            "product_id": int(product),
            "customer_order_no": request.number,
            "buy_num": request.qty,
        }
        if request.kind == "direct":
            if not request.account:
                message = "direct top-up without a recharge account"
                return Outcome.failed(ErrorClass.ORDER_REJECTED, Evidence(message=message))
            biz["charge_account"] = request.account
        elif request.kind != "card":
            return Outcome.failed(ErrorClass.OUR_BUG, Evidence(message=f"unknown product kind {request.kind!r}"))
        return biz

    async def query(self, request: PlaceRequest) -> Outcome:
        biz = {"customer_order_no": request.number}
        try:
            reply = await self._call(codec.METHOD_ORDER_INFO, biz, request.timeout)
        except _Untrusted as exc:
            return Outcome.error_of(_query_error(exc.error), exc.evidence)
        if reply.code == codec.CODE_ORDER_NOT_FOUND:
            return Outcome(OrderState.NOT_FOUND, evidence=reply.evidence)
        if reply.code != codec.CODE_OK:
            return Outcome.error_of(_query_error(codec.classify_code(reply.code)), reply.evidence)
        order = reply.result
        if not isinstance(order, Mapping) or not self._is_ours(order, request.number, required=True):
            return Outcome.error_of(ErrorClass.AMBIGUOUS, _note(reply.evidence, "answer names another order"))
        return self._order_outcome(order, request, reply.evidence)

    def _order_outcome(self, order: Mapping[str, Any], request: PlaceRequest, evidence: Evidence) -> Outcome:
        state = order.get("order_state")
        supplier_id = _text(order.get("order_id"))
        if state in _PENDING_STATES:
            return Outcome(OrderState.PENDING, supplier_order_id=supplier_id, evidence=evidence)
        if state == "failed":
            error = failure_class(_failure_text(order, evidence), direct=request.kind == "direct")
            # The answer's own message is the query's ("查询成功"); the failure's reason goes in beside it.
            reason = _order_reason(order)
            evidence = _note(evidence, f"order failed: {reason}" if reason else "order failed")
            return Outcome(OrderState.FAILED, error=error, supplier_order_id=supplier_id, evidence=evidence)
        if state != "success":
            return Outcome.error_of(ErrorClass.AMBIGUOUS, _note(evidence, f"unknown order_state {state!r}"))
        cards, undecryptable = self._cards(order.get("cards"))
        if undecryptable:
            # Charged for units we cannot read: left out, so the engine counts them missing and claims them.
            evidence = _note(evidence, f"{undecryptable} card(s) did not decrypt")
        return Outcome(
            OrderState.SUCCEEDED,
            cards=cards,
            supplier_order_id=supplier_id,
            cost=values.amount(order.get("order_price")),
            evidence=evidence,
        )

    def _cards(self, raw: object) -> tuple[tuple[Card, ...], int]:
        """Decrypted cards and the number of entries that could not be read."""
        if not isinstance(raw, list):
            return (), 0
        cards: list[Card] = []
        bad = 0
        for entry in raw:
            if not isinstance(entry, Mapping):
                bad += 1
                continue
            try:
                number = codec.decrypt_card_field(str(entry.get("card_number") or ""), self._secret)
                password = codec.decrypt_card_field(str(entry.get("card_pwd") or ""), self._secret)
            except codec.CardFieldError:
                bad += 1
                continue
            deadline = entry.get("card_deadline")
            cards.append(Card(password=password, number=number, expires=str(deadline) if deadline else None))
        return tuple(cards), bad

    @staticmethod
    def _is_ours(order: Mapping[str, Any], number: str, *, required: bool) -> bool:
        # An answer about another customer_order_no must not settle this one. The query's order object
        # always names it; an add's answer (which settles nothing) may leave it out.
        found = order.get("customer_order_no")
        return str(found) == number if found is not None else not required

    # --- account, stock, callbacks ------------------------------------------------------------------

    async def balance(self) -> Balance | None:
        reply = await self._checked(codec.METHOD_USER_INFO, {}, "balance")
        info = reply.result if isinstance(reply.result, Mapping) else {}
        amount = values.amount(info.get("balance"))
        if amount is None:
            raise SupplierError(f"fulu {self.name}: no balance in the user info answer")
        return Balance(amount)

    async def check_stock(self, product_id: str, qty: int) -> StockCheck | None:
        if not product_id.strip().isdigit():
            raise SupplierError(f"fulu {self.name}: product_id must be an integer, got {product_id!r}")
        biz = {"product_id": int(product_id), "buy_num": qty}
        try:
            reply = await self._call(codec.METHOD_STOCK_CHECK, biz, None)
        except _Untrusted as exc:
            raise SupplierError(f"fulu {self.name}: stock check failed ({exc.evidence.message})") from None
        if reply.code != codec.CODE_OK:
            if codec.classify_code(reply.code) is ErrorClass.PRODUCT_UNAVAILABLE:
                return StockCheck(available=False, level="empty")  # missing / off shelf / out of stock
            raise SupplierError(f"fulu {self.name}: stock check refused ({reply.code} {reply.message})")
        status = reply.result.get("stock_status") if isinstance(reply.result, Mapping) else None
        return STOCK_LEVELS.get(str(status), StockCheck(available=True, level="unknown"))

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> CallbackNotice | None:
        try:
            data = values.load_json(body)
        except values.JsonError as exc:
            raise CallbackError(f"fulu {self.name}: callback body is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CallbackError(f"fulu {self.name}: callback body is not a JSON object")
        if not codec.verify(data, self._secret):
            raise CallbackSignatureError(f"fulu {self.name}: callback signature does not verify")
        number = data.get("customer_order_no")
        if not isinstance(number, str) or not number:
            raise CallbackError(f"fulu {self.name}: callback without customer_order_no")
        return CallbackNotice(
            number=number, supplier_order_id=_text(data.get("order_id")), status=str(data.get("order_status"))
        )

    # --- the wire -----------------------------------------------------------------------------------

    async def _checked(self, method: str, biz: Mapping[str, Any], what: str) -> _Reply:
        """A call whose failure is an operator's problem, not an order's: raise SupplierError."""
        try:
            reply = await self._call(method, biz, None)
        except _Untrusted as exc:
            raise SupplierError(f"fulu {self.name}: {what} failed ({exc.evidence.message})") from None
        if reply.code != codec.CODE_OK:
            raise SupplierError(f"fulu {self.name}: {what} refused ({reply.code} {reply.message})")
        return reply

    async def _call(self, method: str, biz: Mapping[str, Any], cap: float | None) -> _Reply:
        """POST one signed envelope; a verified answer, or `_Untrusted` for anything else."""
        body = codec.envelope(self._app_key, method, biz, self._secret, self._clock())
        sent = codec.canonical_json({"method": method, "timestamp": body["timestamp"], "biz": dict(biz)})
        try:
            answer = await post(
                self._client,
                self._target,
                max_bytes=self._http.max_response_bytes,
                json=body,
                timeout=self._http.timeout_for(cap),
            )
        except _CALL_ERRORS as exc:
            error = classify_exception(exc)
            logger.info("supplier.call_failed", extra={"supplier": self.name, "method": method, "error": error})
            raise _Untrusted(error, Evidence(message=describe_exception(exc), request=sent)) from exc
        text = answer.text
        parsed = _Parsed.of(text)  # once: the evidence's redacted copy and the reply are both made from it
        evidence = Evidence(http_status=answer.status_code, request=sent, response=parsed.redacted())
        status_error = classify_status(answer.status_code)
        if status_error is not None:
            raise _Untrusted(status_error, _note(evidence, f"HTTP {answer.status_code}"))
        if answer.over_cap is not None:  # the start of something we will not read whole: it may be a success
            raise _Untrusted(ErrorClass.AMBIGUOUS, _note(evidence, answer.over_cap_note))
        return self._verified(parsed, evidence)

    def _verified(self, parsed: _Parsed, evidence: Evidence) -> _Reply:
        data = parsed.data
        if not isinstance(data, Mapping) or not _is_int(data.get("code")):
            raise _Untrusted(ErrorClass.AMBIGUOUS, _note(evidence, "unreadable answer"))
        code: int = data["code"]
        message = str(data.get("message") or "")
        # Built whole rather than by `replace`, which looks the fields up each time (twice an order).
        evidence = Evidence(str(code), message, evidence.http_status, evidence.request, evidence.response)
        # An absent or null `result` (error answers) signs as the empty string.
        result_text = data.get("result") or ""
        signed = isinstance(result_text, str) and codec.verify_text(result_text, data.get("sign"), self._secret)
        if not signed:
            raise _Untrusted(ErrorClass.AMBIGUOUS, _note(evidence, "answer signature does not verify"))
        if result_text and parsed.result is _UNREADABLE:
            raise _Untrusted(ErrorClass.AMBIGUOUS, _note(evidence, "result is not JSON"))
        return _Reply(code, message, parsed.result if result_text else None, evidence)


# --- pure helpers -----------------------------------------------------------------------------------


def failure_class(text: str, *, direct: bool) -> ErrorClass:
    """Class of a confirmed-failed (not charged) order, from its failure text."""
    lowered = text.lower()
    if any(marker in lowered for marker in BALANCE_TEXTS):
        return ErrorClass.SUPPLIER_ACCOUNT
    if direct and any(marker in lowered for marker in ACCOUNT_TEXTS):
        return ErrorClass.ORDER_REJECTED
    return ErrorClass.PRODUCT_UNAVAILABLE


def _order_reason(order: Mapping[str, Any]) -> str:
    # The order object has no documented reason field; the callback's `recharge_description` is where
    # suppliers put it, some in `description` or `remark`.
    parts = [order.get(key) for key in ("recharge_description", "description", "remark")]
    return " ".join(str(part) for part in parts if part)


def _failure_text(order: Mapping[str, Any], evidence: Evidence) -> str:
    # ... and some in the answer's message.
    return " ".join(part for part in (_order_reason(order), evidence.message) if part)


def _query_error(error: ErrorClass | None) -> ErrorClass:
    # A failed query says nothing about the purchase: only "ask again", soon (transient) or by polling.
    return ErrorClass.TRANSIENT if error is ErrorClass.TRANSIENT else ErrorClass.AMBIGUOUS


_UNREADABLE: Final = object()  # a text that is not JSON we accept


@dataclass(frozen=True)
class _Parsed:
    """An answer's text, its JSON (or `_UNREADABLE`) and, when that is an object with a `result` string, the
    JSON inside that string (or `_UNREADABLE`; None when there is no such string)."""

    text: str
    data: Any
    result: Any

    @classmethod
    def of(cls, text: str) -> _Parsed:
        data = _load(text)
        inner = data.get("result") if isinstance(data, dict) else None
        return cls(text, data, _load(inner) if isinstance(inner, str) else None)

    def redacted(self) -> str:
        """The body fit for evidence: card fields replaced, trimmed to a readable excerpt."""
        if self.data is _UNREADABLE:
            return _cut_cards(self.text)
        data = self.data
        if isinstance(data, dict) and isinstance(data.get("result"), str):
            inner = _cut_cards(data["result"]) if self.result is _UNREADABLE else _scrub(self.result)
            data = {**data, "result": inner}
        return codec.canonical_json(_scrub(data))[: _EXCERPT * 4]


def _load(text: str) -> Any:
    try:
        return values.load_json(text)
    except values.JsonError:
        return _UNREADABLE


def redact_body(text: str) -> str:
    """A response body fit for evidence: card fields replaced, trimmed to a readable excerpt."""
    return _Parsed.of(text).redacted()


def _cut_cards(text: str) -> str:
    """The start of text we could not parse (HTML, a truncated body), cut before anything card-like."""
    cut = text.lower().find("card")
    return text[: min(cut, _EXCERPT)] + _REDACTED if cut >= 0 else text[:_EXCERPT]


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _REDACTED if k in _CARD_FIELDS else _scrub(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    return node


def _note(evidence: Evidence, note: str) -> Evidence:
    return replace(evidence, message=f"{evidence.message}; {note}" if evidence.message else note)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
