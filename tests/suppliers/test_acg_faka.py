"""The acg-faka adapter against respx: what goes on the wire, and what each kind of answer means for money."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import httpx
import pytest
import respx

from suppliers.acg_faka import CHARGED_WITHOUT_GOODS, QUERY_UNSUPPORTED, UNPAID, AcgFakaSupplier
from suppliers.acg_faka_codec import sign
from suppliers.acg_faka_texts import QUOTE_LIMIT, classify_message, parse_secret
from suppliers.base import Balance, PlaceRequest, StockCheck
from suppliers.taxonomy import ErrorClass, Evidence, OrderState, SupplierError

BASE = "http://upstream.test"
TRADE = f"{BASE}/shared/commodity/trade"
QUERY = f"{BASE}/shared/commodity/query"
APP_KEY = "k3y-SECRET-do-not-leak"
CARD_TEXT = "CARD-SECRET-AAAA"


def settings(**options: Any) -> dict[str, Any]:
    return {
        "name": "acg",
        "type": "acg_faka",
        "base_url": BASE + "/",
        "app_id": "1001",
        "app_key": APP_KEY,
        "timeout": 30.0,
        "connect_timeout": 3.0,
        "max_concurrency": 4,
        "proxy": None,
        "transport": "aiohttp",
        "options": options,
    }


def request(**overrides: Any) -> PlaceRequest:
    fields: dict[str, Any] = {
        "number": "ab12cd0000042",
        "sku": "steam-100",
        "product_id": "SC100",
        "qty": 2,
        "kind": "card",
    }
    fields.update(overrides)
    return PlaceRequest(**fields)


def form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.content.decode(), keep_blank_values=True))


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": data})


def fail(msg: str) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "msg": msg})


def assert_clean(evidence: Evidence) -> None:
    """No secret and no card text anywhere in the evidence."""
    text = json.dumps(evidence.as_dict(), ensure_ascii=False)
    assert APP_KEY not in text
    assert CARD_TEXT not in text
    assert "sign=" not in text


@pytest.fixture
async def supplier() -> AsyncIterator[AcgFakaSupplier]:
    adapter = AcgFakaSupplier("acg", settings())
    yield adapter
    await adapter.aclose()


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    # using="httpx": the default aiohttp transport never reaches httpcore, where respx's default mocker sits.
    with respx.mock(using="httpx", assert_all_called=False) as router:
        yield router


# --- the request ----------------------------------------------------------------------------------------


async def test_trade_form_and_signature_on_the_wire(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TRADE).mock(return_value=ok({"tradeNo": "T1", "secret": CARD_TEXT}))

    await supplier.place(request())

    call = route.calls.last
    assert call.request.headers["content-type"] == "application/x-www-form-urlencoded"
    sent = form(call)
    signature = sent.pop("sign")
    assert sent == {
        "app_id": "1001",
        "shared_code": "SC100",
        "num": "2",
        "contact": "fulfil",
        "card_id": "0",
        "device": "0",
        "request_no": "ab12cd0000042",
    }
    assert signature == sign(sent, APP_KEY)
    # The documented rule, computed here independently of the codec.
    text = "&".join(f"{k}={v}" for k, v in sorted(sent.items()) if v != "") + "&key=" + APP_KEY
    assert signature == hashlib.md5(text.encode()).hexdigest()
    assert APP_KEY not in call.request.content.decode()


async def test_messages_are_asked_for_in_the_shops_own_language(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    # acg-faka translates its messages by Accept-Language or an `acg_lang` cookie; the rules read Chinese.
    switch = httpx.Response(200, json={"code": 0, "msg": "库存不足"}, headers={"Set-Cookie": "acg_lang=en; Path=/"})
    route = upstream.post(TRADE).mock(side_effect=[switch, fail("库存不足")])

    await supplier.place(request())
    await supplier.place(request())

    assert len(route.calls) == 2
    for call in route.calls:
        assert call.request.headers["accept-language"] == "zh-CN"
        assert "cookie" not in call.request.headers  # the cookie set by the first answer is not sent back


async def test_configured_contact_password_and_race_are_sent_but_password_not_kept(
    upstream: respx.MockRouter,
) -> None:
    adapter = AcgFakaSupplier("acg", settings(contact="ops@example.com", password="hunter22", race="EU"))
    route = upstream.post(TRADE).mock(return_value=fail("库存不足"))
    try:
        outcome = await adapter.place(request())
    finally:
        await adapter.aclose()

    sent = form(route.calls.last)
    assert (sent["contact"], sent["password"], sent["race"]) == ("ops@example.com", "hunter22", "EU")
    assert sent.pop("sign") == sign(sent, APP_KEY)
    assert outcome.evidence.request is not None
    assert "race=EU" in outcome.evidence.request
    assert "hunter22" not in outcome.evidence.request


async def test_the_engine_timeout_caps_the_call(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TRADE).mock(return_value=fail("库存不足"))

    await supplier.place(request(timeout=4.5))
    await supplier.place(request())

    capped, default = (call.request.extensions["timeout"] for call in route.calls)
    assert capped["read"] == 4.5 and capped["connect"] == 3.0
    assert default["read"] == 30.0


# --- failures by message text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        ("库存不足", ErrorClass.PRODUCT_UNAVAILABLE),
        ("商品种类不存在", ErrorClass.PRODUCT_UNAVAILABLE),
        ("该商品暂未上架", ErrorClass.PRODUCT_UNAVAILABLE),
        # Caps: this offer cannot serve the order, another may.
        ("该商品每人只能购买1件", ErrorClass.PRODUCT_UNAVAILABLE),
        ("本商品单次最多购买5个", ErrorClass.PRODUCT_UNAVAILABLE),
        ("本商品最少购买10个", ErrorClass.PRODUCT_UNAVAILABLE),
        ("密钥错误", ErrorClass.SUPPLIER_ACCOUNT),
        ("签名错误", ErrorClass.SUPPLIER_ACCOUNT),
        ("sign error", ErrorClass.SUPPLIER_ACCOUNT),
        ("商户ID不存在", ErrorClass.SUPPLIER_ACCOUNT),
        ("app_id not found", ErrorClass.SUPPLIER_ACCOUNT),
        ("余额不足", ErrorClass.SUPPLIER_ACCOUNT),
        ("You have been banned", ErrorClass.SUPPLIER_ACCOUNT),
        ("联系方式不能低于3个字符", ErrorClass.ORDER_REJECTED),
        ("您输入的邮箱格式不正确！", ErrorClass.ORDER_REJECTED),
        ("至少购买1个", ErrorClass.ORDER_REJECTED),
        ("购买数量不能低于1个", ErrorClass.ORDER_REJECTED),
        ("商品代码不能为空", ErrorClass.OUR_BUG),
    ],
)
async def test_known_failure_messages_are_final(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, msg: str, error: ErrorClass
) -> None:
    upstream.post(TRADE).mock(return_value=fail(msg))

    outcome = await supplier.place(request())

    assert (outcome.state, outcome.error) == (OrderState.FAILED, error)
    # A reselling shop's upstream may answer any unavailable or account text after our charge: probed by re-send.
    assert outcome.maybe_charged is (error in (ErrorClass.PRODUCT_UNAVAILABLE, ErrorClass.SUPPLIER_ACCOUNT))
    assert (outcome.evidence.code, outcome.evidence.message) == ("0", msg)
    assert outcome.cards == ()
    assert_clean(outcome.evidence)


@pytest.mark.parametrize("msg", ["商品不存在", "当前商品已停售"])
async def test_texts_a_reselling_shop_throws_after_the_charge_may_have_charged(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, msg: str
) -> None:
    upstream.post(TRADE).mock(return_value=fail(msg))

    outcome = await supplier.place(request())

    # Fail over (the offer is gone), but the engine re-sends the number first: EXISTS would mean charged.
    assert (outcome.state, outcome.error, outcome.maybe_charged) == (
        OrderState.FAILED,
        ErrorClass.PRODUCT_UNAVAILABLE,
        True,
    )
    assert (outcome.evidence.code, outcome.evidence.message) == ("0", msg)


async def test_a_repeated_request_no_is_exists(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(TRADE).mock(return_value=fail("The request ID already exists"))

    outcome = await supplier.place(request())

    # Recorded and charged before under this number; this answer tells no outcome and carries no goods.
    assert (outcome.state, outcome.error, outcome.cards) == (OrderState.EXISTS, None, ())
    assert (outcome.evidence.code, outcome.evidence.message) == ("0", "The request ID already exists")
    assert outcome.evidence.request is not None and "request_no=ab12cd0000042" in outcome.evidence.request


@pytest.mark.parametrize(
    "msg",
    [
        "系统繁忙，请稍后再试",  # unknown text: may have executed
        "",
        "<b>Fatal error</b>: Uncaught PDOException",
    ],
)
async def test_unknown_messages_are_ambiguous(supplier: AcgFakaSupplier, upstream: respx.MockRouter, msg: str) -> None:
    upstream.post(TRADE).mock(return_value=fail(msg))

    outcome = await supplier.place(request())

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert outcome.evidence.code == "0"
    assert outcome.evidence.message == msg


def test_repeated_request_no_wins_over_any_other_fragment() -> None:
    assert classify_message("The request ID already exists (库存不足)") is ErrorClass.AMBIGUOUS
    assert classify_message("the request id ALREADY exists") is ErrorClass.AMBIGUOUS


async def test_an_echoed_app_key_is_redacted(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(TRADE).mock(return_value=fail(f"密钥错误 {APP_KEY}"))

    outcome = await supplier.place(request())

    assert outcome.error is ErrorClass.SUPPLIER_ACCOUNT
    assert outcome.evidence.message == "密钥错误 <redacted>"
    assert_clean(outcome.evidence)


# --- unreadable answers and transport failures ----------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, html="<html><body>500 Internal Server Error</body></html>"),
        httpx.Response(
            200, text=f'{{"code":200,"msg":"success","data":{{"tradeNo":"T9","secret":"{CARD_TEXT}'
        ),
        httpx.Response(200, text='{"code":200,"msg":"suc'),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"msg": "no code"}),
        httpx.Response(200, content=b"\xff\xfe\x00garbage"),
        httpx.Response(500, json={"code": 0, "msg": "库存不足"}),
        httpx.Response(502, html="<h1>Bad Gateway</h1>"),
        httpx.Response(503, text=""),
        httpx.Response(404, html="<h1>Not Found</h1>"),
    ],
    ids=["html", "truncated-secret", "truncated", "array", "no-code", "bytes", "500", "502", "503", "404"],
)
async def test_unreadable_answers_are_ambiguous(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, response: httpx.Response
) -> None:
    upstream.post(TRADE).mock(return_value=response)

    outcome = await supplier.place(request())

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert outcome.evidence.http_status == response.status_code
    assert outcome.evidence.request is not None and "request_no=ab12cd0000042" in outcome.evidence.request
    assert_clean(outcome.evidence)


async def test_an_html_page_with_http_200_is_ambiguous(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    # What acg-faka answers for an unknown route, an internal error, or a request_no over its char(19): the
    # adapter cannot tell which, and only the last is known to charge nothing. Our numbers never exceed 19.
    page = "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>页面不存在</body></html>"
    upstream.post(TRADE).mock(return_value=httpx.Response(200, html=page))

    outcome = await supplier.place(request())

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert outcome.evidence.message == "an HTML page (HTTP 200), not an answer"
    assert outcome.evidence.response is not None and "404 Not Found" in outcome.evidence.response


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ReadTimeout("timed out"), ErrorClass.AMBIGUOUS),
        (httpx.RemoteProtocolError("peer closed connection"), ErrorClass.AMBIGUOUS),
        (httpx.ReadError("connection reset by peer"), ErrorClass.AMBIGUOUS),
        (httpx.WriteTimeout("write timed out"), ErrorClass.AMBIGUOUS),
        (httpx.ConnectError("connection refused"), ErrorClass.TRANSIENT),
        (httpx.ConnectTimeout("connect timed out"), ErrorClass.TRANSIENT),
    ],
)
async def test_transport_failures(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, exc: Exception, error: ErrorClass
) -> None:
    upstream.post(TRADE).mock(side_effect=exc)

    outcome = await supplier.place(request())

    assert (outcome.state, outcome.error) == (OrderState.ERROR, error)
    assert outcome.evidence.message is not None and type(exc).__name__ in outcome.evidence.message
    assert_clean(outcome.evidence)


class RaisingTransport(httpx.AsyncBaseTransport):
    """Raises what the aiohttp transport lets through, with the cause it keeps (respx drops causes)."""

    def __init__(self, exc: BaseException, cause: BaseException | None = None) -> None:
        self.exc, self.cause = exc, cause

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self.exc from self.cause


@pytest.mark.parametrize(
    ("exc", "cause", "error"),
    [
        # httpx-aiohttp turns a server hang-up after sending into ConnectTimeout: judged by the cause.
        (
            httpx.ConnectTimeout("Server disconnected"),
            aiohttp.ServerDisconnectedError(),
            ErrorClass.AMBIGUOUS,
        ),
        (
            httpx.ConnectTimeout("reset"),
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            ErrorClass.AMBIGUOUS,
        ),
        (ConnectionResetError(104, "Connection reset by peer"), None, ErrorClass.AMBIGUOUS),
        (TimeoutError(), None, ErrorClass.AMBIGUOUS),
        (aiohttp.ClientPayloadError("truncated"), None, ErrorClass.AMBIGUOUS),
    ],
    ids=["hang-up", "reset-wrapped", "reset-raw", "timeout-raw", "payload"],
)
async def test_errors_the_aiohttp_transport_passes_through(
    exc: BaseException, cause: BaseException | None, error: ErrorClass
) -> None:
    client = httpx.AsyncClient(transport=RaisingTransport(exc, cause))
    adapter = AcgFakaSupplier("acg", settings(), client=client)
    try:
        outcome = await adapter.place(request())
    finally:
        await adapter.aclose()

    assert (outcome.state, outcome.error) == (OrderState.ERROR, error)
    assert_clean(outcome.evidence)


# --- success ---------------------------------------------------------------------------------------------


async def test_success_parses_multiline_secret(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    secret = f"\r\n{CARD_TEXT}\r\n\r\n  NO-0002----PW-0002  \r\nNO-3,PW-3\r\n\r\n"
    upstream.post(TRADE).mock(return_value=ok({"tradeNo": "2411211530123", "amount": 19.8, "secret": secret}))

    outcome = await supplier.place(request(qty=3))

    assert outcome.state is OrderState.SUCCEEDED and outcome.error is None
    assert [(c.number, c.password) for c in outcome.cards] == [
        ("", CARD_TEXT),
        ("NO-0002", "PW-0002"),
        ("NO-3", "PW-3"),
    ]
    assert outcome.supplier_order_id == "2411211530123"
    assert outcome.cost == Decimal("19.8")
    assert outcome.evidence.code == "200"
    assert outcome.evidence.response is not None and "tradeNo=2411211530123" in outcome.evidence.response
    assert_clean(outcome.evidence)
    assert CARD_TEXT not in repr(outcome)


@pytest.mark.parametrize(
    ("secret", "qty", "quoted"),
    [
        (None, 1, None),
        ("", 1, None),
        ("\r\n\r\n", 1, None),
        # A manual-delivery item: the shop's default delivery message, or any text the shop set.
        ("正在发货中，请耐心等待，如有疑问，请联系客服。", 1, "正在发货中，请耐心等待，如有疑问，请联系客服。"),
        ("正在发货中，请耐心等待…", 2, "正在发货中，请耐心等待…"),
        ("您的订单已收到，24小时内由人工发货", 1, "您的订单已收到，24小时内由人工发货"),
        ("Thanks for your order. Keys are sent by hand within 24h.", 1, "Thanks for your order."),
        # A concurrent buyer took the last key: code 200, charged, no key.
        ("很抱歉，有人在你付款之前抢走了商品，请联系客服。", 1, "有人在你付款之前抢走了商品"),
        # Fewer lines than units: acg-faka gives all keys or none. The lines that may be keys stay hidden.
        (f"{CARD_TEXT}\nAAAA-BBBB", 3, "<redacted>\n<redacted>"),
        # A notice beside a key-like line: all of it is the shop's text, the key-like line never quoted.
        (f"正在发货中\n{CARD_TEXT}", 1, "正在发货中\n<redacted>"),
    ],
    ids=["none", "empty", "blank", "manual-default", "manual-short", "manual-custom", "manual-english", "grabbed",
         "short", "notice-and-key"],  # fmt: skip
)
async def test_success_with_the_shops_text_is_charged_without_goods(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, secret: str | None, qty: int, quoted: str | None
) -> None:
    upstream.post(TRADE).mock(return_value=ok({"tradeNo": "T2", "amount": "9.60", "secret": secret}))

    outcome = await supplier.place(request(qty=qty))

    # Charged: the engine claims the units; the shop's words never reach a customer as a key.
    assert (outcome.state, outcome.error, outcome.cards) == (OrderState.SUCCEEDED, None, ())
    assert (outcome.supplier_order_id, outcome.cost) == ("T2", Decimal("9.60"))
    message = outcome.evidence.message
    assert message is not None and CHARGED_WITHOUT_GOODS in message
    if quoted is not None:
        assert quoted in message
    assert_clean(outcome.evidence)


async def test_the_quoted_shop_text_is_short_and_scrubbed(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    text = f"正在发货中 {APP_KEY} " + "请耐心等待" * 200
    upstream.post(TRADE).mock(return_value=ok({"tradeNo": "T3", "secret": text}))

    outcome = await supplier.place(request(qty=1))

    assert outcome.state is OrderState.SUCCEEDED and outcome.cards == ()
    message = outcome.evidence.message or ""
    quote = message.split(": ", 1)[1]
    assert len(quote) <= QUOTE_LIMIT
    assert_clean(outcome.evidence)


@pytest.mark.parametrize(
    ("secret", "qty", "cards"),
    [
        ("PW1\nPW2", 2, 2),
        ("N1，P1", 1, 1),  # the full-width comma separates number and password: not prose
        ("ABCD EFGH IJKL", 1, 1),  # a grouped key: no sentence punctuation
        ("PW1\nPW2\nPW3", 2, 3),  # more lines than units: all returned, the engine's validation judges them
    ],
)
async def test_keys_are_read_as_cards(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, secret: str, qty: int, cards: int
) -> None:
    upstream.post(TRADE).mock(return_value=ok({"tradeNo": "T4", "secret": secret}))

    outcome = await supplier.place(request(qty=qty))

    assert outcome.state is OrderState.SUCCEEDED and len(outcome.cards) == cards
    assert outcome.evidence.message == "success"


async def test_key_pattern_option_decides_what_a_key_is(upstream: respx.MockRouter) -> None:
    adapter = AcgFakaSupplier("acg", settings(key_pattern=r"卡密：[A-Z0-9]{8}"))
    upstream.post(TRADE).mock(
        side_effect=[ok({"tradeNo": "T5", "secret": "卡密：ABCD1234"}), ok({"tradeNo": "T6", "secret": "Pending"})]
    )
    try:
        keys = await adapter.place(request(qty=1))  # CJK, yet the operator said this is what a key looks like
        text = await adapter.place(request(qty=1))
    finally:
        await adapter.aclose()

    assert [c.password for c in keys.cards] == ["卡密：ABCD1234"]
    assert text.state is OrderState.SUCCEEDED and text.cards == ()
    assert text.evidence.message is not None and "key_pattern" in text.evidence.message


def test_a_bad_key_pattern_is_refused_at_build() -> None:
    with pytest.raises(SupplierError, match="key_pattern"):
        AcgFakaSupplier("acg", settings(key_pattern="[A-Z"))


async def test_successes_without_msg_are_read(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    # Some acg-faka successes carry no `msg` at all.
    upstream.post(TRADE).mock(
        return_value=httpx.Response(200, json={"code": 200, "data": {"tradeNo": "T7", "secret": CARD_TEXT}})
    )
    upstream.post(f"{BASE}/shared/authentication/connect").mock(
        return_value=httpx.Response(200, json={"code": 200, "data": {"balance": "5.00"}})
    )
    upstream.post(f"{BASE}/shared/commodity/inventory").mock(
        return_value=httpx.Response(200, json={"code": 200, "data": {"count": 50, "delivery_way": 0}})
    )

    outcome = await supplier.place(request(qty=1))

    assert outcome.state is OrderState.SUCCEEDED and [c.password for c in outcome.cards] == [CARD_TEXT]
    assert await supplier.balance() == Balance(Decimal("5.00"))
    assert await supplier.check_stock("SC100", 1) == StockCheck(available=True, level="plenty")


@pytest.mark.parametrize("data", [None, [], {"secret": CARD_TEXT}, {"tradeNo": "", "secret": CARD_TEXT}])
async def test_success_without_trade_no_is_ambiguous(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, data: Any
) -> None:
    upstream.post(TRADE).mock(
        return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": data})
    )

    outcome = await supplier.place(request())

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert_clean(outcome.evidence)


@pytest.mark.parametrize(
    ("secret", "cards"),
    [
        ("PW1\nPW2", [("", "PW1"), ("", "PW2")]),
        ("N1----P1\r\nN2----P2", [("N1", "P1"), ("N2", "P2")]),
        ("N1\tP1", [("N1", "P1")]),
        ("N1，P1", [("N1", "P1")]),
        ("N1|P1", [("N1", "P1")]),
        ("N1   P1", [("N1", "P1")]),
        ("ABCD EFGH IJKL", [("", "ABCD EFGH IJKL")]),  # a grouped key stays whole
        ("XXXXX-YYYYY-ZZZZZ", [("", "XXXXX-YYYYY-ZZZZZ")]),  # single dashes belong to the key
        (",P1\nN1,", [("", ",P1"), ("", "N1,")]),  # an empty side: the whole line is the password
        ("A\rB\r\n\r\n  \n C ", [("", "A"), ("", "B"), ("", "C")]),
    ],
)
def test_parse_secret(secret: str, cards: list[tuple[str, str]]) -> None:
    assert [(c.number, c.password) for c in parse_secret(secret)] == cards


# --- query, balance, stock -------------------------------------------------------------------------------


async def test_query_cannot_look_up_our_number(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    outcome = await supplier.query(request())

    assert (outcome.state, outcome.error) == (OrderState.ERROR, ErrorClass.AMBIGUOUS)
    assert outcome.evidence.message == QUERY_UNSUPPORTED
    assert not upstream.calls  # nothing asked: there is no endpoint to ask


async def test_query_by_trade_no_finds_the_cards_of_a_paid_order(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    route = upstream.post(QUERY).mock(
        return_value=ok({"secret": f"{CARD_TEXT}\nNO-2----PW-2", "widget": None, "status": 1})
    )

    outcome = await supplier.query(request(supplier_order_id="240101123456789012"))

    assert (outcome.state, outcome.error) == (OrderState.SUCCEEDED, None)
    assert [(c.number, c.password) for c in outcome.cards] == [("", CARD_TEXT), ("NO-2", "PW-2")]
    assert outcome.supplier_order_id == "240101123456789012"
    sent = form(route.calls.last)
    assert sent.pop("sign") == sign(sent, APP_KEY)
    assert sent == {"app_id": "1001", "tradeNo": "240101123456789012"}  # our request_no is not a key there
    assert route.calls.last.request.headers["accept-language"] == "zh-CN"
    assert_clean(outcome.evidence)


async def test_query_of_a_paid_manual_delivery_order_has_no_goods(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    upstream.post(QUERY).mock(return_value=ok({"secret": "正在发货中，请耐心等待…", "status": 1}))

    outcome = await supplier.query(request(qty=1, supplier_order_id="T1"))

    # `status` is the payment status: paid, and still no key (delivery is not what it reports).
    assert (outcome.state, outcome.cards) == (OrderState.SUCCEEDED, ())
    assert outcome.evidence.message is not None and CHARGED_WITHOUT_GOODS in outcome.evidence.message


async def test_query_of_an_unpaid_order_is_not_found(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(QUERY).mock(return_value=ok({"secret": None, "status": 0}))

    outcome = await supplier.query(request(supplier_order_id="T1"))

    assert (outcome.state, outcome.error, outcome.cards) == (OrderState.NOT_FOUND, None, ())
    assert outcome.evidence.message is not None and UNPAID in outcome.evidence.message


@pytest.mark.parametrize(
    "response",
    [
        fail("订单不存在"),  # for a tradeNo a trade gave us: deleted, or another account; says nothing
        fail("密钥错误"),
        ok({"secret": CARD_TEXT}),  # no payment status
        httpx.Response(200, html="<html>404</html>"),
    ],
    ids=["missing", "bad-key", "no-status", "html"],
)
async def test_a_query_that_fails_says_nothing(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, response: httpx.Response
) -> None:
    upstream.post(QUERY).mock(return_value=response)

    outcome = await supplier.query(request(supplier_order_id="T1"))

    assert (outcome.state, outcome.error, outcome.cards) == (OrderState.ERROR, ErrorClass.AMBIGUOUS, ())
    assert outcome.evidence.message is not None
    assert_clean(outcome.evidence)


async def test_balance(supplier: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    route = upstream.post(f"{BASE}/shared/authentication/connect").mock(
        return_value=ok({"shopName": "up", "balance": "123.45"})
    )

    balance = await supplier.balance()

    assert balance is not None and balance.amount == Decimal("123.45")
    sent = form(route.calls.last)
    assert sent.pop("sign") == sign(sent, APP_KEY)
    assert sent == {"app_id": "1001"}


@pytest.mark.parametrize(
    "response", [fail(f"密钥错误 {APP_KEY}"), ok({"shopName": "up"}), httpx.Response(502, text="")]
)
async def test_balance_failure_raises_without_the_key(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, response: httpx.Response
) -> None:
    upstream.post(f"{BASE}/shared/authentication/connect").mock(return_value=response)

    with pytest.raises(SupplierError) as info:
        await supplier.balance()
    assert APP_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (ok({"count": 100, "delivery_way": 0}), (True, "plenty")),
        (ok({"count": "12"}), (True, "low")),
        (ok({"count": 2, "delivery_way": 0}), (False, "low")),
        (ok({"count": 0, "delivery_way": 0}), (False, "empty")),
        (ok({"count": 0, "delivery_way": 1}), (True, "unknown")),  # manual delivery: no count, still sells
        (ok({}), (True, "unknown")),
        (fail("库存不足"), (False, "empty")),
        (fail("当前商品已停售"), (False, "empty")),
        (fail("商品不存在"), (False, "empty")),
        (fail("密钥错误"), None),
        (httpx.Response(502, text=""), None),
    ],
)
async def test_check_stock(
    supplier: AcgFakaSupplier,
    upstream: respx.MockRouter,
    response: httpx.Response,
    expected: tuple[bool, str] | None,
) -> None:
    route = upstream.post(f"{BASE}/shared/commodity/inventory").mock(return_value=response)

    check = await supplier.check_stock("SC100", 3)

    assert (None if check is None else (check.available, check.level)) == expected
    sent = form(route.calls.last)
    assert sent.pop("sign") == sign(sent, APP_KEY)
    assert sent == {"app_id": "1001", "sharedCode": "SC100"}


# --- construction ---------------------------------------------------------------------------------------


def test_capabilities() -> None:
    assert AcgFakaSupplier.type_name == "acg_faka"
    assert AcgFakaSupplier.can_query is False
    assert AcgFakaSupplier.idempotent_place is True
    assert AcgFakaSupplier.asynchronous is False


@pytest.mark.parametrize("missing", ["base_url", "app_id", "app_key"])
def test_required_settings(missing: str) -> None:
    with pytest.raises(SupplierError, match=missing):
        AcgFakaSupplier("acg", {**settings(), missing: None})


async def test_repr_hides_the_key(supplier: AcgFakaSupplier) -> None:
    assert APP_KEY not in repr(supplier)


async def test_an_offer_without_product_id_is_our_bug(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter
) -> None:
    outcome = await supplier.place(request(product_id=None))

    assert (outcome.state, outcome.error) == (OrderState.FAILED, ErrorClass.OUR_BUG)
    assert not upstream.calls
