"""The fulu open-platform v2 gateway, simulated: envelope checks, signed answers, asynchronous orders.

Signing and card encryption come from `suppliers.fulu_codec`, the same code the adapter uses. Codes not
fixed by the protocol summary are this simulator's choice, all within the ranges of its code table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from suppliers import fulu_codec as codec
from suppliers.sim.callbacks import CallbackSender
from suppliers.sim.ledger import LedgerOrder, Purchase, Refusal
from suppliers.sim.protocol import ProtocolHandler, Reply, Target
from suppliers.sim.scenario import Fault, Product
from suppliers.sim.state import SimState

GATEWAY_PATHS: Final = ("/", "/api/getway")
_OPS: Final = {
    codec.METHOD_CARD_ADD: "order",
    codec.METHOD_DIRECT_ADD: "order",
    codec.METHOD_ORDER_INFO: "query",
    codec.METHOD_STOCK_CHECK: "stock",
    codec.METHOD_USER_INFO: "account",
}
_ENVELOPE: Final = (
    "app_key",
    "method",
    "timestamp",
    "version",
    "format",
    "charset",
    "sign_type",
    "biz_content",
)
_FIXED: Final = {"version": codec.VERSION, "format": "json", "charset": "utf-8", "sign_type": "md5"}

# Codes and messages (the classes are in fulu_codec.CODE_CLASSES).
BAD_JSON = (1000, "请求报文不是合法的JSON")
MISSING = 1001  # 缺少公共参数
UNKNOWN_METHOD = 1002
BAD_BIZ = (1003, "biz_content 不是合法的JSON对象")
SKEW = (codec.CODE_TIMESTAMP_SKEW, "时间戳超出允许范围")
BAD_FIXED = 1005  # version / format / charset / sign_type not supported
BAD_APP_KEY = (1006, "app_key 不存在")
BAD_FIELD = 1008  # 业务参数错误
BAD_SIGN = (1019, "签名验证失败")
NO_PRODUCT = (3001, "商品不存在")
OFF_SHELF = (3002, "商品已下架")
OUT_OF_STOCK = (3004, "库存不足")
WRONG_KIND = (3008, "商品类型与下单接口不匹配")
DUPLICATE = (codec.CODE_DUPLICATE_ORDER, "外部订单号已存在")
NOT_FOUND = (codec.CODE_ORDER_NOT_FOUND, "订单不存在")
NO_BALANCE_TEXT: Final = "账户余额不足"


class _Refused(Exception):
    """A request refused with a code: turned into the signed error answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _refuse(pair: tuple[int, str]) -> _Refused:
    return _Refused(*pair)


