"""Regression tests for what fuzzing the admin API found (test_fuzz_admin_live.py), one plain request each,
against the real aiohttp app over loopback on SQLite and PostgreSQL, so they stay cheap and readable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fulfil.admin import AdminServer
from fulfil.app import build_engine, build_suppliers
from fulfil.config import config_from_data
from fulfil.crypto import CardCipher
from fulfil.storage import Store

TOKEN = "findings-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = config_from_data(
    {
        "suppliers": [{"name": "shelf", "type": "stock"}],
        "products": {"steam-100": {"kind": "card", "max_qty": 3, "offers": [{"supplier": "shelf"}]}},
    },
    environ={},
)


@pytest.fixture
async def client(store: Store, cipher: CardCipher) -> AsyncIterator[httpx.AsyncClient]:
    suppliers = build_suppliers(CONFIG, store)
    server = AdminServer(
        store, build_engine(CONFIG, store, cipher, suppliers), lambda: CONFIG, environ={"FULFIL_ADMIN_TOKEN": TOKEN}
    )
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH) as http:
            yield http
    finally:
        await server.stop()
        for supplier in suppliers.values():
            await supplier.aclose()


async def test_reveal_other_than_0_or_1_is_refused_not_quietly_masked(client: httpx.AsyncClient) -> None:
    # Found by Schemathesis (negative data accepted): `?reveal=AAA` answered 200 with the keys masked.
    assert (await client.post("/orders", json={"ref": "R1", "sku": "steam-100", "qty": 1})).status_code == 201
    for value in ("AAA", "true", "", "01"):
        answer = await client.get("/orders/R1", params={"reveal": value})
        assert answer.status_code == 400 and answer.json() == {"error": "reveal must be 0 or 1"}, value
    for value in ("0", "1"):
        assert (await client.get("/orders/R1", params={"reveal": value})).status_code == 200


@pytest.mark.parametrize("ref", ["%00", "a%00b", "r" * 5000, "%E2%80%A8", "%0A", "%C3%A9%09"])
async def test_refs_no_order_can_have_are_not_found(client: httpx.AsyncClient, ref: str) -> None:
    # Found probing PostgreSQL: GET /orders/%00 was a 500 (a NUL is an error there, not a miss).
    answer = await client.get("/orders/" + ref)
    assert answer.status_code == 404 and answer.json()["error"].startswith("no order"), answer.text
    assert len(answer.text) < 200  # the ref is not echoed whole


@pytest.mark.parametrize(
    "fields",
    [
        {"account": "a\x00b"},
        {"ref": "R\x00"},
        {"sku": "steam-100\x00"},
        {"amount": "1\x00"},
        {"account": "a\u2028b"},
        {"qty": "1\x00"},
    ],
    ids=["nul-account", "nul-ref", "nul-sku", "nul-amount", "separators-account", "nul-qty"],
)
async def test_control_characters_in_orders_are_refused(client: httpx.AsyncClient, fields: dict[str, Any]) -> None:
    # Found probing PostgreSQL: an account with a NUL was a 500 (and a failed `orders import` line).
    answer = await client.post("/orders", json={"ref": "R2", "sku": "steam-100", "qty": 1, **fields})
    assert answer.status_code == 422, answer.text
    assert (await client.get("/orders/R2")).status_code == 404


async def test_an_aftersales_problem_that_is_not_a_string_is_400_not_500(client: httpx.AsyncClient) -> None:
    # Found by Schemathesis (server error): `"problem": {}` raised TypeError (unhashable) in the membership test.
    for problem in ({}, [], 1, None):
        body = {"ref": "fuzz-1", "proof": "buyer@example.com", "problem": problem}
        answer = await client.post("/aftersales", json=body)
        assert answer.status_code == 400 and answer.json()["field"] == "problem"
