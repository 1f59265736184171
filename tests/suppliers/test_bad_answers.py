"""Bad input at the supplier edge: answers nested too deep, too large, or with values longer than their columns.

Every one of them is a classified outcome (AMBIGUOUS: the purchase may exist), never an exception out of
`place`/`query`, and every value that reaches the store fits its column.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from suppliers import values
from suppliers.acg_faka import AcgFakaSupplier
from suppliers.base import PlaceRequest
from suppliers.fulu import CallbackError, FuluSupplier
from suppliers.fulu_codec import encrypt_card_field, sign_text
from suppliers.http import MAX_RESPONSE_BYTES, HttpSettings
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome

GATEWAY = "http://fulu.test/api/getway"
SECRET = "0123456789abcdefFEDCBA9876543210"
NUMBER = "ab12cd0000042"
ACG = "http://upstream.test"
TRADE = f"{ACG}/shared/commodity/trade"
DEEP = 100_000
LONG = 10_000


def fulu_settings(**overrides: Any) -> dict[str, Any]:
    return {"base_url": GATEWAY, "app_key": "key", "secret": SECRET, "transport": "aiohttp", **overrides}


def acg_settings(**overrides: Any) -> dict[str, Any]:
    return {"base_url": ACG, "app_id": "1001", "app_key": "k3y", "transport": "aiohttp", **overrides}


def request(**overrides: Any) -> PlaceRequest:
    fields: dict[str, Any] = {"number": NUMBER, "sku": "steam-100", "product_id": "10001", "qty": 1, "kind": "card"}
    return PlaceRequest(**{**fields, **overrides})


def signed(code: int, result_text: str, message: str = "") -> httpx.Response:
    body = {"code": code, "message": message, "result": result_text, "sign": sign_text(result_text, SECRET)}
    return httpx.Response(200, json=body)


def deep(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    with respx.mock(using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def fulu() -> AsyncIterator[FuluSupplier]:
    adapter = FuluSupplier("fulu", fulu_settings(), clock=lambda: datetime(2026, 11, 21, tzinfo=UTC))
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def acg() -> AsyncIterator[AcgFakaSupplier]:
    adapter = AcgFakaSupplier("acg", acg_settings())
    yield adapter
    await adapter.aclose()


def assert_ambiguous(outcome: Outcome, note: str) -> None:
    assert outcome.state is OrderState.ERROR
    assert outcome.error is ErrorClass.AMBIGUOUS
    assert note in (outcome.evidence.message or "")


# --- nesting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text=deep()),  # the envelope itself
        httpx.Response(200, text='{"code":0,"result":' + deep() + "}"),
        signed(0, deep()),  # the signed result string
    ],
    ids=["envelope", "envelope-field", "signed-result"],
)
async def test_fulu_deeply_nested_answer_is_ambiguous(
    fulu: FuluSupplier, upstream: respx.MockRouter, reply: httpx.Response
) -> None:
    upstream.post(GATEWAY).mock(return_value=reply)
    assert_ambiguous(await fulu.place(request()), "")
    assert_ambiguous(await fulu.query(request()), "")


async def test_fulu_lone_surrogate_in_the_answer_is_ambiguous(fulu: FuluSupplier, upstream: respx.MockRouter) -> None:
    # json.loads accepts "\ud800"; signing it would raise UnicodeEncodeError out of place().
    upstream.post(GATEWAY).mock(return_value=httpx.Response(200, text='{"code":0,"result":"\\ud800","sign":"x"}'))
    assert_ambiguous(await fulu.place(request()), "unreadable answer")


@pytest.mark.parametrize(
    "body",
    [deep().encode(), b'{"customer_order_no":' + deep().encode() + b"}", b"1" * 5000, b'{"a":"\\udc00"}'],
    ids=["deep", "deep-field", "long-integer", "lone-surrogate"],
)
def test_fulu_callback_with_bad_json_is_a_callback_error(fulu: FuluSupplier, body: bytes) -> None:
    with pytest.raises(CallbackError):  # a ValueError: the admin server answers 400
        fulu.parse_callback(body, {})


async def test_acg_deeply_nested_answer_is_ambiguous(acg: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(TRADE).mock(return_value=httpx.Response(200, text='{"code":200,"data":' + deep() + "}"))
    assert_ambiguous(await acg.place(request(product_id="SC100")), "unreadable answer")


# --- size -------------------------------------------------------------------------------------------------


def test_the_response_cap_defaults_to_one_mebibyte_and_is_a_setting() -> None:
    assert HttpSettings.from_settings({}).max_response_bytes == MAX_RESPONSE_BYTES == 1024 * 1024
    assert HttpSettings.from_settings({"max_response_bytes": 4096}).max_response_bytes == 4096


def _huge_success(size: int) -> str:
    result = json.dumps({"order_id": "F1", "customer_order_no": NUMBER, "order_state": "success", "pad": "x" * size})
    return json.dumps({"code": 0, "message": "", "result": result, "sign": sign_text(result, SECRET)})


async def _chunks(text: str) -> AsyncIterator[bytes]:
    data = text.encode()
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_fulu_answer_over_the_cap_is_ambiguous(
    fulu: FuluSupplier, upstream: respx.MockRouter, declared: bool
) -> None:
    text = _huge_success(MAX_RESPONSE_BYTES + 1)  # a well-signed success, but larger than we read
    reply = httpx.Response(200, text=text) if declared else httpx.Response(200, stream=_Stream(text))
    upstream.post(GATEWAY).mock(return_value=reply)
    outcome = await fulu.query(request())
    assert_ambiguous(outcome, f"answer over the {MAX_RESPONSE_BYTES}-byte cap")
    assert len(outcome.evidence.response or "") <= values.MAX_EXCERPT


async def test_fulu_answer_under_the_cap_is_read(fulu: FuluSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(GATEWAY).mock(return_value=httpx.Response(200, stream=_Stream(_huge_success(500_000))))
    outcome = await fulu.query(request())
    assert outcome.state is OrderState.SUCCEEDED


async def test_acg_answer_over_a_configured_cap_is_ambiguous(upstream: respx.MockRouter) -> None:
    adapter = AcgFakaSupplier("acg", acg_settings(max_response_bytes=4096))
    try:
        body = {"code": 200, "msg": "success", "data": {"tradeNo": "T1", "secret": "K" * 5000}}
        upstream.post(TRADE).mock(return_value=httpx.Response(200, stream=_Stream(json.dumps(body))))
        outcome = await adapter.place(request(product_id="SC100"))
    finally:
        await adapter.aclose()
    assert_ambiguous(outcome, "answer over the 4096-byte cap")
    assert "KKKK" not in json.dumps(outcome.evidence.as_dict())  # the excerpt stops before `secret`


class _Stream(httpx.AsyncByteStream):
    """A body without Content-Length, sent in chunks: only counting while reading can stop it."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in _chunks(self.text):
            yield chunk


