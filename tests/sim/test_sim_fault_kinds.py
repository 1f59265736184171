"""Every fault kind, observed as a client and an auditor would: what came back, and what the ledger says."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from simkit import CARD, FULU_SECRET, FuluClient, scenario

from suppliers import fulu_codec
from suppliers.sim import Simulator, running_sim
from suppliers.sim.cards import CardPattern


@asynccontextmanager
async def sim_with(
    fulu_data: dict[str, Any], http: httpx.AsyncClient, *faults: dict[str, Any], **changes: Any
) -> AsyncIterator[FuluClient]:
    async with running_sim(scenario(fulu_data, faults=list(faults), **changes)) as sim:
        yield FuluClient(sim, http)


def add_body(fulu: FuluClient, number: str, product: int = 10001, qty: int = 1) -> dict[str, str]:
    biz = {"product_id": product, "customer_order_no": number, "buy_num": qty}
    return fulu.body(fulu_codec.METHOD_CARD_ADD, biz)


def last_log(sim: Simulator) -> dict[str, Any]:
    return sim.requests.since()[-1]


async def test_lost_after_commit(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "lost_after_commit", "requests": "1"}) as fulu:
        with pytest.raises(httpx.RemoteProtocolError):
            await fulu.post(add_body(fulu, "L-1"))
        order = fulu.sim.ledger.by_number("L-1")
        assert order is not None and order.charged and len(order.cards) == 1
        assert last_log(fulu.sim)["outcome"] == "lost after commit" and last_log(fulu.sim)["committed"]
        answer = await fulu.info("L-1")  # the query is how the daemon finds out
        assert answer.result["order_state"] == "success"
        assert (await fulu.add("L-1")).code == 4010  # and a re-send is not charged again
        assert len(fulu.sim.ledger.orders) == 1


async def test_drop_before_commit(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "drop_before_commit", "requests": "1"}) as fulu:
        with pytest.raises(httpx.RemoteProtocolError):
            await fulu.post(add_body(fulu, "D-1"))
        assert fulu.sim.ledger.orders == []
        assert (await fulu.info("D-1")).code == 4011
        assert (await fulu.add("D-1")).code == 0  # the same number can be sent again


async def test_timeout_before_commit_never_commits(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "timeout_before_commit", "duration": "400ms"}) as fulu:
        with pytest.raises(httpx.ReadTimeout):
            await fulu.post(add_body(fulu, "T-1"), wait=0.1)
        await asyncio.sleep(0.45)  # past the hang: still nothing
        assert fulu.sim.ledger.orders == []
        assert last_log(fulu.sim)["outcome"] == "hung without committing"


async def test_latency_then_the_order_still_commits(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    # A slow server does not notice the client gave up: the purchase happens anyway (the ambiguous timeout).
    async with sim_with(fulu_data, http, {"kind": "latency", "delay": "250ms"}) as fulu:
        with pytest.raises(httpx.ReadTimeout):
            await fulu.post(add_body(fulu, "S-1"), wait=0.05)
        assert fulu.sim.ledger.orders == []
        await asyncio.sleep(0.3)
        assert fulu.sim.ledger.by_number("S-1") is not None


async def test_fixed_latency(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "latency", "delay": "150ms", "on": ["account"]}) as fulu:
        start = time.perf_counter()
        assert (await fulu.call(fulu_codec.METHOD_USER_INFO, {})).code == 0
        assert time.perf_counter() - start >= 0.15
        assert last_log(fulu.sim)["delay_ms"] == 150.0
        start = time.perf_counter()
        await fulu.add("fast")  # `on: [account]` only
        assert time.perf_counter() - start < 0.15


@pytest.mark.parametrize(("committed", "orders"), [(None, 1), (False, 0)])
async def test_http_5xx(
    fulu_data: dict[str, Any], http: httpx.AsyncClient, committed: bool | None, orders: int
) -> None:
    fault: dict[str, Any] = {"kind": "http_5xx", "status": 503}
    if committed is not None:
        fault["committed"] = committed
    async with sim_with(fulu_data, http, fault) as fulu:
        response = await fulu.post(add_body(fulu, "H-1"))
        assert response.status_code == 503
        assert len(fulu.sim.ledger.orders) == orders  # "after commit" unless configured otherwise


@pytest.mark.parametrize(("committed", "orders"), [(None, 0), (True, 1)])
async def test_system_error(
    fulu_data: dict[str, Any], http: httpx.AsyncClient, committed: bool | None, orders: int
) -> None:
    fault: dict[str, Any] = {"kind": "system_error", "code": 4008, "requests": "1"}
    if committed is not None:
        fault["committed"] = committed
    async with sim_with(fulu_data, http, fault) as fulu:
        answer = await fulu.add("E-1")
        assert answer.code == 4008 and answer.verified and answer.result is None
        assert len(fulu.sim.ledger.orders) == orders  # not committed by default
        follow_up = await fulu.add("E-1")
        assert follow_up.code == (4010 if orders else 0)


async def test_system_error_on_queries(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    fault = {"kind": "system_error", "code": 4012, "on": ["query"], "requests": "1"}
    async with sim_with(fulu_data, http, fault) as fulu:
        await fulu.add("Q-1")
        assert (await fulu.info("Q-1")).code == 4012
        assert (await fulu.info("Q-1")).code == 0


async def test_html_error_page(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "html_error"}) as fulu:
        response = await fulu.post(add_body(fulu, "X-1"))
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert "<html>" in response.text and "502 Bad Gateway" in response.text
        assert fulu.sim.ledger.orders == []


async def test_truncated_json(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "truncated_json"}) as fulu:
        response = await fulu.post(add_body(fulu, "J-1"))
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)
        assert fulu.sim.ledger.by_number("J-1") is not None  # committed by default


async def test_bad_signature_on_the_answer(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    fault = {"kind": "bad_signature", "on": ["order", "query"]}
    async with sim_with(fulu_data, http, fault) as fulu:
        placed = await fulu.add("G-1")
        assert placed.code == 0 and not placed.verified
        queried = await fulu.info("G-1")
        assert queried.result["order_state"] == "success" and not queried.verified
        assert fulu.sim.ledger.by_number("G-1") is not None


async def test_out_of_stock_fault(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "out_of_stock", "products": [10001]}) as fulu:
        assert (await fulu.add("O-1")).code == 3004
        check = await fulu.call(fulu_codec.METHOD_STOCK_CHECK, {"product_id": 10001, "buy_num": 1})
        assert check.result["stock_status"] == "断货"
        assert (await fulu.add("O-2", product=10002)).code == 0  # other products are fine
        assert [o.number for o in fulu.sim.ledger.orders] == ["O-2"]


async def test_balance_exhausted_fault(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "balance_exhausted"}) as fulu:
        placed = await fulu.add("M-1")
        assert placed.code == 0 and placed.result["order_state"] == "failed"
        assert placed.result["recharge_description"] == "账户余额不足"
        assert fulu.sim.ledger.balance == Decimal("1000.00")


async def test_invalid_keys_not_matching(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "invalid_keys", "mode": "not_matching", "requests": "1"}) as fulu:
        await fulu.add("K-1", qty=4)
        pattern = CardPattern.parse(CARD)
        bad = [pwd for _, pwd in fulu.cards(await fulu.info("K-1"))]
        assert len(bad) == 4 and not any(pattern.matches(p) for p in bad)  # the whole batch
        await fulu.add("K-2", qty=2)
        assert all(pattern.matches(p) for _, p in fulu.cards(await fulu.info("K-2")))
        order = fulu.sim.ledger.by_number("K-1")
        assert order is not None and order.invalid_keys == "not_matching"


async def test_invalid_keys_resold(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "invalid_keys", "mode": "resold", "requests": "2"}) as fulu:
        await fulu.add("R-1", qty=2)
        earlier = fulu.cards(await fulu.info("R-1"))
        await fulu.add("R-2", qty=3)
        again = fulu.cards(await fulu.info("R-2"))
        assert len(again) == 3 and all(card in earlier for card in again)
        order = fulu.sim.ledger.by_number("R-2")
        assert order is not None and order.invalid_keys == "resold"


async def test_resold_with_nothing_sold_yet_issues_fresh_keys(
    fulu_data: dict[str, Any], http: httpx.AsyncClient
) -> None:
    async with sim_with(fulu_data, http, {"kind": "invalid_keys", "mode": "resold"}) as fulu:
        await fulu.add("R-0")
        order = fulu.sim.ledger.by_number("R-0")
        assert order is not None and order.invalid_keys is None and len(order.cards) == 1


async def test_fault_per_product_and_by_schedule(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    faults = ({"kind": "system_error", "products": [10002], "requests": "2-3"},)
    async with sim_with(fulu_data, http, *faults) as fulu:
        codes = [(await fulu.add(f"P-{i}", product=10002)).code for i in range(4)]
        assert codes == [0, 5000, 5000, 0]
        assert (await fulu.add("P-other")).code == 0
        log = fulu.sim.requests.since()
        assert [e["fault"] for e in log] == [None, "system_error", "system_error", None, None]
        assert log[1]["op"] == "fulu.order.card.add" and log[1]["number"] == "P-1"


async def test_refuse_from_the_start_until_brought_back(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "refuse"}) as fulu:
        assert fulu.sim.refusing
        with pytest.raises(httpx.ConnectError):
            await fulu.add("U-1")
        assert fulu.sim.control_url is not None
        up = await http.post(fulu.sim.control_url + "/_sim/scenario", json={"faults": []})
        assert up.status_code == 200 and not fulu.sim.refusing  # back up before the control call answered
        assert (await fulu.add("U-1")).code == 0


async def test_refuse_window_closes_and_reopens(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "refuse", "from": "150ms", "to": "400ms"}) as fulu:
        assert (await fulu.add("W-1")).code == 0  # keep-alive connection now open
        async with asyncio.timeout(2):
            await fulu.sim.wait_listening(False)
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
            await fulu.add("W-2")  # the open connection was dropped with the listener
        with pytest.raises(httpx.ConnectError):
            await fulu.add("W-3")
        async with asyncio.timeout(2):
            await fulu.sim.wait_listening()
        assert (await fulu.add("W-4")).code == 0
        assert [o.number for o in fulu.sim.ledger.orders] == ["W-1", "W-4"]


async def test_runtime_faults_via_the_api(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http) as fulu:
        fulu.sim.set_faults([{"kind": "system_error", "code": 4009}])
        assert (await fulu.add("A-1")).code == 4009
        fulu.sim.set_faults([])
        assert (await fulu.add("A-1")).code == 0
        assert fulu_codec.verify_text("", (await fulu.add("A-1")).raw["sign"], FULU_SECRET)


async def test_stopping_does_not_wait_for_a_hung_request(fulu_data: dict[str, Any], http: httpx.AsyncClient) -> None:
    async with sim_with(fulu_data, http, {"kind": "timeout_before_commit"}) as fulu:  # hangs 60 s by default
        with pytest.raises(httpx.ReadTimeout):
            await fulu.post(add_body(fulu, "H-1"), wait=0.05)
        started = time.perf_counter()
    assert time.perf_counter() - started < 2  # the hung handler was cancelled, not waited for
    assert fulu.sim.ledger.orders == []
