"""Properties: whatever a supplier answers, the adapters return an Outcome whose values fit their columns.

The answers come from Hypothesis, through a real `httpx.AsyncClient` on a `MockTransport` (no network):
arbitrary bytes, and well-formed envelopes (signed, for Fulu) around arbitrary JSON, so the parsing past
the envelope is exercised too.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppliers import values
from suppliers.acg_faka import AcgFakaSupplier
from suppliers.acg_faka_texts import parse_secret
from suppliers.base import PlaceRequest, Supplier
from suppliers.fulu import CallbackError, FuluSupplier, redact_body
from suppliers.fulu_codec import encrypt_card_field, sign, sign_text
from suppliers.taxonomy import Outcome

SECRET = "0123456789abcdefFEDCBA9876543210"
NUMBER = "ab12cd0000042"
CARD = {"card_number": encrypt_card_field("SN-1", SECRET), "card_pwd": encrypt_card_field("PWD-1", SECRET)}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What trips parsers: nesting past the recursion limit, and lone surrogates (which json.loads accepts).
deep_json = st.integers(1_000, 20_000).map(lambda n: "[" * n + "]" * n)
surrogates = st.text(alphabet=st.characters(categories=["Cs"]) | st.sampled_from("ab[]{}\""), min_size=1, max_size=8)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=200),
    surrogates,
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# Long strings where the columns are short.
long_text = st.text(min_size=100, max_size=400).map(lambda t: t * 25)
field_values = st.one_of(json_values, long_text)


def _request(**overrides: Any) -> PlaceRequest:
    fields: dict[str, Any] = {"number": NUMBER, "sku": "s", "product_id": "10001", "qty": 1, "kind": "card"}
    return PlaceRequest(**{**fields, **overrides})


def _answer(kind: str, call: str, body: bytes, status: int = 200) -> Outcome:
    """What the adapter of `kind` makes of `body` as the answer to `call`."""

    async def run() -> Outcome:
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(status, content=body)))
        adapter: Supplier
        if kind == "fulu":
            adapter = FuluSupplier("fulu", FULU, client=client, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
            request = _request()
        else:
            adapter = AcgFakaSupplier("acg", ACG, client=client)
            request = _request(product_id="SC100")
        try:
            outcome: Outcome = await (adapter.place(request) if call == "place" else adapter.query(request))
            return outcome
        finally:
            await client.aclose()

    return asyncio.run(run())


def assert_fits(outcome: Outcome) -> None:
    assert isinstance(outcome, Outcome)
    assert outcome.supplier_order_id is None or len(outcome.supplier_order_id) <= values.MAX_SUPPLIER_ORDER_ID
    assert all(card.expires is None or len(card.expires) <= values.MAX_EXPIRES for card in outcome.cards)
    evidence = outcome.evidence
    assert len(evidence.message or "") <= values.MAX_MESSAGE and len(evidence.code or "") <= values.MAX_CODE
    assert len(evidence.response or "") <= values.MAX_EXCERPT and len(evidence.request or "") <= values.MAX_EXCERPT
    for text in (outcome.supplier_order_id, evidence.message, evidence.response, *(c.expires for c in outcome.cards)):
        (text or "").encode("utf-8")  # storable: no lone surrogate


FULU = {"base_url": "http://fulu.test/g", "app_key": "k", "secret": SECRET}
ACG = {"base_url": "http://acg.test", "app_id": "1", "app_key": "k"}


# --- Fulu -------------------------------------------------------------------------------------------------


@PROPERTY
@given(body=st.binary(max_size=600) | deep_json.map(str.encode), call=st.sampled_from(["place", "query"]))
def test_fulu_any_bytes_are_an_outcome(body: bytes, call: str) -> None:
    assert_fits(_answer("fulu", call, body))


orders = st.fixed_dictionaries(
    {
        "order_id": field_values,
        "customer_order_no": st.sampled_from([NUMBER, "other"]),
        "order_state": st.one_of(st.sampled_from(["success", "failed", "processing", "untreated"]), json_values),
        "order_price": field_values,
        "cards": st.one_of(
            json_values,
            st.lists(st.fixed_dictionaries({"card_deadline": field_values}).map(lambda d: {**CARD, **d}), max_size=3),
        ),
    }
)


@PROPERTY
@given(
    code=st.one_of(st.integers(-5, 5000), json_values),
    message=field_values,
    result=st.one_of(orders.map(lambda order: json.dumps(order, ensure_ascii=False)), deep_json),
    call=st.sampled_from(["place", "query"]),
)
def test_fulu_any_signed_answer_is_an_outcome_that_fits(code: Any, message: Any, result: str, call: str) -> None:
    try:
        signature = sign_text(result, SECRET)
    except UnicodeEncodeError:
        signature = "0" * 32  # a lone surrogate cannot be signed (nor can the supplier sign it)
    envelope = {"code": code, "message": message, "result": result, "sign": signature}
    body = json.dumps(envelope).encode("ascii")  # lone surrogates travel as \ud800 escapes
    assert_fits(_answer("fulu", call, body))


@PROPERTY
@given(text=st.text(max_size=600) | deep_json)
def test_fulu_redaction_never_raises(text: str) -> None:
    assert len(redact_body(text)) <= 4 * 2000 + len("<redacted>")


@PROPERTY
@given(
    data=st.one_of(
        st.binary(max_size=300),
        deep_json.map(str.encode),
        st.dictionaries(st.text(max_size=20), json_values).map(
            lambda d: json.dumps({**d, "sign": sign(d, SECRET) if _encodable(d) else "x"}).encode()
        ),
    )
)
def test_fulu_callbacks_parse_or_raise_callback_error(data: bytes) -> None:
    adapter = FuluSupplier("fulu", FULU, client=httpx.AsyncClient())
    try:
        adapter.parse_callback(data, {})
    except CallbackError:
        pass
    finally:
        asyncio.run(adapter.aclose())


def _encodable(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- acg-faka ---------------------------------------------------------------------------------------------


@PROPERTY
@given(body=st.binary(max_size=600) | deep_json.map(str.encode), status=st.sampled_from([200, 500]))
def test_acg_any_bytes_are_an_outcome(body: bytes, status: int) -> None:
    assert_fits(_answer("acg", "place", body, status))


@PROPERTY
@given(
    code=st.one_of(st.just(200), json_values),
    msg=field_values,
    data=st.one_of(
        json_values,
        st.fixed_dictionaries({"tradeNo": field_values, "secret": field_values, "amount": field_values}),
    ),
)
def test_acg_any_json_answer_is_an_outcome_that_fits(code: Any, msg: Any, data: Any) -> None:
    body = json.dumps({"code": code, "msg": msg, "data": data}).encode("ascii")
    assert_fits(_answer("acg", "place", body))


@PROPERTY
@given(secret=st.text(max_size=500))
def test_acg_secret_text_always_parses(secret: str) -> None:
    assert all(card.password for card in parse_secret(secret))
