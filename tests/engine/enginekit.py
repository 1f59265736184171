"""Working fakes for engine tests: a scripted, recording supplier with its own ledger, and a harness that runs
one order through a real Engine on a real store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fulfil.config import Config, OfferConfig, ProductConfig, SupplierConfig
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, Order, OrderView
from fulfil.engine import Engine
from fulfil.storage import Store
from suppliers.base import PlaceRequest, Supplier
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome

Script = Callable[["FakeSupplier", PlaceRequest], Awaitable[Outcome] | Outcome]
_serial = itertools.count(1)


def good_card() -> Card:
    return Card(password=f"K{next(_serial):015d}")


@dataclass
class Charge:
    number: str
    cards: list[Card]


@dataclass
class FakeSupplier(Supplier):
    """Answers from scripts; keeps a ledger of what it charged, as a real supplier would.

    `place` and `query` are lists of steps; the last step repeats. A step is an Outcome, or a function of
    (supplier, request). The helpers `charge`/`found` model a real supplier's books."""

    fake_name: str
    place_steps: list[Script] = field(default_factory=list)
    query_steps: list[Script] = field(default_factory=list)
    queryable: bool = True
    calls: list[tuple[str, str]] = field(default_factory=list)
    ledger: dict[str, Charge] = field(default_factory=dict)
    units_without_goods: int = 0  # charged units whose answer carried no keys

    def __post_init__(self) -> None:
        Supplier.__init__(self, self.fake_name, {"timeout": 1.0, "poll_interval": 0.01})
        self.can_query = self.queryable  # type: ignore[misc]

    async def _step(self, steps: list[Script], kind: str, request: PlaceRequest) -> Outcome:
        self.calls.append((kind, request.number))
        count = sum(1 for k, _ in self.calls if k == kind)
        step = steps[min(count, len(steps)) - 1]
        result = step(self, request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, Outcome)
        return result

    async def place(self, request: PlaceRequest) -> Outcome:
        return await self._step(self.place_steps, "place", request)

    async def query(self, request: PlaceRequest) -> Outcome:
        return await self._step(self.query_steps, "query", request)

    # --- the supplier's books --------------------------------------------------------------------------

    def charge(self, request: PlaceRequest, cards: Sequence[Card] | None = None) -> Outcome:
        """Commit a purchase (idempotent by number, like Fulu's customer_order_no) and answer success."""
        if request.number not in self.ledger:
            made = list(cards) if cards is not None else [good_card() for _ in range(request.qty)]
            self.ledger[request.number] = Charge(request.number, made)
        charge = self.ledger[request.number]
        return Outcome(OrderState.SUCCEEDED, cards=tuple(charge.cards), supplier_order_id=f"S-{request.number}")

    def found(self, request: PlaceRequest) -> Outcome:
        """A query answered from the books."""
        if request.number in self.ledger:
            return self.charge(request)
        return Outcome(OrderState.NOT_FOUND, evidence=Evidence(code="4011", message="order does not exist"))

    @property
    def charged_units(self) -> int:
        return sum(len(c.cards) for c in self.ledger.values()) + self.units_without_goods

    def numbers(self, kind: str) -> list[str]:
        return [number for k, number in self.calls if k == kind]


