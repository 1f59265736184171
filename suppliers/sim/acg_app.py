"""The acg-faka "shared shop" upstream API, simulated: form POSTs, MD5 sign, synchronous trades.

Failures are `{"code": 0, "msg": "<Chinese text>"}` with the messages of acg-faka's own source, so an adapter
can only tell them apart by text, as with the real shop. Signing is `suppliers.acg_faka_codec`.

As a real acg-faka 3.6.0 shop (/work/shared/protocols/acg-faka-shared.md): every answer is HTTP 200; a
`request_no` longer than 19 characters (its `char(19)` column) gets the HTML "page not found" page and
nothing is charged; a repeated one gets "The request ID already exists" and is not charged again. Answers that
are not what they seem come from a product setting (`delivery: manual`) or from faults: `manual_delivery`
and `grabbed` charge and answer text in `secret`; `charged_then_error` charges and answers `code: 0`;
`purchase_limit` refuses with a cap's message. The ledger records every charge, with no keys where none were
given (`LedgerOrder.notice`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from suppliers import acg_faka_codec as codec
from suppliers.sim.ledger import LedgerOrder, Purchase, Refusal
from suppliers.sim.protocol import NOT_FOUND_PAGE, ProtocolHandler, Reply, Target
from suppliers.sim.scenario import Fault, Product
from suppliers.sim.state import SimState

PATHS: Final = {
    "/shared/authentication/connect": "account",
    "/shared/commodity/trade": "order",
    "/shared/commodity/query": "query",
    "/shared/commodity/inventory": "stock",
}
NO_MERCHANT: Final = "商户ID不存在"
BAD_KEY: Final = "密钥错误"
NO_PRODUCT: Final = "商品不存在"
OFF_SALE: Final = "当前商品已停售"
OUT_OF_STOCK: Final = "库存不足"
NO_BALANCE: Final = "余额不足"
DUPLICATE: Final = "The request ID already exists"
NOT_FOUND: Final = "订单不存在"
BAD_NUM: Final = "购买数量不能低于1个"
NO_CODE: Final = "商品代码不能为空"
GRABBED: Final = "很抱歉，有人在你付款之前抢走了商品，请联系客服。"
LIMITS: Final = {
    "per_person": "该商品每人只能购买{}件",
    "per_trade": "本商品单次最多购买{}个",
    "minimum": "本商品最少购买{}个",
}
MAX_REQUEST_NO: Final = 19  # the shop's order table keeps request_no in a char(19) column


class _Refused(Exception):
    """A request refused with acg-faka's `{"code": 0, "msg": ...}`."""


