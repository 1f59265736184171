"""Notifications: the outbox (claimed under a lease, finished fenced), endpoint state, alerts with a quiet
period, and the reads that delay warnings and operator alerts are made of.

Claims are atomic in the database, like orders': `FOR UPDATE SKIP LOCKED` on PostgreSQL (several daemons
never take one row at once), one UPDATE under BEGIN IMMEDIATE on SQLite. A row being sent carries a lease on
the database's clock; a daemon killed mid-send leaves it to be taken again when the lease runs out: the only
way an event is sent twice, and then with the same id and body.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update

from fulfil.domain import ClaimReason, OrderStatus
from fulfil.storage.base import WAITING_STATUS_VALUES, StoreBase, chunks
from fulfil.storage.coltypes import UTCDateTime
from fulfil.storage.dbclock import db_after, db_now
from fulfil.storage.outbox import raise_alert
from fulfil.storage.schema import claims, deliveries, notify_endpoints, orders, outbox

SENDING = "sending"
PENDING = "pending"
FINAL_STATES = ("delivered", "dead", "skipped")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    type: str
    channel: str
    order_id: int | None
    subject: str | None
    data: dict[str, Any]
    created_at: datetime
    state: str
    attempts: int
    next_at: datetime
    last_status: int | None = None
    last_error: str | None = None
    last_at: datetime | None = None
    done_at: datetime | None = None


@dataclass(frozen=True)
class TryOutcome:
    """What one send of an outbox row came to, to be recorded."""

    row_id: int
    state: str  # pending (again, at next_at) | delivered | dead | skipped
    counts: bool  # the try counts against the retry schedule
    next_at: datetime
    status: int | None
    error: str | None
    at: datetime


@dataclass(frozen=True)
class OrderNotice:
    """An order's immutable facts and, per event time, the keys delivered by then (decrypted)."""

    ref: str
    sku: str
    qty: int
    amount: str | None
    account: str | None = field(repr=False)
    contact: str | None = field(repr=False)
    cards: tuple[tuple[datetime, str, str, str | None], ...] = field(default=(), repr=False)


def _row(row: Any) -> OutboxRow:
    m = row._mapping
    return OutboxRow(**{name: m[name] for name in OutboxRow.__dataclass_fields__})


