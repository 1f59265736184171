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

from suppliers.acg_faka import (
    NO_CARD_CONTENT,
    QUERY_UNSUPPORTED,
    AcgFakaSupplier,
    classify_message,
    parse_secret,
)
from suppliers.acg_faka_codec import sign
from suppliers.base import PlaceRequest
from suppliers.taxonomy import ErrorClass, Evidence, OrderState, SupplierError

BASE = "http://upstream.test"
TRADE = f"{BASE}/shared/commodity/trade"
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
        ("商品不存在", ErrorClass.PRODUCT_UNAVAILABLE),
        ("当前商品已停售", ErrorClass.PRODUCT_UNAVAILABLE),
        ("库存不足", ErrorClass.PRODUCT_UNAVAILABLE),
        ("商品种类不存在", ErrorClass.PRODUCT_UNAVAILABLE),
        ("密钥错误", ErrorClass.SUPPLIER_ACCOUNT),
        ("签名错误", ErrorClass.SUPPLIER_ACCOUNT),
        ("sign error", ErrorClass.SUPPLIER_ACCOUNT),
        ("商户ID不存在", ErrorClass.SUPPLIER_ACCOUNT),
        ("app_id not found", ErrorClass.SUPPLIER_ACCOUNT),
        ("余额不足", ErrorClass.SUPPLIER_ACCOUNT),
        ("联系方式不能低于3个字符", ErrorClass.ORDER_REJECTED),
        ("您输入的邮箱格式不正确！", ErrorClass.ORDER_REJECTED),
        ("至少购买1个", ErrorClass.ORDER_REJECTED),
        ("本商品单次最多购买5个", ErrorClass.ORDER_REJECTED),
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
    assert (outcome.evidence.code, outcome.evidence.message) == ("0", msg)
    assert outcome.cards == ()
    assert_clean(outcome.evidence)


@pytest.mark.parametrize(
    "msg",
    [
        "The request ID already exists",  # placed before under this number: the outcome is not visible
        "系统繁忙，请稍后再试",  # unknown text: may have executed
        "",
        "<b>Fatal error</b>: Uncaught PDOException",
    ],
)
async def test_repeated_request_no_and_unknown_messages_are_ambiguous(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, msg: str
) -> None:
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
    "secret",
    [
        None,
        "",
        "\r\n\r\n",
        "正在发货中，请耐心等待，如有疑问，请联系客服。",
        "很抱歉，有人在你付款之前抢走了商品，请联系客服。",
    ],
)
async def test_success_without_card_content_is_charged_with_no_cards(
    supplier: AcgFakaSupplier, upstream: respx.MockRouter, secret: str | None
) -> None:
    upstream.post(TRADE).mock(return_value=ok({"tradeNo": "T2", "secret": secret}))

    outcome = await supplier.place(request(qty=1))

    # Charged: the engine finds the unit missing and claims it; a notice never reaches a customer as a key.
    assert outcome.state is OrderState.SUCCEEDED
    assert outcome.cards == ()
    assert outcome.supplier_order_id == "T2"
    assert outcome.evidence.message is not None and NO_CARD_CONTENT in outcome.evidence.message


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
