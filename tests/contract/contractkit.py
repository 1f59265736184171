"""What the contract suite needs around each adapter: a live supplier to talk to, and a way to audit it.

Each adapter kind gets a `Harness`: it builds purchase requests the way the engine would (for stock: an
order claimed by a worker and an attempt opened for it), counts what the supplier charged (the simulator's
ledger, or used stock rows), and knows which product sells and which is sold out. The adapter itself is built
through `suppliers.registry.build_supplier`, from a `SupplierConfig`, as the daemon builds it.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from fulfil.config import SupplierConfig
from fulfil.domain import NewOrder
from fulfil.storage import Store
from fulfil.storage.base import MAX_NUMBER_LENGTH
from suppliers import fulu_codec
from suppliers.base import PlaceRequest, Supplier
from suppliers.registry import build_supplier
from suppliers.sim import Simulator
from suppliers.taxonomy import Card, OrderState, Outcome

FULU_KEY: Final = "contract-fulu-app"
FULU_SECRET: Final = "contract-secret-0123456789abcdef"  # 32 characters: the AES-256 key of card fields
ACG_ID: Final = "20001"
ACG_KEY: Final = "contract-acg-key"
OWNER: Final = "contract-worker"

KEY_PATTERN: Final = "[A-Z0-9]{16}"
GROUPED_PATTERN: Final = "[A-Z0-9]{4}-[A-Z0-9]{4}"
NUMBER_PATTERN: Final = "[0-9]{12}"

FULU_PRODUCTS: Final[dict[str, Any]] = {
    # password-only keys
    "10001": {"name": "Steam 100", "price": "95.00", "stock": 50, "card_pattern": KEY_PATTERN},
    # card number + password, two different formats
    "10002": {
        "name": "NetEase 50",
        "price": "48.50",
        "stock": 50,
        "number_pattern": NUMBER_PATTERN,
        "card_pattern": GROUPED_PATTERN,
    },
    "10009": {"name": "Sold out", "price": "10.00", "stock": 0, "card_pattern": KEY_PATTERN},
}
ACG_PRODUCTS: Final[dict[str, Any]] = {
    "steam-100": {"name": "Steam 100", "price": "96.00", "stock": 50, "card_pattern": KEY_PATTERN},
    "netease-50": {"name": "NetEase 50", "price": "49.00", "stock": 50, "card_pattern": GROUPED_PATTERN},
    "sold-out": {"name": "Sold out", "price": "10.00", "stock": 0, "card_pattern": KEY_PATTERN},
}


def fulu_scenario(faults: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "protocol": "fulu",
        "app_key": FULU_KEY,
        "secret": FULU_SECRET,
        "balance": "1000.00",
        "seed": 7,
        "products": {int(pid): dict(spec) for pid, spec in FULU_PRODUCTS.items()},
        "faults": list(faults or []),
    }
    data.update(changes)
    return data


def acg_scenario(faults: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "protocol": "acg_faka",
        "app_id": ACG_ID,
        "app_key": ACG_KEY,
        "balance": "1000.00",
        "seed": 7,
        "products": {pid: dict(spec) for pid, spec in ACG_PRODUCTS.items()},
        "faults": list(faults or []),
    }
    data.update(changes)
    return data


SCENARIOS: Final = {"fulu": fulu_scenario, "acg_faka": acg_scenario}


def sim_supplier(sim: Simulator, *, transport: str = "aiohttp", timeout: float = 5.0) -> Supplier:
    """The adapter for a running simulator, built from its configuration entry like the daemon does."""
    if sim.scenario.protocol == "fulu":
        cfg = SupplierConfig(
            name="sim-fulu",
            type="fulu",
            base_url=sim.gateway_url,
            app_key=FULU_KEY,
            secret=FULU_SECRET,
            transport=transport,
            timeout=timeout,
            connect_timeout=min(timeout, 1.0),
        )
    else:
        cfg = SupplierConfig(
            name="sim-acg",
            type="acg_faka",
            base_url=sim.url,
            app_id=ACG_ID,
            app_key=ACG_KEY,
            transport=transport,
            timeout=timeout,
            connect_timeout=min(timeout, 1.0),
        )
    return build_supplier(cfg)


def new_number() -> str:
    """A supplier-facing number as the store makes them: alphanumeric, never reused, and no longer than
    MAX_NUMBER_LENGTH (19, acg-faka's `char(19)` request_no)."""
    return ("CT" + uuid.uuid4().hex.upper())[:MAX_NUMBER_LENGTH]


def charged_units(sim: Simulator, number: str | None = None) -> int:
    """Units the simulated supplier holds money for (all orders, or the one under `number`)."""
    sim.ledger.settle_all(sim.state.now())
    return sum(o.qty for o in sim.ledger.orders if o.charged and (number is None or o.number == number))


async def settle(supplier: Supplier, request: PlaceRequest, outcome: Outcome, *, within: float = 3.0) -> Outcome:
    """Poll `query` while the purchase is PENDING, as the engine does for an asynchronous supplier."""
    async with asyncio.timeout(within):
        while outcome.state is OrderState.PENDING:
            assert supplier.can_query, f"{supplier.type_name} answered PENDING but cannot be queried"
            await asyncio.sleep(0.02)
            outcome = await supplier.query(request)
    return outcome


async def wait_for_order(sim: Simulator, number: str, *, within: float = 3.0) -> None:
    """Wait until the simulator has taken an order under `number` (a handler still sleeping commits late)."""
    for _ in range(int(within / 0.02)):
        if sim.ledger.by_number(number) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no order {number} at the simulator after {within}s")


def leaks(outcome: Outcome, cards: tuple[Card, ...] | list[Card] | None = None) -> list[str]:
    """Card texts of `cards` (default: the outcome's own) that show in the outcome's repr or evidence.

    Fulu's card fields are AES-ECB under the app secret, so the same key always encrypts to the same text:
    the ciphertext is looked for too (evidence keeps neither).
    """
    shown = [repr(outcome), str(outcome), *(str(v) for v in outcome.evidence.as_dict().values() if v)]
    plain = [s for card in (outcome.cards if cards is None else cards) for s in (card.password, card.number) if s]
    secrets = plain + [fulu_codec.encrypt_card_field(s, FULU_SECRET) for s in plain]
    return [s for s in secrets if any(s in text for text in shown)]


def card_set(cards: tuple[Card, ...] | list[Card]) -> set[tuple[str, str]]:
    return {(card.number, card.password) for card in cards}


@dataclass
class Harness:
    """One adapter kind under test, with what a test needs to drive and audit it."""

    kind: str
    supplier: Supplier
    product: str  # sells, with stock to spare
    sold_out: str  # has no stock at all
    key_pattern: str  # what every key (password) of `product` must match
    number_pattern: str | None  # what a card number of `product` must match; None: password-only
    price: Decimal | None  # per unit of `product`, where the supplier charges money
    sim: Simulator | None = None
    store: Store | None = None
    has_balance: bool = True  # whether the protocol tells the merchant balance
    _refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def networked(self) -> bool:
        return self.sim is not None

    async def request(self, qty: int, *, product: str | None = None, timeout: float | None = None) -> PlaceRequest:
        """A purchase request as the engine would make it for a new attempt."""
        product_id = product or self.product
        if self.store is None:
            return PlaceRequest(
                number=new_number(), sku="contract-sku", product_id=product_id, qty=qty, kind="card", timeout=timeout
            )
        now = datetime.now(UTC)
        added = await self.store.add_order(
            NewOrder(f"contract-{next(self._refs)}", "contract-sku", qty, amount=Decimal("10.00")), now
        )
        [order] = [o for o in await self.store.claim_orders(OWNER, 100, 60, now) if o.id == added.order_id]
        attempt = await self.store.open_attempt(order.id, OWNER, self.supplier.name, 0, qty, None, now)
        return PlaceRequest(
            number=attempt.number,
            sku=order.sku,
            product_id=product_id,
            qty=qty,
            kind="card",
            order_id=order.id,
            attempt_id=attempt.id,
            owner=OWNER,
            timeout=timeout,
        )

    async def charged(self) -> int:
        """Units the supplier has been paid for, over the whole test."""
        if self.sim is not None:
            return charged_units(self.sim)
        assert self.store is not None
        return sum(count.used for count in (await self.store.stock_counts()).values())

    async def books_balance(self) -> Decimal | None:
        """The balance as the supplier's own books have it."""
        return self.sim.ledger.balance if self.sim is not None else None

    def fits(self, card: Card) -> bool:
        if not re.fullmatch(self.key_pattern, card.password):
            return False
        if self.number_pattern is None:
            return card.number == ""
        return re.fullmatch(self.number_pattern, card.number) is not None


def stock_keys(n: int) -> list[Card]:
    """Keys that match KEY_PATTERN (password-only), distinct per call."""
    tag = uuid.uuid4().hex[:6].upper()
    return [Card(password=f"S{tag}{i:09d}") for i in range(n)]
