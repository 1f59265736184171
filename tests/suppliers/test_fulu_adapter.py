"""The Fulu adapter against respx (and loopback for real transport failures): the wire, and money meaning."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from suppliers.base import CallbackNotice, PlaceRequest, StockCheck
from suppliers.fulu import (
    CallbackError,
    CallbackSignatureError,
    FuluSupplier,
    failure_class,
    redact_body,
)
from suppliers.fulu_codec import encrypt_card_field, sign, sign_text, verify
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome, SupplierError

GATEWAY = "http://fulu.test/api/getway"
SECRET = "0123456789abcdefFEDCBA9876543210"
APP_KEY = "i4esv1l+76l/7NQCL3QudG90Fq+YgVfFGJAWgT+7qO1Bm9o/adG/1iwO2qXsAXNB"
NOW = datetime(2026, 11, 21, 2, 0, 0, tzinfo=UTC)
NUMBER = "ab12cd0000042"
CARD_NO, CARD_PWD = "SN-0001-AAAA", "PWD-9999-ZZZZ"


def settings(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "fulu",
        "type": "fulu",
        "base_url": GATEWAY,
        "app_key": APP_KEY,
        "secret": SECRET,
        "timeout": 10.0,
        "connect_timeout": 3.0,
        "max_concurrency": 4,
        "proxy": None,
        "transport": "aiohttp",
    }
    base.update(overrides)
    return base


def request(**overrides: Any) -> PlaceRequest:
    fields: dict[str, Any] = {
        "number": NUMBER,
        "sku": "steam-100",
        "product_id": "10001",
        "qty": 1,
        "kind": "card",
    }
    fields.update(overrides)
    return PlaceRequest(**fields)


def answer(code: int, result: Any = None, message: str = "", *, secret: str = SECRET, **extra: Any) -> httpx.Response:
    """A gateway answer signed the documented way: md5(sorted chars of the result string + secret)."""
    text = "" if result is None else json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    body = {"code": code, "message": message, "result": text, "sign": sign_text(text, secret), **extra}
    return httpx.Response(200, json=body)


def order(state: str, **fields: Any) -> dict[str, Any]:
    return {
        "order_id": "F2026112100001",
        "customer_order_no": NUMBER,
        "product_id": 10001,
        "product_name": "Steam 100",
        "buy_num": 1,
        "order_type": 3,
        "order_price": 98.5,
        "order_state": state,
        "create_time": "2026-11-21 10:00:00",
        "finish_time": "2026-11-21 10:00:03",
        **fields,
    }


def card(number: str = CARD_NO, password: str = CARD_PWD, deadline: str = "2027-12-31") -> dict[str, Any]:
    return {
        "card_number": encrypt_card_field(number, SECRET) if number else "",
        "card_pwd": encrypt_card_field(password, SECRET),
        "card_deadline": deadline,
        "card_type": 0,
    }


def sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


def assert_clean(evidence: Evidence) -> None:
    """No secret, no signature, no card field (plain or cipher) anywhere in the evidence."""
    text = json.dumps(evidence.as_dict(), ensure_ascii=False)
    for forbidden in (SECRET, CARD_NO, CARD_PWD, encrypt_card_field(CARD_NO, SECRET)):
        assert forbidden not in text
    assert encrypt_card_field(CARD_PWD, SECRET) not in text
    assert '"sign"' not in (evidence.request or "")


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    # using="httpx": the default aiohttp transport never reaches httpcore, where respx's default mocker sits.
    with respx.mock(using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def supplier() -> AsyncIterator[FuluSupplier]:
    adapter = FuluSupplier("fulu", settings(), clock=lambda: NOW)
    yield adapter
    await adapter.aclose()


# --- place: the wire ------------------------------------------------------------------------------------


async def test_card_order_on_the_wire(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    route = upstream.post(GATEWAY).mock(return_value=answer(0, order("untreated")))

    outcome = await supplier.place(request(qty=2))

    call = route.calls.last
    assert call.request.headers["content-type"].startswith("application/json")
    body = sent(route)
    assert verify(body, SECRET)
    assert body["method"] == "fulu.order.card.add"
    assert body["app_key"] == APP_KEY
    assert body["timestamp"] == "2026-11-21 10:00:00"  # Beijing time
    assert (body["version"], body["format"], body["charset"], body["sign_type"]) == (
        "2.0",
        "json",
        "utf-8",
        "md5",
    )
    assert body["biz_content"] == '{"product_id":10001,"customer_order_no":"ab12cd0000042","buy_num":2}'
    assert SECRET not in call.request.content.decode()
    assert outcome == Outcome(OrderState.PENDING, supplier_order_id="F2026112100001", evidence=outcome.evidence)
    assert outcome.evidence.code == "0"
    assert_clean(outcome.evidence)


async def test_direct_order_sends_the_account_unescaped(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    route = upstream.post(GATEWAY).mock(return_value=answer(0, order("processing")))

    outcome = await supplier.place(request(kind="direct", account="玩家/一号"))

    raw = route.calls.last.request.content.decode("utf-8")
    assert "玩家/一号" in json.loads(raw)["biz_content"]
    body = sent(route)
    assert body["method"] == "fulu.order.direct.add"
    assert json.loads(body["biz_content"]) == {
        "product_id": 10001,
        "customer_order_no": NUMBER,
        "buy_num": 1,
        "charge_account": "玩家/一号",
    }
    assert verify(body, SECRET)
    assert outcome.state is OrderState.PENDING


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (request(kind="direct", account=None), ErrorClass.ORDER_REJECTED),
        (request(product_id="SC100"), ErrorClass.OUR_BUG),
        (request(product_id=None), ErrorClass.OUR_BUG),
        (request(number="x" * 51), ErrorClass.OUR_BUG),
        (request(qty=0), ErrorClass.OUR_BUG),
        (request(kind="voucher"), ErrorClass.OUR_BUG),
    ],
)
async def test_unsendable_requests_fail_without_a_call(
    supplier: FuluSupplier, upstream: respx.MockRouter, req: PlaceRequest, error: ErrorClass
) -> None:
    route = upstream.post(GATEWAY).mock(return_value=answer(0, order("untreated")))
    outcome = await supplier.place(req)
    assert (outcome.state, outcome.error) == (OrderState.FAILED, error)
    assert not route.called


async def test_request_timeout_caps_the_call(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    route = upstream.post(GATEWAY).mock(return_value=answer(0, order("untreated")))
    await supplier.place(request(timeout=1.5))
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 1.5,
        "read": 1.5,
        "write": 1.5,
        "pool": 1.5,
    }
    await supplier.place(request())
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 3.0,
        "read": 10.0,
        "write": 10.0,
        "pool": 10.0,
    }


async def test_each_send_is_signed_with_a_fresh_timestamp(upstream: respx.MockRouter) -> None:
    times = iter([NOW, NOW.replace(minute=11)])
    adapter = FuluSupplier("fulu", settings(), clock=lambda: next(times))
    route = upstream.post(GATEWAY).mock(side_effect=[answer(1004, message="时间戳过期"), answer(0, order("untreated"))])
    try:
        first = await adapter.place(request())
        first_body = sent(route)
        second = await adapter.place(request())
    finally:
        await adapter.aclose()
    assert (first.state, first.error) == (OrderState.ERROR, ErrorClass.TRANSIENT)
    assert second.state is OrderState.PENDING
    assert (first_body["timestamp"], sent(route)["timestamp"]) == (
        "2026-11-21 10:00:00",
        "2026-11-21 10:11:00",
    )
    assert json.loads(first_body["biz_content"]) == json.loads(sent(route)["biz_content"])  # same number


# --- place: result codes --------------------------------------------------------------------------------

PLACE_EXPECTATIONS: list[tuple[int, OrderState, ErrorClass | None]] = [
    *[(c, OrderState.FAILED, ErrorClass.OUR_BUG) for c in (1000, 1001, 1002, 1003, 1005, *range(1007, 1016))],
    *[(c, OrderState.FAILED, ErrorClass.OUR_BUG) for c in (1017, 1018, 3000, 3008, 4000, 4001, 4002)],
    (1004, OrderState.ERROR, ErrorClass.TRANSIENT),
    *[(c, OrderState.FAILED, ErrorClass.SUPPLIER_ACCOUNT) for c in (1006, 1016, 1019, 2002, 2003)],
    *[(c, OrderState.FAILED, ErrorClass.PRODUCT_UNAVAILABLE) for c in (3001, 3002, 3003, 3004, 3005)],
    (4004, OrderState.FAILED, ErrorClass.ORDER_REJECTED),
    *[(c, OrderState.ERROR, ErrorClass.AMBIGUOUS) for c in (4008, 4009, 4012, 5000)],
    (4010, OrderState.PENDING, None),  # already exists: never charged twice, query the same number
    (4011, OrderState.ERROR, ErrorClass.AMBIGUOUS),
    (7777, OrderState.ERROR, ErrorClass.AMBIGUOUS),  # not in the table
]


@pytest.mark.parametrize(("code", "state", "error"), PLACE_EXPECTATIONS)
async def test_place_codes(
    supplier: FuluSupplier, upstream: respx.MockRouter, code: int, state: OrderState, error: ErrorClass | None
) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(code, message=f"message {code}"))
    outcome = await supplier.place(request())
    assert (outcome.state, outcome.error) == (state, error)
    assert (outcome.evidence.code, outcome.evidence.message) == (str(code), f"message {code}")


# --- place: answers that cannot be trusted --------------------------------------------------------------


def _signed_with(secret: str) -> httpx.Response:
    return answer(3001, message="商品不存在", secret=secret)


UNTRUSTED: list[tuple[str, httpx.Response]] = [
    ("bad sign", _signed_with("another-secret-another-secret-12")),
    ("no sign", httpx.Response(200, json={"code": 3001, "message": "x", "result": ""})),
    ("sign not a string", httpx.Response(200, json={"code": 0, "message": "", "result": "{}", "sign": 5})),
    (
        "result tampered",
        httpx.Response(200, json={"code": 0, "message": "", "result": '{"a":2}', "sign": sign_text('{"a":1}', SECRET)}),
    ),
    ("html", httpx.Response(200, text="<html><body>502 Bad Gateway</body></html>")),
    ("truncated", httpx.Response(200, text='{"code":0,"message":"","result":"{\\"order_id\\":')),
    (
        "code as text",
        httpx.Response(200, json={"code": "0", "message": "", "result": "", "sign": sign_text("", SECRET)}),
    ),
    ("not an object", httpx.Response(200, json=[0])),
    (
        "result not json",
        httpx.Response(200, json={"code": 0, "result": "oops", "sign": sign_text("oops", SECRET)}),
    ),
    ("5xx", httpx.Response(502, text="bad gateway")),
    ("answer about another order", answer(0, order("untreated", customer_order_no="someone-else"))),
]


@pytest.mark.parametrize(("label", "response"), UNTRUSTED, ids=[u[0] for u in UNTRUSTED])
async def test_untrusted_answers_to_place_are_ambiguous(
    supplier: FuluSupplier, upstream: respx.MockRouter, label: str, response: httpx.Response
) -> None:
    upstream.post(GATEWAY).mock(return_value=response)
    outcome = await supplier.place(request())
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert outcome.evidence.message


@pytest.mark.parametrize(("label", "response"), UNTRUSTED, ids=[u[0] for u in UNTRUSTED])
async def test_untrusted_answers_to_query_are_ambiguous(
    supplier: FuluSupplier, upstream: respx.MockRouter, label: str, response: httpx.Response
) -> None:
    upstream.post(GATEWAY).mock(return_value=response)
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)


BAD_SECRET = "another-secret-another-secret-12"


@pytest.mark.parametrize(
    "response",
    [
        answer(0, order("success", cards=[card()]), secret=BAD_SECRET),
        httpx.Response(200, json={"code": 0, "message": "", "result": json.dumps(order("success", cards=[card()]))}),
    ],
    ids=["bad sign", "no sign"],
)
async def test_a_success_that_does_not_verify_is_not_a_success(
    supplier: FuluSupplier, upstream: respx.MockRouter, response: httpx.Response
) -> None:
    upstream.post(GATEWAY).mock(return_value=response)
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error, outcome.cards) == (OrderState.ERROR, ErrorClass.AMBIGUOUS, ())
    assert outcome.evidence.message is not None and "signature" in outcome.evidence.message
    assert_clean(outcome.evidence)


async def test_query_answer_must_name_our_order(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    nameless = {k: v for k, v in order("failed").items() if k != "customer_order_no"}
    upstream.post(GATEWAY).mock(return_value=answer(0, nameless))
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)


async def test_rate_limited_is_transient(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=httpx.Response(429, text="slow down"))
    outcome = await supplier.place(request())
    assert (outcome.state, outcome.error, outcome.evidence.http_status) == (
        OrderState.ERROR,
        ErrorClass.TRANSIENT,
        429,
    )


# --- transport failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("refused"), ErrorClass.TRANSIENT),
        (httpx.ConnectTimeout("slow connect"), ErrorClass.TRANSIENT),
        (httpx.ReadTimeout("slow answer"), ErrorClass.AMBIGUOUS),
        (httpx.RemoteProtocolError("disconnected"), ErrorClass.AMBIGUOUS),
        (httpx.ReadError("reset"), ErrorClass.AMBIGUOUS),
        (httpx.WriteTimeout("slow send"), ErrorClass.AMBIGUOUS),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
async def test_mocked_transport_errors(
    upstream: respx.MockRouter, transport: str, exc: Exception, error: ErrorClass
) -> None:
    adapter = FuluSupplier("fulu", settings(transport=transport), clock=lambda: NOW)
    upstream.post(GATEWAY).mock(side_effect=exc)
    try:
        placed = await adapter.place(request())
        queried = await adapter.query(request())
    finally:
        await adapter.aclose()
    assert (placed.state, placed.error) == (OrderState.ERROR, error)
    assert (queried.state, queried.error) == (OrderState.ERROR, error)
    assert placed.evidence.request is not None and NUMBER in placed.evidence.request


def _refused() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api/getway"


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_real_refused_connection_is_transient(transport: str) -> None:
    adapter = FuluSupplier("fulu", settings(base_url=_refused(), transport=transport, connect_timeout=1.0))
    try:
        outcome = await adapter.place(request())
    finally:
        await adapter.aclose()
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.TRANSIENT)


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_real_hang_up_after_sending_is_ambiguous(transport: str) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/getway"
    adapter = FuluSupplier("fulu", settings(base_url=url, transport=transport))
    try:
        outcome = await adapter.place(request())
    finally:
        await adapter.aclose()
        server.close()
        await server.wait_closed()
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)


# --- query ----------------------------------------------------------------------------------------------


async def test_query_success_decrypts_cards(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    cards = [card(), card("", "ONLY-PWD-1", deadline="")]
    route = upstream.post(GATEWAY).mock(return_value=answer(0, order("success", buy_num=2, cards=cards)))

    outcome = await supplier.query(request(qty=2))

    body = sent(route)
    assert body["method"] == "fulu.order.info.get"
    assert body["biz_content"] == '{"customer_order_no":"ab12cd0000042"}'
    assert outcome.state is OrderState.SUCCEEDED
    assert outcome.cards == (
        Card(password=CARD_PWD, number=CARD_NO, expires="2027-12-31"),
        Card(password="ONLY-PWD-1", number="", expires=None),
    )
    assert outcome.supplier_order_id == "F2026112100001"
    assert outcome.cost == Decimal("98.5")
    assert_clean(outcome.evidence)
    assert outcome.evidence.response is not None and "<redacted>" in outcome.evidence.response


async def test_query_success_with_an_undecryptable_card_leaves_it_out(
    supplier: FuluSupplier, upstream: respx.MockRouter
) -> None:
    broken = {**card(), "card_pwd": encrypt_card_field(CARD_PWD, "x" * 32)}  # not under our secret
    upstream.post(GATEWAY).mock(return_value=answer(0, order("success", buy_num=2, cards=[card(), broken])))

    outcome = await supplier.query(request(qty=2))

    # SUCCEEDED with one card for two units: the engine counts one missing and claims it.
    assert outcome.state is OrderState.SUCCEEDED
    assert len(outcome.cards) == 1
    assert outcome.evidence.message is not None and "1 card(s) did not decrypt" in outcome.evidence.message
    assert_clean(outcome.evidence)


async def test_query_success_direct_top_up_has_no_cards(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(0, order("success", order_type=4, charge_account="u1")))
    outcome = await supplier.query(request(kind="direct", account="u1"))
    assert (outcome.state, outcome.cards) == (OrderState.SUCCEEDED, ())


@pytest.mark.parametrize("state", ["processing", "untreated"])
async def test_query_in_progress_is_pending(supplier: FuluSupplier, upstream: respx.MockRouter, state: str) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(0, order(state)))
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error, outcome.supplier_order_id) == (
        OrderState.PENDING,
        None,
        "F2026112100001",
    )


@pytest.mark.parametrize(
    ("kind", "description", "error"),
    [
        ("card", "商户余额不足", ErrorClass.SUPPLIER_ACCOUNT),
        ("direct", "Insufficient balance", ErrorClass.SUPPLIER_ACCOUNT),
        ("direct", "充值账号不存在", ErrorClass.ORDER_REJECTED),
        ("direct", "该账号已被列入黑名单", ErrorClass.ORDER_REJECTED),
        ("card", "充值账号错误", ErrorClass.PRODUCT_UNAVAILABLE),  # a card order has no recharge account
        ("card", "上游维护", ErrorClass.PRODUCT_UNAVAILABLE),
        ("direct", "", ErrorClass.PRODUCT_UNAVAILABLE),
    ],
)
async def test_query_failed_is_final_with_a_class_from_its_text(
    supplier: FuluSupplier, upstream: respx.MockRouter, kind: str, description: str, error: ErrorClass
) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(0, order("failed", recharge_description=description)))
    outcome = await supplier.query(request(kind=kind, account="u1"))
    assert (outcome.state, outcome.error) == (OrderState.FAILED, error)
    assert outcome.final


async def test_failure_text_from_the_answer_message(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(0, order("failed"), message="余额不足"))
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error) == (OrderState.FAILED, ErrorClass.SUPPLIER_ACCOUNT)


def test_failure_class_is_pure() -> None:
    assert failure_class("BALANCE NOT ENOUGH", direct=False) is ErrorClass.SUPPLIER_ACCOUNT
    assert failure_class("invalid account", direct=True) is ErrorClass.ORDER_REJECTED
    assert failure_class("invalid account", direct=False) is ErrorClass.PRODUCT_UNAVAILABLE


async def test_query_not_found(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(4011, message="订单不存在"))
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error) == (OrderState.NOT_FOUND, None)
    assert outcome.evidence.code == "4011"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (1004, ErrorClass.TRANSIENT),
        (5000, ErrorClass.AMBIGUOUS),
        (4012, ErrorClass.AMBIGUOUS),
        # A refused *query* says nothing about the purchase: never a class that lets the engine fail over.
        (3001, ErrorClass.AMBIGUOUS),
        (1006, ErrorClass.AMBIGUOUS),
        (1000, ErrorClass.AMBIGUOUS),
        (4004, ErrorClass.AMBIGUOUS),
    ],
)
async def test_query_errors_only_say_ask_again(
    supplier: FuluSupplier, upstream: respx.MockRouter, code: int, error: ErrorClass
) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(code, message="x"))
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error, outcome.evidence.code) == (OrderState.ERROR, error, str(code))


async def test_query_unknown_order_state_is_ambiguous(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(0, order("refunding")))
    outcome = await supplier.query(request())
    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)


# --- balance and stock ----------------------------------------------------------------------------------


async def test_balance(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    info = {"balance": 1234.56, "name": "merchant", "is_open": 1}
    route = upstream.post(GATEWAY).mock(return_value=answer(0, info))
    balance = await supplier.balance()
    assert balance is not None and balance.amount == Decimal("1234.56")
    assert (sent(route)["method"], sent(route)["biz_content"]) == ("fulu.user.info.get", "{}")


@pytest.mark.parametrize(
    "response",
    [answer(2002, message="商户无效"), answer(0, {"name": "no balance"}), httpx.Response(200, text="<html>")],
)
async def test_balance_failures_raise(
    supplier: FuluSupplier, upstream: respx.MockRouter, response: httpx.Response
) -> None:
    upstream.post(GATEWAY).mock(return_value=response)
    with pytest.raises(SupplierError, match="fulu fulu"):
        await supplier.balance()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("断货", StockCheck(available=False, level="empty")),
        ("警报", StockCheck(available=True, level="low")),
        ("充足", StockCheck(available=True, level="plenty")),
        ("未知", StockCheck(available=True, level="unknown")),
    ],
)
async def test_stock_check(
    supplier: FuluSupplier, upstream: respx.MockRouter, status: str, expected: StockCheck
) -> None:
    route = upstream.post(GATEWAY).mock(return_value=answer(0, {"product_id": 10001, "stock_status": status}))
    assert await supplier.check_stock("10001", 3) == expected
    body = sent(route)
    assert body["method"] == "fulu.goods.stock.check"
    assert json.loads(body["biz_content"]) == {"product_id": 10001, "buy_num": 3}


async def test_stock_check_of_a_product_off_shelf(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(3002, message="商品已下架"))
    assert await supplier.check_stock("10001", 1) == StockCheck(available=False, level="empty")


async def test_stock_check_refused_raises(supplier: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=answer(1006, message="app_key 无效"))
    with pytest.raises(SupplierError, match="1006"):
        await supplier.check_stock("10001", 1)


# --- callbacks ------------------------------------------------------------------------------------------


def callback(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": "F2026112100001",
        "charge_finish_time": "2026-11-21 10:00:03",
        "customer_order_no": NUMBER,
        "order_status": "success",
        "recharge_description": "充值成功/已到账",
        "product_id": "10001",
        "price": "98.50",
        "buy_num": "1",
        "operator_serial_number": "",
    }
    data.update(overrides)
    data["sign"] = sign(data, SECRET)
    return data


def test_callback_with_a_good_signature(supplier: FuluSupplier) -> None:
    body = json.dumps(callback(), ensure_ascii=False).encode("utf-8")  # spacing on the wire does not matter
    notice = supplier.parse_callback(body, {"content-type": "application/json"})
    assert notice == CallbackNotice(number=NUMBER, supplier_order_id="F2026112100001", status="success")


@pytest.mark.parametrize(
    "data",
    [
        {**callback(), "order_status": "failed"},  # tampered after signing
        {**callback(), "sign": "0" * 32},
        {k: v for k, v in callback().items() if k != "sign"},
    ],
    ids=["tampered", "wrong sign", "no sign"],
)
def test_callback_with_a_bad_signature_raises(supplier: FuluSupplier, data: dict[str, Any]) -> None:
    with pytest.raises(CallbackSignatureError) as caught:
        supplier.parse_callback(json.dumps(data).encode(), {})
    assert isinstance(caught.value, ValueError)  # what the admin server turns into a 400
    assert isinstance(caught.value, SupplierError)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_unreadable_callbacks_raise(supplier: FuluSupplier, body: bytes) -> None:
    with pytest.raises(CallbackError):
        supplier.parse_callback(body, {})


def test_callback_without_our_number_raises(supplier: FuluSupplier) -> None:
    data = callback()
    data.pop("customer_order_no")
    data["sign"] = sign(data, SECRET)
    with pytest.raises(CallbackError, match="customer_order_no"):
        supplier.parse_callback(json.dumps(data).encode(), {})


# --- construction and redaction -------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["base_url", "app_key", "secret"])
def test_missing_settings_are_refused(missing: str) -> None:
    with pytest.raises(SupplierError, match=missing):
        FuluSupplier("fulu", settings(**{missing: None}))


def test_a_secret_that_cannot_be_an_aes_256_key_is_refused() -> None:
    with pytest.raises(SupplierError, match="32-character"):
        FuluSupplier("fulu", settings(secret="too-short"))


def test_class_flags_and_repr(supplier: FuluSupplier) -> None:
    assert (FuluSupplier.type_name, FuluSupplier.asynchronous, FuluSupplier.can_query) == ("fulu", True, True)
    assert FuluSupplier.idempotent_place
    assert SECRET not in repr(supplier) and APP_KEY not in repr(supplier)


def test_redact_body_cuts_cards_from_unparsable_text() -> None:
    cipher = encrypt_card_field(CARD_PWD, SECRET)
    escaped = '{"code":0,"result":"{\\"cards\\":[{\\"card_pwd\\":\\"' + cipher + '\\"'  # truncated
    assert cipher not in redact_body(escaped)
    assert redact_body("<html>oops</html>") == "<html>oops</html>"
    parsed = redact_body(json.dumps({"code": 0, "result": json.dumps({"cards": [{"card_pwd": cipher}]})}))
    assert cipher not in parsed and "<redacted>" in parsed