# --- values longer than their columns ---------------------------------------------------------------------


async def test_fulu_long_values_fit_their_columns(fulu: FuluSupplier, upstream: respx.MockRouter) -> None:
    card = {
        "card_number": encrypt_card_field("SN-1", SECRET),
        "card_pwd": encrypt_card_field("PWD-1", SECRET),
        "card_deadline": "9" * LONG,
    }
    order = {"order_id": "F" * LONG, "customer_order_no": NUMBER, "order_state": "success", "cards": [card]}
    upstream.post(GATEWAY).mock(return_value=signed(0, json.dumps(order), message="m" * LONG))
    outcome = await fulu.query(request())
    assert outcome.state is OrderState.SUCCEEDED
    assert outcome.supplier_order_id is not None and len(outcome.supplier_order_id) == values.MAX_SUPPLIER_ORDER_ID
    assert outcome.supplier_order_id.startswith("FFFF")
    assert [c.expires for c in outcome.cards] == ["9" * values.MAX_EXPIRES]
    assert [c.password for c in outcome.cards] == ["PWD-1"]
    assert len(outcome.evidence.message or "") <= values.MAX_MESSAGE
    assert len(outcome.evidence.response or "") <= values.MAX_EXCERPT


async def test_acg_long_values_fit_their_columns(acg: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    body = {"code": 200, "msg": "s" * LONG, "data": {"tradeNo": "T" * LONG, "secret": "CARD-1"}}
    upstream.post(TRADE).mock(return_value=httpx.Response(200, json=body))
    outcome = await acg.place(request(product_id="SC100"))
    assert outcome.state is OrderState.SUCCEEDED
    assert outcome.supplier_order_id is not None and len(outcome.supplier_order_id) == values.MAX_SUPPLIER_ORDER_ID
    assert len(outcome.evidence.message or "") <= values.MAX_MESSAGE
    assert len(outcome.evidence.response or "") <= values.MAX_EXCERPT


async def test_acg_long_failure_message_fits(acg: AcgFakaSupplier, upstream: respx.MockRouter) -> None:
    upstream.post(TRADE).mock(return_value=httpx.Response(200, json={"code": 0, "msg": "库存不足" + "!" * LONG}))
    outcome = await acg.place(request(product_id="SC100"))
    assert outcome.error is ErrorClass.PRODUCT_UNAVAILABLE
    assert len(outcome.evidence.message or "") <= values.MAX_MESSAGE


def test_long_supplier_order_ids_stay_unique_and_findable() -> None:
    a, b = "X" * 200 + "a", "X" * 200 + "b"
    assert values.supplier_order_id(a) != values.supplier_order_id(b)
    assert Outcome(OrderState.PENDING, supplier_order_id=a).supplier_order_id == values.supplier_order_id(a)
    assert values.supplier_order_id("F" * 128) == "F" * 128  # up to the column's size: as it is
    assert values.supplier_order_id("F\x00") == "F\ufffd"  # PostgreSQL text refuses NUL


def test_evidence_keeps_the_start_and_the_appended_note() -> None:
    message = values.clip("supplier said " + "x" * LONG + "; answer signature does not verify", values.MAX_MESSAGE)
    assert len(message) == values.MAX_MESSAGE
    assert message.startswith("supplier said ") and message.endswith("answer signature does not verify")
    assert values.CUT_MARKER in message
    assert Evidence(message="short").message == "short"
    assert Card(password="p", expires="2027-12-31").expires == "2027-12-31"


# --- the JSON reader --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [deep(), deep(values.MAX_JSON_DEPTH + 1), "1" * 5000, '"\\ud800"', b"\xff\xfe\x00", "{", ""],
    ids=["deep", "just-too-deep", "long-int", "lone-surrogate", "bad-bytes", "truncated", "empty"],
)
def test_load_json_raises_only_json_error(text: str | bytes) -> None:
    with pytest.raises(values.JsonError):
        values.load_json(text)


def test_load_json_reads_what_it_should() -> None:
    assert values.load_json(deep(values.MAX_JSON_DEPTH)) == values.load_json(deep(values.MAX_JSON_DEPTH))
    assert values.load_json('{"a":"[[[[[[' + "[" * 100 + '"}')["a"].startswith("[")  # brackets in strings
    assert values.load_json('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character
    assert values.load_json('{"sign":"x"}'.encode("utf-16")) == {"sign": "x"}
