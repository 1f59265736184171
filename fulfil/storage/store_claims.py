"""Claims against suppliers, the event log, and offer cool-downs shared by every daemon."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil import metrics
from fulfil.domain import CLAIM_TRANSITIONS, OPEN_ATTEMPT_STATES, ClaimReason, ClaimRecord, ClaimStatus, OrderStatus
from fulfil.storage.base import StoreBase
from fulfil.storage.errors import InvalidTransition, NotFound
from fulfil.storage.outbox import alert_for_event
from fulfil.storage.schema import attempts, claims, cooldowns, events, orders
from fulfil.storage.types import EventRecord

# Orders whose events nothing reads any more (once no attempt of theirs is open): see `prune_events`.
_ENDED = (OrderStatus.DELIVERED, OrderStatus.FAILED)


def _claim_from_row(row: Row[Any]) -> ClaimRecord:
    m = row._mapping
    return ClaimRecord(
        id=m["id"],
        claim_no=m["claim_no"],
        supplier=m["supplier"],
        order_id=m["order_id"],
        order_ref=m["order_ref"],
        attempt_id=m["attempt_id"],
        supplier_order_no=m["supplier_order_no"],
        supplier_order_id=m["supplier_order_id"],
        reason=ClaimReason(m["reason"]),
        amount=m["amount"],
        qty=m["qty"],
        status=ClaimStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        note=m["note"],
        evidence=m["evidence"],
    )


async def active_cooldowns_in(conn: AsyncConnection, now: datetime) -> dict[tuple[str, str], datetime]:
    """(supplier, product id) -> until, for the cool-downs still running at `now`."""
    result = await conn.execute(
        select(cooldowns.c.supplier, cooldowns.c.product_id, cooldowns.c.until).where(cooldowns.c.until > now)
    )
    return {(supplier, product_id): until for supplier, product_id, until in result}


async def claims_query(
    conn: AsyncConnection,
    *,
    order_ids: Sequence[int] | None = None,
    claim_no: str | None = None,
    attempt_id: int | None = None,
    reason: str | None = None,
    supplier: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    newest: int | None = None,
) -> list[ClaimRecord]:
    """Claims with what a claim shows of its order and attempt, oldest first; None filters are ignored.
    `newest`: only the last so many (still oldest first)."""
    stmt = (
        select(
            claims,
            orders.c.ref.label("order_ref"),
            attempts.c.number.label("supplier_order_no"),
            attempts.c.supplier_order_id,
        )
        .join(orders, orders.c.id == claims.c.order_id)
        .join(attempts, attempts.c.id == claims.c.attempt_id)
        .order_by(claims.c.id)
    )
    if order_ids is not None:
        stmt = stmt.where(claims.c.order_id.in_(order_ids))
    for column, value in (
        (claims.c.claim_no, claim_no),
        (claims.c.attempt_id, attempt_id),
        (claims.c.reason, reason),
        (claims.c.supplier, supplier),
        (claims.c.status, status),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(claims.c.created_at >= since)
    if newest is not None:
        stmt = stmt.order_by(None).order_by(claims.c.id.desc()).limit(newest)
        return [_claim_from_row(row) for row in reversed((await conn.execute(stmt)).all())]
    return [_claim_from_row(row) for row in await conn.execute(stmt)]


class ClaimOps(StoreBase):
    # -- claims ---------------------------------------------------------------------------------------

    async def open_claim(
        self,
        attempt_id: int,
        reason: ClaimReason,
        amount: Decimal | None,
        qty: int,
        evidence: dict[str, Any],
        now: datetime,
    ) -> ClaimRecord:
        """Open a claim for (attempt, reason), or return the one already there (recovery may ask twice)."""
        reason = ClaimReason(reason)
        async with self._write() as conn:
            attempt = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
            if attempt is None:
                raise NotFound(f"no attempt {attempt_id}")
            stmt = self._insert_ignore(claims, ["attempt_id", "reason"]).values(
                attempt_id=attempt_id,
                order_id=attempt.order_id,
                supplier=attempt.supplier,
                reason=reason.value,
                amount=amount,
                qty=qty,
                status=ClaimStatus.OPEN.value,
                evidence=evidence,
                created_at=now,
                updated_at=now,
            )
            claim_id = await conn.scalar(stmt.returning(claims.c.id))
            if claim_id is not None:
                claim_no = f"C-{now:%Y%m%d}-{claim_id:06d}"
                await conn.execute(update(claims).where(claims.c.id == claim_id).values(claim_no=claim_no))
                await self._event(
                    conn,
                    "claim.opened",
                    now,
                    order_id=attempt.order_id,
                    supplier=attempt.supplier,
                    data={"claim_no": claim_no, "reason": reason.value, "amount": amount, "qty": qty},
                )
            found = (await claims_query(conn, attempt_id=attempt_id, reason=reason.value))[0]
        if claim_id is not None:  # counted once committed, and only by the daemon that wrote it
            metrics.claim_opened(found.supplier, found.reason.value)
        return found

    async def update_claim_evidence(self, claim_no: str, evidence: dict[str, Any], now: datetime) -> None:
        """Merge more evidence into a claim (keys given replace keys there)."""
        async with self._write() as conn:
            current = await self._claim_row(conn, claim_no)
            await conn.execute(
                update(claims)
                .where(claims.c.id == current.id)
                .values(evidence={**current.evidence, **evidence}, updated_at=now)
            )

    async def list_claims(
        self,
        *,
        supplier: str | None = None,
        status: ClaimStatus | None = None,
        since: datetime | None = None,
    ) -> list[ClaimRecord]:
        async with self._read() as conn:
            return await claims_query(
                conn,
                supplier=supplier,
                status=None if status is None else ClaimStatus(status).value,
                since=since,
            )

    async def claims_for_attempt(self, attempt_id: int) -> list[ClaimRecord]:
        async with self._read() as conn:
            return await claims_query(conn, attempt_id=attempt_id)

    async def get_claim(self, claim_no: str) -> ClaimRecord:
        async with self._read() as conn:
            found = await claims_query(conn, claim_no=claim_no)
        if not found:
            raise NotFound(f"no claim {claim_no}")
        return found[0]

    async def set_claim_status(
        self, claim_no: str, status: ClaimStatus, note: str | None, operator: str, now: datetime
    ) -> ClaimRecord:
        """An operator moves a claim along CLAIM_TRANSITIONS; other moves are refused, naming the allowed."""
        status = ClaimStatus(status)
        async with self._write() as conn:
            current = await self._claim_row(conn, claim_no)
            old = ClaimStatus(current.status)
            allowed = CLAIM_TRANSITIONS[old]
            if status not in allowed:
                names = ", ".join(s.value for s in allowed) or "none (final)"
                raise InvalidTransition(
                    f"claim {claim_no} is {old.value}: cannot move to {status.value} (allowed: {names})"
                )
            values: dict[str, Any] = {"status": status.value, "updated_at": now}
            if note is not None:
                values["note"] = note
            await conn.execute(update(claims).where(claims.c.id == current.id).values(**values))
            await self._event(
                conn,
                "claim.status",
                now,
                order_id=current.order_id,
                supplier=current.supplier,
                operator=operator,
                data={"claim_no": claim_no, "from": old.value, "to": status.value, "note": note},
            )
            return (await claims_query(conn, claim_no=claim_no))[0]

    async def _claim_row(self, conn: AsyncConnection, claim_no: str) -> Any:
        stmt = select(claims).where(claims.c.claim_no == claim_no)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(f"no claim {claim_no}")
        return row

    # -- events ---------------------------------------------------------------------------------------

    async def record_event(
        self,
        name: str,
        now: datetime,
        *,
        order_id: int | None = None,
        supplier: str | None = None,
        operator: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append to the event log. `data` must be JSON-able; a Card in it is stored as "<card>"."""
        async with self._write() as conn:
            await self._event(conn, name, now, order_id=order_id, supplier=supplier, operator=operator, data=data)
            await alert_for_event(conn, self.dialect, self.notify_routes, self.install_id, name, supplier, data, now)

    async def events(
        self, *, name: str | None = None, order_id: int | None = None, limit: int = 100
    ) -> list[EventRecord]:
        """The latest events, newest first."""
        stmt = select(events).order_by(events.c.id.desc()).limit(limit)
        if name is not None:
            stmt = stmt.where(events.c.name == name)
        if order_id is not None:
            stmt = stmt.where(events.c.order_id == order_id)
        async with self._read() as conn:
            return [EventRecord(**row._mapping) for row in await conn.execute(stmt)]

    async def last_event_at(self, order_id: int, names: Collection[str]) -> datetime | None:
        """When the order's newest event of any of `names` was recorded; None if it has none."""
        stmt = (
            select(events.c.at)
            .where(events.c.order_id == order_id, events.c.name.in_(sorted(names)))
            .order_by(events.c.id.desc())
            .limit(1)
        )
        async with self._read() as conn:
            at: datetime | None = await conn.scalar(stmt)
        return at

    async def prune_events(self, before: datetime, batch_size: int) -> int:
        """Delete up to `batch_size` events older than `before` that nothing reads any more; the count deleted.

        Kept whatever their age: events of an order that is not delivered or failed (pending, processing, or
        in review, where a person may retry it), and of an order with an attempt still open (the engine
        counts an open order's `order.crashed` and `review.retry`, the resolver an open attempt's
        `order.reopened`). Events of no order (alerts, operator actions) go by age alone. Oldest first, on
        `ix_events_at`; one short transaction per call, so the caller repeats it while it returns
        `batch_size`."""
        order_ended = (
            select(orders.c.id)
            .where(orders.c.id == events.c.order_id, orders.c.status.in_(_ENDED))
            .exists()
        )
        attempt_open = (
            select(attempts.c.id)
            .where(attempts.c.order_id == events.c.order_id, attempts.c.state.in_(OPEN_ATTEMPT_STATES))
            .exists()
        )
        victims = (
            select(events.c.id)
            .where(events.c.at < before)
            .where(or_(events.c.order_id.is_(None), and_(order_ended, ~attempt_open)))
            .order_by(events.c.at)
            .limit(batch_size)
        )
        async with self._write() as conn:
            # A scalar subquery of ids: SQLite and PostgreSQL both take DELETE ... WHERE id IN (SELECT ... LIMIT).
            result = await conn.execute(delete(events).where(events.c.id.in_(victims.scalar_subquery())))
            return int(result.rowcount or 0)

    # -- cool-downs -----------------------------------------------------------------------------------

    async def set_cooldown(self, supplier: str, product_id: str, until: datetime, reason: str, now: datetime) -> None:
        """Cool an offer down until `until` (replaces its earlier cool-down; a past `until` lifts it)."""
        values = {
            "supplier": supplier,
            "product_id": product_id,
            "until": until,
            "reason": reason,
            "updated_at": now,
        }
        insert_ = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert_(cooldowns).values(**values)
        # An operator's pause (the console) is lifted by a resume only, never shortened by a supplier's trouble.
        stmt = stmt.on_conflict_do_update(
            index_elements=["supplier", "product_id"],
            set_={k: v for k, v in values.items() if k not in ("supplier", "product_id")},
            where=cooldowns.c.reason.not_like("paused by %"),
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    async def active_cooldowns(self, now: datetime) -> dict[tuple[str, str], datetime]:
        async with self._read() as conn:
            return await active_cooldowns_in(conn, now)
