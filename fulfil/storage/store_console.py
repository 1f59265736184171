"""What the operator console, the storefront figures and the metrics scrape read: indexed queries only.

Nothing here loads a table: searches are keyset-paged (newest first, `before` an order id), windows are index
ranges (`ix_orders_delivered_at`, `ix_orders_status_updated`, `ix_orders_sku_delivered`), percentiles are
picked by ORDER BY ... LIMIT 1 OFFSET k over one window, and "a person acted on it" is read from the few
events that carry an operator (`ix_events_operator`, a partial index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, and_, cast, delete, exists, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from fulfil.aftersales.model import CLOCK, SYSTEM
from fulfil.domain import WAITING_REASON, ClaimRecord, ClaimStatus, OrderStatus, OrderView
from fulfil.storage.base import StoreBase
from fulfil.storage.schema import (
    alert_state,
    attempts,
    claims,
    cooldowns,
    events,
    held_cards,
    orders,
    outbox,
    receipts,
    stock,
    supplier_calls,
    supplier_health,
)
from fulfil.storage.store_claims import claims_query
from fulfil.storage.store_notify import OutboxRow
from fulfil.storage.store_notify import _row as outbox_row
from fulfil.storage.types import EventRecord

_DELIVERED = OrderStatus.DELIVERED.value
_FAILED = OrderStatus.FAILED.value
_ORIGINAL = orders.c.reissue_of.is_(None)  # a sale, not an after-sales reissue (a child order)
# Events with an operator that are not an action on the order: moving a claim along is bookkeeping with the
# supplier, and looking at a key is not fulfilling it.
NOT_ACTIONS = ("claim.%", "aftersales.opened", "aftersales.repeated")  # bookkeeping and a buyer's report
# After-sales writes its automatic steps with these as the operator: L1's decisions and the clock's escalations.
MACHINE_ACTORS = ("L1", SYSTEM, CLOCK)
REVEAL_EVENT = "order.revealed"
# A pause is a cool-down no end of a supplier's trouble can shorten.
PAUSE_PREFIX = "paused by "
PAUSED_UNTIL = datetime(2999, 1, 1, tzinfo=UTC)
PAGE = 50


@dataclass(frozen=True)
class OrderQuery:
    """What support staff look an order up by; None is "any". Several at once narrow it down."""

    ref: str | None = None
    contact: str | None = None
    account: str | None = None
    supplier_order: str | None = None  # our supplier-facing number, or the supplier's own order id
    since: datetime | None = None
    until: datetime | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    status: str | None = None
    sku: str | None = None


@dataclass(frozen=True)
class OrderHit:
    id: int
    ref: str
    sku: str
    qty: int
    account: str | None
    amount: Decimal | None
    status: str
    reason: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class OrderDetail:
    view: OrderView
    contact: str | None  # plaintext: the web layer masks it
    events: list[EventRecord]
    notifications: list[OutboxRow]
    held: list[dict[str, Any]]
    automatic: bool


@dataclass(frozen=True)
class WindowFigures:
    """One window's figures (the overview's today / 7 days, a product's storefront figures)."""

    since: datetime
    created: int
    delivered: int
    failed: int
    manual: int  # ended orders a person acted on
    manual_delivered: int
    p50_seconds: float | None
    p95_seconds: float | None
    claims: int = 0
    orders_with_claims: int = 0
    claims_by_supplier: dict[str, int] = field(default_factory=dict)

    @property
    def ended(self) -> int:
        return self.delivered + self.failed

    @property
    def automation_rate(self) -> float | None:
        """Ended with no person involved (delivered, or failed refundably by a rule) ÷ ended."""
        return (self.ended - self.manual) / self.ended if self.ended else None

    @property
    def success_rate(self) -> float | None:
        """Delivered with no person involved ÷ ended (the storefront's promise)."""
        return (self.delivered - self.manual_delivered) / self.ended if self.ended else None


