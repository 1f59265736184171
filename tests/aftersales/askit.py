"""After-sales test kit: a real engine on a real store (the engine kit's fake suppliers, with their books), the
desk, and the admin server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fulfil.admin import AdminServer
from fulfil.aftersales import credit_book
from fulfil.aftersales.desk import Desk
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, OrderView
from fulfil.storage import Store
from tests.engine.enginekit import FakeSupplier, Harness, make_config, ok

TOKEN = "aftersales-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class MovableClock:
    """The desk's clock: now, or later when a test moves it."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


@dataclass
class Shop:
    store: Store
    harness: Harness
    desk: Desk
    main: FakeSupplier
    backup: FakeSupplier
    clock: MovableClock
    config: Config

    async def delivered_order(self, ref: str, contact: str | None = "buyer@example.com", qty: int = 1) -> OrderView:
        await self.store.add_order(NewOrder(ref, "sku", qty, contact=contact), datetime.now(UTC))
        view = await self.harness.run(ref)
        assert str(view.order.status) == "delivered", view
        return view

    async def run_pending(self) -> list[OrderView]:
        """Claim and process every order waiting (the reissues), as the worker would."""
        done = []
        while (order := await self.harness.claim()) is not None:
            await self.harness.engine.process(order, _Lease(self.harness.owner))
            view = await self.store.get_order(order.ref)
            assert view is not None
            done.append(view)
        return done


@dataclass
class _Lease:
    owner: str


def shop_config(**aftersales: Any) -> Config:
    return make_config([("main", 1), ("backup", 2)], aftersales=aftersales or {})


def make_shop(store: Store, cipher: CardCipher, config: Config | None = None) -> Shop:
    config = config or shop_config()
    main, backup = FakeSupplier("main", [ok], [ok]), FakeSupplier("backup", [ok], [ok])
    harness = Harness(store, cipher, config, {"main": main, "backup": backup})
    clock = MovableClock()
    desk = Desk(store, lambda: config, credit_book(store), suppliers={"main": main, "backup": backup}, clock=clock)
    return Shop(store, harness, desk, main, backup, clock, config)


@asynccontextmanager
async def serving(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    server = AdminServer(
        shop.store, shop.harness.engine, lambda: shop.config, environ={"FULFIL_ADMIN_TOKEN": TOKEN}, desk=shop.desk
    )
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        await server.stop()
