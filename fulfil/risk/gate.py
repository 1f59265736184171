"""Where the engine asks risk: once per order, after its claim and before its first attempt.

Orders claimed together are decided together, one after another in id order (each in its own transaction,
each answered as soon as it is decided), and a later claim's orders after an earlier claim's: with a limit of
5, the first 5 orders of a flood are the ones that go through, not whichever task the event loop ran first.

Cheap on the happy path: with no rules configured, the engine asks only for orders whose batch context (one
read with the batch's attempts: is any block active, has any of these buyers lost credit?) says so; orders of
good buyers never come here and cost no statement of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fulfil import failpoints
from fulfil.clock import Clock
from fulfil.config import Config
from fulfil.domain import Order, OrderStatus
from fulfil.risk.rules import Decision
from fulfil.storage import LeaseLost

if TYPE_CHECKING:
    from fulfil.storage import Store

log = logging.getLogger("fulfil.risk")

Outcome = Decision | None | BaseException  # None: no decision was needed


class RiskGate:
    def __init__(self, store: Store, config: Callable[[], Config], clock: Clock) -> None:
        self.store = store
        self._config = config
        self._clock = clock
        self._waiting: dict[int, tuple[Order, str, asyncio.Future[Outcome]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_order = asyncio.Lock()  # one claimed batch decided after the other, as they were claimed

    async def allows(self, order: Order, owner: str) -> bool:
        """True: go on and buy. False: the order was held or refused (or, `on_error: hold`, held because
        deciding failed); it is no longer this worker's. LeaseLost goes up as for any write."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting[order.id] = (order, owner, future)
        outcome = await future
        await failpoints.pause("risk_decided")  # tests: a kill lands after the decision, before the purchase
        if isinstance(outcome, LeaseLost):
            raise outcome
        if isinstance(outcome, BaseException):
            return await self._failed(order, owner, outcome)
        if outcome is None or outcome.action == "allow":
            return True
        level = logging.WARNING if outcome.action == "hold" else logging.INFO
        event = "risk.held" if outcome.action == "hold" else "risk.refused"
        log.log(level, event, extra={"order": order.ref, "rule": outcome.rule, "reason": outcome.reason})
        return False

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, {}
        task = asyncio.ensure_future(self._decide_all(batch))
        self._tasks.add(task)  # a reference until done: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)

    async def _decide_all(self, batch: dict[int, tuple[Order, str, asyncio.Future[Outcome]]]) -> None:
        async with self._in_order:
            await self._decide_batch(batch)

    async def _decide_batch(self, batch: dict[int, tuple[Order, str, asyncio.Future[Outcome]]]) -> None:
        config = self._config()
        families = {sku: product.family for sku, product in config.products.items()}
        for order_id in sorted(batch):
            order, owner, future = batch[order_id]
            if future.done():
                continue  # its task was cancelled meanwhile
            try:
                decision = await self.store.risk_decide(order, owner, config.risk, families, self._clock.now())
            except asyncio.CancelledError:
                for _, _, left in batch.values():
                    left.cancel()
                raise
            except Exception as exc:
                _settle(future, exc)
                continue
            _settle(future, decision)

    async def _failed(self, order: Order, owner: str, exc: BaseException) -> bool:
        if self._config().risk.on_error == "allow":
            log.error("risk.failed_allowed", extra={"order": order.ref}, exc_info=exc)
            return True
        log.error("risk.failed_held", extra={"order": order.ref}, exc_info=exc)
        reason = f"risk: evaluation failed ({type(exc).__name__}: {str(exc)[:300]})"
        await self.store.finish_order(order.id, owner, OrderStatus.REVIEW, reason, self._clock.now())
        return False


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)
