"""The console over real loopback HTTP: an AdminServer on a real store, operators, orders in known states."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from fulfil.admin import AdminServer
from fulfil.aftersales.model import Case, Problem, Report
from fulfil.app import build_engine, build_suppliers
from fulfil.config import Config, config_from_data
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, OrderStatus
from fulfil.storage import Store
from fulfil.web.accounts import hash_password
from suppliers.taxonomy import Card
from tests.aftersales.askit import Shop

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_config(**extra: Any) -> Config:
    return config_from_data(
        {
            "suppliers": [{"name": "shelf", "type": "stock"}],
            "products": {
                "steam": {"kind": "card", "max_qty": 3, "offers": [{"supplier": "shelf"}]},
                "gift": {"kind": "card", "offers": [{"supplier": "shelf"}]},
            },
            **extra,
        },
        environ={},
    )


@asynccontextmanager
async def serving(store: Store, cipher: CardCipher, config: Config | None = None) -> AsyncIterator[AdminServer]:
    config = config or console_config()
    suppliers = build_suppliers(config, store)
    server = AdminServer(store, build_engine(config, store, cipher, suppliers), lambda: config, environ={})
    await server.start("127.0.0.1:0")
    try:
        yield server
    finally:
        await server.stop()
        for supplier in suppliers.values():
            await supplier.aclose()


async def add_operator(store: Store, name: str, role: str, now: datetime) -> None:
    await store.add_operator(name, role, hash_password(PASSWORD), "test", now)


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


@dataclass
class Browser:
    """An httpx client with a cookie jar, logged in as one operator."""

    client: httpx.AsyncClient
    csrf: str = ""

    async def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        page = await self.client.get("/console/login")
        response = await self.client.post(
            "/console/login", data={"name": name, "password": password, "csrf": csrf_of(page.text)}
        )
        if response.status_code == 302:
            home = await self.client.get("/console/")
            self.csrf = csrf_of(home.text)
        return response

    async def post(self, path: str, **data: Any) -> httpx.Response:
        return await self.client.post(path, data={"csrf": self.csrf, **data})


@asynccontextmanager
async def browser(server: AdminServer, name: str | None = None) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        b = Browser(client)
        if name is not None:
            assert (await b.login(name)).status_code == 302
        yield b


def _key() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


async def make_order(
    store: Store,
    ref: str,
    status: OrderStatus,
    created: datetime,
    *,
    sku: str = "steam",
    seconds: float = 10.0,
    contact: str | None = None,
    account: str | None = None,
    amount: str = "10.00",
    reason: str = "supplier trouble",
) -> int:
    """An order taken in at `created` that ended `seconds` later in `status` (delivered with one key)."""
    result = await store.add_order(
        NewOrder(ref, sku, 1, account=account, amount=Decimal(amount), contact=contact), created
    )
    if status is OrderStatus.PENDING:
        return result.order_id
    claimed = await store.claim_orders("kit", 1, 60, created)
    assert [o.id for o in claimed] == [result.order_id]
    done = created + timedelta(seconds=seconds)
    if status is OrderStatus.DELIVERED:
        attempt = await store.open_attempt(result.order_id, "kit", "shelf", 0, 1, None, created, sent=True)
        await store.deliver(result.order_id, "kit", attempt.id, [Card(password=_key())], done)
    else:
        await store.finish_order(result.order_id, "kit", status, reason, done)
    return result.order_id


# --- after-sales: the console on an after-sales shop (tests/aftersales/askit.py) ---------------------------


@asynccontextmanager
async def console_of(shop: Shop) -> AsyncIterator[AdminServer]:
    server = AdminServer(shop.store, shop.harness.engine, lambda: shop.config, environ={}, desk=shop.desk)
    await server.start("127.0.0.1:0")
    try:
        yield server
    finally:
        await server.stop()


async def l2_case(shop: Shop, ref: str) -> Case:
    """A delivered order and a report L1 cannot settle (`other`): an open L2 case."""
    await shop.delivered_order(ref)
    found = await shop.store.order_for_proof(ref)
    assert found is not None
    case = (await shop.desk.report(found[0], found[1], Report(Problem.OTHER, (), "help"), reporter="buyer")).case
    assert (str(case.level), str(case.status)) == ("L2", "open") and case.due_at is not None
    return case