class FuluHandler(ProtocolHandler):
    def __init__(self, state: SimState, callbacks: CallbackSender | None = None) -> None:
        super().__init__(state)
        self.callbacks = callbacks
        scenario = state.scenario
        self.secret = scenario.secret
        self._methods: dict[str, Callable[[dict[str, Any], Fault | None], Reply]] = {
            codec.METHOD_CARD_ADD: lambda biz, fault: self._add(biz, fault, "card"),
            codec.METHOD_DIRECT_ADD: lambda biz, fault: self._add(biz, fault, "direct"),
            codec.METHOD_ORDER_INFO: self._info,
            codec.METHOD_STOCK_CHECK: self._stock,
            codec.METHOD_USER_INFO: self._user,
        }

    # --- answers ------------------------------------------------------------------------------------

    def answer(self, code: int, message: str, result: Any = None, *, committed: bool = False) -> Reply:
        text = codec.canonical_json(result) if result is not None else ""
        body = {"code": code, "message": message, "result": text, "sign": codec.sign_text(text, self.secret)}
        return Reply(body, code, committed)

    def error_reply(self, fault: Fault) -> Reply:
        return self.answer(fault.code or 5000, fault.message or "系统异常")

    def tamper(self, reply: Reply) -> Reply:
        body = dict(reply.body)
        body["sign"] = codec.sign_text(str(body.get("result", "")) + "tampered", self.secret)
        return Reply(body, reply.code, reply.committed)

    # --- the gateway --------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        envelope = _json_object(await request.read())
        raw_biz = envelope.get("biz_content") if envelope is not None else None
        biz = _json_object(raw_biz or "{}") if raw_biz is None or isinstance(raw_biz, str) else None
        target = self._target(envelope, biz)

        async def work(fault: Fault | None) -> Reply:
            try:
                return self._work(envelope, biz, fault)
            except _Refused as refused:
                return self.answer(refused.code, refused.message)

        return await self.serve(request, target, work)

    def _target(self, envelope: dict[str, Any] | None, biz: dict[str, Any] | None) -> Target:
        if envelope is None or biz is None:
            return Target(None)
        method = envelope.get("method")
        label = method if isinstance(method, str) else None
        op = _OPS.get(str(method))
        number = biz.get("customer_order_no")
        number = number if isinstance(number, str) else None
        product = biz.get("product_id")
        if op == "query" and number is not None:
            order = self.state.ledger.by_number(number)
            product = order.product.id if order else None
        return Target(op, number, str(product) if product is not None else None, label)

    def _work(self, envelope: dict[str, Any] | None, biz: dict[str, Any] | None, fault: Fault | None) -> Reply:
        if envelope is None:
            raise _refuse(BAD_JSON)
        self._check_envelope(envelope)
        if biz is None:
            raise _refuse(BAD_BIZ)
        return self._methods[envelope["method"]](biz, fault)

    def _check_envelope(self, envelope: dict[str, Any]) -> None:
        scenario = self.state.scenario
        for name in (*_ENVELOPE, "sign"):
            if not isinstance(envelope.get(name), str):
                raise _Refused(MISSING, f"缺少公共参数: {name}")
        if envelope["app_key"] != scenario.app_key:
            raise _refuse(BAD_APP_KEY)
        if not codec.verify(envelope, self.secret):
            raise _refuse(BAD_SIGN)
        sent = _timestamp(envelope["timestamp"])
        if sent is None or abs((self.state.now() - sent).total_seconds()) > scenario.max_skew:
            raise _refuse(SKEW)
        for name, expected in _FIXED.items():
            if envelope[name].lower() != expected:
                raise _Refused(BAD_FIXED, f"不支持的 {name}: {envelope[name]}")
        if envelope["method"] not in self._methods:
            raise _Refused(UNKNOWN_METHOD, f"不支持的接口方法: {envelope['method']}")

    # --- methods ------------------------------------------------------------------------------------

    def _product(self, biz: dict[str, Any]) -> Product:
        pid = biz.get("product_id")
        if isinstance(pid, bool) or not isinstance(pid, int | str) or not str(pid).isdigit():
            raise _Refused(BAD_FIELD, "业务参数错误: product_id")
        product = self.state.scenario.products.get(str(int(pid)))
        if product is None:
            raise _refuse(NO_PRODUCT)
        return product

    def _add(self, biz: dict[str, Any], fault: Fault | None, kind: str) -> Reply:
        state = self.state
        number = biz.get("customer_order_no")
        if not isinstance(number, str) or not 0 < len(number) <= 50:
            raise _Refused(BAD_FIELD, "业务参数错误: customer_order_no")
        qty = biz.get("buy_num")
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 10_000:
            raise _Refused(BAD_FIELD, "业务参数错误: buy_num")
        account = biz.get("charge_account")
        if kind == "direct" and (not isinstance(account, str) or not account):
            raise _Refused(BAD_FIELD, "业务参数错误: charge_account")
        product = self._product(biz)
        if not product.on_sale:
            raise _refuse(OFF_SHELF)
        if product.kind != kind:
            raise _refuse(WRONG_KIND)
        if state.ledger.by_number(number) is not None:
            raise _refuse(DUPLICATE)  # never charged twice
        fault_kind = fault.kind if fault else None
        if fault_kind == "out_of_stock":
            raise _refuse(OUT_OF_STOCK)
        now = state.now()
        account = account if isinstance(account, str) else None
        refusal = state.ledger.check(number, product, qty)
        if fault_kind == "balance_exhausted" or refusal is Refusal.NO_BALANCE:
            # No dedicated code: the order is taken and fails at once, saying why.
            order = state.ledger.record_failed(number, product, qty, account, now, NO_BALANCE_TEXT)
        else:
            placed = state.ledger.place(number, product, qty, account, now, self._purchase(product, fault))
            if isinstance(placed, Refusal):
                raise _refuse(OUT_OF_STOCK if placed is Refusal.OUT_OF_STOCK else DUPLICATE)
            order = placed
        if self.callbacks is not None:
            self.callbacks.schedule(order)
        return self.answer(0, "下单成功", self._order_json(order), committed=True)

    def _purchase(self, product: Product, fault: Fault | None) -> Purchase:
        scenario = self.state.scenario
        processing = product.processing_time if product.processing_time is not None else scenario.processing_time
        if fault is not None and fault.kind == "processing":
            return Purchase(processing=fault.duration, then=fault.then, description=fault.message)
        invalid = fault.mode if fault is not None and fault.kind == "invalid_keys" else None
        return Purchase(processing=processing, invalid_keys=invalid)

    def _info(self, biz: dict[str, Any], fault: Fault | None) -> Reply:
        number = biz.get("customer_order_no")
        if not isinstance(number, str) or not number:
            raise _Refused(BAD_FIELD, "业务参数错误: customer_order_no")
        order = self.state.ledger.by_number(number)
        if order is None:
            raise _refuse(NOT_FOUND)
        self.state.ledger.settle(order, self.state.now())
        if isinstance(order.rendered, Reply):
            return order.rendered
        reply = self.answer(0, "查询成功", self._order_json(order, with_cards=True))
        if order.state != "processing":
            order.rendered = reply
        return reply

    def _stock(self, biz: dict[str, Any], fault: Fault | None) -> Reply:
        product = self._product(biz)
        qty = biz.get("buy_num", 1)
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise _Refused(BAD_FIELD, "业务参数错误: buy_num")
        available = self.state.ledger.stock.get(product.id)
        if (fault is not None and fault.kind == "out_of_stock") or not product.on_sale:
            status = "断货"
        elif available is None:
            status = "充足"
        else:
            status = "断货" if available < qty else ("警报" if available < 10 * qty else "充足")
        return self.answer(0, "查询成功", {"product_id": int(product.id), "stock_status": status})

    def _user(self, biz: dict[str, Any], fault: Fault | None) -> Reply:
        balance = self.state.ledger.balance
        return self.answer(0, "查询成功", {"name": self.state.scenario.merchant_name, "balance": float(balance)})

    def _order_json(self, order: LedgerOrder, *, with_cards: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "order_id": order.supplier_order_id,
            "customer_order_no": order.number,
            "product_id": int(order.product.id),
            "product_name": order.product.name,
            "charge_account": order.account or "",
            "buy_num": order.qty,
            "order_type": 3 if order.product.kind == "card" else 4,
            "order_price": float(order.total),
            "order_state": order.state,
            "create_time": codec.format_timestamp(order.created_at),
            "finish_time": codec.format_timestamp(order.finished_at) if order.finished_at else "",
            "operator_serial_number": "",
            "recharge_description": order.description,
        }
        if with_cards and order.state == "success" and order.product.kind == "card":
            out["cards"] = [
                {
                    "card_number": codec.encrypt_card_field(card.number, self.secret) if card.number else "",
                    "card_pwd": codec.encrypt_card_field(card.password, self.secret),
                    "card_deadline": "",
                    "card_type": 0,
                }
                for card in order.cards
            ]
        return out


@functools.lru_cache(maxsize=256)
def _timestamp(text: str) -> datetime | None:
    """Beijing wall-clock time as sent; cached, as every request of the same second sends the same text."""
    try:
        return datetime.strptime(text, codec.TIMESTAMP_FORMAT).replace(tzinfo=codec.SHANGHAI)
    except ValueError:
        return None


def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
