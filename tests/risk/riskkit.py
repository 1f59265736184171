"""Helpers for risk tests: a config with one family of face values and rules, orders from named buyers, and
running every claimable order through a real Engine (real store) the way a worker does, batch by batch."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, OrderStatus
from fulfil.engine import Engine
from fulfil.storage import Store
from tests.engine.enginekit import FakeSupplier, LeaseStub, ok

PATTERN = r"^K[0-9]{15}$"
FACES = ("steam-20", "steam-50", "steam-100", "steam-200")


def risk_config(rules: Sequence[Mapping[str, Any]] = (), **risk: Any) -> Config:
    """Four face values of the family `steam` plus `other`, all bought from the fake supplier `main`."""
    product = {"card_pattern": PATTERN, "max_qty": 10, "offers": [{"supplier": "main", "product_id": "p", "cost": "1"}]}
    products = {sku: {**product, "family": "steam"} for sku in FACES}
    products["other"] = product
    return Config.model_validate(
        {
            "retry": {"budget": 1.0, "initial_backoff": 0.01, "max_backoff": 0.05},
            "ambiguity": {"query_interval": 0.01, "give_up_after": 3600.0, "policy": "wait"},
            "suppliers": [{"name": "main", "type": "fulu", "base_url": "http://x", "app_key": "k", "secret": "s"}],
            "products": products,
            "risk": {"rules": list(rules), **risk},
        }
    )


def order(ref: str, sku: str = "steam-100", qty: int = 1, amount: str | None = "10", **buyer: str) -> NewOrder:
    return NewOrder(ref, sku, qty, amount=Decimal(amount) if amount else None, **buyer)


def supplier() -> FakeSupplier:
    return FakeSupplier("main", place_steps=[ok])


class Shop:
    """An engine over a real store, a fake supplier with its own ledger."""

    def __init__(self, store: Store, cipher: CardCipher, config: Config, owner: str = "risk-test") -> None:
        self.store = store
        self.supplier = supplier()
        self.engine = Engine(store, config, {"main": self.supplier}, fingerprint=cipher.fingerprint)
        self.owner = owner

    async def add(self, *orders: NewOrder) -> None:
        results = await self.store.add_orders(list(orders), datetime.now(UTC))
        assert all(r.status == "accepted" for r in results), results

    async def drain(self, batch: int = 100) -> int:
        """Claim and process until nothing is claimable; orders of a batch run at once, as in the worker."""
        done = 0
        while True:
            claimed = await self.store.claim_orders(self.owner, batch, 60.0, datetime.now(UTC))
            if not claimed:
                return done
            await asyncio.gather(*(self.engine.process(o, LeaseStub(self.owner)) for o in claimed))
            done += len(claimed)

    async def statuses(self) -> dict[str, tuple[OrderStatus, str | None]]:
        return {v.order.ref: (v.order.status, v.order.reason) for v in await self.store.list_orders()}
