"""The operator's own imported stock, as a supplier like any other.

Placing takes keys from the stock table and delivers them in ONE store transaction
(`Store.deliver_from_stock`): stock rows used by the attempt, the attempt succeeded, the deliveries written,
the order delivered, all fenced by the worker's lease. So a purchase here either happened completely or not
at all, and `query` can always say which: nothing is ever ambiguous.

The stock pool is the offer's `product_id` when the offer names one, else the order's SKU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

from fulfil.domain import AttemptRecord, AttemptState
from fulfil.storage.errors import Conflict, DuplicateCard
from suppliers.base import PlaceRequest, StockCheck, Supplier
from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome

OUT_OF_STOCK: Final = "out_of_stock"


class StockStore(Protocol):
    """The part of `fulfil.storage.Store` this adapter uses."""

    async def deliver_from_stock(
        self, order_id: int, owner: str, attempt_id: int, sku: str, qty: int, now: datetime
    ) -> list[Card] | None: ...

    async def attempts_for_order(self, order_id: int) -> Sequence[AttemptRecord]: ...

    async def stock_counts(self) -> Mapping[str, Any]: ...


@runtime_checkable
class CardsByAttempt(Protocol):
    """A store that can read back the keys one attempt delivered (wanted from storage; used when present)."""

    async def cards_for_attempt(self, attempt_id: int) -> Sequence[Card]: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StockSupplier(Supplier):
    type_name: ClassVar[str] = "stock"
    can_query: ClassVar[bool] = True  # the attempt row and the deliveries say exactly what happened
    idempotent_place: ClassVar[bool] = True  # a second place of a delivered attempt is refused by the fence
    asynchronous: ClassVar[bool] = False
    local: ClassVar[bool] = True  # goods come out of our own database in one transaction

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        store: StockStore,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(name, settings)
        self._store = store
        self._clock = clock

    def __repr__(self) -> str:
        return f"StockSupplier(name={self.name!r})"

    async def place(self, request: PlaceRequest) -> Outcome:
        if request.order_id is None or request.attempt_id is None or not request.owner:
            # The engine must hand over its order, attempt and lease: without them nothing can be fenced.
            message = "stock place needs order_id, attempt_id and owner"
            return Outcome.failed(ErrorClass.OUR_BUG, Evidence(message=message, request=_describe(request)))
        try:
            cards = await self._store.deliver_from_stock(
                request.order_id,
                request.owner,
                request.attempt_id,
                _pool(request),
                request.qty,
                self._clock(),
            )
        except (DuplicateCard, Conflict) as exc:
            # A concurrent delivery won a key this transaction picked; it rolled back and wrote nothing, and a
            # retry of the same attempt picks other keys. (LeaseLost and NotFound are the engine's to handle.)
            evidence = Evidence(message=f"stock race: {exc}", request=_describe(request))
            return Outcome.error_of(ErrorClass.TRANSIENT, evidence)
        if cards is None:
            return Outcome.failed(
                ErrorClass.PRODUCT_UNAVAILABLE, Evidence(message=OUT_OF_STOCK, request=_describe(request))
            )
        return Outcome(
            OrderState.SUCCEEDED,
            cards=tuple(cards),
            evidence=Evidence(message=f"{len(cards)} taken from stock", request=_describe(request)),
            delivered_in_store=True,
        )

    async def query(self, request: PlaceRequest) -> Outcome:
        """The cards this attempt took once delivered, else NOT_FOUND (all or nothing, never pending)."""
        if request.order_id is None or request.attempt_id is None:
            message = "stock query needs order_id and attempt_id"
            return Outcome.error_of(ErrorClass.OUR_BUG, Evidence(message=message, request=_describe(request)))
        attempts = await self._store.attempts_for_order(request.order_id)
        attempt = next((a for a in attempts if a.id == request.attempt_id), None)
        if attempt is None or attempt.state is not AttemptState.SUCCEEDED:
            state = "no such attempt" if attempt is None else f"attempt {attempt.state}"
            return Outcome(OrderState.NOT_FOUND, evidence=Evidence(message=state, request=_describe(request)))
        # Delivered inside the store already: the keys are informative here, the engine does not re-deliver.
        if isinstance(self._store, CardsByAttempt):
            cards = tuple(await self._store.cards_for_attempt(attempt.id))
            message = f"{len(cards)} taken from stock"
        else:
            cards, message = (), "delivered from stock (this store cannot list an attempt's keys)"
        return Outcome(
            OrderState.SUCCEEDED,
            cards=cards,
            evidence=Evidence(message=message, request=_describe(request)),
            delivered_in_store=True,
        )

    async def check_stock(self, product_id: str, qty: int) -> StockCheck | None:
        counts = await self._store.stock_counts()
        count = counts.get(product_id)
        available = int(getattr(count, "available", 0))
        if available <= 0:
            return StockCheck(available=False, level="empty")
        return StockCheck(available=available >= qty, level="low" if available < 10 * qty else "plenty")


def _pool(request: PlaceRequest) -> str:
    return request.product_id or request.sku


def _describe(request: PlaceRequest) -> str:
    return (
        f"stock sku={_pool(request)} qty={request.qty} attempt={request.attempt_id} number={request.number}"
    )