def ok(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    return s.charge(r)


def books(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    return s.found(r)


def error(cls: ErrorClass, code: str = "x") -> Script:
    def step(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return Outcome.error_of(cls, Evidence(code=code, message=f"{cls.value} from the fake"))

    return step


def failed(cls: ErrorClass, code: str = "x") -> Script:
    def step(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return Outcome.failed(cls, Evidence(code=code, message=f"{cls.value} from the fake"))

    return step


def charge_then_lose(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    """Commit, then the answer is lost on the way back."""
    s.charge(r)
    return Outcome.error_of(ErrorClass.AMBIGUOUS, Evidence(message="connection reset after commit"))


def cards_step(make: Callable[[int], list[Card]]) -> Script:
    def step(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        return s.charge(r, make(r.qty))

    return step


NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PATTERN = r"^K[0-9]{15}$"


def make_config(offers: Sequence[tuple[str, int]], *, kind: str = "card", **sections: Any) -> Config:
    suppliers = {name for name, _ in offers}
    data: dict[str, Any] = {
        "retry": {"budget": 1.0, "initial_backoff": 0.01, "max_backoff": 0.05},
        "ambiguity": {"query_interval": 0.01, "give_up_after": 3600.0, "policy": "wait"},
        **sections,
    }
    return Config.model_validate(
        {
            **data,
            "suppliers": [
                SupplierConfig(
                    name=n, type="stock" if n == "shelf" else "fulu", base_url="http://x", app_key="k", secret="s"
                )
                for n in sorted(suppliers)
            ],
            "products": {
                "sku": ProductConfig(
                    kind=kind,  # type: ignore[arg-type]
                    card_pattern=PATTERN if kind == "card" else None,
                    offers=tuple(
                        OfferConfig(
                            supplier=n, product_id=None if n == "shelf" else f"p-{n}", cost=Decimal("9.50"), priority=p
                        )
                        for n, p in offers
                    ),
                )
            },
        }
    )


@dataclass
class LeaseStub:
    owner: str


class Harness:
    """One engine on a real store; `run(order)` claims it and processes it as a worker would."""

    def __init__(self, store: Store, cipher: CardCipher, config: Config, suppliers: Mapping[str, Supplier]) -> None:
        self.store = store
        self.cipher = cipher
        self.engine = Engine(store, config, suppliers, fingerprint=cipher.fingerprint)
        self.owner = "test-owner"

    async def add(self, ref: str = "o-1", qty: int = 1, account: str | None = None) -> None:
        await self.store.add_order(NewOrder(ref, "sku", qty, account=account), datetime.now(UTC))

    async def claim(self) -> Order | None:
        orders = await self.store.claim_orders(self.owner, 1, 60.0, datetime.now(UTC))
        return orders[0] if orders else None

    async def run(self, ref: str = "o-1") -> OrderView:
        order = await self.claim()
        assert order is not None and order.ref == ref, "the order should be claimable"
        await self.engine.process(order, LeaseStub(self.owner))
        view = await self.store.get_order(ref)
        assert view is not None
        return view

    async def view(self, ref: str = "o-1") -> OrderView:
        view = await self.store.get_order(ref)
        assert view is not None
        return view


def refuse_repeats(s: FakeSupplier, r: PlaceRequest) -> Outcome:
    """acg-faka's books: a number it recorded before is refused ("already exists"), never charged twice."""
    if r.number in s.ledger:
        return Outcome(OrderState.EXISTS, evidence=Evidence(code="0", message="The request ID already exists"))
    return s.charge(r)


def charge_without_keys(text: str = "正在发货中，请耐心等待…") -> Script:
    """A charge answered with a shop's text instead of keys (a manual-delivery item, a grabbed last key)."""

    def step(s: FakeSupplier, r: PlaceRequest) -> Outcome:
        if r.number in s.ledger:
            return Outcome(OrderState.EXISTS, evidence=Evidence(code="0", message="The request ID already exists"))
        s.ledger[r.number] = Charge(r.number, [])
        s.units_without_goods += r.qty
        return Outcome(
            OrderState.SUCCEEDED, supplier_order_id=f"S-{r.number}", evidence=Evidence(code="200", message=text)
        )

    return step


def pair(store: Store, cipher: CardCipher, main: FakeSupplier, backup: FakeSupplier, **config: Any) -> Harness:
    """A main supplier at priority 1 and a backup at 2, with config sections overridden."""
    return Harness(store, cipher, make_config([("main", 1), ("backup", 2)], **config), {"main": main, "backup": backup})


# Budgets small enough for a test to try, give up and move on within a second.
FAST_RETRY = {"budget": 0.3, "initial_backoff": 0.01, "max_backoff": 0.02}


async def unpark(store: Store) -> None:
    """Make every parked order claimable now: the test does not wait out back-offs between passes."""
    from sqlalchemy import update

    from fulfil.storage.schema import orders

    async with store._write() as conn:  # noqa: SLF001 - a test skipping a wait, not the logic
        await conn.execute(update(orders).values(not_before=None))
