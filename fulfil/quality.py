"""`SupplierQuality`: the engine's `Health`, made of breakers, scores, balance and stock watch.

- Breakers are in-process (`fulfil.breaker`): they react to each call at once.
- Calls are counted in memory per (supplier, minute) and added to the database in one batch from `periodic`,
  or sooner from a background task once many have piled up. A crash loses at most the last few seconds of
  call counts; no money data goes through here.
- Scores (`fulfil.scoring`) are recomputed every `scoring.interval` from a rolling window the database
  aggregates (calls, attempts, claims), so every daemon sharing a database sees the same scores.
- Below `routing.min_score`, or below its balance floor, a supplier is demoted: routing passes it by except
  for a share of probe orders (`routing.probe_share`), or when nothing else is left.
- What `fulfil suppliers` shows (score, breaker, balance) is written to `supplier_health` for that command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fulfil.breaker import Breaker, BreakerState, BreakerView, Transition
from fulfil.config import Config
from fulfil.scoring import Score, WindowStats, neutral, score
from fulfil.storage import Store
from fulfil.storage.store_quality import CallCount, QualityEvent, SupplierHealth
from suppliers.base import Supplier
from suppliers.taxonomy import SupplierError

log = logging.getLogger("fulfil.quality")

FLUSH_AT = 500  # buffered calls that trigger a flush before the next `periodic`
LONGEST_WINDOW = timedelta(days=7)
PRUNE_EVERY = timedelta(hours=1)
LOW_BALANCE_WEIGHT = 0.1  # a supplier short of balance keeps a tenth of its routing weight
STOCK_CHECK_TIMEOUT = 3.0  # seconds: a slow stock check must not hold the order up
BALANCE_TIMEOUT = 10.0


@dataclass(frozen=True)
class _StockAnswer:
    available: bool
    qty: int  # the quantity asked: "available" holds for up to it, "empty" for it and more
    until: datetime


@dataclass
class _Calls:
    calls: int = 0
    ok: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0


class SupplierQuality:
    """Implements `fulfil.health.Health` (and routing's `Demoting`)."""

    def __init__(
        self,
        store: Store,
        config: Config | Callable[[], Config],
        suppliers: Mapping[str, Supplier],
        *,
        flush_at: int = FLUSH_AT,
    ) -> None:
        # A callable follows the engine's config across reloads (SIGHUP).
        self._config = config if callable(config) else (lambda: config)
        self.store = store
        self.suppliers = dict(suppliers)
        self.flush_at = flush_at
        self._breakers: dict[str, Breaker] = {}
        self._scores: dict[str, Score] = {}
        self._stats: dict[str, WindowStats] = {}
        self._demoted: dict[str, bool] = {}
        self._balances: dict[str, tuple[Decimal, datetime]] = {}
        self._balance_low: dict[str, bool] = {}
        self._balance_polled: dict[str, datetime] = {}
        self._scored_at: datetime | None = None
        self._pruned_at: datetime | None = None
        self._dirty = True
        # Buffered until the next flush.
        self._calls: dict[tuple[str, datetime], _Calls] = {}
        self._pending = 0
        self._events: list[QualityEvent] = []
        self._flush_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._stock: dict[tuple[str, str], _StockAnswer] = {}
        self._stock_checks: dict[tuple[str, str, int], asyncio.Future[bool]] = {}

    @property
    def config(self) -> Config:
        return self._config()

    # --- Health: what routing asks ---------------------------------------------------------------------

    def allows(self, supplier: str, now: datetime) -> bool:
        breaker = self._breaker(supplier)
        before = breaker.state
        allowed = breaker.allows(now)
        if before is BreakerState.OPEN and breaker.state is BreakerState.HALF_OPEN:
            self._dirty = True
            log.info("supplier.breaker_half_open", extra={"supplier": supplier, "ejections": breaker.ejections})
        return allowed

    def reopens_at(self, supplier: str, now: datetime) -> datetime | None:
        return self._breaker(supplier).reopens_at(now)

    def weight(self, supplier: str) -> float:
        value = self.score_of(supplier).value
        return value * LOW_BALANCE_WEIGHT if self._balance_low.get(supplier, False) else value

    def demoted(self, supplier: str) -> bool:
        return self._demoted.get(supplier, False)

    @property
    def probe_share(self) -> float:
        return self.config.routing.probe_share

    # --- Health: what the engine reports ---------------------------------------------------------------

    def record(self, supplier: str, ok: bool, latency: float | None, now: datetime) -> None:
        transition = self._breaker(supplier).record(ok, now)
        if transition is not None:
            self._transition(supplier, transition)
        key = (supplier, now.replace(second=0, microsecond=0))
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls[key] = _Calls()
        calls.calls += 1
        calls.ok += int(ok)
        if latency is not None:
            calls.latency_sum += latency
            calls.latency_max = max(calls.latency_max, latency)
        self._pending += 1
        if self._pending >= self.flush_at:
            self._flush_soon()

    def trip(self, supplier: str, reason: str, now: datetime) -> None:
        transition = self._breaker(supplier).trip(reason, now)
        if transition is not None:
            self._transition(supplier, transition)

    # --- Health: stock check before placing -----------------------------------------------------------

    async def in_stock(self, supplier: Supplier, product_id: str, qty: int, now: datetime) -> bool:
        """The supplier's stock check, cached for `cooldown.stock_check`. Never False on a failed check."""
        cached = self._stock.get((supplier.name, product_id))
        if cached is not None and now < cached.until:
            if cached.available and qty <= cached.qty:
                return True
            if not cached.available and qty >= cached.qty:
                return False
        key = (supplier.name, product_id, qty)
        check = self._stock_checks.get(key)
        if check is None:  # one check at a time per key: a burst of orders waits on the same answer
            check = asyncio.ensure_future(self._check_stock(supplier, product_id, qty, now))
            self._stock_checks[key] = check
            check.add_done_callback(lambda _: self._stock_checks.pop(key, None))
        return await asyncio.shield(check)

    async def _check_stock(self, supplier: Supplier, product_id: str, qty: int, now: datetime) -> bool:
        until = now + timedelta(seconds=self.config.cooldown.stock_check)
        try:
            async with asyncio.timeout(STOCK_CHECK_TIMEOUT):
                answer = await supplier.check_stock(product_id, qty)
        except Exception as exc:
            # Never block an order on a failed check; remember it briefly so a down supplier is not asked
            # again by every order. An adapter's own bug is logged loudly, and still does not block.
            extra = {"supplier": supplier.name, "product_id": product_id, "error": str(exc)}
            if isinstance(exc, SupplierError | TimeoutError):
                log.info("stock.check_failed", extra=extra)
            else:
                log.error("stock.check_crashed", extra=extra, exc_info=exc)
            self._stock[(supplier.name, product_id)] = _StockAnswer(True, qty, until)
            return True
        if answer is None:  # the protocol has no stock check
            self._stock[(supplier.name, product_id)] = _StockAnswer(True, 2**31, until)
            return True
        self._stock[(supplier.name, product_id)] = _StockAnswer(answer.available, qty, until)
        if not answer.available:
            log.info("stock.empty", extra={"supplier": supplier.name, "product_id": product_id, "qty": qty})
        return answer.available

    # --- Health: periodic ------------------------------------------------------------------------------

    async def periodic(self, now: datetime) -> None:
        """Flush call counts and events; rescore when due; poll balances when due; write the snapshot."""
        await self.flush()
        cfg = self.config
        scored = self._scored_at is None or now - self._scored_at >= timedelta(seconds=cfg.scoring.interval)
        if scored:
            await self.rescore(now)
        await self._poll_balances(now)
        self._update_demotions(now)
        if self._events:
            await self.flush()
        if scored or self._dirty:
            await self._save_snapshot(now)

    async def rescore(self, now: datetime) -> None:
        cfg = self.config
        since = now - timedelta(seconds=cfg.scoring.window)
        promises = {sku: product.promise for sku, product in cfg.products.items()}
        self._stats = await self.store.supplier_windows(since, now, promises=promises)
        self._scores = {name: score(self._stats.get(name, WindowStats()), cfg.scoring) for name in self.suppliers}
        self._scored_at = now
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            await self.store.prune_call_counts(now - LONGEST_WINDOW)
            self._pruned_at = now

    async def flush(self) -> None:
        """Write buffered call counts and events. On failure they stay buffered for the next try."""
        async with self._flush_lock:
            calls, self._calls, self._pending = self._calls, {}, 0
            events, self._events = self._events, []
            counts = [
                CallCount(supplier, minute, c.calls, c.ok, c.latency_sum, c.latency_max)
                for (supplier, minute), c in calls.items()
            ]
            try:
                await self.store.record_quality(counts, events)
            except BaseException:
                self._merge_back(calls, events)
                raise

    async def aclose(self) -> None:
        """Flush what is buffered (on a graceful shutdown)."""
        if self._flush_task is not None:
            await asyncio.gather(self._flush_task, return_exceptions=True)
        await self.flush()

    # --- reading (tests, the admin side) ---------------------------------------------------------------

    def score_of(self, supplier: str) -> Score:
        return self._scores.get(supplier) or neutral(self.config.scoring)

    def breaker_view(self, supplier: str, now: datetime) -> BreakerView:
        return self._breaker(supplier).view(now)

    def balance_of(self, supplier: str) -> Decimal | None:
        found = self._balances.get(supplier)
        return found[0] if found else None

    # --- inside ----------------------------------------------------------------------------------------

    def _breaker(self, supplier: str) -> Breaker:
        current = self.config.breaker
        breaker = self._breakers.get(supplier)
        if breaker is None:
            breaker = self._breakers[supplier] = Breaker(current)
        elif breaker.config is not current:
            breaker.config = current  # reloaded: thresholds apply from now on
        return breaker

    def _transition(self, supplier: str, t: Transition) -> None:
        self._dirty = True
        data: dict[str, Any] = {"from": t.old.value, "reason": t.reason, "ejections": t.ejections}
        if t.new is BreakerState.OPEN:
            data["until"] = t.until.isoformat() if t.until else None
            log.warning("supplier.breaker_opened", extra={"supplier": supplier, **data})
            self._events.append(QualityEvent("supplier.breaker_opened", t.at, supplier, data))
        else:
            log.info("supplier.breaker_closed", extra={"supplier": supplier, **data})
            self._events.append(QualityEvent("supplier.breaker_closed", t.at, supplier, data))

    def _flush_soon(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the next periodic flushes
            return
        self._flush_task = loop.create_task(self.flush(), name="quality-flush")
        self._flush_task.add_done_callback(_report_flush)

    def _merge_back(self, calls: dict[tuple[str, datetime], _Calls], events: list[QualityEvent]) -> None:
        for key, c in calls.items():
            into = self._calls.setdefault(key, _Calls())
            into.calls += c.calls
            into.ok += c.ok
            into.latency_sum += c.latency_sum
            into.latency_max = max(into.latency_max, c.latency_max)
        self._events[:0] = events

    async def _poll_balances(self, now: datetime) -> None:
        interval = timedelta(seconds=self.config.scoring.balance_interval)
        due = [
            (name, supplier)
            for name, supplier in self.suppliers.items()
            if not supplier.local
            and (name not in self._balance_polled or now - self._balance_polled[name] >= interval)
        ]
        # At once: one slow supplier must not hold up the others (or the engine's periodic work).
        await asyncio.gather(*(self._poll_balance(name, supplier, now) for name, supplier in due))

    async def _poll_balance(self, name: str, supplier: Supplier, now: datetime) -> None:
        self._balance_polled[name] = now
        try:
            async with asyncio.timeout(BALANCE_TIMEOUT):
                balance = await supplier.balance()
        except (SupplierError, TimeoutError) as exc:
            log.warning("supplier.balance_failed", extra={"supplier": name, "error": str(exc)})
            return
        except Exception:
            log.exception("supplier.balance_crashed", extra={"supplier": name})  # an adapter's bug: loud
            return
        if balance is None:
            return  # the protocol has no balance
        self._balances[name] = (balance.amount, now)
        self._dirty = True
        self._check_floor(name, balance.amount, now)

    def _check_floor(self, name: str, amount: Decimal, now: datetime) -> None:
        floor = self._floor(name)
        low = floor is not None and amount < floor
        if low == self._balance_low.get(name, False):
            return
        self._balance_low[name] = low
        data = {"balance": str(amount), "floor": str(floor) if floor is not None else None}
        event = "supplier.balance_low" if low else "supplier.balance_ok"
        (log.error if low else log.info)(event, extra={"supplier": name, **data})
        self._events.append(QualityEvent(event, now, name, data))

    def _floor(self, name: str) -> Decimal | None:
        for entry in self.config.suppliers:
            if entry.name == name:
                return entry.balance_floor
        return None

    def _update_demotions(self, now: datetime) -> None:
        min_score = self.config.routing.min_score
        for name, supplier in self.suppliers.items():
            if supplier.local:
                continue  # our own stock: "out of stock" there is not a quality problem
            value = self.score_of(name).value
            low = self._balance_low.get(name, False)
            demoted = value < min_score or low
            if demoted == self._demoted.get(name, False):
                continue
            self._demoted[name] = demoted
            self._dirty = True
            why = [w for w, on in (("score below min_score", value < min_score), ("balance low", low)) if on]
            data = {"score": round(value, 1), "min_score": min_score, "why": ", ".join(why) or None}
            event = "supplier.demoted" if demoted else "supplier.restored"
            (log.warning if demoted else log.info)(event, extra={"supplier": name, **data})
            self._events.append(QualityEvent(event, now, name, data))

    async def _save_snapshot(self, now: datetime) -> None:
        rows = []
        for name in self.suppliers:
            s = self.score_of(name)
            view = self._breaker(name).view(now)
            balance = self._balances.get(name)
            stats = self._stats.get(name, WindowStats())
            floor = self._floor(name)
            rows.append(
                SupplierHealth(
                    supplier=name,
                    score=round(s.value, 2),
                    components={**s.as_dict(), "window": self.config.scoring.window, "stats": stats.as_dict()},
                    breaker=view.state.value,
                    opened_until=view.opened_until,
                    ejections=view.ejections,
                    demoted=self.demoted(name),
                    balance=balance[0] if balance else None,
                    balance_at=balance[1] if balance else None,
                    detail={
                        "breaker_reason": view.reason,
                        "weight": round(self.weight(name), 2),
                        "balance_floor": str(floor) if floor is not None else None,
                        "balance_low": self._balance_low.get(name, False),
                        "scored_at": self._scored_at.isoformat() if self._scored_at else None,
                    },
                    updated_at=now,
                )
            )
        await self.store.save_supplier_health(rows)
        self._dirty = False


def _report_flush(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The counts stay buffered; the next periodic flush tries again (and raises to the worker).
        log.error("quality.flush_failed", exc_info=task.exception())
