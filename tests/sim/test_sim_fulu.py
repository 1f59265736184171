"""The fulu protocol for real: envelope checks, signed answers, orders, idempotency, cards, callbacks."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web
from simkit import CARD, FULU_SECRET, FuluClient, scenario, skewed

from suppliers import fulu_codec
from suppliers.sim import callbacks, running_sim
from suppliers.sim.cards import CardPattern


async def test_signed_request_gets_a_signed_answer(fulu: FuluClient) -> None:
    answer = await fulu.add("N-1")
    assert answer.code == 0 and answer.verified
    assert answer.result["customer_order_no"] == "N-1"
    assert answer.result["order_state"] == "processing"  # accepted; the outcome comes from the query
    assert answer.result["order_type"] == 3 and answer.result["order_price"] == 95.0
    assert "cards" not in answer.result


async def test_query_returns_encrypted_cards_matching_the_pattern(fulu: FuluClient) -> None:
    await fulu.add("N-1", qty=3)
    answer = await fulu.info("N-1")
    assert answer.code == 0 and answer.verified
    assert answer.result["order_state"] == "success"
    cards = fulu.cards(answer)
    assert len(cards) == 3 and len(set(cards)) == 3
    assert all(number == "" and CardPattern.parse(CARD).matches(pwd) for number, pwd in cards)
    assert all(card["card_pwd"] != pwd for card, (_, pwd) in zip(answer.result["cards"], cards, strict=True))
    ledger = fulu.sim.ledger.by_number("N-1")
    assert ledger is not None and [c.password for c in ledger.cards] == [pwd for _, pwd in cards]


async def test_cards_with_numbers(fulu: FuluClient) -> None:
    await fulu.add("N-2", product=10002, qty=2)
    cards = fulu.cards(await fulu.info("N-2"))
    assert all(CardPattern.parse("[0-9]{12}").matches(n) for n, _ in cards)
    assert all(CardPattern.parse("[A-Z0-9]{4}-[A-Z0-9]{4}").matches(p) for _, p in cards)


async def test_repeated_number_is_refused_and_never_charged_twice(fulu: FuluClient) -> None:
    first = await fulu.add("N-1", qty=2)
    again = await fulu.add("N-1", qty=2)
    other_product = await fulu.add("N-1", product=10002)
    assert first.code == 0
    assert again.code == 4010 and again.verified and other_product.code == 4010
    assert len(fulu.sim.ledger.orders) == 1
    assert fulu.sim.ledger.balance == Decimal("1000.00") - 2 * Decimal("95.00")


async def test_unknown_order_is_4011(fulu: FuluClient) -> None:
    answer = await fulu.info("never-placed")
    assert answer.code == 4011 and answer.verified and answer.result is None


async def test_bad_signature_is_1019_and_bad_app_key_1006(fulu: FuluClient) -> None:
    biz = {"customer_order_no": "x"}
    wrong_secret = await fulu.call(fulu_codec.METHOD_ORDER_INFO, biz, secret="x" * 32)
    assert wrong_secret.code == 1019 and wrong_secret.verified
    wrong_key = await fulu.call(fulu_codec.METHOD_ORDER_INFO, biz, app_key="someone-else")
    assert wrong_key.code == 1006
    body = fulu.body(fulu_codec.METHOD_CARD_ADD, {"product_id": 10001, "customer_order_no": "T", "buy_num": 1})
    body["biz_content"] = body["biz_content"].replace('"buy_num":1', '"buy_num":9')  # tampered in transit
    assert fulu.parse(await fulu.post(body)).code == 1019
    assert fulu.sim.ledger.orders == []


async def test_timestamp_skew_is_1004(fulu: FuluClient) -> None:
    late = await fulu.call(fulu_codec.METHOD_USER_INFO, {}, now=skewed(-11))
    early = await fulu.call(fulu_codec.METHOD_USER_INFO, {}, now=skewed(11))
    fine = await fulu.call(fulu_codec.METHOD_USER_INFO, {}, now=skewed(9))
    assert (late.code, early.code, fine.code) == (1004, 1004, 0)


async def test_malformed_requests(fulu: FuluClient, http: httpx.AsyncClient) -> None:
    not_json = await http.post(fulu.sim.gateway_url, content=b"{nope")
    assert fulu.parse(not_json).code == 1000
    body = fulu.body(fulu_codec.METHOD_USER_INFO, {})
    del body["timestamp"]
    missing = fulu.parse(await fulu.post(body))
    assert missing.code == 1001 and "timestamp" in missing.message
    unknown = await fulu.call("fulu.order.refund", {})
    assert unknown.code == 1002
    bad_qty = await fulu.add("Q", qty=0)
    assert bad_qty.code == 1008 and "buy_num" in bad_qty.message
    long_number = await fulu.add("x" * 51)
    assert long_number.code == 1008


async def test_product_problems(fulu: FuluClient) -> None:
    assert (await fulu.add("P1", product=99999)).code == 3001
    assert (await fulu.add("P2", product=10004)).code == 3002
    assert (await fulu.add("P3", product=10003)).code == 3008  # card.add on a direct product
    no_account = await fulu.call(
        fulu_codec.METHOD_DIRECT_ADD, {"product_id": 10003, "customer_order_no": "P4", "buy_num": 1}
    )
    assert no_account.code == 1008 and "charge_account" in no_account.message
    assert fulu.sim.ledger.orders == []


async def test_direct_top_up(fulu: FuluClient) -> None:
    placed = await fulu.add("D-1", product=10003, charge_account="qq:12345")
    assert placed.code == 0 and placed.result["order_type"] == 4
    answer = await fulu.info("D-1")
    assert answer.result["order_state"] == "success" and answer.result["charge_account"] == "qq:12345"
    assert "cards" not in answer.result


async def test_stock_runs_out(fulu: FuluClient) -> None:
    fulu.sim.ledger.balance = Decimal("100000")
    assert (await fulu.add("S-1", qty=45)).code == 0
    check = await fulu.call(fulu_codec.METHOD_STOCK_CHECK, {"product_id": 10001, "buy_num": 1})
    assert check.result == {"product_id": 10001, "stock_status": "警报"}
    assert (await fulu.add("S-2", qty=6)).code == 3004
    check = await fulu.call(fulu_codec.METHOD_STOCK_CHECK, {"product_id": 10001, "buy_num": 6})
    assert check.result["stock_status"] == "断货"
    assert (await fulu.add("S-3", qty=5)).code == 0
    assert fulu.sim.ledger.stock["10001"] == 0


async def test_balance_runs_out_as_a_failed_order(fulu: FuluClient) -> None:
    assert (await fulu.add("B-1", qty=10)).code == 0  # 950 of 1000
    placed = await fulu.add("B-2", qty=1)
    assert placed.code == 0 and placed.result["order_state"] == "failed"
    answer = await fulu.info("B-2")
    assert answer.result["order_state"] == "failed" and answer.result["recharge_description"] == "账户余额不足"
    order = fulu.sim.ledger.by_number("B-2")
    assert order is not None and not order.charged and order.cards == []
    assert fulu.sim.ledger.balance == Decimal("50.00")
    user = await fulu.call(fulu_codec.METHOD_USER_INFO, {})
    assert user.result["balance"] == 50.0


async def test_processing_time_then_success(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with running_sim(scenario(fulu_data, processing_time="300ms")) as sim:
        fulu = FuluClient(sim, http)
        await fulu.add("W-1")
        assert (await fulu.info("W-1")).result["order_state"] == "processing"
        await asyncio.sleep(0.35)
        answer = await fulu.info("W-1")
        assert answer.result["order_state"] == "success" and len(fulu.cards(answer)) == 1
        assert answer.result["finish_time"] != ""


async def test_processing_fault_then_failure_refunds(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    faults = [{"kind": "processing", "duration": "200ms", "then": "failure", "description": "充值失败: 账号异常"}]
    async with running_sim(scenario(fulu_data, faults=faults)) as sim:
        fulu = FuluClient(sim, http)
        await fulu.add("F-1", qty=2)
        assert sim.ledger.balance == Decimal("810.00")  # charged while processing
        assert (await fulu.info("F-1")).result["order_state"] == "processing"
        await asyncio.sleep(0.25)
        answer = await fulu.info("F-1")
        assert answer.result["order_state"] == "failed"
        assert answer.result["recharge_description"] == "充值失败: 账号异常"
        assert "cards" not in answer.result
        assert sim.ledger.balance == Decimal("1000.00") and sim.ledger.stock["10001"] == 50


async def test_callback_is_signed_and_resent_until_acknowledged(
    fulu_data: dict[str, Any], http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "INTERVAL", 0.05)
    received: list[dict[str, Any]] = []
    acknowledged = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        if len(received) == 1:
            return web.Response(text="busy")  # not acknowledged: the simulator must send it again
        acknowledged.set()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/fulu/callback", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{site.port}/fulu/callback"
        async with running_sim(scenario(fulu_data, callback_url=url, processing_time="100ms")) as sim:
            fulu = FuluClient(sim, http)
            await fulu.add("C-1", qty=2)
            async with asyncio.timeout(3):
                await acknowledged.wait()
            await asyncio.sleep(0.01)  # let the simulator read the acknowledgement
            log = [e for e in sim.requests.since() if e["op"] == "callback"]
    finally:
        await runner.cleanup()
    notice = received[-1]
    assert fulu_codec.verify(notice, FULU_SECRET)
    assert notice["customer_order_no"] == "C-1" and notice["order_status"] == "success"
    assert notice["buy_num"] == 2 and notice["price"] == "190.00"
    assert log and log[0]["outcome"] == "acknowledged"
