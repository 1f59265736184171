"""Shop sources: fulfil's side of taking a shop's order and writing the result back (fulfil/sources/runner.py).

The hand-over between two databases rests on these writes, each one short transaction in fulfil's database:

- `start_taking`: a `taking` row per shop order, unique on (source, ref), committed *before* the shop's own mark;
  a second poll, a second daemon or a restart finds it and never takes the order twice;
- `complete_taking`: once the shop's mark is confirmed, `taken` and the fulfil order (pending) in one transaction;
  `take_unmarked` does both at once for a shop without a "taken" state (acg-faka: the mark is this row);
- `claim_write_backs` / `mark_written` / `write_back_failed`: finished orders whose result is not yet in the
  shop's row, claimed for a while on the database's clock so two daemons do not write one row at once.

Nothing here is part of the engine's transactions: the engine never knows an order came from a shop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, exists, func, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import OrderStatus
from fulfil.risk.identity import normalize
from fulfil.storage.base import StoreBase, chunks
from fulfil.storage.dbclock import db_after, db_now
from fulfil.storage.errors import InvalidTransition, NotFound
from fulfil.storage.outbox import write_outbox_many
from fulfil.storage.schema import deliveries, events, orders, source_orders, source_polls
from fulfil.storage.types import SourceDraft, SourceRecord, SourceState, SourceSummary
from suppliers.taxonomy import Card

_FINISHED = (OrderStatus.DELIVERED.value, OrderStatus.FAILED.value)
_INT32 = 2**31 - 1
MAX_REASON = 1000
BY_HAND = "by_hand"  # outcome of a row an operator settled at the shop themselves


def _record(row: Row[Any], order_status: str | None = None, order_reason: str | None = None) -> SourceRecord:
    m = row._mapping
    return SourceRecord(
        id=m["id"],
        source=m["source"],
        ref=m["ref"],
        shop_id=m["shop_id"],
        goods_id=m["goods_id"],
        kind=m["kind"],
        seen_status=m["seen_status"],
        mark=m["mark"],
        sku=m["sku"],
        qty=m["qty"],
        account=m["account"],
        amount=m["amount"],
        state=SourceState(m["state"]),
        order_id=m["order_id"],
        outcome=m["outcome"],
        reason=m["reason"],
        tries=m["tries"],
        failing_since=m["failing_since"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        order_status=order_status,
        order_reason=order_reason,
        contact_enc=m.get("contact_enc"),
        ip_enc=m.get("ip_enc"),
    )


def _draft_values(draft: SourceDraft, state: SourceState, now: datetime, **extra: Any) -> dict[str, Any]:
    """A row for `draft`; a refused one may carry values no order could (they are kept within the columns)."""
    account = draft.account if draft.account is None or len(draft.account) <= 256 else None
    return {
        "source": draft.source,
        "ref": draft.ref[:160],
        "shop_id": draft.shop_id,
        "goods_id": draft.goods_id[:32],
        "kind": draft.kind,
        "seen_status": draft.seen_status,
        "mark": None,
        "sku": draft.sku[:128],
        "qty": max(-_INT32, min(_INT32, draft.qty)),
        "account": account,
        "amount": draft.amount,
        "state": state.value,
        "created_at": now,
        "updated_at": now,
        **extra,
    }


def _order_values(record: SourceRecord | SourceDraft, now: datetime) -> dict[str, Any]:
    return {
        "ref": record.ref,
        "sku": record.sku,
        "qty": record.qty,
        "account": record.account,
        "amount": record.amount,
        "status": OrderStatus.PENDING.value,
        "created_at": now,
        "updated_at": now,
    }


class SourceOps(StoreBase):
    # -- reading ----------------------------------------------------------------------------------------

    async def source_records(self, source: str, refs: Iterable[str]) -> dict[str, SourceRecord]:
        """What fulfil knows of these shop orders, by ref."""
        found: dict[str, SourceRecord] = {}
        async with self._read() as conn:
            for part in chunks(sorted(set(refs))):
                rows = await conn.execute(
                    select(source_orders).where(source_orders.c.source == source, source_orders.c.ref.in_(part))
                )
                found.update((row.ref, _record(row)) for row in rows)
        return found

    async def source_record(self, ref: str, source: str | None = None) -> SourceRecord | None:
        """One shop order by its number (in `source`, or in whichever source has it), with its order's status."""
        stmt = (
            select(source_orders, orders.c.status.label("o_status"), orders.c.reason.label("o_reason"))
            .select_from(source_orders.outerjoin(orders, orders.c.id == source_orders.c.order_id))
            .where(source_orders.c.ref == ref)
            .order_by(source_orders.c.id)
        )
        if source is not None:
            stmt = stmt.where(source_orders.c.source == source)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        if len(rows) > 1:
            names = ", ".join(row.source for row in rows)
            raise InvalidTransition(f"shop order {ref} is known to several sources ({names}): name one")
        return _record(rows[0], rows[0].o_status, rows[0].o_reason) if rows else None

    async def source_orders_in(
        self, source: str | None, states: Sequence[SourceState], limit: int = 1000
    ) -> list[SourceRecord]:
        """Rows in these states, oldest first, with their orders' status."""
        stmt = (
            select(source_orders, orders.c.status.label("o_status"), orders.c.reason.label("o_reason"))
            .select_from(source_orders.outerjoin(orders, orders.c.id == source_orders.c.order_id))
            .where(source_orders.c.state.in_([s.value for s in states]))
            .order_by(source_orders.c.id)
            .limit(limit)
        )
        if source is not None:
            stmt = stmt.where(source_orders.c.source == source)
        async with self._read() as conn:
            return [_record(row, row.o_status, row.o_reason) for row in await conn.execute(stmt)]

    async def source_order_cards(self, order_id: int) -> tuple[Card, ...]:
        """The keys delivered to an order, decrypted: for the write-back, and nothing else."""
        return (await self.source_orders_cards([order_id])).get(order_id, ())

    async def source_orders_cards(self, order_ids: Sequence[int]) -> dict[int, tuple[Card, ...]]:
        """`source_order_cards` for several orders in one read: order id -> its keys, in delivery order."""
        cards: dict[int, list[Card]] = {}
        async with self._read() as conn:
            for part in chunks(sorted(set(order_ids))):
                rows = await conn.execute(
                    select(deliveries.c.order_id, deliveries.c.number_enc, deliveries.c.password_enc,
                           deliveries.c.expires)  # fmt: skip
                    .where(deliveries.c.order_id.in_(part))
                    .order_by(deliveries.c.id)
                )
                for row in rows:
                    cards.setdefault(row.order_id, []).append(self._card(row._mapping))
        return {order_id: tuple(found) for order_id, found in cards.items()}

    async def source_summaries(self, names: Sequence[str]) -> dict[str, SourceSummary]:
        """Figures per source for `fulfil sources`."""
        out: dict[str, SourceSummary] = {}
        async with self._read() as conn:
            for name in names:
                states = {state.value: 0 for state in SourceState}
                rows = await conn.execute(
                    select(source_orders.c.state, func.count())
                    .where(source_orders.c.source == name)
                    .group_by(source_orders.c.state)
                )
                states.update({state: count for state, count in rows})
                rows = await conn.execute(
                    select(source_orders.c.outcome, func.count())
                    .where(source_orders.c.source == name, source_orders.c.state == SourceState.WRITTEN.value)
                    .group_by(source_orders.c.outcome)
                )
                written = {str(outcome): count for outcome, count in rows}
                rows = await conn.execute(
                    select(orders.c.status, func.count())
                    .select_from(source_orders.join(orders, orders.c.id == source_orders.c.order_id))
                    .where(source_orders.c.source == name, source_orders.c.state == SourceState.TAKEN.value)
                    .group_by(orders.c.status)
                )
                by_status = {str(status): int(count) for status, count in rows}
                finished = sum(by_status.get(status, 0) for status in _FINISHED)
                in_review = by_status.get(OrderStatus.REVIEW.value, 0)
                poll = (await conn.execute(select(source_polls).where(source_polls.c.source == name))).first()
                out[name] = SourceSummary(
                    source=name,
                    states=states,
                    written=written,
                    waiting_write_back=finished,
                    in_progress=sum(by_status.values()) - finished - in_review,
                    in_review=in_review,
                    polled_at=poll.polled_at if poll else None,
                    ok_at=poll.ok_at if poll else None,
                    error=poll.error if poll else None,
                )
        return out

    # -- refused ----------------------------------------------------------------------------------------

    async def refuse_source_orders(self, refused: Sequence[tuple[SourceDraft, str]], now: datetime) -> list[str]:
        """Record shop orders fulfil will not take as they are, with the reason. Returns the refs newly refused or
        refused for a new reason (to be said once, not on every poll); rows in any other state are left alone."""
        said: list[str] = []
        if not refused:
            return said
        async with self._write() as conn:
            for draft, reason in refused:
                reason = reason[:MAX_REASON]
                inserted = await conn.scalar(
                    self._insert_ignore(source_orders, ["source", "ref"])
                    .values(**_draft_values(draft, SourceState.REFUSED, now, reason=reason))
                    .returning(source_orders.c.id)
                )
                if inserted is None:
                    changed = await conn.scalar(
                        update(source_orders)
                        .where(
                            source_orders.c.source == draft.source,
                            source_orders.c.ref == draft.ref[:160],
                            source_orders.c.state == SourceState.REFUSED.value,
                            or_(source_orders.c.reason.is_(None), source_orders.c.reason != reason),
                        )
                        .values(reason=reason, updated_at=now)
                        .returning(source_orders.c.id)
                    )
                    if changed is None:
                        continue
                said.append(draft.ref)
                data = {"source": draft.source, "ref": draft.ref[:160], "reason": reason}
                await self._event(conn, "source.refused", now, data=data)
        return said

    # -- taking -----------------------------------------------------------------------------------------

    async def start_taking(
        self, drafts: Sequence[SourceDraft], mark: str | None, recheck_after: float, now: datetime
    ) -> tuple[list[SourceRecord], list[str]]:
        """Commit fulfil's record of taking these shop orders, before the shop is touched.

        Returns (the records this call now owns in `taking`, the refs refused because fulfil already has an order
        of that ref from elsewhere). A ref already known in any state but `refused` is neither: another poll
        or daemon has it. `recheck_after` (seconds of the database's clock): when a record still `taking` is
        looked at again, by whoever comes first (the shop row says how far the hand-over got)."""
        if not drafts:
            return [], []
        owned: list[SourceRecord] = []
        clashes: list[str] = []
        extra = {"mark": mark, "next_try_at": db_after(self.dialect, recheck_after)}
        async with self._write() as conn:
            refs = [d.ref for d in drafts]
            used = await self._refs_in_orders(conn, refs)
            known = await self._known_refs(conn, drafts[0].source, refs)
            for draft in drafts:
                state = known.get(draft.ref)
                if state is not None and state != SourceState.REFUSED.value:
                    continue  # another poll or daemon has it
                if draft.ref in used:
                    clashes.append(draft.ref)
                    continue
                buyer = {
                    "contact_enc": self._cipher.encrypt(draft.contact) if draft.contact else None,
                    "ip_enc": self._cipher.encrypt(draft.ip) if draft.ip else None,
                }
                row = (
                    await conn.execute(
                        self._insert_ignore(source_orders, ["source", "ref"])
                        .values(**_draft_values(draft, SourceState.TAKING, now, **extra, **buyer))
                        .returning(*source_orders.c)
                    )
                ).first()
                if row is None:  # known: only a refused one may be taken now (its row was fixed at the shop)
                    values = _draft_values(draft, SourceState.TAKING, now, **extra, **buyer)
                    values.pop("created_at")
                    row = (
                        await conn.execute(
                            update(source_orders)
                            .where(
                                source_orders.c.source == draft.source,
                                source_orders.c.ref == draft.ref,
                                source_orders.c.state == SourceState.REFUSED.value,
                            )
                            .values(**values, reason=None)
                            .returning(*source_orders.c)
                        )
                    ).first()
                if row is not None:
                    owned.append(_record(row))
        if clashes:
            reason = "fulfil already has an order with this ref that did not come from this source"
            by_ref = {d.ref: d for d in drafts}
            await self.refuse_source_orders([(by_ref[ref], reason) for ref in clashes], now)
        return owned, clashes

    async def _known_refs(self, conn: AsyncConnection, source: str, refs: Sequence[str]) -> dict[str, str]:
        known: dict[str, str] = {}
        for part in chunks(sorted(set(refs))):
            rows = await conn.execute(
                select(source_orders.c.ref, source_orders.c.state).where(
                    source_orders.c.source == source, source_orders.c.ref.in_(part)
                )
            )
            known.update((ref, state) for ref, state in rows)
        return known

    async def _refs_in_orders(self, conn: AsyncConnection, refs: Sequence[str]) -> set[str]:
        used: set[str] = set()
        for part in chunks(sorted(set(refs))):
            used.update((await conn.execute(select(orders.c.ref).where(orders.c.ref.in_(part)))).scalars())
        return used

    async def complete_taking(self, ids: Sequence[int], now: datetime) -> list[SourceRecord]:
        """The shop's mark is confirmed: `taking` -> `taken` with a pending fulfil order, in one transaction.

        Returns the records moved (with `order_id`; a record whose ref an order took meanwhile goes to review
        instead, returned with `order_id` None). Records no longer `taking` are skipped: someone completed or
        dropped them first."""
        if not ids:
            return []
        done: list[SourceRecord] = []
        async with self._write() as conn:
            for part in chunks(sorted(set(ids))):
                rows = (
                    await conn.execute(
                        update(source_orders)
                        .where(source_orders.c.id.in_(part), source_orders.c.state == SourceState.TAKING.value)
                        .values(state=SourceState.TAKEN.value, next_try_at=None, updated_at=now)
                        .returning(*source_orders.c)
                    )
                ).all()
                done.extend(await self._attach_orders(conn, [_record(row) for row in rows], now))
        return done

    async def take_unmarked(self, drafts: Sequence[SourceDraft], now: datetime) -> tuple[list[SourceRecord], list[str]]:
        """For a shop with no "taken" state of its own (acg-faka): the record and the order in one transaction,
        so fulfil's row *is* the mark. Returns (records taken, refs refused as in `start_taking`)."""
        owned, clashes = await self.start_taking(drafts, None, 0.0, now)
        return await self.complete_taking([r.id for r in owned], now), clashes

    def _buyer_values(self, record: SourceRecord) -> dict[str, Any]:
        """The order's buyer columns from the record's encrypted contact and address (as intake writes them)."""
        contact = self._cipher.decrypt(record.contact_enc) if record.contact_enc else None
        ip = self._cipher.decrypt(record.ip_enc) if record.ip_enc else None
        account = record.account
        return {
            "contact_enc": record.contact_enc,
            "contact_hash": self._cipher.identity_hash("contact", contact) if contact else None,
            "ip_enc": record.ip_enc,
            "ip_hash": self._cipher.identity_hash("ip", normalize("ip", ip)) if ip else None,
            "account_hash": self._cipher.identity_hash("account", account.strip()) if account else None,
        }

    async def _attach_orders(
        self, conn: AsyncConnection, records: list[SourceRecord], now: datetime
    ) -> list[SourceRecord]:
        if not records:
            return []
        rows = [{**_order_values(record, now), **self._buyer_values(record)} for record in records]
        result = await conn.execute(self._insert_ignore(orders, ["ref"]).returning(orders.c.id, orders.c.ref), rows)
        ids = {ref: order_id for order_id, ref in result.all()}
        # `order.accepted` for every order a shop source took in, like every other intake (notifications).
        accepted = {"status": OrderStatus.PENDING.value, "reason": None}
        await write_outbox_many(
            conn, self.dialect, self.notify_routes, self.install_id, "order.accepted", list(ids.values()), now, accepted
        )
        attached = [{"sid": r.id, "oid": ids[r.ref]} for r in records if r.ref in ids]
        if attached:
            await conn.execute(
                update(source_orders)
                .where(source_orders.c.id == bindparam("sid"))
                .values(order_id=bindparam("oid")),
                attached,
            )
            await conn.execute(
                insert(events),
                [
                    {
                        "at": now,
                        "name": "source.taken",
                        "order_id": ids[r.ref],
                        "supplier": None,
                        "operator": None,
                        "data": {"source": r.source, "ref": r.ref, "shop_id": r.shop_id, "kind": r.kind},
                    }
                    for r in records
                    if r.ref in ids
                ],
            )
        out = []
        for record in records:
            if record.ref in ids:
                out.append(replace(record, order_id=ids[record.ref]))
                continue
            # An order of this ref came in by another path between our two transactions: a person decides.
            reason = "taken at the shop, but fulfil already has an order with this ref from elsewhere"
            await self._review(conn, record.id, (SourceState.TAKEN,), reason, now)
            out.append(replace(record, state=SourceState.REVIEW, reason=reason))
        return out

    async def drop_taking(self, record_id: int, why: str, now: datetime) -> bool:
        """The shop row was changed by someone else before fulfil's mark landed: the order is not ours. The
        record goes (a later poll may see the row again); the event keeps what happened."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    delete(source_orders)
                    .where(source_orders.c.id == record_id, source_orders.c.state == SourceState.TAKING.value)
                    .returning(source_orders.c.source, source_orders.c.ref)
                )
            ).first()
            if row is None:
                return False
            data = {"source": row.source, "ref": row.ref, "why": why[:MAX_REASON]}
            await self._event(conn, "source.dropped", now, data=data)
        return True

    async def claim_stale_taking(
        self, source: str, limit: int, hold: float, now: datetime, *, overdue_only: bool = True
    ) -> list[SourceRecord]:
        """`taking` records left by a crash (or a slow hand-over) whose recheck time has come (any time, without
        `overdue_only`: at a daemon's start), claimed for `hold` seconds of the database's clock."""
        taking = source_orders.c.state == SourceState.TAKING.value
        return await self._claim(source, taking, limit, hold, now, with_orders=False, any_time=not overdue_only)

    # -- writing back -----------------------------------------------------------------------------------

    async def claim_write_backs(
        self, source: str, limit: int, hold: float, now: datetime, *, overdue_only: bool = True
    ) -> list[SourceRecord]:
        """Our orders that ended in fulfil (delivered or failed) and are not yet written back, whose time has
        come (any time, without `overdue_only`: at a daemon's start, a dead one's claims are not waited out);
        each claimed for `hold` seconds of the database's clock, so two daemons do not write it at once (and if
        they did, the shop's conditional write lets only one through)."""
        finished = and_(
            source_orders.c.state == SourceState.TAKEN.value,
            exists().where(orders.c.id == source_orders.c.order_id, orders.c.status.in_(_FINISHED)),
        )
        return await self._claim(source, finished, limit, hold, now, with_orders=True, any_time=not overdue_only)

    async def _claim(
        self, source: str, where: Any, limit: int, hold: float, now: datetime, *, with_orders: bool,
        any_time: bool = False,
    ) -> list[SourceRecord]:
        due: Any = or_(source_orders.c.next_try_at.is_(None), source_orders.c.next_try_at <= db_now(self.dialect))
        if any_time:
            due = true()
        pick = (
            select(source_orders.c.id)
            .where(source_orders.c.source == source, where, due)
            .order_by(source_orders.c.id)
            .limit(limit)
        )
        # Read first: most rounds find nothing due, and a write transaction each (SQLite: the one writer's lock,
        # an fsync) would tax every order the engine is delivering meanwhile.
        async with self._read() as conn:
            ids = list((await conn.execute(pick)).scalars())
        if not ids:
            return []
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    update(source_orders)
                    .where(source_orders.c.id.in_(ids), due)
                    .values(next_try_at=db_after(self.dialect, hold))
                    .returning(*source_orders.c)
                )
            ).all()
            records = sorted((_record(row) for row in rows), key=lambda r: r.id)
            if not with_orders or not records:
                return records
            found = await conn.execute(
                select(orders.c.id, orders.c.status, orders.c.reason).where(
                    orders.c.id.in_([r.order_id for r in records])
                )
            )
            status = {row.id: (row.status, row.reason) for row in found}
        return [replace(r, order_status=status[r.order_id][0], order_reason=status[r.order_id][1]) for r in records]

    async def mark_written(self, record_id: int, outcome: str, now: datetime, *, already: bool = False) -> bool:
        """The shop's row holds our result: done. `already`: it was found there (written before a crash)."""
        return await self.mark_written_many([(record_id, outcome, already)], now) == 1

    async def mark_written_many(self, done: Sequence[tuple[int, str, bool]], now: datetime) -> int:
        """`mark_written` for several records (id, outcome, already) in one transaction; how many were `taken`."""
        marked = 0
        if not done:
            return marked
        async with self._write() as conn:
            for record_id, outcome, already in done:
                row = (
                    await conn.execute(
                        update(source_orders)
                        .where(source_orders.c.id == record_id, source_orders.c.state == SourceState.TAKEN.value)
                        .values(
                            state=SourceState.WRITTEN.value,
                            outcome=outcome,
                            reason=None,
                            next_try_at=None,
                            updated_at=now,
                        )
                        .returning(source_orders.c.order_id, source_orders.c.source, source_orders.c.ref)
                    )
                ).first()
                if row is None:
                    continue
                marked += 1
                data = {"source": row.source, "ref": row.ref, "outcome": outcome, "already": already}
                await self._event(conn, "source.written", now, order_id=row.order_id, data=data)
        return marked

    async def write_back_failed(
        self, record_id: int, error: str, retry_in: float, give_up_after: float, now: datetime
    ) -> SourceState:
        """The shop could not take the write-back now: try again in `retry_in` seconds, or, once it has failed
        for `give_up_after` seconds, hand it to a person (review). Returns the record's state after."""
        error = error[:MAX_REASON]
        async with self._write() as conn:
            row = (
                await conn.execute(
                    select(source_orders.c.failing_since, source_orders.c.state).where(
                        source_orders.c.id == record_id
                    )
                )
            ).first()
            if row is None or row.state != SourceState.TAKEN.value:
                return SourceState(row.state) if row is not None else SourceState.WRITTEN
            since = row.failing_since or now
            if (now - since).total_seconds() >= give_up_after:
                reason = f"write-back failing since {since.isoformat(timespec='seconds')}: {error}"
                await self._review(conn, record_id, (SourceState.TAKEN,), reason, now)
                return SourceState.REVIEW
            await conn.execute(
                update(source_orders)
                .where(source_orders.c.id == record_id)
                .values(
                    tries=source_orders.c.tries + 1,
                    failing_since=since,
                    reason=error,
                    next_try_at=db_after(self.dialect, retry_in),
                    updated_at=now,
                )
            )
        return SourceState.TAKEN

    async def source_to_review(self, record_id: int, reason: str, now: datetime) -> bool:
        """A person's turn: the write-back cannot be done as it is (the row changed at the shop, the shop
        refused the value). Any keys stay delivered in fulfil."""
        async with self._write() as conn:
            return await self._review(conn, record_id, (SourceState.TAKEN, SourceState.TAKING), reason, now)

    async def _review(
        self, conn: AsyncConnection, record_id: int, states: Sequence[SourceState], reason: str, now: datetime
    ) -> bool:
        row = (
            await conn.execute(
                update(source_orders)
                .where(source_orders.c.id == record_id, source_orders.c.state.in_([s.value for s in states]))
                .values(state=SourceState.REVIEW.value, reason=reason[:MAX_REASON], next_try_at=None, updated_at=now)
                .returning(source_orders.c.order_id, source_orders.c.source, source_orders.c.ref)
            )
        ).first()
        if row is None:
            return False
        data = {"source": row.source, "ref": row.ref, "reason": reason[:MAX_REASON]}
        await self._event(conn, "source.review", now, order_id=row.order_id, data=data)
        return True

    # -- the person's moves -------------------------------------------------------------------------------

    async def retry_source_order(self, ref: str, operator: str, now: datetime, source: str | None = None) -> None:
        """review -> taken: write back again from the start (the shop row was put right, or the shop is back)."""
        record = await self._for_person(ref, source)
        if record.order_id is None:
            raise InvalidTransition(
                f"shop order {ref} never became a fulfil order ({record.reason}): nothing to write back; "
                "settle it at the shop and then with `fulfil sources settle`"
            )
        await self._person_move(record, operator, now, "source.retry", state=SourceState.TAKEN.value, tries=0,
                                failing_since=None, next_try_at=None, reason=None)  # fmt: skip

    async def settle_source_order(
        self, ref: str, note: str, operator: str, now: datetime, source: str | None = None
    ) -> None:
        """review -> written by hand: a person put the shop's row right themselves."""
        record = await self._for_person(ref, source)
        await self._person_move(record, operator, now, "source.settled", state=SourceState.WRITTEN.value,
                                outcome=BY_HAND, reason=note[:MAX_REASON], next_try_at=None)  # fmt: skip

    async def _for_person(self, ref: str, source: str | None) -> SourceRecord:
        record = await self.source_record(ref, source)
        if record is None:
            raise NotFound(f"no shop order {ref}" + (f" in source {source}" if source else ""))
        if record.state is not SourceState.REVIEW:
            raise InvalidTransition(f"shop order {ref} is {record.state.value}, not waiting for a person (review)")
        return record

    async def _person_move(self, record: SourceRecord, operator: str, now: datetime, event: str, **values: Any) -> None:
        async with self._write() as conn:
            moved = await conn.scalar(
                update(source_orders)
                .where(source_orders.c.id == record.id, source_orders.c.state == SourceState.REVIEW.value)
                .values(**values, updated_at=now)
                .returning(source_orders.c.id)
            )
            if moved is None:
                raise InvalidTransition(f"shop order {record.ref} changed meanwhile: look again")
            data = {"source": record.source, "ref": record.ref}
            await self._event(conn, event, now, order_id=record.order_id, operator=operator, data=data)

    # -- polls ------------------------------------------------------------------------------------------

    async def record_source_poll(self, source: str, error: str | None, now: datetime) -> None:
        """When a source last polled, and whether it reached the shop."""
        values: dict[str, Any] = {"source": source, "polled_at": now, "error": error[:MAX_REASON] if error else None}
        if error is None:
            values["ok_at"] = now
        async with self._write() as conn:
            await conn.execute(self._upsert(source_polls, values, ["source"]))
