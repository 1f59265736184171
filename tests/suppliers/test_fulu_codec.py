"""Fulu v2 codec: signatures checked against strings written out by hand, card fields against openssl."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppliers.fulu_codec import (
    CODE_CLASSES,
    CardFieldError,
    classify_code,
    decrypt_card_field,
    encrypt_card_field,
    envelope,
    sign,
    sign_text,
    verify,
    verify_text,
)
from suppliers.taxonomy import ErrorClass

SECRET = "0123456789abcdefFEDCBA9876543210"  # 32 characters, like the platform's app secrets
NOW = datetime(2026, 11, 21, 16, 30, 5, tzinfo=UTC)


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# --- signing --------------------------------------------------------------------------------------------


def test_sign_matches_a_hand_sorted_string() -> None:
    # {"b":"2","a":1} -> characters sorted by code point: six '"', ',', '1', '2', two ':', 'a', 'b', '{', '}'
    obj = {"b": "2", "a": 1, "sign": "ignored"}
    assert sign(obj, "S3CR3T") == md5('""""""' + ",12::ab{}" + "S3CR3T")


def test_sign_ignores_key_order_but_not_values() -> None:
    assert sign({"a": 1, "b": "2"}, SECRET) == sign({"b": "2", "a": 1}, SECRET)
    assert sign({"a": 1, "b": "2"}, SECRET) != sign({"a": 1, "b": "3"}, SECRET)
    assert sign({"a": 1}, SECRET) != sign({"a": "1"}, SECRET)  # the text of a value counts, quotes included


def test_sign_keeps_cjk_and_slash_unescaped() -> None:
    # {"n":"王/"} -> four '"', '/' (47), ':' (58), 'n' (110), '{', '}', then 王 (U+738B)
    assert sign({"n": "王/"}, "k") == md5('""""/:n{}王' + "k")


def test_null_signs_as_null() -> None:
    # {"a":null} -> '"' '"' ':' 'a' 'l' 'l' 'n' 'u' '{' '}'
    assert sign({"a": None}, "k") == md5('"":allnu{}' + "k")


def test_sign_text_and_verify_text() -> None:
    result = '{"balance":12.5}'
    expected = md5("".join(sorted(result)) + SECRET)
    assert sign_text(result, SECRET) == expected
    assert verify_text(result, expected, SECRET)
    assert verify_text(result, expected.upper(), SECRET)  # hex case is not meaningful
    assert not verify_text(result + " ", expected, SECRET)
    assert not verify_text(result, None, SECRET)
    assert not verify_text(result, expected, "another-secret")


def test_verify_object() -> None:
    obj: dict[str, object] = {"customer_order_no": "N1", "order_status": "success", "price": 9.5}
    obj["sign"] = sign(obj, SECRET)
    assert verify(obj, SECRET)
    assert not verify({**obj, "order_status": "failed"}, SECRET)
    assert not verify({k: v for k, v in obj.items() if k != "sign"}, SECRET)
    assert not verify({**obj, "sign": 12345}, SECRET)


# --- envelope -------------------------------------------------------------------------------------------


def test_envelope_fields_timestamp_and_signature() -> None:
    body = envelope("APPKEY", "fulu.order.card.add", {"product_id": 10001, "buy_num": 1}, SECRET, NOW)

    signature = body.pop("sign")
    assert body == {
        "app_key": "APPKEY",
        "method": "fulu.order.card.add",
        "timestamp": "2026-11-22 00:30:05",  # 16:30:05 UTC is past midnight in Beijing
        "version": "2.0",
        "format": "json",
        "charset": "utf-8",
        "sign_type": "md5",
        "app_auth_token": "",
        "biz_content": '{"product_id":10001,"buy_num":1}',
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    assert signature == md5("".join(sorted(text)) + SECRET)


def test_envelope_timestamp_from_any_offset() -> None:
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    assert envelope("k", "m", {}, SECRET, tokyo)["timestamp"] == "2026-11-22 00:30:05"


def test_envelope_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        envelope("k", "m", {}, SECRET, datetime(2026, 1, 1))


def test_envelope_without_business_parameters() -> None:
    body = envelope("APPKEY", "fulu.user.info.get", {}, SECRET, NOW)
    assert body["biz_content"] == "{}"
    assert verify(body, SECRET)


def test_non_ascii_biz_content_is_unescaped_and_whitespace_changes_the_signature() -> None:
    biz = {"product_id": 2, "charge_account": "玩家一号", "charge_game_name": "王者荣耀/区服"}
    body = envelope("APPKEY", "fulu.order.direct.add", biz, SECRET, NOW)

    assert body["biz_content"] == '{"product_id":2,"charge_account":"玩家一号","charge_game_name":"王者荣耀/区服"}'
    assert "\\u" not in body["biz_content"] and "\\/" not in body["biz_content"]
    assert verify(body, SECRET)
    spaced = {**body, "biz_content": json.dumps(biz, ensure_ascii=False)}  # ", " and ": " separators
    assert sign(spaced, SECRET) != body["sign"]
    escaped = {**body, "biz_content": json.dumps(biz, separators=(",", ":"))}  # \uXXXX escapes
    assert sign(escaped, SECRET) != body["sign"]


# --- card fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cipher", "plain"),
    [
        # printf %s PLAIN | openssl enc -aes-256-ecb -K $(printf %s SECRET | xxd -p -c 64) -nosalt | base64
        ("U6dd1KuDL8S56L9pAyE48g==", "AB12-CD34-EF56"),
        ("Eu/ESBI2i3MsuFUjmmgi9w==", "pwd-9"),  # encrypted as "  pwd-9 ": trimmed
        ("HE54GN0OJU/1HYSv+YMJdw==", "卡密甲"),
    ],
)
def test_decrypt_known_ciphertexts(cipher: str, plain: str) -> None:
    assert decrypt_card_field(cipher, SECRET) == plain
    assert decrypt_card_field(f" {cipher}\n", SECRET) == plain


