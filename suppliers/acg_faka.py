"""acg-faka "shared shop" upstream (异次元发卡 店铺共享) as a supplier.

The protocol is in /work/shared/protocols/acg-faka-shared.md. What shapes this adapter:

- A purchase (`trade`) is synchronous: success carries the cards as free text in `data.secret`.
- Failures are `{"code": 0, "msg": "<Chinese text>"}`: only the message text tells them apart, so
  `classify_message` maps known texts and treats every unknown one as AMBIGUOUS (never fail lightly).
- A repeated `request_no` is refused without a second charge, so re-sending one attempt is safe; but the
  query endpoint takes the upstream `tradeNo`, which a lost answer never told us. An attempt whose answer was
  lost therefore stays AMBIGUOUS (`can_query = False`): the engine sends it to a person or, by policy, fails
  over with a possible-double claim.

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
from suppliers.base import Balance, PlaceRequest, StockCheck, Supplier
from suppliers.http import HttpSettings, classify_exception, classify_status, describe_exception, make_client, post
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome, SupplierError

PATH_CONNECT: Final = "/shared/authentication/connect"
PATH_TRADE: Final = "/shared/commodity/trade"
PATH_INVENTORY: Final = "/shared/commodity/inventory"

CODE_OK: Final = "200"
DEFAULT_CONTACT: Final = "fulfil"
QUERY_UNSUPPORTED: Final = "acg_faka cannot query by request_no"
NO_CARD_CONTENT: Final = "succeeded without card content"
_EXCERPT: Final = 300  # characters of an unreadable body kept as evidence
_REDACTED: Final = "<redacted>"

# What an HTTP call can raise at the edge: httpx-aiohttp passes aiohttp errors it has no mapping for, and
# socket errors (TimeoutError included), through untranslated. All are judged by `classify_exception`.
_CALL_ERRORS: Final = (httpx.HTTPError, aiohttp.ClientError, OSError)

# --- what a failure message means ---------------------------------------------------------------------

# The upstream refuses a request_no it has seen: the first call under this number may have been charged and
# its answer is lost to us, so this is the ambiguous case, not a failure.
_ALREADY_PLACED = re.compile(r"request\s*(?:id|no)\s*already\s*exists", re.IGNORECASE)

# Checked in order, first match wins. Substrings of the upstream's own texts (OrderService::trade,
# SharedValidation, Bill::create in acg-faka v3); ASCII fragments are matched case-insensitively.
_MESSAGE_RULES: Final[tuple[tuple[ErrorClass, tuple[str, ...]], ...]] = (
    (ErrorClass.OUR_BUG, ("代码不能为空", "CODE不能为空")),  # we sent no product code
    (
        ErrorClass.SUPPLIER_ACCOUNT,
        (
            "密钥错误",  # bad signature / key
            "签名",
            "商户ID不存在",  # unknown app_id
            "app_id",
            "appid",
            "app_key",
            "sign",
            "余额不足",  # insufficient balance
            "balance",
            "banned",  # our account at the upstream is banned
            "用户不存在",
            "登录",  # the upstream treats us as logged out
            "支付方式",  # balance payment disabled or broken at the upstream
        ),
    ),
    (
        ErrorClass.PRODUCT_UNAVAILABLE,
        (
            "商品不存在",  # product missing
            "已停售",  # off sale
            "库存不足",  # out of stock
            "暂未上架",
            "商品种类",  # the configured race (variant) is not sold there (不存在 / 请选择商品种类)
            "抢购",  # flash sale not started / over
            "被他人抢走",
            "out of stock",
        ),
    ),
    (
        ErrorClass.ORDER_REJECTED,
        (
            "联系方式",  # contact invalid
            "格式不正确",
            "至少购买",  # quantity limits
            "最少购买",
            "最多购买",
            "只能购买",
            "数量",
            "quantity",
        ),
    ),
)


def classify_message(message: str) -> ErrorClass:
    """The error class of an upstream failure message; unknown texts are AMBIGUOUS."""
    if _ALREADY_PLACED.search(message):
        return ErrorClass.AMBIGUOUS
    folded = message.casefold()
    for error, fragments in _MESSAGE_RULES:
        if any(fragment.casefold() in folded for fragment in fragments):
            return error
    return ErrorClass.AMBIGUOUS


# --- what a success carries ---------------------------------------------------------------------------

# Texts acg-faka puts in `secret` when it charged but has no key to give (manual delivery, stock taken by a
# concurrent buyer, an upstream of the upstream still delivering). Delivered as a "card" they would reach a
# customer as if they were a key; dropped here, the engine sees units missing and claims them.
_NOTICES: Final = ("请联系客服", "正在发货中", "没有发货信息", "有人在你付款之前抢走")

# One card per line, split once into number and password at the first separator found in this order: "----"
# (the common 卡号----卡密 export), a tab, a comma (ASCII or full-width), "|". A line of exactly two
# space-separated words is "number password"; three or more words are one grouped key ("ABCD EFGH IJKL"),
# kept whole. A line without a separator, or with an empty side, is a password-only card. Blank lines go.
_SEPARATORS: Final = (re.compile(r"-{4,}"), re.compile(r"\t"), re.compile(r"[,，]"), re.compile(r"\|"))
_TWO_WORDS: Final = re.compile(r"(\S+)\s+(\S+)")


def parse_secret(secret: str) -> tuple[Card, ...]:
    """Cards from the free text of `data.secret` (CRLF, LF or CR line ends; blank lines ignored)."""
    cards: list[Card] = []
    for raw in secret.splitlines():
        line = raw.strip()
        if not line or any(notice in line for notice in _NOTICES):
            continue
        cards.append(_card_from_line(line))
    return tuple(cards)


def _card_from_line(line: str) -> Card:
    for separator in _SEPARATORS:
        parts = separator.split(line, maxsplit=1)
        if len(parts) == 2:
            number, password = parts[0].strip(), parts[1].strip()
            if number and password:
                return Card(password=password, number=number)
    two = _TWO_WORDS.fullmatch(line)
    if two is not None:
        return Card(password=two.group(2), number=two.group(1))
    return Card(password=line)


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
            error = classify_message(reply.message)
            if error is ErrorClass.AMBIGUOUS:
                return Outcome.error_of(error, evidence)
            return Outcome.failed(error, evidence)
        return self._success(reply, evidence)

    def _success(self, reply: _Reply, evidence: Evidence) -> Outcome:
        data = reply.data if isinstance(reply.data, Mapping) else {}
        trade_no = data.get("tradeNo")
        if not isinstance(trade_no, str | int) or isinstance(trade_no, bool) or not str(trade_no):
            # "Success" without the upstream's order number is not an answer we can account for.
            return Outcome.error_of(ErrorClass.AMBIGUOUS, _with_message(evidence, "success without tradeNo"))
        secret = data.get("secret")
        cards = parse_secret(secret) if isinstance(secret, str) else ()
        if not cards:
            evidence = _with_message(evidence, NO_CARD_CONTENT)
        return Outcome(
            OrderState.SUCCEEDED,
            cards=cards,
            supplier_order_id=str(trade_no),
            cost=values.amount(data.get("amount")),
            evidence=evidence,
        )

    async def query(self, request: PlaceRequest) -> Outcome:
        # The upstream looks orders up by its own tradeNo only; a lost answer never told us that number.
        return Outcome.error_of(ErrorClass.AMBIGUOUS, Evidence(message=QUERY_UNSUPPORTED))

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
            evidence = self._evidence(path, params, message=message, status=status, response=self._excerpt(answer.text))
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
        for key in ("tradeNo", "amount", "balance", "shopName"):
            if key in reply.data:
                parts.append(f"{key}={reply.data[key]}")
        if "secret" in reply.data:
            parts.append(f"secret={_REDACTED}")
    return " ".join(parts)


def _with_message(evidence: Evidence, message: str) -> Evidence:
    merged = f"{evidence.message}; {message}" if evidence.message else message
    return Evidence(
        code=evidence.code,
        message=merged,
        http_status=evidence.http_status,
        request=evidence.request,
        response=evidence.response,
    )
