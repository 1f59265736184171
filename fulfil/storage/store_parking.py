"""Orders waiting on a supplier: parked, woken by a callback, reopened by the resolver; and the open attempts
whose order no longer waits on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update

from fulfil.domain import OPEN_ATTEMPT_STATES, AttemptRecord, Order, OrderStatus
from fulfil.storage.base import OPEN_STATE_VALUES, WAITING_STATUS_VALUES, StoreBase, attempt_from_row, order_from_row
from fulfil.storage.dbclock import db_after, db_now
from fulfil.storage.errors import InvalidTransition, NotFound
from fulfil.storage.schema import attempts, orders

_PENDING = OrderStatus.PENDING.value
_PROCESSING = OrderStatus.PROCESSING.value
_REVIEW = OrderStatus.REVIEW.value
# An attempt left `planned` was never sent: it can be open only while its order is being worked on.
_ASKABLE = [s.value for s in OPEN_ATTEMPT_STATES if s.value != "planned"]


class ParkingOps(StoreBase):
    async def park_for(self, order_id: int, owner: str, wait: float, reason: str, now: datetime) -> None:
        """Give a processing order back as pending, not claimable for `wait` seconds of the database's clock
        (fenced by the lease). `now` (this daemon's clock) only stamps `updated_at`.

        Frees the worker's slot while a supplier takes its time; the next claim resumes from the attempts."""
        async with self._write() as conn:
            await self._fence(conn, order_id, owner, now)
            await conn.execute(
                update(orders)
                .where(orders.c.id == order_id)
                .values(
                    status=_PENDING,
                    reason=reason,
                    not_before=db_after(self.dialect, wait),
                    lease_owner=None,
                    lease_expires=None,
                    updated_at=now,
                )
            )

    async def park_order(self, order_id: int, owner: str, until: datetime, reason: str, now: datetime) -> None:
        """`park_for` with the wait given as two readings of one clock: `until - now` seconds on the
        database's clock (the daemon's own clock never sets the deadline itself). Prefer `park_for`."""
        await self.park_for(order_id, owner, (until - now).total_seconds(), reason, now)

    async def release_all_leases(self, now: datetime) -> int:
        """processing -> pending for every order. Only for a database no other daemon can be using (SQLite
        under the instance lock): what a crashed predecessor held is taken back at once."""
        async with self._write() as conn:
            result = await conn.execute(
                update(orders)
                .where(orders.c.status == _PROCESSING)
                .values(status=_PENDING, lease_owner=None, lease_expires=None, updated_at=now)
                .returning(orders.c.id)
            )
            released = len(result.all())
            if released:
                await self._event(conn, "leases.recovered", now, data={"orders": released})
            return released

    async def wake_order(self, number: str, now: datetime) -> bool:
        """A supplier says attempt `number` moved: make its parked order claimable now (the database's now;
        `now` only stamps `updated_at`). False if none waits."""
        async with self._write() as conn:
            result = await conn.execute(
                update(orders)
                .where(
                    # Only an attempt still open: a final one (failed, say) is not what the order waits on.
                    orders.c.id
                    == select(attempts.c.order_id)
                    .where(attempts.c.number == number, attempts.c.state.in_(OPEN_STATE_VALUES))
                    .scalar_subquery(),
                    orders.c.status == _PENDING,
                    orders.c.not_before.is_not(None),
                )
                .values(not_before=db_now(self.dialect), updated_at=now)
                .returning(orders.c.id)
            )
            return result.first() is not None

    async def reopen_order(self, order_id: int, reason: str, now: datetime, *, attempt_id: int | None = None) -> Order:
        """review -> pending without a person: the resolver found the purchase went through after all."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    update(orders)
                    .where(orders.c.id == order_id, orders.c.status == _REVIEW)
                    .values(status=_PENDING, reason=reason, not_before=None, updated_at=now)
                    .returning(*orders.c)
                )
            ).first()
            if row is None:
                exists = await conn.scalar(select(orders.c.status).where(orders.c.id == order_id))
                if exists is None:
                    raise NotFound(f"no order with id {order_id}")
                raise InvalidTransition(f"order {order_id} is {exists}, not review: nothing to reopen")
            data = {"reason": reason, "attempt_id": attempt_id}
            await self._event(conn, "order.reopened", now, order_id=order_id, data=data)
            return order_from_row(row)

    async def orphan_attempts(
        self,
        limit: int = 200,
        suppliers: Sequence[str] | None = None,
        *,
        due: datetime | None = None,
        attempt_ids: Sequence[int] | None = None,
    ) -> list[tuple[AttemptRecord, Order]]:
        """Attempts still open at a supplier whose order is not waiting on them (not pending or processing):
        moved on under a possible-double claim, or handed to a person. With `due`, only those whose next check
        has come, soonest first (never asked first): a few that never settle cannot starve the rest. With
        `suppliers`, only those (the ones that can be asked); with `attempt_ids`, only those."""
        waiting = orders.c.status.in_(WAITING_STATUS_VALUES)
        where: list[ColumnElement[bool]] = [attempts.c.state.in_(_ASKABLE), ~waiting]
        if suppliers is not None:
            where.append(attempts.c.supplier.in_(list(suppliers)))
        if attempt_ids is not None:
            where.append(attempts.c.id.in_(list(attempt_ids)))
        order_by: list[ColumnElement[Any]] = [attempts.c.id]
        if due is not None:
            where.append(or_(attempts.c.next_check_at.is_(None), attempts.c.next_check_at <= due))
            order_by = [attempts.c.next_check_at.asc().nulls_first(), attempts.c.id]
        query = (
            select(attempts)
            .join(orders, orders.c.id == attempts.c.order_id)
            .where(*where)
            .order_by(*order_by)
            .limit(limit)
        )
        async with self._read() as conn:
            found = [attempt_from_row(row) for row in (await conn.execute(query)).all()]
            ids = sorted({a.order_id for a in found})
            rows = (await conn.execute(select(orders).where(orders.c.id.in_(ids)))).all() if ids else []
        by_id = {row.id: order_from_row(row) for row in rows}
        return [(attempt, by_id[attempt.order_id]) for attempt in found]

    async def schedule_check(self, attempt_id: int, at: datetime) -> None:
        """The resolver asked and learned nothing final: ask again at `at`."""
        async with self._write() as conn:
            await conn.execute(
                update(attempts)
                .where(attempts.c.id == attempt_id)
                .values(next_check_at=at, checks=attempts.c.checks + 1)
            )
