"""Properties of both supplier codecs' signatures, and of the callbacks they guard.

- sign then verify round-trips for any parameters (Fulu: any JSON object; acg-faka: any form fields);
- any single-byte change to a signed body fails verification, unless it left what is signed unchanged
  (JSON whitespace or the case of the hex signature; an acg-faka field whose value is empty, which the
  protocol leaves out of the signature);
- a Fulu callback with any body and any headers is a notice or a `CallbackError` (the admin server's 400);
  an acg-faka supplier has no callbacks (None: the admin server's 404), whatever it is sent.

Unit tests of the exact signing rules are in tests/suppliers/test_fulu_codec.py and test_acg_faka.py; parsing
of arbitrary answers in tests/suppliers/test_answer_properties.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from suppliers import acg_faka_codec as acg
from suppliers import fulu_codec as fulu
from suppliers.acg_faka import AcgFakaSupplier
from suppliers.fulu import CallbackError, FuluSupplier

SECRET = "0123456789abcdefFEDCBA9876543210"
APP_KEY = "acg-app-key"
PROPERTY = settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

utf8_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), utf8_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(utf8_text, inner, max_size=3),
    max_leaves=10,
)
fulu_objects = st.dictionaries(utf8_text.filter(lambda k: k != "sign"), json_values, max_size=6)
callbacks = st.fixed_dictionaries(
    {
        "customer_order_no": st.from_regex(r"\A[A-Z0-9]{8,20}\Z"),
        "order_id": st.from_regex(r"\A[0-9]{6,12}\Z"),
        "order_status": st.sampled_from(["success", "failed", "processing"]),
    },
    optional={"charge_finish_time": utf8_text, "order_price": st.decimals(0, 1000, places=2).map(str)},
)
form_fields = st.dictionaries(
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12).filter(lambda k: k != "sign"),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    max_size=6,
)
headers = st.dictionaries(
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z"), st.text(alphabet=st.characters(codec="latin-1"), max_size=40)
)


def _one_byte_changed(data: bytes, position: int, byte: int) -> bytes:
    assume(data and data[position % len(data)] != byte)
    i = position % len(data)
    return data[:i] + bytes([byte]) + data[i + 1 :]


@pytest.fixture(scope="module")
def suppliers() -> Iterator[tuple[FuluSupplier, AcgFakaSupplier]]:
    """One adapter of each kind (parsing a callback is synchronous and does no I/O)."""
    pair = (
        FuluSupplier("fulu", {"base_url": "http://fulu.test/g", "app_key": "k", "secret": SECRET},
                     client=httpx.AsyncClient()),
        AcgFakaSupplier("acg", {"base_url": "http://acg.test", "app_id": "1", "app_key": APP_KEY}),
    )  # fmt: skip
    yield pair
    for supplier in pair:
        asyncio.run(supplier.aclose())


def _same_signed_object(a: Any, b: Any) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    low = {**a, "sign": str(a.get("sign")).lower()}, {**b, "sign": str(b.get("sign")).lower()}
    return low[0] == low[1]


# --- Fulu ------------------------------------------------------------------------------------------------


@PROPERTY
@given(obj=fulu_objects)
def test_fulu_sign_then_verify(obj: dict[str, Any]) -> None:
    signed = {**obj, "sign": fulu.sign(obj, SECRET)}
    assert fulu.verify(signed, SECRET)
    assert fulu.verify({**signed, "sign": signed["sign"].upper()}, SECRET)  # hex in either case
    assert not fulu.verify(signed, SECRET[::-1])


@PROPERTY
@given(obj=callbacks, position=st.integers(0, 10_000), byte=st.integers(0, 255), compact=st.booleans())
@example(obj={"customer_order_no": "AB12", "order_id": "1", "order_status": "success"}, position=2, byte=ord("X"),
         compact=True)  # fmt: skip
def test_fulu_a_signed_callback_with_one_byte_changed_is_refused_or_means_the_same(
    suppliers: tuple[FuluSupplier, AcgFakaSupplier], obj: dict[str, Any], position: int, byte: int, compact: bool
) -> None:
    adapter = suppliers[0]
    signed = {**obj, "sign": fulu.sign(obj, SECRET)}
    body = json.dumps(signed, ensure_ascii=False, separators=(",", ":") if compact else None).encode()
    notice = adapter.parse_callback(body, {})
    assert notice is not None and notice.number == obj["customer_order_no"]
    changed = _one_byte_changed(body, position, byte)
    try:
        adapter.parse_callback(changed, {})
    except CallbackError:
        return
    assert _same_signed_object(json.loads(changed), signed), f"{changed!r} verified"


@PROPERTY
@given(text=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200), position=st.integers(0, 10_000),
       byte=st.integers(0, 255))  # fmt: skip
def test_fulu_a_signed_result_with_one_byte_changed_fails_verification(text: str, position: int, byte: int) -> None:
    signature = fulu.sign_text(text, SECRET)
    assert fulu.verify_text(text, signature, SECRET)
    changed = _one_byte_changed(text.encode(), position, byte)
    try:
        changed_text = changed.decode()
    except UnicodeDecodeError:
        return  # the adapter refuses an answer that is not UTF-8 before any signature
    assert not fulu.verify_text(changed_text, signature, SECRET)


def test_fulu_signatures_ignore_character_order() -> None:
    # The protocol signs the *sorted characters* of the text: a permutation verifies. Said here so nobody
    # relies on a Fulu signature for more than it gives; callbacks are only hints, confirmed by a query.
    assert fulu.verify_text('{"price":"91.00"}', fulu.sign_text('{"price":"19.00"}', SECRET), SECRET)


@PROPERTY
@given(
    body=st.one_of(
        st.binary(max_size=200),
        callbacks.map(lambda o: json.dumps({**o, "sign": fulu.sign(o, SECRET)}).encode()),
        fulu_objects.map(lambda o: json.dumps({**o, "sign": fulu.sign(o, SECRET)}, ensure_ascii=False).encode()),
    ),
    head=headers,
)
def test_fulu_any_callback_with_any_headers_is_a_notice_or_a_callback_error(
    suppliers: tuple[FuluSupplier, AcgFakaSupplier], body: bytes, head: dict[str, str]
) -> None:
    try:
        notice = suppliers[0].parse_callback(body, head)
    except CallbackError:
        return
    assert notice is not None and isinstance(notice.number, str) and notice.number
    assert isinstance(notice.status, str)


# --- acg-faka ------------------------------------------------------------------------------------------


@PROPERTY
@given(params=form_fields)
def test_acg_sign_then_verify(params: dict[str, str]) -> None:
    body = acg.signed(params, APP_KEY)
    assert acg.verify(body, APP_KEY)
    assert acg.verify({**body, "sign": body["sign"].upper()}, APP_KEY)
    assert not acg.verify(body, APP_KEY + "x")
    assert not acg.verify(params, APP_KEY)  # no sign at all


@PROPERTY
@given(params=form_fields, position=st.integers(0, 10_000), byte=st.integers(0, 255))
@example(params={"a": "1", "b": ""}, position=6, byte=ord("c"))  # the key of an empty (unsigned) field
def test_acg_a_signed_form_with_one_byte_changed_is_refused_or_signs_the_same(
    params: dict[str, str], position: int, byte: int
) -> None:
    signed = acg.signed(params, APP_KEY)
    body = urlencode(signed).encode()
    changed = _one_byte_changed(body, position, byte)
    received = dict(parse_qsl(changed.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace"))
    if not acg.verify(received, APP_KEY):
        return
    assert acg.sign_text(received) == acg.sign_text(signed), f"{changed!r} verified"


@PROPERTY
@given(body=st.binary(max_size=200), head=headers)
def test_acg_has_no_callbacks_whatever_it_is_sent(
    suppliers: tuple[FuluSupplier, AcgFakaSupplier], body: bytes, head: dict[str, str]
) -> None:
    assert suppliers[1].parse_callback(body, head) is None