@pytest.mark.parametrize("plain", ["AB12-CD34-EF56", "x", "0123456789abcdef", "卡密-" * 20])
def test_card_round_trip(plain: str) -> None:
    cipher = encrypt_card_field(plain, SECRET)
    assert plain not in cipher
    assert decrypt_card_field(cipher, SECRET) == plain


def test_encrypt_matches_openssl() -> None:
    assert encrypt_card_field("AB12-CD34-EF56", SECRET) == "U6dd1KuDL8S56L9pAyE48g=="


def test_empty_card_field_is_legal() -> None:
    assert decrypt_card_field("", SECRET) == ""
    assert decrypt_card_field("  ", SECRET) == ""


@pytest.mark.parametrize(
    ("cipher", "secret"),
    [
        ("U6dd1KuDL8S56L9pAyE48g==", "x" * 32),  # wrong key: the padding does not check out
        ("not base64!!", SECRET),
        ("QUJD", SECRET),  # base64 of 3 bytes: not a whole AES block
        ("U6dd1KuDL8S56L9pAyE48g==", "short"),  # AES-256 needs a 32-byte secret
    ],
)
def test_undecryptable_fields_raise(cipher: str, secret: str) -> None:
    with pytest.raises(CardFieldError):
        decrypt_card_field(cipher, secret)


# --- result codes ---------------------------------------------------------------------------------------

# The protocol's table, written out here independently of the codec's.
PROTOCOL_TABLE: dict[int, ErrorClass] = {
    **{c: ErrorClass.OUR_BUG for c in [1000, 1001, 1002, 1003, 1005, *range(1007, 1016), 1017, 1018]},
    **{c: ErrorClass.OUR_BUG for c in [3000, 4000, 4001, 4002, 3008]},
    1004: ErrorClass.TRANSIENT,
    **{c: ErrorClass.SUPPLIER_ACCOUNT for c in [1006, 1016, 1019, 2002, 2003]},
    **{c: ErrorClass.PRODUCT_UNAVAILABLE for c in [3001, 3002, 3003, 3004, 3005]},
    4004: ErrorClass.ORDER_REJECTED,
    **{c: ErrorClass.AMBIGUOUS for c in [4008, 4009, 4012, 5000]},
    4010: ErrorClass.AMBIGUOUS,  # duplicate: query the same number
    4011: ErrorClass.AMBIGUOUS,  # not found (yet): keep querying
}


@pytest.mark.parametrize(("code", "expected"), sorted(PROTOCOL_TABLE.items()))
def test_every_protocol_code_has_its_class(code: int, expected: ErrorClass) -> None:
    assert classify_code(code) is expected


def test_code_table_has_exactly_the_protocol_codes() -> None:
    assert dict(CODE_CLASSES) == PROTOCOL_TABLE


def test_zero_is_not_an_error() -> None:
    assert classify_code(0) is None


@pytest.mark.parametrize("code", [-1, 1, 999, 1020, 2000, 3006, 4003, 4005, 4013, 5001, 9999])
def test_unknown_codes_are_ambiguous(code: int) -> None:
    assert classify_code(code) is ErrorClass.AMBIGUOUS


@given(text=st.text(max_size=400), secret=st.text(max_size=40))
def test_sign_text_is_md5_of_the_sorted_characters_and_the_secret(text: str, secret: str) -> None:
    # The protocol's definition, written the plain way (sign_text sorts distinct characters for speed).
    expected = hashlib.md5(("".join(sorted(text)) + secret).encode("utf-8")).hexdigest()
    assert sign_text(text, secret) == expected


@pytest.mark.parametrize(
    "text",
    ['{"a":"b/c","n":12}', '{"name":"腾讯Q币","n":1}', "", "~\x00\x7f", "é", "z" * 300 + "a"],
)
def test_sign_text_sorts_characters_on_both_paths(text: str) -> None:
    """ASCII texts take the byte sort, others the character count: the same definition either way."""
    assert sign_text(text, "S3CR3T") == md5("".join(sorted(text)) + "S3CR3T")


@given(st.text(max_size=200))
def test_sign_text_is_md5_of_the_sorted_characters(text: str) -> None:
    assert sign_text(text, "k") == md5("".join(sorted(text)) + "k")
