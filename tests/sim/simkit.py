"""Helpers for the simulator tests: scenario data and signing clients for both protocols.

The clients sign with the shared codecs (`suppliers.fulu_codec`, `suppliers.acg_faka_codec`) over real
HTTP on loopback, so these tests exercise exactly what the adapters will send.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from suppliers import acg_faka_codec, fulu_codec
from suppliers.sim import Simulator

FULU_KEY = "test-fulu-app"
FULU_SECRET = "abcdefghijklmnopqrstuvwxyz012345"  # 32 characters
ACG_ID = "10086"
ACG_KEY = "test-acg-key"

CARD = "[A-Z0-9]{16}"
FULU_DATA: dict[str, Any] = {
    "protocol": "fulu",
    "app_key": FULU_KEY,
    "secret": FULU_SECRET,
    "balance": "1000.00",
    "seed": 3,
    "products": {
        10001: {
            "name": "Steam 100",
            "kind": "card",
            "price": "95.00",
            "stock": 50,
            "card_pattern": "[A-Z0-9]{16}",
        },
        10002: {
            "name": "NetEase 50",
            "price": "48.50",
            "number_pattern": "[0-9]{12}",
            "card_pattern": "[A-Z0-9]{4}-[A-Z0-9]{4}",
        },
        10003: {"name": "QQ coins", "kind": "direct", "price": "9.80"},
        10004: {"name": "Retired", "price": "1.00", "on_sale": False},
    },
    "faults": [],
}

ACG_DATA: dict[str, Any] = {
    "protocol": "acg_faka",
    "app_id": ACG_ID,
    "app_key": ACG_KEY,
    "balance": "500.00",
    "products": {
        "steam-100": {"name": "Steam 100", "price": "96.00", "stock": 20, "card_pattern": "[A-Z0-9]{16}"},
        "retired": {"name": "Retired", "price": "1.00", "on_sale": False},
    },
    "faults": [],
}


def scenario(base: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(dict(base))
    data.update(changes)
    return data


@dataclass
class FuluAnswer:
    code: int
    message: str
    result: Any  # parsed `result` (None when empty)
    verified: bool
    raw: dict[str, Any]


class FuluClient:
    """Signs requests with fulu_codec and checks the answer's signature the way the adapter must."""

    def __init__(self, sim: Simulator, http: httpx.AsyncClient) -> None:
        self.sim = sim
        self.http = http

    def body(
        self, method: str, biz: Mapping[str, Any], *, secret: str = FULU_SECRET, app_key: str = FULU_KEY,
        now: datetime | None = None,
    ) -> dict[str, str]:  # fmt: skip
        return fulu_codec.envelope(app_key, method, biz, secret, now or datetime.now(UTC))

    async def post(self, body: Mapping[str, Any], wait: float = 5.0) -> httpx.Response:
        return await self.http.post(self.sim.gateway_url, json=dict(body), timeout=wait)

    async def call(self, method: str, biz: Mapping[str, Any], **kwargs: Any) -> FuluAnswer:
        response = await self.post(self.body(method, biz, **kwargs))
        assert response.status_code == 200, response.text
        return self.parse(response)

    @staticmethod
    def parse(response: httpx.Response) -> FuluAnswer:
        raw = response.json()
        verified = fulu_codec.verify_text(raw["result"], raw["sign"], FULU_SECRET)
        result = json.loads(raw["result"]) if raw["result"] else None
        return FuluAnswer(raw["code"], raw["message"], result, verified, raw)

    async def add(self, number: str, product: int = 10001, qty: int = 1, **biz: Any) -> FuluAnswer:
        method = fulu_codec.METHOD_DIRECT_ADD if "charge_account" in biz else fulu_codec.METHOD_CARD_ADD
        return await self.call(method, {"product_id": product, "customer_order_no": number, "buy_num": qty, **biz})

    async def info(self, number: str) -> FuluAnswer:
        return await self.call(fulu_codec.METHOD_ORDER_INFO, {"customer_order_no": number})

    @staticmethod
    def cards(answer: FuluAnswer) -> list[tuple[str, str]]:
        return [
            (
                fulu_codec.decrypt_card_field(card["card_number"], FULU_SECRET),
                fulu_codec.decrypt_card_field(card["card_pwd"], FULU_SECRET),
            )
            for card in answer.result.get("cards", [])
        ]


class AcgClient:
    def __init__(self, sim: Simulator, http: httpx.AsyncClient) -> None:
        self.sim = sim
        self.http = http

    async def post_raw(self, path: str, params: Mapping[str, str], *, key: str = ACG_KEY) -> httpx.Response:
        body = acg_faka_codec.signed({"app_id": ACG_ID, **params}, key)
        return await self.http.post(self.sim.url + path, data=body, timeout=5.0)

    async def post(self, path: str, params: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
        response = await self.post_raw(path, params, **kwargs)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def trade(self, request_no: str, code: str = "steam-100", num: int = 1) -> dict[str, Any]:
        params = {
            "shared_code": code,
            "num": str(num),
            "contact": "buyer@example.com",
            "request_no": request_no,
        }
        return await self.post("/shared/commodity/trade", params)

    async def query(self, trade_no: str) -> dict[str, Any]:
        return await self.post("/shared/commodity/query", {"tradeNo": trade_no})


def skewed(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)
