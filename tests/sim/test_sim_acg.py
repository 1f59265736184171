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
    first = await acg.trade("R-1")
    assert first["code"] == 200
    again = await acg.trade("R-1")
    assert again == {"code": 0, "msg": "The request ID already exists"}
    # The books show the first purchase, charged once, with its key.
    [order] = acg.sim.ledger.orders
    assert (order.number, order.charged, order.qty) == ("R-1", True, 1)
    assert [c.password for c in order.cards] == [first["data"]["secret"]]
    assert acg.sim.ledger.balance == Decimal("404.00")


async def test_a_request_no_over_19_characters_gets_the_html_page_and_no_charge(acg: AcgClient) -> None:
    too_long = "F" + "1" * 19  # 20 characters: the shop's char(19) column refuses it, the transaction rolls back
    response = await acg.post_raw(
        "/shared/commodity/trade", {"shared_code": "steam-100", "num": "1", "contact": "x@y.z", "request_no": too_long}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "page not found" in response.text
    assert acg.sim.ledger.orders == [] and acg.sim.ledger.balance == Decimal("500.00")
    assert acg.sim.requests.since()[-1]["outcome"] == "html page 200"
    # Nothing was recorded: the same number is no duplicate, it just fails again; 19 characters buy.
    again = await acg.post_raw("/shared/commodity/trade", {"shared_code": "steam-100", "request_no": too_long})
    assert again.headers["content-type"].startswith("text/html")
    assert (await acg.trade(too_long[:19]))["code"] == 200


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
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")  # as the real shop
        bad = (await client.trade("A-3", num=2))["data"]["secret"].split("\n")
        assert len(bad) == 2 and not any(STEAM.matches(line) for line in bad)
        resold = (await client.trade("A-4", num=2))["data"]["secret"].split("\n")
        assert resold == bad  # sold again: the keys of the earlier trade
        assert await client.trade("A-5") == {"code": 0, "msg": "库存不足"}
        assert await client.trade("A-6") == {"code": 0, "msg": "余额不足"}
        assert [o.number for o in sim.ledger.orders] == ["A-3", "A-4"]


# --- answers that are not what they seem -----------------------------------------------------------------

MANUAL = {"name": "Gift", "price": "20.00", "delivery": "manual", "delivery_message": "人工发货，请等待"}


async def test_a_manual_delivery_product_charges_and_answers_its_message(
    acg_data: dict[str, Any], http: httpx.AsyncClient
) -> None:
    products = {**acg_data["products"], "gift": MANUAL, "gift-default": {"price": "1.00", "delivery": "manual"}}
    async with running_sim(scenario(acg_data, products=products)) as sim:
        client = AcgClient(sim, http)
        answer = await client.trade("M-1", code="gift", num=2)
        assert answer["code"] == 200 and answer["data"]["secret"] == "人工发货，请等待"
        assert answer["data"]["amount"] == "40.00"
        order = sim.ledger.by_number("M-1")
        assert order is not None and order.charged and order.cards == [] and order.notice == "人工发货，请等待"
        assert sim.ledger.balance == Decimal("460.00")
        assert (await client.trade("M-2", code="gift-default"))["data"]["secret"] == "正在发货中，请耐心等待…"
        # query: paid (status is the payment status), and the same text
        query = await client.query(answer["data"]["tradeNo"])
        assert query["data"] == {"secret": "人工发货，请等待", "widget": None, "status": 1}
        stock = await client.post("/shared/commodity/inventory", {"sharedCode": "gift"})
        assert (stock["data"]["delivery_way"], stock["data"]["count"]) == (1, 0)


@pytest.mark.parametrize(
    ("fault", "secret"),
    [
        ({"kind": "grabbed"}, "很抱歉，有人在你付款之前抢走了商品，请联系客服。"),
        ({"kind": "manual_delivery"}, "正在发货中，请耐心等待…"),
        ({"kind": "manual_delivery", "message": "请加QQ群领取"}, "请加QQ群领取"),
    ],
)
async def test_charged_with_text_instead_of_keys(
    acg_data: dict[str, Any], http: httpx.AsyncClient, fault: dict[str, Any], secret: str
) -> None:
    async with running_sim(scenario(acg_data, faults=[fault])) as sim:
        client = AcgClient(sim, http)
        answer = await client.trade("G-1", num=2)
        assert answer["code"] == 200 and answer["data"]["secret"] == secret and answer["data"]["tradeNo"]
        order = sim.ledger.by_number("G-1")
        assert order is not None and order.charged and order.qty == 2 and order.cards == []
        assert sim.ledger.balance == Decimal("308.00")  # 2 x 96 charged
        assert sim.ledger.stock["steam-100"] == 20  # no key left the stock
        assert sim.ledger.snapshot(sim.state.now())["orders"][0]["notice"] == secret


@pytest.mark.parametrize("message", ["商品不存在", "当前商品已停售", "You have been banned"])
async def test_charged_then_an_error(acg_data: dict[str, Any], http: httpx.AsyncClient, message: str) -> None:
    fault = {"kind": "charged_then_error", "message": message, "requests": "1"}
    async with running_sim(scenario(acg_data, faults=[fault])) as sim:
        client = AcgClient(sim, http)
        assert await client.trade("C-1", num=2) == {"code": 0, "msg": message}
        order = sim.ledger.by_number("C-1")
        assert order is not None and order.charged and order.cards == [] and order.notice == ""
        assert sim.ledger.balance == Decimal("308.00")
        assert sim.requests.since()[-1]["committed"]
        # Re-sent under the same number: the shop has it, which is how a client learns it was charged.
        assert await client.trade("C-1", num=2) == {"code": 0, "msg": "The request ID already exists"}
        assert len(sim.ledger.orders) == 1


@pytest.mark.parametrize(
    ("fault", "num", "message"),
    [
        ({"mode": "per_trade", "limit": 1}, 2, "本商品单次最多购买1个"),
        ({"mode": "minimum", "limit": 3}, 2, "本商品最少购买3个"),
        ({"mode": "per_person", "limit": 1}, 2, "该商品每人只能购买1件"),
        ({}, 2, "该商品每人只能购买1件"),  # per_person, 1 by default
    ],
)
async def test_purchase_limits_refuse_without_a_charge(
    acg_data: dict[str, Any], http: httpx.AsyncClient, fault: dict[str, Any], num: int, message: str
) -> None:
    async with running_sim(scenario(acg_data, faults=[{"kind": "purchase_limit", **fault}])) as sim:
        client = AcgClient(sim, http)
        assert await client.trade("P-1", num=num) == {"code": 0, "msg": message}
        assert sim.ledger.orders == [] and sim.ledger.balance == Decimal("500.00")


async def test_purchase_limits_apply_only_beyond_the_cap(acg_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    faults = [{"kind": "purchase_limit", "mode": "per_person", "limit": 2}]
    async with running_sim(scenario(acg_data, faults=faults)) as sim:
        client = AcgClient(sim, http)
        assert (await client.trade("P-1"))["code"] == 200
        assert (await client.trade("P-2"))["code"] == 200
        assert await client.trade("P-3") == {"code": 0, "msg": "该商品每人只能购买2件"}  # this account had its 2
        assert [o.number for o in sim.ledger.orders] == ["P-1", "P-2"]


async def test_html_error_pages_come_with_http_200_or_the_status_asked(
    acg_data: dict[str, Any], http: httpx.AsyncClient
) -> None:
    faults = [{"kind": "html_error", "requests": "1"}, {"kind": "html_error", "status": 503, "requests": "2"}]
    async with running_sim(scenario(acg_data, faults=faults)) as sim:
        client = AcgClient(sim, http)
        first = await client.post_raw("/shared/commodity/trade", {"shared_code": "steam-100", "request_no": "H-1"})
        second = await client.post_raw("/shared/commodity/trade", {"shared_code": "steam-100", "request_no": "H-2"})
        assert (first.status_code, second.status_code) == (200, 503)
        assert all(r.headers["content-type"].startswith("text/html") for r in (first, second))
        assert sim.ledger.orders == []
