"""Attempts (write-ahead purchase records) and delivery: the transactions that move keys to orders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import AttemptRecord, AttemptState
from fulfil.storage import statements
from fulfil.storage.base import (
    StoreBase,
    attempt_from_row,
    duplicates_within,
    mark_receipt_applied,
)
from fulfil.storage.coltypes import UTCDateTime
from fulfil.storage.direct import FALL_BACK, Script, Step
from fulfil.storage.errors import Conflict, DuplicateCard, InvalidTransition, LeaseLost, NotFound, StoreError
from fulfil.storage.outbox import insert_outbox
from fulfil.storage.schema import attempts, deliveries, stock
from suppliers.taxonomy import Card
from suppliers.values import supplier_order_id as bounded_id

_FINAL = (AttemptState.SUCCEEDED, AttemptState.FAILED)
_DELIVERY_KEYS = ("order_id", "attempt_id", "number_enc", "password_enc", "expires", "fingerprint", "created_at")
_OPEN_FOR_RECOVERY = (AttemptState.SENT.value, AttemptState.AMBIGUOUS.value)


class _NotEnoughStock(Exception):
    """Internal: roll the stock transaction back and answer None."""


def check_attempt_move(current: AttemptState, new: AttemptState) -> None:
    """A purchase that succeeded stays succeeded, and nothing goes back to planned once it moved on."""
    if current == AttemptState.SUCCEEDED and new != AttemptState.SUCCEEDED:
        raise InvalidTransition(f"attempt succeeded already; refusing to mark it {new.value}")
    if new == AttemptState.PLANNED and current != AttemptState.PLANNED:
        raise InvalidTransition(f"attempt is {current.value}; it cannot go back to planned")


class AttemptOps(StoreBase):
    async def open_attempt(
        self,
        order_id: int,
        owner: str,
        supplier: str,
        offer_index: int,
        qty: int,
        cost: Decimal | None,
        now: datetime,
        *,
        sent: bool = False,
    ) -> AttemptRecord:
        """Write the attempt with a fresh supplier-facing number before anything is sent: `planned`, or with
        `sent` already `sent` (the caller sends it next; one transaction instead of two). Either way a crash
        after this commit leaves a row that recovery settles before anything else is bought for the order."""
        values: dict[str, Any] = {
            "order_id": order_id,
            "supplier": supplier,
            "offer_index": offer_index,
            "qty": qty,
            "cost": cost,
            "state": AttemptState.PLANNED.value,
            "evidence": {},
            "started_at": now,
        }
        if sent:
            values.update(state=AttemptState.SENT.value, sent_at=now, last_sent_at=now)
        self._number(0)  # no install id: refuse before writing anything
        direct = self._direct
        # PostgreSQL: the one INSERT is its own transaction (no BEGIN/COMMIT round trips); committed when it returns.
        run = direct.each if direct.postgresql else direct.run
        return attempt_from_row(await run(self._open_attempt(order_id, owner, values)))

    def _open_attempt(self, order_id: int, owner: str, values: dict[str, Any]) -> Script:
        """The attempt, fenced by the lease in the same statement (one INSERT that also picks the id and makes
        the number from it): no row back, nothing written, the lease is lost. The number is checked before SQLite's
        COMMIT; on PostgreSQL the database's own check (migration 0010) refused a cut-off one already."""
        names = tuple(values)
        prefix = f"F{self.install_id}"
        insert = self._direct.prepared(
            ("insert_attempt", names), lambda: statements.insert_attempt(self.dialect, prefix, names, True)
        )
        rows = yield Step(insert, {**values, "owner": owner})
        if not rows:
            raise LeaseLost(f"order {order_id}: lease no longer held by {owner}")
        (row,) = rows
        self._check_number(row["id"], row["number"])  # before it is sent: a wrong number is never sent
        return row

    async def mark_attempt(
        self,
        attempt_id: int,
        state: AttemptState,
        now: datetime,
        *,
        error_class: str | None = None,
        supplier_order_id: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> AttemptRecord:
        """Move an attempt; fields left None keep their value. sent_at: first SENT; finished_at: final."""
        state = AttemptState(state)
        # The allowed moves (check_attempt_move) as a WHERE clause: one statement on the hot path.
        where = [attempts.c.id == attempt_id]
        if state != AttemptState.SUCCEEDED:
            where.append(attempts.c.state != AttemptState.SUCCEEDED.value)
        if state == AttemptState.PLANNED:
            where.append(attempts.c.state == AttemptState.PLANNED.value)
        values: dict[str, Any] = {"state": state.value}
        if state == AttemptState.SENT:
            values["sent_at"] = func.coalesce(attempts.c.sent_at, literal(now, UTCDateTime()))
        if state in _FINAL:
            values["finished_at"] = now
        if error_class is not None:
            values["error_class"] = str(error_class)
        if supplier_order_id is not None:
            values["supplier_order_id"] = bounded_id(supplier_order_id)
        if evidence is not None:
            values["evidence"] = evidence
        async with self._write() as conn:
            row = (await conn.execute(update(attempts).where(*where).values(**values).returning(*attempts.c))).first()
            if row is not None and state in _FINAL:
                await mark_receipt_applied(conn, attempt_id, now)
            if row is None:
                current = await self._attempt_row(conn, attempt_id)
                check_attempt_move(AttemptState(current.state), state)
                # Allowed now but refused a moment ago: the row changed under us; refuse rather than guess.
                raise InvalidTransition(f"attempt {attempt_id} changed meanwhile; not marked {state.value}")
        return attempt_from_row(row)

    async def mark_sent(self, attempt_id: int, order_id: int, owner: str, now: datetime) -> AttemptRecord | None:
        """planned -> sent, only for the lease holder (LeaseLost otherwise) and only once: None when the attempt
        had already left `planned`, i.e. someone else may have sent it, so it must be asked about, not sent."""
        async with self._write() as conn:
            await self._fence(conn, order_id, owner, now)
            row = (
                await conn.execute(
                    update(attempts)
                    .where(attempts.c.id == attempt_id, attempts.c.state == AttemptState.PLANNED.value)
                    .values(state=AttemptState.SENT.value, sent_at=now, last_sent_at=now)
                    .returning(*attempts.c)
                )
            ).first()
        return attempt_from_row(row) if row is not None else None

    async def mark_resent(self, attempt_id: int, now: datetime) -> AttemptRecord:
        """Written before a re-send under the attempt's own number: "no such order" counts from here."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    update(attempts)
                    .where(attempts.c.id == attempt_id)
                    .values(last_sent_at=now)
                    .returning(*attempts.c)
                )
            ).first()
        if row is None:
            raise NotFound(f"no attempt {attempt_id}")
        return attempt_from_row(row)

    async def attempts_for_order(self, order_id: int) -> list[AttemptRecord]:
        async with self._read() as conn:
            rows = await conn.execute(select(attempts).where(attempts.c.order_id == order_id).order_by(attempts.c.id))
            return [attempt_from_row(row) for row in rows]

    async def open_attempts(self, limit: int = 500) -> list[AttemptRecord]:
        """Attempts that may have been charged without an answer yet (sent or ambiguous), oldest first."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(attempts).where(attempts.c.state.in_(_OPEN_FOR_RECOVERY)).order_by(attempts.c.id).limit(limit)
            )
            return [attempt_from_row(row) for row in rows]

    async def get_attempt(self, attempt_id: int) -> AttemptRecord:
        async with self._read() as conn:
            return attempt_from_row(await self._attempt_row(conn, attempt_id))

    # -- delivery ---------------------------------------------------------------------------------------

    async def deliver(
        self,
        order_id: int,
        owner: str,
        attempt_id: int,
        cards: Sequence[Card],
        now: datetime,
        *,
        hold: Sequence[Card] = (),
        hold_reason: str = "surplus",
        reissue: bool | None = None,
    ) -> None:
        """In one transaction: deliveries, attempt succeeded, order delivered, and `hold` kept (keys beyond the
        order, never dropped). A known key: DuplicateCard. `reissue`: whether the order is an after-sales reissue
        (its case settles in the same transaction); None: looked up."""
        rows = [self._encrypted(card) for card in cards]
        fingerprints = [row["fingerprint"] for row in rows]
        twice = duplicates_within(fingerprints)
        if twice:
            raise DuplicateCard(twice)
        try:
            direct = self._direct
            if hold or reissue:
                done = FALL_BACK
            elif direct.postgresql:
                done = await direct.each(self._deliver_at_once(order_id, owner, attempt_id, rows, now, reissue is None))
            else:
                done = await direct.run(self._deliver(order_id, owner, attempt_id, rows, now, reissue is None))
            if done is FALL_BACK:
                async with self._write() as conn:
                    # The order update inside is the lease fence; the unique fingerprint refuses a known key.
                    await self._complete_delivery(conn, order_id, attempt_id, rows, now, owner=owner)
                    await self._hold(conn, attempt_id, hold, hold_reason, now)
        except Conflict:
            # A key delivered before (the whole transaction rolled back): say which.
            known = await self.delivered_fingerprints(fingerprints)
            if known:
                raise DuplicateCard(known) from None
            raise

    def _deliver(
        self, order_id: int, owner: str, attempt_id: int, rows: list[dict[str, Any]], now: datetime, look_up: bool
    ) -> Script:
        """`_complete_delivery` as one direct transaction, for an order that is not a reissue (`look_up`: ask
        first; FALL_BACK, nothing written, when it is one). The same statements in the same order."""
        direct = self._direct
        if look_up:
            link = direct.prepared("reissue_link", statements.reissue_link)
            if (yield Step(link, {"order_id": order_id})):
                return FALL_BACK
        params = {"order_id": order_id, "owner": owner, "now": now}
        if not (yield Step(direct.prepared("deliver_order", lambda: statements.deliver_order(True)), params)):
            raise LeaseLost(f"order {order_id}: lease no longer held by {owner}")
        if rows:
            add = direct.prepared("insert_deliveries", lambda: insert(deliveries), keys=_DELIVERY_KEYS)
            extra = {"order_id": order_id, "attempt_id": attempt_id, "created_at": now}
            yield Step(add, [{**row, **extra} for row in rows], many=True)
        ids = {"p_attempt": attempt_id, "p_order": order_id, "now": now}
        if not (yield Step(direct.prepared("attempt_succeeded", statements.attempt_succeeded), ids)):
            raise NotFound(f"no attempt {attempt_id} for order {order_id}")
        yield Step(direct.prepared("receipt_applied", statements.receipt_applied), ids)
        outbox = self._delivered_rows(order_id, now)
        if outbox:
            keys = tuple(outbox[0])
            add = direct.prepared(("outbox", keys), lambda: insert_outbox(self.dialect), keys=keys)
            yield Step(add, outbox, many=True)
        return None

    def _delivered_rows(self, order_id: int, now: datetime) -> list[dict[str, Any]]:
        """The outbox rows of the order's `order.delivered` (one per channel that wants it; none mostly)."""
        routes = self.notify_routes
        if not routes.wants("order.delivered"):
            return []
        return routes.rows(self.install_id, "order.delivered", now, order_id=order_id, data={"status": "delivered"})

    def _deliver_at_once(
        self, order_id: int, owner: str, attempt_id: int, rows: list[dict[str, Any]], now: datetime, look_up: bool
    ) -> Script:
        """PostgreSQL: `_deliver` as one statement, a transaction of its own (statements.deliver_postgresql).
        FALL_BACK, nothing written, for a reissue."""
        event: tuple[str, ...] = ()
        params: dict[str, Any] = {}
        outbox = self._delivered_rows(order_id, now)
        if outbox:
            first = outbox[0]
            event = tuple(name for name in first if name != "channel")
            if any(row[name] != first[name] for row in outbox for name in event):
                return FALL_BACK  # not one event over several channels: the general code writes them
            params = {"channels": [row["channel"] for row in outbox], **{f"e_{name}": first[name] for name in event}}
        deliver = self._direct.prepared(("deliver_postgresql", event), lambda: statements.deliver_postgresql(event))
        params |= {
            "look_up": look_up,
            "order_id": order_id,
            "attempt_id": attempt_id,
            "owner": owner,
            "now": now,
            "numbers": [row["number_enc"] for row in rows],
            "passwords": [row["password_enc"] for row in rows],
            "expiries": [row["expires"] for row in rows],
            "fingerprints": [row["fingerprint"] for row in rows],
        }
        (found,) = yield Step(deliver, params)
        if found["reissue"]:
            return FALL_BACK
        if not found["delivered"]:  # in `_deliver`'s order: the lease, then the attempt
            if found["held"] and not found["tried"]:
                raise NotFound(f"no attempt {attempt_id} for order {order_id}")
            # Not held, or held when the statement began and taken over before its UPDATE had the row.
            raise LeaseLost(f"order {order_id}: lease no longer held by {owner}")
        return None

    async def deliver_from_stock(
        self, order_id: int, owner: str, attempt_id: int, sku: str, qty: int, now: datetime
    ) -> list[Card] | None:
        """Take `qty` unused stock keys and deliver them in one transaction; None (no writes) if short.

        PostgreSQL: keys another transaction holds locked are skipped, not waited for. When they are what
        the pick came up short by, it tries again a few times within about a second (they are free again if
        that transaction rolls back) before saying None; a stock that is simply too small says None at once.
        """
        if qty < 1:
            raise StoreError(f"deliver_from_stock: qty must be at least 1, got {qty}")
        pick = (
            select(stock.c.id)
            .where(
                stock.c.sku == sku,
                stock.c.used_by_attempt.is_(None),
                # A key delivered by some other path must not block the stock forever: step over it.
                ~exists().where(deliveries.c.fingerprint == stock.c.fingerprint),
            )
            .order_by(stock.c.id)
            .limit(qty)
        )
        # Pauses between tries while keys are locked elsewhere (PostgreSQL only): 1 s in all, then None.
        pauses = [0.05, 0.1, 0.15, 0.2, 0.25, 0.25] if self.dialect == "postgresql" else []
        if self.dialect == "postgresql":
            # Concurrent workers take different keys instead of queueing on the same oldest rows;
            # MATERIALIZED so the locking pick runs once, never re-run by the plan to take more than qty.
            chosen = pick.with_for_update(skip_locked=True).cte("chosen").prefix_with("MATERIALIZED")
            take = update(stock).where(stock.c.id == chosen.c.id)
        else:
            take = update(stock).where(stock.c.id.in_(pick.scalar_subquery()))
        take = take.values(used_by_attempt=attempt_id, used_at=now).returning(
            stock.c.id, stock.c.number_enc, stock.c.password_enc, stock.c.expires, stock.c.fingerprint
        )
        while True:
            taken: list[Any] = []
            locked_elsewhere = False
            try:
                async with self._write() as conn:
                    taken = sorted((await conn.execute(take)).all(), key=lambda row: row.id)
                    if len(taken) != qty:
                        # Short (never long: the pick is limited): roll back, but a lost lease still says so.
                        await self._fence(conn, order_id, owner, now)
                        if pauses:
                            # Free keys this transaction sees but could not take: another one holds them
                            # locked (or they arrived since the pick). Enough of them: worth another try.
                            left = await conn.scalar(select(func.count()).select_from(pick.subquery())) or 0
                            locked_elsewhere = len(taken) + left >= qty
                        raise _NotEnoughStock
                    rows = [{k: v for k, v in row._mapping.items() if k != "id"} for row in taken]
                    # Fenced by the order update inside: the keys taken above roll back with a LeaseLost.
                    await self._complete_delivery(conn, order_id, attempt_id, rows, now, owner=owner)
            except _NotEnoughStock:
                if not locked_elsewhere:
                    return None
                # Rolled back, so this try's keys are free for others meanwhile; the last try still says None.
                await asyncio.sleep(pauses.pop(0))
                continue
            except Conflict:
                known = await self.delivered_fingerprints(row.fingerprint for row in taken)
                if known:
                    raise DuplicateCard(known) from None
                raise
            return [self._card(row._mapping) for row in taken]

    async def cards_for_attempt(self, attempt_id: int) -> list[Card]:
        """The keys one attempt delivered, in delivery order (empty if it delivered none)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(deliveries).where(deliveries.c.attempt_id == attempt_id).order_by(deliveries.c.id)
            )
            return [self._card(row._mapping) for row in rows]

    async def _attempt_row(self, conn: AsyncConnection, attempt_id: int) -> Any:
        row = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
        if row is None:
            raise NotFound(f"no attempt {attempt_id}")
        return row
