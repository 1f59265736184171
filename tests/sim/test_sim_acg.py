"""The acg-faka shared-shop protocol: form POSTs, MD5 sign, synchronous trades, Chinese error texts."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import httpx
import pytest
from simkit import ACG_ID, ACG_KEY, AcgClient, scenario

from suppliers import acg_faka_codec
from suppliers.sim import running_sim
from suppliers.sim.cards import CardPattern

STEAM = CardPattern.parse("[A-Z0-9]{16}")


def test_sign_rule() -> None:
    params = {"app_id": "7", "num": "1", "shared_code": "abc", "contact": "", "sign": "ignored"}
    # empty values and `sign` are left out; keys sorted; "&key=" + app_key; md5 hex
    assert acg_faka_codec.sign_text(params) == "app_id=7&num=1&shared_code=abc"
    assert acg_faka_codec.sign(params, "K") == hashlib.md5(b"app_id=7&num=1&shared_code=abc&key=K").hexdigest()
    body = acg_faka_codec.signed(params, "K")
    assert acg_faka_codec.verify(body, "K") and not acg_faka_codec.verify(body, "other")
    assert not acg_faka_codec.verify({"app_id": "7"}, "K")


async def test_connect(acg: AcgClient) -> None:
    answer = await acg.post("/shared/authentication/connect", {})
    assert answer == {
        "code": 200,
        "msg": "success",
        "data": {"shopName": "fulfil simulator", "balance": "500.00"},
    }


async def test_trade_answers_synchronously_with_card_lines(acg: AcgClient) -> None:
    answer = await acg.trade("R-1", num=3)
    assert answer["code"] == 200
    lines = answer["data"]["secret"].split("\n")
    assert len(lines) == 3 and all(STEAM.matches(line) for line in lines)
    assert answer["data"]["amount"] == "288.00"
    order = acg.sim.ledger.by_number("R-1")
    assert order is not None and order.state == "success" and order.supplier_order_id == answer["data"]["tradeNo"]
    query = await acg.query(answer["data"]["tradeNo"])
    assert query["code"] == 200 and query["data"]["secret"] == answer["data"]["secret"]


async def test_repeated_request_no_is_refused_and_not_charged(acg: AcgClient) -> None:
    assert (await acg.trade("R-1"))["code"] == 200
    again = await acg.trade("R-1")
    assert again == {"code": 0, "msg": "The request ID already exists"}
    assert len(acg.sim.ledger.orders) == 1 and acg.sim.ledger.balance == Decimal("404.00")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"shared_code": "nope", "num": "1"}, "商品不存在"),
        ({"shared_code": "retired", "num": "1"}, "当前商品已停售"),
        ({"shared_code": "steam-100", "num": "21"}, "库存不足"),
        ({"shared_code": "steam-100", "num": "6"}, "余额不足"),  # 6 x 96 > 500
        ({"shared_code": "steam-100", "num": "0"}, "购买数量不能低于1个"),
        ({"num": "1"}, "商品代码不能为空"),
    ],
)
async def test_trade_errors(acg: AcgClient, params: dict[str, str], message: str) -> None:
    answer = await acg.post("/shared/commodity/trade", {**params, "request_no": "E-1"})
    assert answer == {"code": 0, "msg": message}
    assert acg.sim.ledger.orders == []


async def test_authentication_errors(acg: AcgClient) -> None:
    assert await acg.post("/shared/authentication/connect", {}, key="wrong") == {"code": 0, "msg": "密钥错误"}
    body = acg_faka_codec.signed({"app_id": ACG_ID + "9"}, ACG_KEY)
    response = await acg.http.post(acg.sim.url + "/shared/authentication/connect", data=body)
    assert response.json() == {"code": 0, "msg": "商户ID不存在"}


async def test_query_unknown_trade(acg: AcgClient) -> None:
    assert await acg.query("nope") == {"code": 0, "msg": "订单不存在"}


async def test_inventory(acg: AcgClient) -> None:
    answer = await acg.post("/shared/commodity/inventory", {"sharedCode": "steam-100"})
    assert answer["code"] == 200 and answer["data"]["count"] == 20


async def test_lost_after_commit_cannot_be_queried(acg_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with running_sim(scenario(acg_data, faults=[{"kind": "lost_after_commit"}])) as sim:
        client = AcgClient(sim, http)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.trade("L-1")
        order = sim.ledger.by_number("L-1")
        assert order is not None and order.charged  # charged, and the buyer never learned the tradeNo
        sim.set_faults([])
        assert await client.trade("L-1") == {"code": 0, "msg": "The request ID already exists"}


async def test_system_error_html_and_invalid_keys(acg_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    faults = [
        {"kind": "system_error", "requests": "1"},
        {"kind": "html_error", "requests": "2"},
        {"kind": "invalid_keys", "mode": "not_matching", "requests": "3"},
        {"kind": "invalid_keys", "mode": "resold", "requests": "4"},
        {"kind": "out_of_stock", "requests": "5"},
        {"kind": "balance_exhausted", "requests": "6"},
    ]
    async with running_sim(scenario(acg_data, faults=faults)) as sim:
        client = AcgClient(sim, http)
        assert await client.trade("A-1") == {"code": 0, "msg": "系统繁忙，请稍后再试"}
        html = await client.post_raw("/shared/commodity/trade", {"shared_code": "steam-100", "request_no": "A-2"})
        assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")
        bad = (await client.trade("A-3", num=2))["data"]["secret"].split("\n")
        assert len(bad) == 2 and not any(STEAM.matches(line) for line in bad)
        resold = (await client.trade("A-4", num=2))["data"]["secret"].split("\n")
        assert resold == bad  # sold again: the keys of the earlier trade
        assert await client.trade("A-5") == {"code": 0, "msg": "库存不足"}
        assert await client.trade("A-6") == {"code": 0, "msg": "余额不足"}
        assert [o.number for o in sim.ledger.orders] == ["A-3", "A-4"]