@dataclass(frozen=True)
class Backlog:
    pending: int
    processing: int
    review: int
    oldest_pending: datetime | None
    oldest_review: datetime | None
    outbox_due: int
    oldest_outbox_due: datetime | None
    outbox_dead: int
    waiting: int = 0  # of `pending`: orders waiting for a supplier (a breaker open, a transient failure)


@dataclass(frozen=True)
class DayLedger:
    day: str
    supplier: str
    charged: int
    delivered: int
    claimed: int
    recovered: int


def _seconds(dialect: str) -> ColumnElement[Any]:
    """Intake to delivery in seconds, in SQL (for percentiles without fetching the window)."""
    if dialect == "postgresql":
        return func.extract("epoch", orders.c.delivered_at - orders.c.created_at)
    return (func.julianday(orders.c.delivered_at) - func.julianday(orders.c.created_at)) * 86400.0


def _day(dialect: str, column: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def person_acted(order_id: Any) -> ColumnElement[bool]:
    """An order a person acted on: any event on it with an operator, but claim bookkeeping, reveals, a buyer's
    after-sales report and after-sales' automatic steps."""
    return exists(
        select(literal_column("1"))
        .select_from(events)
        .where(
            events.c.order_id == order_id,
            events.c.operator.isnot(None),
            events.c.operator.notin_(MACHINE_ACTORS),
            events.c.name != REVEAL_EVENT,
            *[events.c.name.not_like(pattern) for pattern in NOT_ACTIONS],
        )
    )


class ConsoleOps(StoreBase):
    # -- orders ---------------------------------------------------------------------------------------

    async def search_orders(self, q: OrderQuery, *, before: int | None = None, limit: int = PAGE) -> list[OrderHit]:
        """Newest first; `before` (an order id: the last one shown) pages on. A contact is matched by its keyed
        hash."""
        # Newest first by intake time: a date range is then a backward walk of ix_orders_created, whatever else
        # narrows it; `before` (the last order shown) pages on from its (created_at, id).
        stmt = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        if before is not None:
            at = select(orders.c.created_at).where(orders.c.id == before).scalar_subquery()
            # `<=` first: an index range bound; the OR only breaks ties within one instant.
            stmt = stmt.where(orders.c.created_at <= at, or_(orders.c.created_at < at, orders.c.id < before))
        if q.ref:
            stmt = stmt.where(orders.c.ref == q.ref.strip())
        if q.contact:
            stmt = stmt.where(orders.c.contact_hash == self._cipher.identity_hash("contact", q.contact))
        if q.account:
            stmt = stmt.where(orders.c.account == q.account.strip())
        if q.supplier_order:
            number = q.supplier_order.strip()
            by_attempt = select(attempts.c.order_id).where(
                or_(attempts.c.number == number, attempts.c.supplier_order_id == number)
            )
            stmt = stmt.where(orders.c.id.in_(by_attempt.scalar_subquery()))
        if q.since is not None:
            stmt = stmt.where(orders.c.created_at >= q.since)
        if q.until is not None:
            stmt = stmt.where(orders.c.created_at < q.until)
        if q.status:
            stmt = stmt.where(orders.c.status == q.status)
        if q.sku:
            stmt = stmt.where(orders.c.sku == q.sku)
        # Money is text on SQLite: compared as a number there, natively on PostgreSQL.
        amount = orders.c.amount if self.dialect == "postgresql" else cast(orders.c.amount, Float)
        if q.amount_min is not None:
            stmt = stmt.where(amount >= (q.amount_min if self.dialect == "postgresql" else float(q.amount_min)))
        if q.amount_max is not None:
            stmt = stmt.where(amount <= (q.amount_max if self.dialect == "postgresql" else float(q.amount_max)))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            OrderHit(
                id=r.id,
                ref=r.ref,
                sku=r.sku,
                qty=r.qty,
                account=r.account,
                amount=r.amount,
                status=r.status,
                reason=r.reason,
                created_at=r.created_at,
                delivered_at=r.delivered_at,
            )
            for r in rows
        ]

    async def order_detail(self, view: OrderView) -> OrderDetail:
        """Everything that happened to one order (`get_order`'s view, cards decrypted: the web layer masks them
        unless revealed): its events, its notifications, the keys held for it, whether a person acted on it."""
        order_id = view.order.id
        async with self._read() as conn:
            row = (await conn.execute(select(orders.c.contact_enc).where(orders.c.id == order_id))).one()
            contact = self._cipher.decrypt(row.contact_enc) if row.contact_enc else None
            found = await conn.execute(select(events).where(events.c.order_id == order_id).order_by(events.c.id))
            history = [EventRecord(**r._mapping) for r in found]
            sent = await conn.execute(select(outbox).where(outbox.c.order_id == order_id).order_by(outbox.c.id))
            notifications = [outbox_row(r) for r in sent]
            held_rows = await conn.execute(
                select(held_cards.c.id, held_cards.c.reason, held_cards.c.created_at, held_cards.c.released_at)
                .join(attempts, attempts.c.id == held_cards.c.attempt_id)
                .where(attempts.c.order_id == order_id)
                .order_by(held_cards.c.id)
            )
            held = [dict(r._mapping) for r in held_rows]
            manual = await conn.scalar(select(person_acted(orders.c.id)).where(orders.c.id == order_id))
        return OrderDetail(view, contact, history, notifications, held, automatic=not manual)

    async def record_reveal(self, order_id: int, operator: str, now: datetime) -> None:
        """Looking at an order's keys is an audited action."""
        async with self._write() as conn:
            await self._event(conn, REVEAL_EVENT, now, order_id=order_id, operator=operator)

    # -- figures --------------------------------------------------------------------------------------

    async def window_figures(self, since: datetime, *, sku: str | None = None, detail: bool = True) -> WindowFigures:
        """Orders that reached an end state since `since` (delivered by `delivered_at`, failed by the time of
        their last change), how many a person acted on, and intake-to-delivery p50/p95 of those delivered."""
        # Original orders only: a reissue (after-sales) is not a sale, and its quick delivery would flatter us.
        delivered_w = [orders.c.delivered_at >= since, orders.c.status == _DELIVERED, _ORIGINAL]
        failed_w = [orders.c.status == _FAILED, orders.c.updated_at >= since, _ORIGINAL]
        if sku is not None:
            delivered_w.append(orders.c.sku == sku)
            failed_w.append(orders.c.sku == sku)
        async with self._read() as conn:
            delivered = int(await conn.scalar(select(func.count()).where(*delivered_w)) or 0)
            failed = int(await conn.scalar(select(func.count()).where(*failed_w)) or 0)
            manual_delivered = await self._manual(conn, delivered_w)
            manual = manual_delivered + await self._manual(conn, failed_w)
            p50, p95 = await self._percentiles(conn, delivered_w, delivered, (0.5, 0.95))
            created = 0
            claims_n = with_claims = 0
            by_supplier: dict[str, int] = {}
            if detail:
                created_w = [orders.c.created_at >= since, _ORIGINAL] + ([orders.c.sku == sku] if sku else [])
                created = int(await conn.scalar(select(func.count()).where(*created_w)) or 0)
                found = await conn.execute(
                    select(claims.c.supplier, func.count(), func.count(func.distinct(claims.c.order_id)))
                    .where(claims.c.created_at >= since)
                    .group_by(claims.c.supplier)
                )
                for supplier, n, distinct in found:
                    by_supplier[supplier] = int(n)
                    claims_n += int(n)
                    with_claims += int(distinct)
        return WindowFigures(
            since=since,
            created=created,
            delivered=delivered,
            failed=failed,
            manual=manual,
            manual_delivered=manual_delivered,
            p50_seconds=p50,
            p95_seconds=p95,
            claims=claims_n,
            orders_with_claims=with_claims,
            claims_by_supplier=by_supplier,
        )

    async def _manual(self, conn: AsyncConnection, where: Sequence[ColumnElement[bool]]) -> int:
        acted = (
            select(events.c.order_id)
            .where(
                events.c.operator.isnot(None),
                events.c.operator.notin_(MACHINE_ACTORS),
                events.c.order_id.isnot(None),
                events.c.name != REVEAL_EVENT,
                *[events.c.name.not_like(pattern) for pattern in NOT_ACTIONS],
            )
            .distinct()
            .subquery()
        )
        stmt = select(func.count()).select_from(orders.join(acted, acted.c.order_id == orders.c.id)).where(*where)
        return int(await conn.scalar(stmt) or 0)

    async def _percentiles(
        self, conn: AsyncConnection, where: Sequence[ColumnElement[bool]], n: int, qs: Sequence[float]
    ) -> list[float | None]:
        """Nearest-rank percentiles of intake-to-delivery seconds over `where` (n rows)."""
        out: list[float | None] = []
        seconds = _seconds(self.dialect).label("s")
        for q in qs:
            if n == 0:
                out.append(None)
                continue
            rank = max(1, math.ceil(q * n))
            value = await conn.scalar(select(seconds).where(*where).order_by(seconds).limit(1).offset(rank - 1))
            out.append(float(value) if value is not None else None)
        return out

    async def daily_counts(self, since: datetime) -> list[tuple[str, int, int]]:
        """(day, orders taken in, orders delivered) per UTC day since `since`, for the overview's chart (original
        orders: reissues are not sales)."""
        made: dict[str, int] = {}
        done: dict[str, int] = {}
        async with self._read() as conn:
            day = _day(self.dialect, orders.c.created_at)
            for d, n in await conn.execute(
                select(day, func.count()).where(orders.c.created_at >= since, _ORIGINAL).group_by(day)
            ):
                made[str(d)] = int(n)
            day = _day(self.dialect, orders.c.delivered_at)
            for d, n in await conn.execute(
                select(day, func.count()).where(orders.c.delivered_at >= since, _ORIGINAL).group_by(day)
            ):
                done[str(d)] = int(n)
        return [(d, made.get(d, 0), done.get(d, 0)) for d in sorted(set(made) | set(done))]

    # -- queues and the scrape ------------------------------------------------------------------------

    async def backlog(self, now: datetime) -> Backlog:
        """Queue depths and oldest items: COUNT/MIN over index ranges of the open states only."""
        async with self._read() as conn:
            counts = {
                status: int(n)
                for status, n in await conn.execute(
                    select(orders.c.status, func.count())
                    .where(orders.c.status.in_(("pending", "processing", "review")))
                    .group_by(orders.c.status)
                )
            }
            # Through a subquery: a bare MIN(created_at) tempts SQLite into walking ix_orders_created from the
            # oldest order until it meets an open one (a scan of the whole history); this reads the open ones only.
            open_ = (
                select(orders.c.created_at)
                .where(orders.c.status.in_(("pending", "processing")))
                .limit(-1 if self.dialect == "sqlite" else None)
                .subquery()
            )
            oldest_pending = await conn.scalar(select(func.min(open_.c.created_at)))
            waiting = await conn.scalar(
                select(func.count()).where(orders.c.status == "pending", orders.c.reason.startswith(WAITING_REASON))
            )
            oldest_review = await conn.scalar(select(func.min(orders.c.updated_at)).where(orders.c.status == "review"))
            due = outbox.c.state == "pending"
            outbox_due, oldest_due = (
                await conn.execute(select(func.count(), func.min(outbox.c.next_at)).where(due, outbox.c.next_at <= now))
            ).one()
            dead = await conn.scalar(select(func.count()).where(outbox.c.state == "dead"))
        return Backlog(
            pending=counts.get("pending", 0),
            processing=counts.get("processing", 0),
            review=counts.get("review", 0),
            oldest_pending=oldest_pending,
            oldest_review=oldest_review,
            outbox_due=int(outbox_due or 0),
            oldest_outbox_due=oldest_due,
            outbox_dead=int(dead or 0),
            waiting=int(waiting or 0),
        )

    async def attempt_outcomes(self, since: datetime) -> dict[tuple[str, str, str | None], int]:
        """(supplier, state, error class) -> attempts started since `since` (the demo's live view)."""
        stmt = (
            select(attempts.c.supplier, attempts.c.state, attempts.c.error_class, func.count())
            .where(attempts.c.started_at >= since)
            .group_by(attempts.c.supplier, attempts.c.state, attempts.c.error_class)
        )
        async with self._read() as conn:
            return {(s, st, e): int(n) for s, st, e, n in await conn.execute(stmt)}

    async def claim_counts(self, since: datetime) -> dict[tuple[str, str], int]:
        stmt = (
            select(claims.c.supplier, claims.c.reason, func.count())
            .where(claims.c.created_at >= since)
            .group_by(claims.c.supplier, claims.c.reason)
        )
        async with self._read() as conn:
            return {(s, r): int(n) for s, r, n in await conn.execute(stmt)}

    async def latest_claims(self, status: str, limit: int = 200) -> list[ClaimRecord]:
        async with self._read() as conn:
            return await claims_query(conn, status=status, newest=limit)

    async def last_delivery(self) -> datetime | None:
        async with self._read() as conn:
            found: datetime | None = await conn.scalar(select(func.max(orders.c.delivered_at)))
            return found

    async def available_stock(self) -> dict[str, int]:
        """Unused keys per product, through the partial index of unused stock (used rows are never read)."""
        stmt = select(stock.c.sku, func.count()).where(stock.c.used_by_attempt.is_(None)).group_by(stock.c.sku)
        async with self._read() as conn:
            return {sku: int(n) for sku, n in await conn.execute(stmt)}

    async def review_queue(self, limit: int = 200) -> list[OrderHit]:
        """Orders waiting for a person, the longest waiting first (since they got there)."""
        stmt = select(orders).where(orders.c.status == "review").order_by(orders.c.updated_at).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            OrderHit(r.id, r.ref, r.sku, r.qty, r.account, r.amount, r.status, r.reason, r.updated_at, r.delivered_at)
            for r in rows
        ]

    async def supplier_snapshot(self) -> list[dict[str, Any]]:
        """The daemon's last report per supplier (score, breaker, balance): a handful of rows."""
        async with self._read() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(supplier_health))]

    async def recent_alerts(self, since: datetime) -> list[tuple[str, datetime]]:
        async with self._read() as conn:
            found = await conn.execute(
                select(alert_state.c.key, alert_state.c.last_at)
                .where(alert_state.c.last_at >= since)
                .order_by(alert_state.c.last_at.desc())
                .limit(50)
            )
            return [(k, at) for k, at in found]

    # -- suppliers ------------------------------------------------------------------------------------

    async def supplier_series(self, since: datetime) -> dict[str, list[tuple[datetime, int, int, float | None]]]:
        """Per supplier per hour since `since`: (hour, calls, ok, mean latency) from the per-minute counts."""
        stmt = select(supplier_calls).where(supplier_calls.c.minute >= since).order_by(supplier_calls.c.minute)
        hours: dict[tuple[str, datetime], list[float]] = {}
        async with self._read() as conn:
            for r in await conn.execute(stmt):
                key = (r.supplier, r.minute.replace(minute=0, second=0, microsecond=0))
                acc = hours.setdefault(key, [0, 0, 0.0])
                acc[0] += r.calls
                acc[1] += r.ok
                acc[2] += r.latency_sum
        out: dict[str, list[tuple[datetime, int, int, float | None]]] = {}
        for (supplier, hour), (calls, ok, lat) in sorted(hours.items()):
            mean = lat / calls if calls else None
            out.setdefault(supplier, []).append((hour, int(calls), int(ok), mean))
        return out

    async def pause_offer(self, supplier: str, product_id: str, operator: str, now: datetime) -> None:
        """Route around this offer until resumed: a cool-down with no end, which nothing but a resume lifts."""
        values = {
            "supplier": supplier,
            "product_id": product_id,
            "until": PAUSED_UNTIL,
            "reason": f"{PAUSE_PREFIX}{operator}",
            "updated_at": now,
        }
        async with self._write() as conn:
            await conn.execute(self._upsert(cooldowns, values, ["supplier", "product_id"]))
            await self._event(
                conn, "offer.paused", now, supplier=supplier, operator=operator, data={"product_id": product_id}
            )

    async def resume_offer(self, supplier: str, product_id: str, operator: str, now: datetime) -> bool:
        async with self._write() as conn:
            done = await conn.execute(
                delete(cooldowns).where(cooldowns.c.supplier == supplier, cooldowns.c.product_id == product_id)
            )
            if done.rowcount:
                await self._event(
                    conn, "offer.resumed", now, supplier=supplier, operator=operator, data={"product_id": product_id}
                )
            return bool(done.rowcount)

    # -- claims & reconciliation ----------------------------------------------------------------------

    async def ledger_by_day(self, since: datetime) -> list[DayLedger]:
        """Per supplier per UTC day: units charged (a receipt says so), delivered (a clean success), claimed
        (claims opened that day), recovered (claims the supplier accepted or settled, by their last change)."""
        out: dict[tuple[str, str], list[int]] = {}

        def add(day: Any, supplier: str, index: int, n: Any) -> None:
            out.setdefault((str(day), supplier), [0, 0, 0, 0])[index] += int(n or 0)

        async with self._read() as conn:
            day = _day(self.dialect, attempts.c.started_at)
            charged = (
                select(day, attempts.c.supplier, func.sum(attempts.c.qty))
                .join(receipts, receipts.c.attempt_id == attempts.c.id)
                .where(attempts.c.started_at >= since, receipts.c.kind.in_(("goods", "charged_no_goods")))
                .group_by(day, attempts.c.supplier)
            )
            for d, supplier, n in await conn.execute(charged):
                add(d, supplier, 0, n)
            clean = and_(
                attempts.c.state == "succeeded",
                or_(attempts.c.error_class.is_(None), attempts.c.error_class.not_in(("invalid_key", "late"))),
            )
            delivered = (
                select(day, attempts.c.supplier, func.sum(attempts.c.qty))
                .where(attempts.c.started_at >= since, clean)
                .group_by(day, attempts.c.supplier)
            )
            for d, supplier, n in await conn.execute(delivered):
                add(d, supplier, 1, n)
            cday = _day(self.dialect, claims.c.created_at)
            for d, supplier, n in await conn.execute(
                select(cday, claims.c.supplier, func.sum(claims.c.qty))
                .where(claims.c.created_at >= since)
                .group_by(cday, claims.c.supplier)
            ):
                add(d, supplier, 2, n)
            uday = _day(self.dialect, claims.c.updated_at)
            recovered = (ClaimStatus.ACCEPTED.value, ClaimStatus.SETTLED.value)
            for d, supplier, n in await conn.execute(
                select(uday, claims.c.supplier, func.sum(claims.c.qty))
                .where(claims.c.updated_at >= since, claims.c.status.in_(recovered))
                .group_by(uday, claims.c.supplier)
            ):
                add(d, supplier, 3, n)
        return [
            DayLedger(day, supplier, *counts)
            for (day, supplier), counts in sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1]), reverse=True)
        ]


def window_start(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