class NotifyOps(StoreBase):
    # -- the dispatcher's side -------------------------------------------------------------------------

    async def claim_outbox(self, channel: str, owner: str, limit: int, lease: float) -> list[OutboxRow]:
        """Up to `limit` rows of `channel` due now (or whose sender's lease ran out), leased to `owner`."""
        if limit < 1:
            return []
        now = db_now(self.dialect)
        due = and_(
            outbox.c.channel == channel,
            or_(
                and_(outbox.c.state == PENDING, outbox.c.next_at <= now),
                and_(outbox.c.state == SENDING, outbox.c.lease_until <= now),
            ),
        )
        pick = select(outbox.c.id).where(due).order_by(outbox.c.next_at, outbox.c.id).limit(limit)
        values = {"state": SENDING, "lease_owner": owner, "lease_until": db_after(self.dialect, lease)}
        if self.dialect == "postgresql":
            chosen = pick.with_for_update(skip_locked=True).cte("chosen").prefix_with("MATERIALIZED")
            stmt = update(outbox).where(outbox.c.id == chosen.c.id)
        else:
            stmt = update(outbox).where(outbox.c.id.in_(pick.scalar_subquery()))
        async with self._write() as conn:
            rows = (await conn.execute(stmt.values(**values).returning(*outbox.c))).all()
        return sorted((_row(row) for row in rows), key=lambda r: (r.next_at, r.id))

    async def due_channels(self) -> set[str]:
        """Channels with a row due now (or a sender's lease run out): a read, so an idle poll writes nothing."""
        now = db_now(self.dialect)
        due = or_(
            and_(outbox.c.state == PENDING, outbox.c.next_at <= now),
            and_(outbox.c.state == SENDING, outbox.c.lease_until <= now),
        )
        async with self._read() as conn:
            return set((await conn.execute(select(outbox.c.channel).where(due).distinct())).scalars())

    async def finish_outbox(
        self,
        row_id: int,
        owner: str,
        state: str,
        *,
        counts: bool,
        delay: float,
        status: int | None,
        error: str | None,
        now: datetime,
    ) -> bool:
        """Record one try of a row `owner` still holds (see `finish_outbox_many`)."""
        done = TryOutcome(row_id, state, counts, now + timedelta(seconds=delay), status, error, now)
        stmt = (
            update(outbox)
            .where(outbox.c.id == row_id, outbox.c.lease_owner == owner, outbox.c.state == SENDING)
            .values(
                state=state,
                lease_owner=None,
                lease_until=None,
                attempts=outbox.c.attempts + (1 if counts else 0),
                next_at=done.next_at if state == PENDING else now,
                done_at=None if state == PENDING else now,
                last_status=status,
                last_error=error[:500] if error else None,
                last_at=now,
            )
            .returning(outbox.c.id)
        )
        async with self._write() as conn:
            return await conn.scalar(stmt) is not None

    async def finish_outbox_many(self, owner: str, outcomes: Sequence[TryOutcome]) -> int:
        """Record tries of rows `owner` still holds, in one transaction and one statement (executemany): a batch
        of sends costs one commit. Delivered/dead/skipped, or pending again at `next_at`. A row whose lease was
        lost (another daemon has it now: its try counts instead) is left alone. Returns how many were given."""
        if not outcomes:
            return 0
        stmt = (
            update(outbox)
            .where(
                outbox.c.id == bindparam("b_id"),
                outbox.c.lease_owner == bindparam("b_owner"),
                outbox.c.state == SENDING,
            )
            .values(
                state=bindparam("b_state"),
                lease_owner=None,
                lease_until=None,
                attempts=outbox.c.attempts + bindparam("b_inc"),
                next_at=bindparam("b_next", type_=UTCDateTime()),
                done_at=bindparam("b_done", type_=UTCDateTime()),
                last_status=bindparam("b_status"),
                last_error=bindparam("b_error"),
                last_at=bindparam("b_at", type_=UTCDateTime()),
            )
        )
        params = [
            {
                "b_id": done.row_id,
                "b_owner": owner,
                "b_state": done.state,
                "b_inc": 1 if done.counts else 0,
                "b_next": done.next_at if done.state == PENDING else done.at,
                "b_done": None if done.state == PENDING else done.at,
                "b_status": done.status,
                "b_error": done.error[:500] if done.error else None,
                "b_at": done.at,
            }
            for done in outcomes
        ]
        async with self._write() as conn:
            await conn.execute(stmt, params)
        return len(outcomes)

    async def release_outbox(self, owner: str | None = None) -> int:
        """Rows being sent go back to pending: `owner`'s (shutdown), or all (SQLite start, instance lock held)."""
        stmt = update(outbox).where(outbox.c.state == SENDING)
        if owner is not None:
            stmt = stmt.where(outbox.c.lease_owner == owner)
        async with self._write() as conn:
            result = await conn.execute(stmt.values(state=PENDING, lease_owner=None, lease_until=None))
            return int(result.rowcount or 0)

    async def order_notices(self, wanted: Mapping[int, datetime], *, with_cards: bool = True) -> dict[int, OrderNotice]:
        """For each order id, its facts and (`with_cards`) the keys delivered up to the given time (its event's)."""
        found: dict[int, OrderNotice] = {}
        if not wanted:
            return found
        ids = sorted(wanted)
        cards: dict[int, list[tuple[datetime, str, str, str | None]]] = defaultdict(list)
        async with self._read() as conn:
            for part in chunks(ids):
                rows = (await conn.execute(select(orders).where(orders.c.id.in_(part)))).all()
                delivered = (
                    await conn.execute(
                        select(deliveries).where(deliveries.c.order_id.in_(part)).order_by(deliveries.c.id)
                    )
                    if with_cards
                    else ()
                )
                for d in delivered:
                    if d.created_at <= wanted[d.order_id]:
                        card = self._card(d._mapping)
                        cards[d.order_id].append((d.created_at, card.number, card.password, card.expires))
                for m in (row._mapping for row in rows):
                    found[m["id"]] = OrderNotice(
                        ref=m["ref"],
                        sku=m["sku"],
                        qty=m["qty"],
                        amount=None if m["amount"] is None else str(m["amount"]),
                        account=m["account"],
                        contact=self._cipher.decrypt(m["contact_enc"]) if m["contact_enc"] else None,
                        cards=tuple(cards[m["id"]]),
                    )
        return found

    # -- endpoints -------------------------------------------------------------------------------------

    async def disabled_endpoints(self) -> dict[str, tuple[datetime, str | None]]:
        async with self._read() as conn:
            rows = await conn.execute(select(notify_endpoints).where(notify_endpoints.c.disabled_at.is_not(None)))
            return {row.name: (row.disabled_at, row.reason) for row in rows}

    async def disable_endpoint(
        self, name: str, reason: str, now: datetime, alert: tuple[str, str, dict[str, Any], float] | None = None
    ) -> bool:
        """Mark a channel disabled (a 410); True when it was enabled before. `alert` (kind, subject, data,
        quiet) is raised in the same transaction."""
        async with self._write() as conn:
            before = await conn.scalar(select(notify_endpoints.c.disabled_at).where(notify_endpoints.c.name == name))
            await conn.execute(
                self._upsert(
                    notify_endpoints, {"name": name, "disabled_at": now, "reason": reason, "updated_at": now}, ["name"]
                )
            )
            if before is None and alert is not None:
                kind, subject, data, quiet = alert
                await raise_alert(
                    conn, self.dialect, self.notify_routes, self.install_id, kind, subject, data, quiet, now
                )
        return before is None

    async def enable_endpoint(self, name: str, now: datetime) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(notify_endpoints)
                .where(notify_endpoints.c.name == name, notify_endpoints.c.disabled_at.is_not(None))
                .values(disabled_at=None, reason=None, updated_at=now)
            )
            return bool(result.rowcount)

    # -- alerts ----------------------------------------------------------------------------------------

    async def raise_alert(self, kind: str, subject: str, data: dict[str, Any], quiet: float, now: datetime) -> bool:
        """An operator alert, once per `quiet` seconds per (kind, subject) across daemons; True when raised."""
        async with self._write() as conn:
            return await raise_alert(
                conn, self.dialect, self.notify_routes, self.install_id, kind, subject, data, quiet, now
            )

    # -- what delay warnings and alerts read -----------------------------------------------------------

    async def delivery_durations(self, since: datetime, limit: int = 20_000) -> dict[str, list[float]]:
        """Payment-to-delivery seconds of orders delivered since `since`, per sku (the newest `limit`)."""
        stmt = (
            select(orders.c.sku, orders.c.created_at, orders.c.delivered_at)
            .where(orders.c.delivered_at >= since, orders.c.status == OrderStatus.DELIVERED.value)
            .order_by(orders.c.delivered_at.desc())
            .limit(limit)
        )
        out: dict[str, list[float]] = defaultdict(list)
        async with self._read() as conn:
            for sku, created, delivered in await conn.execute(stmt):
                out[sku].append(max((delivered - created).total_seconds(), 0.0))
        return dict(out)

    async def open_orders_since(self, created_before: datetime, limit: int = 5000) -> list[tuple[int, str, datetime]]:
        """Pending or processing orders taken in before `created_before`, oldest first: (id, sku, created_at)."""
        stmt = (
            select(orders.c.id, orders.c.sku, orders.c.created_at)
            .where(orders.c.status.in_(WAITING_STATUS_VALUES), orders.c.created_at <= created_before)
            .order_by(orders.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return [(row.id, row.sku, row.created_at) for row in await conn.execute(stmt)]

    async def mark_delayed(self, delayed: Mapping[int, dict[str, Any]], now: datetime) -> int:
        """`order.delayed` for these orders that are still open (checked under the row lock, so never after a
        delivery that committed first); at most once per order and channel. Returns how many were written."""
        if not delayed or not self.notify_routes.wants("order.delayed"):
            return 0
        written = 0
        async with self._write() as conn:
            for part in chunks(sorted(delayed)):
                stmt = select(orders.c.id).where(orders.c.id.in_(part), orders.c.status.in_(WAITING_STATUS_VALUES))
                if self.dialect == "postgresql":
                    stmt = stmt.with_for_update()
                still_open = list((await conn.execute(stmt)).scalars())
                rows = [
                    row
                    for order_id in still_open
                    for row in self.notify_routes.rows(
                        self.install_id, "order.delayed", now, order_id=order_id, data=delayed[order_id]
                    )
                ]
                if rows:
                    result = await conn.execute(
                        self._insert_ignore(outbox, ["channel", "key"]).returning(outbox.c.id), rows
                    )
                    written += len(result.all())
        return written

    async def review_backlog(self) -> tuple[int, datetime | None]:
        """Orders waiting in review, and when the longest-waiting one got there (its last update)."""
        stmt = select(func.count(), func.min(orders.c.updated_at)).where(orders.c.status == OrderStatus.REVIEW.value)
        async with self._read() as conn:
            count, oldest = (await conn.execute(stmt)).one()
        return int(count), oldest

    async def invalid_key_claims(self, since: datetime) -> dict[str, int]:
        stmt = (
            select(claims.c.supplier, func.count())
            .where(claims.c.reason == ClaimReason.INVALID_KEY.value, claims.c.created_at >= since)
            .group_by(claims.c.supplier)
        )
        async with self._read() as conn:
            return {supplier: int(n) for supplier, n in await conn.execute(stmt)}

    # -- operators (fulfil webhooks) -------------------------------------------------------------------

    async def outbox_rows(
        self,
        *,
        channel: str | None = None,
        state: str | None = None,
        failed: bool = False,
        event_id: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        """Newest first. `failed`: not delivered and tried at least once (dead, or pending a retry)."""
        stmt = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if channel is not None:
            stmt = stmt.where(outbox.c.channel == channel)
        if state is not None:
            stmt = stmt.where(outbox.c.state == state)
        if failed:
            stmt = stmt.where(outbox.c.state.in_(("pending", "sending", "dead")), outbox.c.attempts > 0)
        if event_id is not None:
            stmt = stmt.where(outbox.c.event_id == event_id)
        async with self._read() as conn:
            return [_row(row) for row in await conn.execute(stmt)]

    async def outbox_counts(self) -> dict[str, dict[str, int]]:
        stmt = select(outbox.c.channel, outbox.c.state, func.count()).group_by(outbox.c.channel, outbox.c.state)
        out: dict[str, dict[str, int]] = defaultdict(dict)
        async with self._read() as conn:
            for channel, state, n in await conn.execute(stmt):
                out[channel][state] = int(n)
        return dict(out)

    async def replay_outbox(
        self, now: datetime, *, ids: Sequence[int] = (), channel: str | None = None, state: str | None = None
    ) -> int:
        """Send again: the rows named, or a channel's rows in `state` (default dead). Same id, same body;
        the schedule starts over. A row being sent right now is left alone."""
        stmt = update(outbox).where(outbox.c.state != SENDING)
        if ids:
            stmt = stmt.where(outbox.c.id.in_(list(ids)))
        elif channel is not None:
            stmt = stmt.where(outbox.c.channel == channel, outbox.c.state == (state or "dead"))
        else:
            return 0
        values = {"state": PENDING, "attempts": 0, "next_at": now, "done_at": None}
        async with self._write() as conn:
            return int((await conn.execute(stmt.values(**values))).rowcount or 0)

    async def prune_outbox(self, before: datetime, batch_size: int) -> int:
        """Delete up to `batch_size` finished rows (delivered, dead, skipped) done before `before`."""
        victims = (
            select(outbox.c.id)
            .where(outbox.c.done_at < before, outbox.c.state.in_(FINAL_STATES))
            .order_by(outbox.c.done_at)
            .limit(batch_size)
        )
        async with self._write() as conn:
            result = await conn.execute(delete(outbox).where(outbox.c.id.in_(victims.scalar_subquery())))
            return int(result.rowcount or 0)
