"""Held keys: charged for, not delivered, kept for a person. Listed, released to stock, or delivered to the
order in review they were bought for.

A held key is a `held_cards` row with `released_at` null. Releasing one is a single transaction: the key goes
where it is sent (stock, or the order's deliveries), the row is marked released, the claim that covered the key
shrinks by the attempt's unit cost (the supplier owes less once the key is recovered), and every step is an
event with the operator. A key already in stock or delivered is refused by its held id, and nothing is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import AttemptState, ClaimReason, OrderStatus
from fulfil.storage.base import duplicates_within, order_from_row
from fulfil.storage.errors import Conflict, InvalidTransition, NotFound
from fulfil.storage.schema import attempts, claims, deliveries, held_cards, orders, stock
from fulfil.storage.store_claims import claims_query
from fulfil.storage.store_review import ReviewOps
from fulfil.storage.store_stock import known_fingerprints
from fulfil.storage.types import ClaimRecovery, HeldCard, HeldRelease

TO_STOCK = "stock"
# Held for a claim: releasing the key recovers part of what the claim asks for. `surplus` and
# `partial_invalid_batch` keys are on no claim (the supplier delivered them properly).
COVERING_CLAIMS: dict[str, tuple[str, ...]] = {
    "invalid_key": (ClaimReason.INVALID_KEY.value,),
    "late_keys": (ClaimReason.POSSIBLE_DOUBLE.value, ClaimReason.CHARGED_NOT_DELIVERED.value),
}
# Keys that failed validation are never picked for a buyer by default; an operator may name one.
NOT_BY_DEFAULT = frozenset({"invalid_key"})
_CARD_COLUMNS = ("number_enc", "password_enc", "expires", "fingerprint")


def released_to_order(ref: str) -> str:
    return f"order:{ref}"


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


class HeldOps(ReviewOps):
    async def held_cards(
        self,
        *,
        reason: str | None = None,
        order_ref: str | None = None,
        ids: Sequence[int] | None = None,
        include_released: bool = False,
    ) -> list[HeldCard]:
        """Held keys (not yet released unless asked), oldest first, with their purchase and its claims."""
        stmt = self._held_select().order_by(held_cards.c.id)
        if not include_released:
            stmt = stmt.where(held_cards.c.released_at.is_(None))
        if reason is not None:
            stmt = stmt.where(held_cards.c.reason == reason)
        if order_ref is not None:
            stmt = stmt.where(orders.c.ref == order_ref)
        if ids is not None:
            stmt = stmt.where(held_cards.c.id.in_(list(ids)))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
            by_attempt: dict[int, list[Any]] = {}
            order_ids = sorted({row.order_id for row in rows})
            if order_ids:
                for claim in await claims_query(conn, order_ids=order_ids):
                    by_attempt.setdefault(claim.attempt_id, []).append(claim)
        return [self._held_from_row(row, tuple(by_attempt.get(row.attempt_id, ()))) for row in rows]

    async def release_held_to_stock(self, ids: Sequence[int], operator: str, now: datetime) -> HeldRelease:
        """Put held keys into stock for their order's sku, in one transaction.

        Refused, nothing written: an unknown id (NotFound), a key released already or whose purchase is still
        being worked on (InvalidTransition), a key already in stock or delivered, or named twice (DuplicateCard
        naming the held ids).
        """
        wanted = sorted(set(ids))
        if not wanted:
            raise InvalidTransition("no held key ids given")
        async with self._write() as conn:
            rows = await self._take_held(conn, wanted)
            known = await known_fingerprints(conn, [row.fingerprint for row in rows])
            self._refuse_known(rows, known, "in stock or delivered")
            await self._insert_stock(conn, rows, now)
            await self._mark_released(conn, rows, TO_STOCK, now)
            recoveries = await self._recover_claims(conn, rows, TO_STOCK, operator, now)
            for order_id, group in _by_order(rows).items():
                await self._event(
                    conn,
                    "held.released",
                    now,
                    order_id=order_id,
                    operator=operator,
                    data={
                        "ids": [row.id for row in group],
                        "to": TO_STOCK,
                        "sku": group[0].sku,
                        "reasons": dict(Counter(row.reason for row in group)),
                    },
                )
        return HeldRelease(ids=tuple(wanted), released_to=TO_STOCK, recoveries=tuple(recoveries))

    async def review_resolve_from_held(
        self, ref: str, ids: Sequence[int] | None, operator: str, now: datetime
    ) -> HeldRelease:
        """review -> delivered with keys held for this order (the `review_resolve` of held keys).

        Without `ids`: the order's own held keys, oldest first, as many as it ordered (keys held as
        `invalid_key` only when named). Each key is delivered under the attempt that bought it, so the
        delivery keeps the supplier, its order number and cost; that attempt is left as it was. Keys held for
        another order are refused (release them to stock and retry the order instead). Refused, nothing
        written: too few keys (saying how many there are), a key delivered before or in stock, or named twice.
        """
        release_to = released_to_order(ref)
        if ids is not None and len(set(ids)) != len(ids):
            raise InvalidTransition("a held key id is named twice; nothing written")
        async with self._write() as conn:
            order = await self._in_review(conn, ref)
            if ids is None:
                rows = await self._default_held(conn, order)
            else:
                rows = await self._take_held(conn, sorted(ids))
                foreign = [row.id for row in rows if row.order_id != order.id]
                if foreign:
                    raise InvalidTransition(
                        f"held key(s) {_ids(foreign)} were bought for another order, not {ref}: release them "
                        "to stock (`fulfil held release --to-stock`) and retry the order instead"
                    )
                if len(rows) != order.qty:
                    raise InvalidTransition(f"order {ref} is for {order.qty} key(s); {len(rows)} held id(s) given")
            # A key in stock too is refused as well: it would stay there as a key no one can be given.
            known = await known_fingerprints(conn, [row.fingerprint for row in rows])
            self._refuse_known(rows, known, "in stock or delivered")
            await conn.execute(
                insert(deliveries),
                [
                    {
                        **{c: row._mapping[c] for c in _CARD_COLUMNS},
                        "order_id": order.id,
                        "attempt_id": row.attempt_id,
                        "created_at": now,
                    }
                    for row in rows
                ],
            )
            await self._mark_released(conn, rows, release_to, now)
            recoveries = await self._recover_claims(conn, rows, release_to, operator, now)
            delivered = (
                await conn.execute(
                    update(orders)
                    .where(orders.c.id == order.id)
                    .values(
                        status=OrderStatus.DELIVERED.value,
                        reason=None,
                        delivered_at=now,
                        updated_at=now,
                        lease_owner=None,
                        lease_expires=None,
                    )
                    .returning(*orders.c)
                )
            ).one()
            held_ids = [row.id for row in rows]
            await self._notify(conn, "order.delivered", now, order_id=order.id, data={"status": "delivered"})
            await self._settle_reissue(conn, order.id, now, delivered=True)
            await self._event(
                conn,
                "held.released",
                now,
                order_id=order.id,
                operator=operator,
                data={"ids": held_ids, "to": release_to, "reasons": dict(Counter(row.reason for row in rows))},
            )
            await self._event(
                conn,
                "review.resolve",
                now,
                order_id=order.id,
                operator=operator,
                data={
                    "reason": order.reason,
                    "cards": len(rows),
                    "from_held": held_ids,
                    "attempt_ids": sorted({row.attempt_id for row in rows}),
                },
            )
        return HeldRelease(
            ids=tuple(held_ids),
            released_to=release_to,
            recoveries=tuple(recoveries),
            order=order_from_row(delivered),
        )

    # -- pieces of the release transactions -----------------------------------------------------------

    def _held_select(self) -> Any:
        return (
            select(
                held_cards,
                attempts.c.order_id,
                attempts.c.number.label("attempt_number"),
                attempts.c.supplier,
                attempts.c.cost.label("unit_cost"),
                attempts.c.state.label("attempt_state"),
                orders.c.ref.label("order_ref"),
                orders.c.sku,
            )
            .join(attempts, attempts.c.id == held_cards.c.attempt_id)
            .join(orders, orders.c.id == attempts.c.order_id)
        )

    def _locked(self, stmt: Any) -> Any:
        # Only the held rows are locked: a second release of the same key waits, then sees it released.
        return stmt.with_for_update(of=held_cards) if self.dialect == "postgresql" else stmt

    async def _take_held(self, conn: AsyncConnection, ids: Sequence[int]) -> list[Row[Any]]:
        """The held rows with these ids, locked, each still held and its purchase final; else refused."""
        stmt = self._locked(self._held_select().where(held_cards.c.id.in_(list(ids))).order_by(held_cards.c.id))
        rows = list((await conn.execute(stmt)).all())
        missing = set(ids) - {row.id for row in rows}
        if missing:
            raise NotFound(f"no held key with id {_ids(list(missing))}; nothing written")
        released = [row for row in rows if row.released_at is not None]
        if released:
            shown = "; ".join(
                f"{row.id} to {row.released_to} at {row.released_at:%Y-%m-%d %H:%M:%S} UTC" for row in released
            )
            raise InvalidTransition(f"held key(s) released already: {shown}; nothing written")
        self._refuse_open(rows)
        return rows

    async def _default_held(self, conn: AsyncConnection, order: Any) -> list[Row[Any]]:
        stmt = self._locked(
            self._held_select()
            .where(attempts.c.order_id == order.id, held_cards.c.released_at.is_(None))
            .order_by(held_cards.c.id)
        )
        held = list((await conn.execute(stmt)).all())
        picked: list[Row[Any]] = []
        seen: set[str] = set()
        for row in held:
            if row.reason in NOT_BY_DEFAULT or row.fingerprint in seen:
                continue
            seen.add(row.fingerprint)
            picked.append(row)
        if len(picked) < order.qty:
            invalid = sum(1 for row in held if row.reason in NOT_BY_DEFAULT)
            also = f" (and {invalid} held as invalid_key: name their ids to deliver them)" if invalid else ""
            raise InvalidTransition(
                f"order {order.ref} is for {order.qty} key(s) but {len(picked)} usable key(s) are held for it{also}; "
                "nothing written"
            )
        picked = picked[: order.qty]
        self._refuse_open(picked)
        return picked

    @staticmethod
    def _refuse_open(rows: Sequence[Row[Any]]) -> None:
        # Held keys of an attempt not final yet belong to the engine or the resolver still finishing it.
        open_ = [row.id for row in rows if row.attempt_state != AttemptState.SUCCEEDED.value]
        if open_:
            raise InvalidTransition(
                f"held key(s) {_ids(open_)}: their purchase is still being worked on; try again later"
            )

    @staticmethod
    def _refuse_known(rows: Sequence[Row[Any]], known: set[str], where: str) -> None:
        twice = duplicates_within([row.fingerprint for row in rows])
        if twice:
            named = [row.id for row in rows if row.fingerprint in twice]
            raise InvalidTransition(f"held key(s) {_ids(named)} are the same key; name one of them; nothing written")
        hit = [row.id for row in rows if row.fingerprint in known]
        if hit:
            raise InvalidTransition(f"held key(s) {_ids(hit)}: this key is {where} already; nothing written")

    async def _insert_stock(self, conn: AsyncConnection, rows: Sequence[Row[Any]], now: datetime) -> None:
        await conn.execute(
            insert(stock),
            [
                {
                    **{c: row._mapping[c] for c in _CARD_COLUMNS},
                    "sku": row.sku,
                    "imported_at": now,
                    "source_attempt": row.attempt_id,
                }
                for row in rows
            ],
        )

    async def _mark_released(self, conn: AsyncConnection, rows: Sequence[Row[Any]], to: str, now: datetime) -> None:
        ids = [row.id for row in rows]
        done = await conn.execute(
            update(held_cards)
            .where(held_cards.c.id.in_(ids), held_cards.c.released_at.is_(None))
            .values(released_at=now, released_to=to)
            .returning(held_cards.c.id)
        )
        if len(done.all()) != len(ids):  # another release got there first (SQLite never; PostgreSQL locks)
            raise Conflict(f"held key(s) {_ids(ids)} were released meanwhile; nothing written")

    async def _recover_claims(
        self, conn: AsyncConnection, rows: Sequence[Row[Any]], to: str, operator: str, now: datetime
    ) -> list[ClaimRecovery]:
        """Each claim that covered released keys asks for less: the attempt's unit cost per key, never < 0."""
        units = Counter((row.attempt_id, row.reason) for row in rows)
        costs = {row.attempt_id: row.unit_cost for row in rows}
        held_ids: dict[tuple[int, str], list[int]] = {}
        for row in rows:
            held_ids.setdefault((row.attempt_id, row.reason), []).append(row.id)
        recoveries: list[ClaimRecovery] = []
        for (attempt_id, reason), count in sorted(units.items()):
            covering = COVERING_CLAIMS.get(reason)
            if not covering:
                continue
            stmt = (
                select(claims)
                .where(claims.c.attempt_id == attempt_id, claims.c.reason.in_(covering))
                .order_by(claims.c.id)
            )
            if self.dialect == "postgresql":
                stmt = stmt.with_for_update()
            for claim in (await conn.execute(stmt)).all():
                recovery = _recovery(claim, count, costs[attempt_id])
                evidence = dict(claim.evidence)
                evidence["recovered_units"] = int(evidence.get("recovered_units", 0)) + count
                if recovery.recovered_amount is not None:
                    before = Decimal(str(evidence.get("recovered_amount") or "0"))
                    evidence["recovered_amount"] = str(before + recovery.recovered_amount)
                await conn.execute(
                    update(claims)
                    .where(claims.c.id == claim.id)
                    .values(amount=recovery.amount_after, evidence=evidence, updated_at=now)
                )
                await self._event(
                    conn,
                    "claim.recovered",
                    now,
                    order_id=claim.order_id,
                    supplier=claim.supplier,
                    operator=operator,
                    data={
                        "claim_no": claim.claim_no,
                        "reason": claim.reason,
                        "status": claim.status,
                        "held_ids": held_ids[(attempt_id, reason)],
                        "to": to,
                        "units": count,
                        "amount_from": recovery.amount_before,
                        "amount_to": recovery.amount_after,
                        "recovered_amount": recovery.recovered_amount,
                    },
                )
                recoveries.append(recovery)
        return recoveries

    def _held_from_row(self, row: Row[Any], claims_of_attempt: tuple[Any, ...]) -> HeldCard:
        m = row._mapping
        return HeldCard(
            id=m["id"],
            order_id=m["order_id"],
            order_ref=m["order_ref"],
            sku=m["sku"],
            attempt_id=m["attempt_id"],
            attempt_number=m["attempt_number"],
            supplier=m["supplier"],
            reason=m["reason"],
            created_at=m["created_at"],
            card=self._card(m),
            claims=claims_of_attempt,
            released_at=m["released_at"],
            released_to=m["released_to"],
        )


def _by_order(rows: Sequence[Row[Any]]) -> dict[int, list[Row[Any]]]:
    grouped: dict[int, list[Row[Any]]] = {}
    for row in rows:
        grouped.setdefault(row.order_id, []).append(row)
    return grouped


def _recovery(claim: Row[Any], units: int, unit_cost: Decimal | None) -> ClaimRecovery:
    before: Decimal | None = claim.amount
    if before is None or unit_cost is None:
        return ClaimRecovery(claim.claim_no, claim.reason, units, before, before, None)
    recovered = min(before, unit_cost * units)
    return ClaimRecovery(claim.claim_no, claim.reason, units, before, before - recovered, recovered)