class AcgHandler(ProtocolHandler):
    def __init__(self, state: SimState) -> None:
        super().__init__(state)
        self._ops: dict[str, Callable[[dict[str, str], Fault | None], Reply]] = {
            "account": self._connect,
            "order": self._trade,
            "query": self._query,
            "stock": self._inventory,
        }

    def error_reply(self, fault: Fault) -> Reply:
        return Reply({"code": 0, "msg": fault.message or "系统繁忙"}, 0)

    def tamper(self, reply: Reply) -> Reply:  # answers are not signed in this protocol
        return reply

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        params = {key: value for key, value in form.items() if isinstance(value, str)}
        op = PATHS[request.path]
        target = self._target(op, params)

        async def work(fault: Fault | None) -> Reply:
            try:
                self._authenticate(params)
                return self._ops[op](params, fault)
            except _Refused as refused:
                return Reply({"code": 0, "msg": str(refused)}, 0)

        return await self.serve(request, target, work)

    def _target(self, op: str, params: dict[str, str]) -> Target:
        if op == "query":
            order = self.state.ledger.by_supplier_id(params.get("tradeNo", ""))
            return Target(op, params.get("tradeNo"), order.product.id if order else None)
        code = params.get("shared_code") or params.get("sharedCode")
        return Target(op, params.get("request_no") or None, code)

    def _authenticate(self, params: dict[str, str]) -> None:
        scenario = self.state.scenario
        if params.get("app_id") != scenario.app_id:
            raise _Refused(NO_MERCHANT)
        if not codec.verify(params, scenario.app_key):
            raise _Refused(BAD_KEY)

    @staticmethod
    def ok(data: dict[str, Any] | None = None, *, committed: bool = False) -> Reply:
        body: dict[str, Any] = {"code": 200, "msg": "success"}
        if data is not None:
            body["data"] = data
        return Reply(body, 200, committed)

    def _product(self, code: str | None) -> Product:
        if not code:
            raise _Refused(NO_CODE)
        product = self.state.scenario.products.get(code)
        if product is None:
            raise _Refused(NO_PRODUCT)
        if not product.on_sale:
            raise _Refused(OFF_SALE)
        return product

    def _connect(self, params: dict[str, str], fault: Fault | None) -> Reply:
        scenario = self.state.scenario
        return self.ok({"shopName": scenario.merchant_name, "balance": str(self.state.ledger.balance)})

    def _trade(self, params: dict[str, str], fault: Fault | None) -> Reply:
        state = self.state
        product = self._product(params.get("shared_code"))
        try:
            qty = int(params.get("num", "1"))
        except ValueError:
            qty = 0
        if qty < 1:
            raise _Refused(BAD_NUM)
        number = params.get("request_no", "")
        kind = fault.kind if fault else None
        if fault is not None and kind == "purchase_limit":
            self._check_limit(fault, product, qty)  # checked before the purchase transaction
        if number and state.ledger.by_number(number) is not None:
            raise _Refused(DUPLICATE)  # never charged twice
        if kind == "out_of_stock":
            raise _Refused(OUT_OF_STOCK)
        if kind == "balance_exhausted":
            raise _Refused(NO_BALANCE)
        notice = self._notice(product, fault)
        refusal = state.ledger.check(number, product, qty)
        if refusal is not None:
            raise _Refused({Refusal.OUT_OF_STOCK: OUT_OF_STOCK, Refusal.NO_BALANCE: NO_BALANCE}.get(refusal, DUPLICATE))
        if len(number) > MAX_REQUEST_NO:
            # The order insert fails after the charge and the transaction rolls back: nothing charged.
            return Reply({}, None, page=NOT_FOUND_PAGE)
        invalid = fault.mode if fault is not None and kind == "invalid_keys" else None
        purchase = Purchase(invalid_keys=invalid, notice=notice)
        placed = state.ledger.place(number, product, qty, None, state.now(), purchase)
        assert not isinstance(placed, Refusal)  # checked above, nothing changed in between
        state.ledger.settle(placed, state.now())  # synchronous: done when it answers
        if fault is not None and kind == "charged_then_error":
            return Reply({"code": 0, "msg": fault.message}, 0, committed=True)
        return self.ok(
            {"tradeNo": placed.supplier_order_id, "secret": _secret(placed), "amount": str(placed.total)},
            committed=True,
        )

    def _check_limit(self, fault: Fault, product: Product, qty: int) -> None:
        """Refuse with the cap's message when the cap applies to this trade (a pass goes on to buy)."""
        if fault.mode == "per_trade":
            over = qty > fault.limit
        elif fault.mode == "minimum":
            over = qty < fault.limit
        else:  # per_person: every trade by this API account counts
            bought = sum(o.qty for o in self.state.ledger.orders if o.product.id == product.id and o.charged)
            over = bought + qty > fault.limit
        if over:
            raise _Refused(LIMITS[fault.mode].format(fault.limit))

    @staticmethod
    def _notice(product: Product, fault: Fault | None) -> str | None:
        """The text a charged trade answers instead of keys, or None for keys."""
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "charged_then_error":
            return ""  # charged, and nothing delivered
        if kind == "grabbed":
            return GRABBED
        if fault is not None and kind == "manual_delivery":
            return fault.message
        return product.delivery_message

    def _query(self, params: dict[str, str], fault: Fault | None) -> Reply:
        order = self.state.ledger.by_supplier_id(params.get("tradeNo", ""))
        if order is None:
            raise _Refused(NOT_FOUND)
        self.state.ledger.settle(order, self.state.now())
        # As the real shop: the secret, the buyer's widget fields, and the payment status (every trade here paid).
        return self.ok({"secret": _secret(order), "widget": None, "status": 1})

    def _inventory(self, params: dict[str, str], fault: Fault | None) -> Reply:
        product = self._product(params.get("sharedCode") or params.get("shared_code"))
        available = self.state.ledger.stock.get(product.id)
        count = 0 if fault is not None and fault.kind == "out_of_stock" else available
        manual = product.delivery_message is not None  # delivery_way 1: acg-faka counts no stock for it
        return self.ok(
            {
                "count": 0 if manual else 999_999 if count is None else count,
                "delivery_way": 1 if manual else 0,
                "price": str(product.price),
            }
        )


def _secret(order: LedgerOrder) -> str | None:
    """acg-faka delivers cards as free text, one per line; or its own text where it gave none."""
    if order.notice is not None:
        return order.notice or None
    return "\n".join(card.password for card in order.cards)
