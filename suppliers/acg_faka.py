"""acg-faka "shared shop" upstream (异次元发卡 店铺共享) as a supplier.

The protocol is in /work/shared/protocols/acg-faka-shared.md ("What a real acg-faka 3.6.0 server does" is
the spec). What shapes this adapter:

- A purchase (`trade`) is synchronous: success carries the cards as free text in `data.secret`, or, charged
  all the same, the shop's own words (manual delivery, a lost race for the last key). Which is which, and
  what each failure text means, is decided in `suppliers.acg_faka_texts` (rules in its docstring):
  shop text is `SUCCEEDED` with no cards and an evidence message saying "charged without goods".
- Every reply is HTTP 200, errors and HTML pages included. An HTML page from `trade` is AMBIGUOUS: a
  too-long `request_no` yields one with nothing charged, but so may an internal error after the charge, and
  the adapter cannot tell why a page came. Our numbers are at most 19 characters (`MAX_NUMBER_LENGTH`, the
  shop's `char(19)` column; the store refuses to make a longer one), so that cause never applies to us.
- A repeated `request_no` is refused without a second charge: `OrderState.EXISTS` (recorded and charged
  before, outcome unknown). The query endpoint takes the upstream `tradeNo`, which a lost answer never told
  us, so `can_query = False`: an attempt whose answer was lost stays AMBIGUOUS. Given a `tradeNo`
  (`PlaceRequest.supplier_order_id`), `query` asks for it: `status` is the payment status (1 paid, 0 unpaid).
- Texts are sent for untranslated: `Accept-Language: zh-CN` on every call and no cookies kept (`acg_lang`
  would switch the shop's language; `suppliers.http.make_client` keeps no cookie jar).

Options (`options:` in the supplier's YAML): `contact`, `password`, `race`, `sku` (sent with `trade`), and
`key_pattern`, a regex every line of a delivered secret must fully match to count as keys.

Evidence keeps the raw code and message; it never holds the app_key, the signature, the order password or
any card text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

import aiohttp
import httpx

from suppliers import values
from suppliers.acg_faka_codec import sign
from suppliers.acg_faka_texts import Secret, classify_message, read_secret, trade_failure
from suppliers.base import Balance, PlaceRequest, StockCheck, Supplier
from suppliers.http import HttpSettings, classify_exception, classify_status, describe_exception, make_client, post
from suppliers.taxonomy import ErrorClass, Evidence, OrderState, Outcome, SupplierError

PATH_CONNECT: Final = "/shared/authentication/connect"
PATH_TRADE: Final = "/shared/commodity/trade"
PATH_INVENTORY: Final = "/shared/commodity/inventory"
PATH_QUERY: Final = "/shared/commodity/query"

CODE_OK: Final = "200"
DEFAULT_CONTACT: Final = "fulfil"
QUERY_UNSUPPORTED: Final = "acg_faka cannot query by request_no"
CHARGED_WITHOUT_GOODS: Final = "charged without goods"
UNPAID: Final = "the upstream order is unpaid (status 0): nothing was charged"
# The language the shop's messages are read in: its source texts, untranslated.
HEADERS: Final = {"Accept-Language": "zh-CN"}
_EXCERPT: Final = 300  # characters of an unreadable body kept as evidence
_REDACTED: Final = "<redacted>"

# What an HTTP call can raise at the edge: httpx-aiohttp passes aiohttp errors it has no mapping for, and
# socket errors (TimeoutError included), through untranslated. All are judged by `classify_exception`.
_CALL_ERRORS: Final = (httpx.HTTPError, aiohttp.ClientError, OSError)

# --- the adapter --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    """A readable JSON answer: `{"code": ..., "msg": ..., "data": ...}`."""

    code: str
    message: str
    data: Any
    http_status: int


class AcgFakaSupplier(Supplier):
    type_name: ClassVar[str] = "acg_faka"
    can_query: ClassVar[bool] = False  # the query endpoint takes the upstream tradeNo, not our request_no
    idempotent_place: ClassVar[bool] = True  # a repeated request_no is refused, not charged
    asynchronous: ClassVar[bool] = False

    def __init__(self, name: str, settings: Mapping[str, Any], *, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(name, settings)
        missing = [key for key in ("base_url", "app_id", "app_key") if not settings.get(key)]
        if missing:
            raise SupplierError(f"supplier {name}: {', '.join(missing)} required for an acg_faka supplier")
        self._base_url = str(settings["base_url"]).rstrip("/")
        self._app_id = str(settings["app_id"])
        self._app_key = str(settings["app_key"])
        options = settings.get("options") or {}
        self._contact = str(options.get("contact") or DEFAULT_CONTACT)
        # Optional trade fields, sent only when configured: the upstream's order password and variant.
        self._extra = {key: str(options[key]) for key in ("password", "race", "sku") if options.get(key)}
        self._key_pattern = _key_pattern(name, options.get("key_pattern"))
        # The client reference waits 30 s for an answer; an explicit `timeout` setting wins.
        self._http = HttpSettings.from_settings({"timeout": 30.0, **settings})
        self._client = client if client is not None else make_client(self._http)

    def __repr__(self) -> str:  # settings hold the app_key
        return f"AcgFakaSupplier(name={self.name!r}, base_url={self._base_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- purchase -----------------------------------------------------------------------------------

    async def place(self, request: PlaceRequest) -> Outcome:
        if not request.product_id:
            return Outcome.failed(ErrorClass.OUR_BUG, Evidence(message="acg_faka offer without product_id"))
        # card_id/device as the reference client sends them (no pre-selected card, device 0).
        params = {
            "shared_code": request.product_id,
            "num": str(request.qty),
            "contact": self._contact,
            "card_id": "0",
            "device": "0",
            "request_no": request.number,
            **self._extra,
        }
        reply = await self._call(PATH_TRADE, params, request.timeout)
        if isinstance(reply, Outcome):
            return reply
        evidence = self._evidence(PATH_TRADE, params, reply)
        if reply.code != CODE_OK:
            return trade_failure(reply.message, evidence)
        data = reply.data if isinstance(reply.data, Mapping) else {}
        trade_no = _trade_no(data.get("tradeNo"))
        if trade_no is None:
            # "Success" without the upstream's order number is not an answer we can account for.
            return Outcome.error_of(ErrorClass.AMBIGUOUS, _with_message(evidence, "success without tradeNo"))
        secret = read_secret(data.get("secret"), request.qty, self._key_pattern)
        return Outcome(
            OrderState.SUCCEEDED,
            cards=secret.cards,
            supplier_order_id=trade_no,
            cost=values.amount(data.get("amount")),
            evidence=self._goods_evidence(evidence, secret),
        )

    def _goods_evidence(self, evidence: Evidence, secret: Secret) -> Evidence:
        if not secret.is_text:
            return evidence
        quote = f": {self._scrub(secret.quote)}" if secret.quote else ""
        return _with_message(evidence, f"{CHARGED_WITHOUT_GOODS} ({secret.reason}){quote}")

    async def query(self, request: PlaceRequest) -> Outcome:
        """By the upstream `tradeNo` when the request carries one; by our number the upstream cannot look up."""
        if not request.supplier_order_id:
            return Outcome.error_of(ErrorClass.AMBIGUOUS, Evidence(message=QUERY_UNSUPPORTED))
        params = {"tradeNo": request.supplier_order_id}
        reply = await self._call(PATH_QUERY, params, request.timeout)
        if isinstance(reply, Outcome):
            return reply
        evidence = self._evidence(PATH_QUERY, params, reply)
        data = reply.data if isinstance(reply.data, Mapping) else {}
        status = str(data.get("status", ""))
        if reply.code != CODE_OK or status not in ("0", "1"):
            # "订单不存在" for a tradeNo a trade gave us, or an answer without a payment status: a query that
            # fails says nothing about the purchase (an upstream may delete orders it was paid for).
            return Outcome.error_of(ErrorClass.AMBIGUOUS, evidence)
        if status == "0":
            # Unpaid: an API trade pays from the balance in the purchase transaction, so nothing was charged.
            return Outcome(OrderState.NOT_FOUND, supplier_order_id=request.supplier_order_id,
                           evidence=_with_message(evidence, UNPAID))  # fmt: skip
        secret = read_secret(data.get("secret"), request.qty, self._key_pattern)
        return Outcome(
            OrderState.SUCCEEDED,
            cards=secret.cards,
            supplier_order_id=request.supplier_order_id,
            evidence=self._goods_evidence(evidence, secret),
        )

    # --- account and stock --------------------------------------------------------------------------

    async def balance(self) -> Balance | None:
        reply = await self._call(PATH_CONNECT, {}, None)
        if isinstance(reply, Outcome):
            raise SupplierError(f"acg_faka {self.name}: balance unavailable ({reply.evidence.message})")
        if reply.code != CODE_OK:
            raise SupplierError(f"acg_faka {self.name}: balance refused ({self._scrub(reply.message)})")
        data = reply.data if isinstance(reply.data, Mapping) else {}
        amount = values.amount(data.get("balance"))
        if amount is None:
            raise SupplierError(f"acg_faka {self.name}: no balance in the connect answer")
        return Balance(amount)

    async def check_stock(self, product_id: str, qty: int) -> StockCheck | None:
        """From `inventory` (it has a count; `inventoryState` only says yes or no). None when unknown."""
        params = {"sharedCode": product_id}  # this endpoint spells the code sharedCode
        if "race" in self._extra:
            params["race"] = self._extra["race"]
        reply = await self._call(PATH_INVENTORY, params, None)
        if isinstance(reply, Outcome):
            return None
        if reply.code != CODE_OK:
            if classify_message(reply.message) is ErrorClass.PRODUCT_UNAVAILABLE:
                return StockCheck(available=False, level="empty")  # missing, off sale
            return None
        data = reply.data if isinstance(reply.data, Mapping) else {}
        count = values.amount(data.get("count"))
        if count is None or str(data.get("delivery_way", "0")) != "0":
            # Manual delivery (delivery_way 1) reports no count, yet sells.
            return StockCheck(available=True, level="unknown")
        if count <= 0:
            return StockCheck(available=False, level="empty")
        return StockCheck(available=count >= qty, level="low" if count < 10 * qty else "plenty")

    # --- the wire -----------------------------------------------------------------------------------

    def _signed(self, params: Mapping[str, str]) -> dict[str, str]:
        form = {"app_id": self._app_id, **params}
        form["sign"] = sign(form, self._app_key)
        return form

    async def _call(self, path: str, params: Mapping[str, str], cap: float | None) -> _Reply | Outcome:
        """POST a signed form; a readable JSON answer, or the ERROR outcome for anything else."""
        try:
            answer = await post(
                self._client,
                self._base_url + path,
                max_bytes=self._http.max_response_bytes,
                data=self._signed(params),
                headers=HEADERS,
                timeout=self._http.timeout_for(cap),
            )
        except _CALL_ERRORS as exc:
            evidence = self._evidence(path, params, message=self._scrub(describe_exception(exc)))
            return Outcome.error_of(classify_exception(exc), evidence)
        status = answer.status_code
        status_error = classify_status(status)
        if status_error is not None:
            evidence = self._evidence(
                path, params, message=f"HTTP {status}", status=status, response=self._excerpt(answer.text)
            )
            return Outcome.error_of(status_error, evidence)
        if answer.over_cap is not None:  # the start of something we will not read whole: it may be a success
            evidence = self._evidence(
                path, params, message=answer.over_cap_note, status=status, response=self._excerpt(answer.text)
            )
            return Outcome.error_of(ErrorClass.AMBIGUOUS, evidence)
        try:
            body = values.load_json(answer.body)
        except values.JsonError:  # an HTML page, a truncated answer, nesting too deep, a lone surrogate
            body = None
        if not isinstance(body, Mapping) or "code" not in body:
            message = "unreadable answer (not a JSON object with a code)"
            excerpt = self._excerpt(answer.text)
            if excerpt.lstrip()[:1] == "<":  # the shop's error or "page not found" page: a fault, cause unknown
                message = f"an HTML page (HTTP {status}), not an answer"
            evidence = self._evidence(path, params, message=message, status=status, response=excerpt)
            return Outcome.error_of(ErrorClass.AMBIGUOUS, evidence)
        msg = body.get("msg")
        return _Reply(str(body["code"]), "" if msg is None else str(msg), body.get("data"), status)

    # --- evidence -----------------------------------------------------------------------------------

    def _evidence(
        self,
        path: str,
        params: Mapping[str, str],
        reply: _Reply | None = None,
        *,
        message: str | None = None,
        status: int | None = None,
        response: str | None = None,
    ) -> Evidence:
        # What was sent, less the signature and the upstream order password.
        sent = {"app_id": self._app_id, **{k: v for k, v in params.items() if k != "password"}}
        request = f"POST {path} {urlencode(sorted(sent.items()))}"
        if reply is not None:
            return Evidence(
                code=reply.code,
                message=self._scrub(reply.message),
                http_status=reply.http_status,
                request=self._scrub(request),
                response=self._scrub(_summary(reply)),
            )
        return Evidence(message=message, http_status=status, request=self._scrub(request), response=response)

    def _scrub(self, text: str) -> str:
        return text.replace(self._app_key, _REDACTED)

    def _excerpt(self, text: str) -> str:
        """The start of an unreadable body, cut before anything that may be a card (a truncated secret)."""
        cut = text.lower().find("secret")
        head = text[: min(_EXCERPT, cut)] + _REDACTED if cut >= 0 else text[:_EXCERPT]
        return self._scrub(head)


def _summary(reply: _Reply) -> str:
    """The answer without its card text: code, msg, and the data keys other than `secret`."""
    parts = [f"code={reply.code}", f"msg={reply.message}"]
    if isinstance(reply.data, Mapping):
        for key in ("tradeNo", "amount", "status", "balance", "shopName"):
            if key in reply.data:
                parts.append(f"{key}={reply.data[key]}")
        if "secret" in reply.data:
            parts.append(f"secret={_REDACTED}")
    return " ".join(parts)


def _trade_no(value: object) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
        return None
    return str(value)


def _key_pattern(name: str, value: object) -> re.Pattern[str] | None:
    if value is None or value == "":
        return None
    try:
        return re.compile(str(value))
    except re.error as exc:
        raise SupplierError(f"supplier {name}: options.key_pattern is not a regular expression: {exc}") from exc


def _with_message(evidence: Evidence, message: str) -> Evidence:
    merged = f"{evidence.message}; {message}" if evidence.message else message
    return Evidence(
        code=evidence.code,
        message=merged,
        http_status=evidence.http_status,
        request=evidence.request,
        response=evidence.response,
    )
