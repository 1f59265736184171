"""Supplier quality: call counts per minute, rolling windows as SQL aggregates, the daemon's health snapshot.

Windows are computed in the database over a time range, never by loading history: calls from
`supplier_calls`, fulfilment / key validity / latency to keys from `attempts`, claims from `claims`.
Percentiles are nearest-rank (the value at rank ceil(p·n)), picked with ROW_NUMBER() over the ordered
durations, which SQLite (3.25+) and PostgreSQL both have.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, delete, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from fulfil.domain import AttemptState, ClaimReason
from fulfil.scoring import WindowStats
from fulfil.storage.base import StoreBase
from fulfil.storage.outbox import alert_for_event
from fulfil.storage.schema import attempts, claims, cooldowns, orders, supplier_calls, supplier_health

# An attempt that "delivered" for quality purposes; these error classes on a succeeded attempt mean it did not.
_NOT_DELIVERED = ("invalid_key", "late")
# Failures that are not the supplier's doing: the buyer's account, our own request.
_NOT_THEIRS = ("order_rejected", "our_bug")
_PERCENTILES = (50, 95)
# SQLite keeps money as text: sum it in ten-thousandths as integers, exact for up to 4 decimals.
_MONEY_SCALE = 10_000
_CENTS = Decimal("0.01")

WindowKey = tuple[Any, ...]


@dataclass(frozen=True)
class CallCount:
    """Calls to one supplier within one minute, as buffered by the daemon (added to what is stored)."""

    supplier: str
    minute: datetime
    calls: int
    ok: int
    latency_sum: float = 0.0
    latency_max: float = 0.0


@dataclass(frozen=True)
class QualityEvent:
    name: str
    at: datetime
    supplier: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SupplierHealth:
    """One row of the snapshot `fulfil suppliers` shows."""

    supplier: str
    score: float
    components: dict[str, Any]
    breaker: str
    opened_until: datetime | None
    ejections: int
    demoted: bool
    balance: Decimal | None
    balance_at: datetime | None
    detail: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class CooldownEntry:
    supplier: str
    product_id: str
    until: datetime
    reason: str


class QualityOps(StoreBase):
    # -- writing what the daemon buffered -------------------------------------------------------------

    async def record_quality(self, counts: Sequence[CallCount], events: Sequence[QualityEvent] = ()) -> None:
        """Add call counts (an additive upsert: several daemons may count the same minute) and append
        events, in one transaction."""
        if not counts and not events:
            return
        async with self._write() as conn:
            if counts:
                insert_ = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
                stmt = insert_(supplier_calls)
                greatest = func.greatest if self.dialect == "postgresql" else func.max
                stmt = stmt.on_conflict_do_update(
                    index_elements=["supplier", "minute"],
                    set_={
                        "calls": supplier_calls.c.calls + stmt.excluded.calls,
                        "ok": supplier_calls.c.ok + stmt.excluded.ok,
                        "latency_sum": supplier_calls.c.latency_sum + stmt.excluded.latency_sum,
                        "latency_max": greatest(supplier_calls.c.latency_max, stmt.excluded.latency_max),
                    },
                )
                await conn.execute(
                    stmt,
                    [
                        {
                            "supplier": c.supplier,
                            "minute": c.minute,
                            "calls": c.calls,
                            "ok": c.ok,
                            "latency_sum": c.latency_sum,
                            "latency_max": c.latency_max,
                        }
                        for c in counts
                    ],
                )
            for event in events:
                await self._event(conn, event.name, event.at, supplier=event.supplier, data=event.data)
                await alert_for_event(
                    conn, self.dialect, self.notify_routes, self.install_id, event.name, event.supplier, event.data,
                    event.at,
                )

    async def prune_call_counts(self, before: datetime) -> int:
        """Forget call counts of minutes that ended before `before` (older than the longest window)."""
        async with self._write() as conn:
            result = await conn.execute(
                delete(supplier_calls).where(supplier_calls.c.minute < before - timedelta(minutes=1))
            )
            return int(result.rowcount or 0)

    # -- windows ----------------------------------------------------------------------------------------

    async def supplier_windows(
        self,
        since: datetime,
        until: datetime,
        *,
        promises: Mapping[str, float] | None = None,
        default_promise: float = 120.0,
    ) -> dict[str, WindowStats]:
        """Each supplier's record over [since, until). `promises`: seconds to keys per sku ("on time")."""
        group = [attempts.c.supplier]
        found = await self._windows(group, since, until, promises or {}, default_promise, with_calls=True)
        return {str(key[0]): stats for key, stats in found.items()}

    async def offer_windows(
        self,
        since: datetime,
        until: datetime,
        *,
        promises: Mapping[str, float] | None = None,
        default_promise: float = 120.0,
    ) -> dict[tuple[str, str, int], WindowStats]:
        """The same per offer: (supplier, sku, offer index). Calls are counted per supplier only."""
        group = [attempts.c.supplier, orders.c.sku, attempts.c.offer_index]
        found = await self._windows(group, since, until, promises or {}, default_promise, with_calls=False)
        return {(str(k[0]), str(k[1]), int(k[2])): stats for k, stats in found.items()}

    async def _windows(
        self,
        group: Sequence[ColumnElement[Any]],
        since: datetime,
        until: datetime,
        promises: Mapping[str, float],
        default_promise: float,
        *,
        with_calls: bool,
    ) -> dict[WindowKey, WindowStats]:
        found: dict[WindowKey, dict[str, Any]] = defaultdict(dict)
        async with self._read() as conn:
            for row in await conn.execute(self._attempts_query(group, since, until, promises, default_promise)):
                key = tuple(row[: len(group)])
                m = row._mapping
                found[key].update(
                    finished=int(m["finished"] or 0),
                    fulfilled=int(m["fulfilled"] or 0),
                    units=int(m["units"] or 0),
                    on_time=int(m["on_time"] or 0),
                )
            for row in await conn.execute(self._percentiles_query(group, since, until)):
                key = tuple(row[: len(group)])
                m = row._mapping
                for p in _PERCENTILES:
                    if m[f"is{p}"]:
                        # SQLite's julianday() is exact to the millisecond only.
                        found[key][f"latency_p{p}"] = round(float(m["duration"]), 3)
            for row in await conn.execute(self._claims_query(group, since, until)):
                key = tuple(row[: len(group)])
                m = row._mapping
                found[key].update(
                    claims=int(m["claims"] or 0),
                    invalid_units=int(m["invalid_units"] or 0),
                    claims_amount=self._money_sum(m["amount"]),
                )
            if with_calls:
                for row in await conn.execute(self._calls_query(since, until)):
                    calls = int(row.calls or 0)
                    found[(row.supplier,)].update(
                        calls=calls,
                        calls_ok=int(row.ok or 0),
                        call_latency_avg=float(row.latency_sum or 0) / calls if calls else None,
                        call_latency_max=float(row.latency_max) if calls and row.latency_max is not None else None,
                    )
        return {key: replace(WindowStats(), **values) for key, values in found.items()}

    def _duration(self) -> ColumnElement[float]:
        """Seconds from an attempt's start to its end, in SQL."""
        if self.dialect == "sqlite":
            days = func.julianday(attempts.c.finished_at) - func.julianday(attempts.c.started_at)
            return cast(days * 86400.0, Float)
        return cast(func.extract("epoch", attempts.c.finished_at - attempts.c.started_at), Float)

    def _in_window(self, since: datetime, until: datetime) -> ColumnElement[bool]:
        return and_(attempts.c.started_at >= since, attempts.c.started_at < until)

    def _attempts_query(
        self,
        group: Sequence[ColumnElement[Any]],
        since: datetime,
        until: datetime,
        promises: Mapping[str, float],
        default_promise: float,
    ) -> Any:
        succeeded = attempts.c.state == AttemptState.SUCCEEDED.value
        failed = attempts.c.state == AttemptState.FAILED.value
        fulfilled = and_(
            succeeded, or_(attempts.c.error_class.is_(None), attempts.c.error_class.not_in(_NOT_DELIVERED))
        )
        theirs = or_(attempts.c.error_class.is_(None), attempts.c.error_class.not_in(_NOT_THEIRS))
        finished = or_(succeeded, and_(failed, theirs))
        promise: ColumnElement[Any] = (
            case(
                {sku: literal(float(seconds)) for sku, seconds in promises.items()},
                value=orders.c.sku,
                else_=literal(float(default_promise)),
            )
            if promises
            else literal(float(default_promise))
        )
        on_time = and_(fulfilled, self._duration() <= promise)
        return (
            select(
                *group,
                func.sum(case((finished, 1), else_=0)).label("finished"),
                func.sum(case((fulfilled, 1), else_=0)).label("fulfilled"),
                func.sum(case((succeeded, attempts.c.qty), else_=0)).label("units"),
                func.sum(case((on_time, 1), else_=0)).label("on_time"),
            )
            .select_from(attempts.join(orders, orders.c.id == attempts.c.order_id))
            .where(self._in_window(since, until))
            .group_by(*group)
        )

    def _percentiles_query(self, group: Sequence[ColumnElement[Any]], since: datetime, until: datetime) -> Any:
        fulfilled = and_(
            attempts.c.state == AttemptState.SUCCEEDED.value,
            or_(attempts.c.error_class.is_(None), attempts.c.error_class.not_in(_NOT_DELIVERED)),
            attempts.c.finished_at.is_not(None),
        )
        names = [f"g{i}" for i in range(len(group))]
        durations = (
            select(
                *(col.label(name) for col, name in zip(group, names, strict=True)),
                self._duration().label("duration"),
                func.row_number().over(partition_by=group, order_by=self._duration()).label("rn"),
                func.count().over(partition_by=group).label("n"),
            )
            .select_from(attempts.join(orders, orders.c.id == attempts.c.order_id))
            .where(self._in_window(since, until), fulfilled)
            .subquery()
        )
        # Nearest rank: ceil(p·n / 100) in integer arithmetic, the same on both databases.
        ranks = {p: (durations.c.n * p + 99) // 100 for p in _PERCENTILES}
        flags = [(durations.c.rn == cast(rank, Integer)).label(f"is{p}") for p, rank in ranks.items()]
        return select(*(durations.c[name] for name in names), durations.c.duration, *flags).where(
            or_(*(durations.c.rn == cast(rank, Integer) for rank in ranks.values()))
        )

    def _claims_query(self, group: Sequence[ColumnElement[Any]], since: datetime, until: datetime) -> Any:
        # Claims are grouped by their attempt's supplier and offer (the supplier column is the same).
        if self.dialect == "sqlite":
            amount = func.sum(cast(func.round(cast(claims.c.amount, Float) * _MONEY_SCALE), Integer))
        else:
            amount = func.sum(claims.c.amount)
        # Keys found invalid on arrival and keys buyers reported invalid later (after-sales) both count against
        # the supplier's key validity.
        bad_keys = (ClaimReason.INVALID_KEY.value, ClaimReason.INVALID_KEY_REPORTED.value)
        invalid = case((claims.c.reason.in_(bad_keys), claims.c.qty), else_=0)
        return (
            select(
                *group,
                func.count().label("claims"),
                func.sum(invalid).label("invalid_units"),
                amount.label("amount"),
            )
            .select_from(
                claims.join(attempts, attempts.c.id == claims.c.attempt_id).join(
                    orders, orders.c.id == claims.c.order_id
                )
            )
            .where(claims.c.created_at >= since, claims.c.created_at < until)
            .group_by(*group)
        )

    def _calls_query(self, since: datetime, until: datetime) -> Any:
        # A minute counts when it overlaps the window.
        return (
            select(
                supplier_calls.c.supplier,
                func.sum(supplier_calls.c.calls).label("calls"),
                func.sum(supplier_calls.c.ok).label("ok"),
                func.sum(supplier_calls.c.latency_sum).label("latency_sum"),
                func.max(supplier_calls.c.latency_max).label("latency_max"),
            )
            .where(supplier_calls.c.minute > since - timedelta(minutes=1), supplier_calls.c.minute < until)
            .group_by(supplier_calls.c.supplier)
        )

    def _money_sum(self, value: Any) -> Decimal:
        if value is None:
            return Decimal("0.00")
        amount = Decimal(int(value)) / _MONEY_SCALE if self.dialect == "sqlite" else Decimal(value)
        cents = amount.quantize(_CENTS)
        return cents if cents == amount else amount.normalize()  # "95.00" on both databases

    # -- the snapshot ---------------------------------------------------------------------------------

    async def save_supplier_health(self, rows: Sequence[SupplierHealth]) -> None:
        if not rows:
            return
        async with self._write() as conn:
            for row in rows:
                values = {
                    "supplier": row.supplier,
                    "score": row.score,
                    "components": row.components,
                    "breaker": row.breaker,
                    "opened_until": row.opened_until,
                    "ejections": row.ejections,
                    "demoted": row.demoted,
                    "balance": row.balance,
                    "balance_at": row.balance_at,
                    "detail": row.detail,
                    "updated_at": row.updated_at,
                }
                await conn.execute(self._upsert(supplier_health, values, ["supplier"]))

    async def supplier_health(self) -> list[SupplierHealth]:
        async with self._read() as conn:
            rows = await conn.execute(select(supplier_health).order_by(supplier_health.c.supplier))
            return [SupplierHealth(**row._mapping) for row in rows]

    async def cooldown_list(self, now: datetime) -> list[CooldownEntry]:
        """Active cool-downs with their reasons, soonest over first."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(cooldowns.c.supplier, cooldowns.c.product_id, cooldowns.c.until, cooldowns.c.reason)
                .where(cooldowns.c.until > now)
                .order_by(cooldowns.c.until, cooldowns.c.supplier, cooldowns.c.product_id)
            )
            return [CooldownEntry(**row._mapping) for row in rows]
