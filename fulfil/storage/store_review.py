"""An operator's decisions on orders in review: retry, refund, or resolve with keys found by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import AttemptState, Order, OrderStatus
from fulfil.notes import one_line
from fulfil.storage.base import OPEN_STATE_VALUES, StoreBase, delivered_in, duplicates_within, order_from_row
from fulfil.storage.errors import Conflict, DuplicateCard, InvalidTransition, NotFound
from fulfil.storage.schema import attempts, orders
from suppliers.taxonomy import Card

MANUAL_SUPPLIER = "manual"
REASON_NOTE = 300  # characters of a hold's note in the order's reason (the event keeps all of it)


class ReviewOps(StoreBase):
    async def review_retry(self, ref: str, operator: str, now: datetime) -> Order:
        """review -> pending: the worker takes the order again from the top."""
        async with self._write() as conn:
            row = await self._in_review(conn, ref)
            # Attempts up to this id came before the retry: a watermark in the database, not a wall-clock
            # time that the CLI's machine and the daemon's may disagree on.
            last = await conn.scalar(select(func.max(attempts.c.id)).where(attempts.c.order_id == row.id))
            updated = await self._set_status(conn, row.id, OrderStatus.PENDING, None, now)
            await self._event(
                conn,
                "review.retry",
                now,
                order_id=row.id,
                operator=operator,
                data={"reason": row.reason, "after_attempt": last or 0},
            )
        return updated

    async def review_refund(self, ref: str, operator: str, now: datetime) -> Order:
        """review -> failed (refundable); the reason stays as the record of why."""
        async with self._write() as conn:
            row = await self._in_review(conn, ref)
            updated = await self._set_status(conn, row.id, OrderStatus.FAILED, row.reason, now)
            await self._event(
                conn, "review.refund", now, order_id=row.id, operator=operator, data={"reason": row.reason}
            )
            data = {"status": OrderStatus.FAILED.value, "reason": row.reason}
            await self._notify(conn, "order.failed", now, order_id=row.id, data=data)
        return updated

    async def review_hold(self, ref: str, operator: str, now: datetime, note: str | None = None) -> Order:
        """pending -> review by a person: no worker buys for it any more (a supplier outage it is waiting out, a
        buyer who asked to cancel, an order that looks wrong). Only a pending order with no purchase open at a
        supplier: one a worker holds now is refused (it is parked or settled within seconds; hold it then), and
        so is one parked on an open attempt — held, a refund could pay the buyer for a top-up that then lands,
        a retry could buy again what the supplier already has, and an unqueryable supplier's charge would be
        left with no claim; the engine settles that attempt by itself. After-sales reissues are acted on through
        their case. The status is the fence: a claim and a hold of the same order cannot both succeed. `note`:
        the person's why (fulfil.notes.clean_note), in the reason and the event."""
        async with self._write() as conn:
            found = await self._locked_order(conn, ref)  # a claim of this order waits, then finds it in review
            if found.status == OrderStatus.PROCESSING.value:
                raise InvalidTransition(f"order {ref} is being worked on right now; hold it again in a few seconds")
            if found.status != OrderStatus.PENDING.value:
                raise InvalidTransition(f"order {ref} is {found.status}, not pending: nothing to hold")
            if found.reissue_of is not None:
                raise InvalidTransition(f"order {ref} is an after-sales reissue: act on its case instead")
            open_number = await conn.scalar(
                select(attempts.c.number)
                .where(attempts.c.order_id == found.id, attempts.c.state.in_(OPEN_STATE_VALUES))
                .limit(1)
            )
            if open_number is not None:
                raise InvalidTransition(
                    f"order {ref} has a purchase still open at the supplier ({open_number}): it is settled without "
                    "a person (delivered, or moved on); hold it once it is"
                )
            was = f" (was: {found.reason[:900]})" if found.reason else ""
            why = f": {one_line(note, REASON_NOTE)}" if note else ""  # whole in the event
            held = await self._set_status(conn, found.id, OrderStatus.REVIEW, f"held by {operator}{why}{was}", now)
            event = {"reason": found.reason, **({"note": note} if note else {})}
            await self._event(conn, "review.hold", now, order_id=held.id, operator=operator, data=event)
            # As when the engine hands an order to a person: subscribers of order.review hear of it.
            data = {"status": OrderStatus.REVIEW.value, "reason": held.reason}
            await self._notify(conn, "order.review", now, order_id=held.id, data=data)
        return held

    async def review_resolve(self, ref: str, cards: Sequence[Card], operator: str, now: datetime) -> Order:
        """review -> delivered with these keys under a manual attempt; a known key: DuplicateCard."""
        rows = [self._encrypted(card) for card in cards]
        fingerprints = [row["fingerprint"] for row in rows]
        twice = duplicates_within(fingerprints)
        if twice:
            raise DuplicateCard(twice)
        try:
            async with self._write() as conn:
                order = await self._in_review(conn, ref)
                known = await delivered_in(conn, fingerprints)
                if known:
                    raise DuplicateCard(known)
                attempt = await self._insert_attempt(
                    conn,
                    {
                        "order_id": order.id,
                        "supplier": MANUAL_SUPPLIER,
                        "offer_index": -1,
                        "qty": len(cards),
                        "cost": None,
                        "state": AttemptState.SENT.value,
                        "evidence": {"operator": operator},
                        "started_at": now,
                        "sent_at": now,
                    },
                )
                await self._complete_delivery(conn, order.id, attempt.id, rows, now, owner=None)
                await self._event(
                    conn,
                    "review.resolve",
                    now,
                    order_id=order.id,
                    operator=operator,
                    data={"reason": order.reason, "cards": len(cards), "attempt_id": attempt.id},
                )
                delivered = (await conn.execute(select(orders).where(orders.c.id == order.id))).one()
        except Conflict:
            known = await self.delivered_fingerprints(fingerprints)
            if known:
                raise DuplicateCard(known) from None
            raise
        return order_from_row(delivered)

    async def _locked_order(self, conn: AsyncConnection, ref: str) -> Any:
        """The order's row, for a decision in this write transaction: locked on PostgreSQL (SQLite's writer
        holds the whole database). NotFound if there is none."""
        stmt = select(orders).where(orders.c.ref == ref)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(f"no order {ref}")
        return row

    async def _in_review(self, conn: AsyncConnection, ref: str) -> Any:
        row = await self._locked_order(conn, ref)
        if row.status != OrderStatus.REVIEW.value:
            raise InvalidTransition(f"order {ref} is {row.status}, not in review")
        return row

    async def _set_status(
        self, conn: AsyncConnection, order_id: int, status: OrderStatus, reason: str | None, now: datetime
    ) -> Order:
        """A person's decision: the status and reason, no lease and no parking (not_before) left over."""
        row = (
            await conn.execute(
                update(orders)
                .where(orders.c.id == order_id)
                .values(
                    status=status.value,
                    reason=reason,
                    lease_owner=None,
                    lease_expires=None,
                    not_before=None,
                    updated_at=now,
                )
                .returning(*orders.c)
            )
        ).one()
        return order_from_row(row)
