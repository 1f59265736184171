"""Orders: intake, leases (claim, renew, release, sweep), end states, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import ClaimRecord, NewOrder, Order, OrderStatus, OrderView
from fulfil.risk.identity import normalize
from fulfil.storage import statements
from fulfil.storage.base import StoreBase, attempt_from_row, chunks, order_from_row
from fulfil.storage.dbclock import db_after, db_now
from fulfil.storage.errors import InvalidTransition, StoreError
from fulfil.storage.outbox import write_outbox_many
from fulfil.storage.schema import aftersales_keys, attempts, deliveries, orders, reissues
from fulfil.storage.statements import claimable
from fulfil.storage.store_claims import claims_query
from fulfil.storage.types import AddResult, AddStatus

_PENDING = OrderStatus.PENDING.value
_PROCESSING = OrderStatus.PROCESSING.value
_END_BY_WORKER = (OrderStatus.FAILED, OrderStatus.REVIEW)


def _same_order(row: Row[Any], order: NewOrder) -> bool:
    m = row._mapping
    return bool(
        m["sku"] == order.sku
        and m["qty"] == order.qty
        and m["account"] == order.account
        and m["amount"] == order.amount  # Decimal equality: 10.0 == 10.00
    )


def _check_new(order: NewOrder) -> None:
    if not order.ref or not order.sku:
        raise StoreError("an order needs a ref and a sku")
    if order.qty < 1:
        raise StoreError(f"order {order.ref}: qty must be at least 1, got {order.qty}")


class OrderOps(StoreBase):
    # -- intake ---------------------------------------------------------------------------------------

    async def add_order(self, order: NewOrder, now: datetime) -> AddResult:
        return (await self.add_orders([order], now))[0]

    async def add_orders(self, new: Sequence[NewOrder], now: datetime) -> list[AddResult]:
        """Accept new refs; an identical known ref is a duplicate (no-op), a different one a conflict."""
        if not new:
            return []
        for order in new:
            _check_new(order)
        first: dict[str, NewOrder] = {}
        for order in new:
            first.setdefault(order.ref, order)
        refs = list(first)
        ids: dict[str, int] = {}
        accepted: set[str] = set()
        existing: dict[str, Row[Any]] = {}
        async with self._write() as conn:
            for part in chunks(refs):
                # ON CONFLICT DO NOTHING: a ref another intake inserted meanwhile is compared, not an error.
                rows = [self._order_values(first[ref], now) for ref in part]
                result = await conn.execute(
                    self._insert_ignore(orders, ["ref"]).returning(orders.c.id, orders.c.ref), rows
                )
                taken = result.all()
                for order_id, ref in taken:
                    ids[ref] = order_id
                    accepted.add(ref)
                await self._notify_accepted(conn, [order_id for order_id, _ in taken], now)
                missing = [ref for ref in part if ref not in accepted]
                if missing:
                    found = await conn.execute(select(orders).where(orders.c.ref.in_(missing)))
                    for row in found:
                        existing[row.ref] = row
                        ids[row.ref] = row.id
        results = []
        seen: set[str] = set()
        for order in new:
            status: AddStatus
            if order.ref in accepted and order.ref not in seen:
                status = "accepted"
            else:
                known = existing.get(order.ref)
                same = _same_order(known, order) if known is not None else first[order.ref] == order
                status = "duplicate" if same else "conflict"
            seen.add(order.ref)
            results.append(AddResult(ref=order.ref, status=status, order_id=ids[order.ref]))
        return results

    def _order_values(self, order: NewOrder, now: datetime) -> dict[str, Any]:
        values = _values(order, now)
        values["contact_enc"] = self._cipher.encrypt(order.contact) if order.contact else None
        for kind in ("contact", "ip", "user", "device", "account"):
            value = getattr(order, kind)
            values[f"{kind}_hash"] = self._cipher.identity_hash(kind, normalize(kind, value)) if value else None
            if kind in ("ip", "user", "device"):
                values[f"{kind}_enc"] = self._cipher.encrypt(normalize(kind, value)) if value else None
        return values

    async def _notify_accepted(self, conn: AsyncConnection, order_ids: Sequence[int], now: datetime) -> None:
        """`order.accepted` for the orders this intake took in: one INSERT for all of them, in its transaction."""
        data = {"status": _PENDING, "reason": None}
        await write_outbox_many(
            conn, self.dialect, self.notify_routes, self.install_id, "order.accepted", order_ids, now, data
        )

    # -- leases ---------------------------------------------------------------------------------------

    async def database_now(self) -> datetime:
        """The database's clock, which lease and parking deadlines are measured by (UTC-aware)."""
        async with self._read() as conn:
            value: datetime | None = await conn.scalar(select(db_now(self.dialect)))
        assert value is not None
        return value

    async def claim_orders(self, owner: str, limit: int, lease: float, now: datetime) -> list[Order]:
        """Take up to `limit` pending orders (or ones whose lease expired), oldest first, for `owner`.

        Expiry, parking and the new lease (`lease` seconds) are on the database's clock; `now` (this daemon's
        clock) only stamps `updated_at`."""
        if limit < 1:
            return []
        if self._direct.postgresql:
            # One statement, its own transaction, on the hot path's connections (the worker claims often).
            params = {"limit": limit, "owner": owner, "lease": timedelta(seconds=lease), "now": now}
            claim = self._one_statement(("claim",), statements.claim_postgresql, params)
            found: list[Any] = await self._direct.each(claim)
        else:
            # One statement under BEGIN IMMEDIATE: no other writer can run between the pick and the update.
            pick = select(orders.c.id).where(claimable(db_now(self.dialect))).order_by(orders.c.id).limit(limit)
            values = {
                "status": _PROCESSING,
                "lease_owner": owner,
                "lease_expires": db_after(self.dialect, lease),
                "not_before": None,
                "updated_at": now,
            }
            stmt = update(orders).where(orders.c.id.in_(pick.scalar_subquery()))
            async with self._write() as conn:
                found = list((await conn.execute(stmt.values(**values).returning(*orders.c))).all())
        return sorted((order_from_row(row) for row in found), key=lambda o: o.id)

    async def renew_leases(self, owner: str, order_ids: Sequence[int], lease: float, now: datetime) -> set[int]:
        """Extend the leases `owner` still holds to `lease` seconds from the database's now; the ids returned
        are the ones it still has."""
        return await self._update_held(owner, order_ids, lease_expires=db_after(self.dialect, lease), updated_at=now)

    async def release_leases(self, owner: str, order_ids: Sequence[int], now: datetime) -> int:
        """Give orders back (processing -> pending), e.g. at shutdown. Returns how many were released."""
        values = {"status": _PENDING, "lease_owner": None, "lease_expires": None, "updated_at": now}
        return len(await self._update_held(owner, order_ids, **values))

    async def _update_held(self, owner: str, order_ids: Sequence[int], **values: Any) -> set[int]:
        """Update the orders among `order_ids` whose lease `owner` still holds; their ids."""
        held: set[int] = set()
        async with self._write() as conn:
            for part in chunks(sorted(set(order_ids))):
                result = await conn.execute(
                    update(orders)
                    .where(orders.c.id.in_(part), orders.c.lease_owner == owner, orders.c.status == _PROCESSING)
                    .values(**values)
                    .returning(orders.c.id)
                )
                held.update(result.scalars())
        return held

    async def sweep_expired_leases(self, now: datetime) -> int:
        """Orders whose worker vanished go back to pending; returns how many. Expired by the database's
        clock; `now` only stamps `updated_at`."""
        expired = and_(orders.c.status == _PROCESSING, orders.c.lease_expires <= db_now(self.dialect))
        values = {"status": _PENDING, "lease_owner": None, "lease_expires": None, "updated_at": now}
        if self.dialect == "postgresql":
            # Rows a worker is writing right now are locked: leave them, it still holds them or will fail.
            chosen = (
                select(orders.c.id)
                .where(expired)
                .with_for_update(skip_locked=True)
                .cte("expired")
                .prefix_with("MATERIALIZED")
            )
            stmt = update(orders).where(orders.c.id == chosen.c.id)
        else:
            stmt = update(orders).where(expired)
        async with self._write() as conn:
            return len((await conn.execute(stmt.values(**values).returning(orders.c.id))).all())

    async def finish_order(self, order_id: int, owner: str, status: OrderStatus, reason: str, now: datetime) -> None:
        """End an order the worker cannot deliver: failed (refundable) or review (a person decides)."""
        status = OrderStatus(status)
        if status not in _END_BY_WORKER:
            raise InvalidTransition(f"finish_order takes failed or review, not {status.value}")
        async with self._write() as conn:
            await self._fence(conn, order_id, owner, now)
            await conn.execute(
                update(orders)
                .where(orders.c.id == order_id)
                # updated_at: when it ended (the console's windows and the review queue's waiting time)
                .values(status=status.value, reason=reason, lease_owner=None, lease_expires=None, updated_at=now)
            )
            await self._event(conn, f"order.{status.value}", now, order_id=order_id, data={"reason": reason})
            data = {"status": status.value, "reason": reason}
            await self._notify(conn, f"order.{status.value}", now, order_id=order_id, data=data)
            await self._settle_reissue(conn, order_id, now, delivered=False, reason=reason)

    # -- reading --------------------------------------------------------------------------------------

    async def get_order(self, ref: str) -> OrderView | None:
        async with self._read() as conn:
            row = await self._order_by_ref(conn, ref)
            if row is None:
                return None
            return (await self._views(conn, [row]))[0]

    async def list_orders(self, status: OrderStatus | None = None, limit: int | None = None) -> list[OrderView]:
        """Orders oldest first, optionally of one status, with their cards, attempts and claims."""
        stmt = select(orders).order_by(orders.c.id)
        if status is not None:
            stmt = stmt.where(orders.c.status == OrderStatus(status).value)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
            return await self._views(conn, rows)

    async def count_by_status(self, *, sales_only: bool = False) -> dict[str, int]:
        """Orders by status. All of them by default (the work: a pending reissue is work to do); `sales_only`
        counts original orders only, for figures (a reissue, a child order with `reissue_of`, is not a sale)."""
        counts = {status.value: 0 for status in OrderStatus}
        stmt = select(orders.c.status, func.count()).group_by(orders.c.status)
        if sales_only:
            stmt = stmt.where(orders.c.reissue_of.is_(None))
        async with self._read() as conn:
            result = await conn.execute(stmt)
            for status, count in result:
                counts[status] = count
        return counts

    async def _views(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[OrderView]:
        ids = [row.id for row in rows]
        cards: dict[int, list[Any]] = {i: [] for i in ids}
        tries: dict[int, list[Any]] = {i: [] for i in ids}
        claims: dict[int, list[ClaimRecord]] = {i: [] for i in ids}
        delivered: dict[int, list[int]] = {i: [] for i in ids}  # delivery ids, parallel to cards
        for part in chunks(ids):
            found = await conn.execute(
                select(deliveries).where(deliveries.c.order_id.in_(part)).order_by(deliveries.c.id)
            )
            for d in found:
                cards[d.order_id].append(self._card(d._mapping))
                delivered[d.order_id].append(d.id)
            found = await conn.execute(select(attempts).where(attempts.c.order_id.in_(part)).order_by(attempts.c.id))
            for a in found:
                tries[a.order_id].append(attempt_from_row(a))
            for claim in await claims_query(conn, order_ids=part):
                claims[claim.order_id].append(claim)
        replaced, reissued = await self._reissue_cards(conn, ids, cards, delivered)
        return [
            OrderView(
                order=order_from_row(row),
                cards=tuple(cards[row.id]),
                attempts=tuple(tries[row.id]),
                claims=tuple(claims[row.id]),
                replaced=tuple(replaced[row.id]),
                reissued=tuple(reissued[row.id]),
            )
            for row in rows
        ]

    async def _reissue_cards(
        self, conn: AsyncConnection, ids: Sequence[int], cards: dict[int, list[Any]], delivered: dict[int, list[int]]
    ) -> tuple[dict[int, list[bool]], dict[int, list[bool]]]:
        """An original order's view lists its reissues' keys after its own (flagged `reissued`), and flags its
        keys a delivered reissue replaced (`replaced`). `cards` is extended in place."""
        replaced = {i: [False] * len(cards[i]) for i in ids}
        reissued = {i: [False] * len(cards[i]) for i in ids}
        for part in chunks(ids):
            found = await conn.execute(
                select(reissues.c.order_id, reissues.c.case_id, deliveries)
                .join(orders, orders.c.id == reissues.c.reissue_order_id)
                .join(deliveries, deliveries.c.order_id == reissues.c.reissue_order_id)
                .where(reissues.c.order_id.in_(part), orders.c.status == OrderStatus.DELIVERED.value)
                .order_by(deliveries.c.id)
            )
            done_cases: set[int] = set()
            for row in found:
                cards[row.order_id].append(self._card(row._mapping))
                replaced[row.order_id].append(False)
                reissued[row.order_id].append(True)
                done_cases.add(row.case_id)
            if not done_cases:
                continue
            named = await conn.execute(
                select(aftersales_keys.c.delivery_id).where(aftersales_keys.c.case_id.in_(done_cases))
            )
            gone = set(named.scalars())
            for order_id in part:
                for position, delivery_id in enumerate(delivered[order_id]):
                    if delivery_id in gone:
                        replaced[order_id][position] = True
        return replaced, reissued


def _values(order: NewOrder, now: datetime) -> dict[str, Any]:
    return {
        "ref": order.ref,
        "sku": order.sku,
        "qty": order.qty,
        "account": order.account,
        "amount": order.amount,
        "status": _PENDING,
        "created_at": now,
        "updated_at": now,
    }
