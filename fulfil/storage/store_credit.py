"""Buyer credit: a score per account, contact and user, every change recorded with its reason and operator.

No row means the configured start. Scores stay between 0 and the start. `order_credit` and
`adjust_credit_for_order` are the calls after-sales makes (a report's buyer, a penalty for an abusive one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.config import CREDIT_KINDS, CreditConfig
from fulfil.domain import Order
from fulfil.risk.identity import mask_identity, normalize
from fulfil.storage.base import StoreBase, order_from_row
from fulfil.storage.errors import NotFound
from fulfil.storage.schema import orders, risk_credit, risk_credit_changes


@dataclass(frozen=True)
class CreditChange:
    at: datetime
    delta: int
    score: int
    reason: str
    operator: str | None
    order_ref: str | None


@dataclass(frozen=True)
class BuyerView:
    kind: str
    shown: str
    score: int
    changes: tuple[CreditChange, ...]
    orders: tuple[Order, ...]


class CreditOps(StoreBase):
    # The credit settings (`risk.credit`); the composition root sets them from the config.
    risk_credit: CreditConfig = CreditConfig()

    async def _change_credit(
        self,
        conn: AsyncConnection,
        kind: str,
        identity: str,
        delta: int,
        reason: str,
        operator: str | None,
        order_id: int | None,
        now: datetime,
        *,
        absolute: int | None = None,
    ) -> int:
        """Add `delta` (or set `absolute`) to one identity's score, kept between 0 and the start; the change
        is recorded with its reason. Returns the new score."""
        start = self.risk_credit.start

        def clamp(value: Any) -> Any:
            return case((value < 0, literal(0)), (value > start, literal(start)), else_=value)

        first = absolute if absolute is not None else max(0, min(start, start + delta))
        stmt = self._insert_ignore_or_update(kind, identity, first, absolute, delta, clamp, now)
        score = int((await conn.execute(stmt)).scalar_one())
        await conn.execute(
            risk_credit_changes.insert().values(
                hash=identity, kind=kind, at=now, delta=delta if absolute is None else absolute, score=score,
                reason=reason[:500], operator=operator, order_id=order_id,
            )
        )  # fmt: skip
        await self._event(
            conn, "risk.credit", now, order_id=order_id, operator=operator,
            data={"kind": kind, "identity": identity[:12], "delta": delta, "set": absolute, "score": score,
                  "reason": reason[:500]},
        )  # fmt: skip
        return score

    def _insert_ignore_or_update(
        self, kind: str, identity: str, first: int, absolute: int | None, delta: int, clamp: Any, now: datetime
    ) -> Any:
        insert_ = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert_(risk_credit).values(hash=identity, kind=kind, score=first, recovered_at=now, updated_at=now)
        new = literal(absolute) if absolute is not None else clamp(risk_credit.c.score + delta)
        changes: dict[str, Any] = {"score": new, "updated_at": now}
        if delta > 0 and absolute is None:
            changes["recovered_at"] = now  # recovery counted up to now
        return stmt.on_conflict_do_update(index_elements=["hash"], set_=changes).returning(risk_credit.c.score)

    # -- credit ---------------------------------------------------------------------------------------------

    async def order_credit(self, order_id: int) -> int:
        """The order's buyer credit: the lowest score of its account, contact and user (an identity with no
        record has the configured start; an order with none of them, too). For after-sales: a low score makes
        a report suspect. NotFound for an unknown order."""
        async with self._read() as conn:
            row = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
            if row is None:
                raise NotFound(f"no order {order_id}")
            hashes = [row._mapping[f"{k}_hash"] for k in CREDIT_KINDS if row._mapping[f"{k}_hash"]]
            found = await conn.execute(select(risk_credit.c.score).where(risk_credit.c.hash.in_(hashes)))
            return min(found.scalars(), default=self.risk_credit.start)

    async def adjust_credit_for_order(
        self, order_id: int, delta: int, reason: str, operator: str | None, now: datetime
    ) -> dict[str, int]:
        """Change the credit of each of the order's credit identities (account, contact, user) by `delta`
        (negative: a penalty, e.g. an after-sales report judged abusive), kept between 0 and the start, each
        change recorded with `reason` and `operator`. Returns {kind: new score}; {} when the order has none of
        those identities. NotFound for an unknown order."""
        async with self._write() as conn:
            row = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
            if row is None:
                raise NotFound(f"no order {order_id}")
            out: dict[str, int] = {}
            for kind in CREDIT_KINDS:
                identity = row._mapping[f"{kind}_hash"]
                if identity:
                    out[kind] = await self._change_credit(conn, kind, identity, delta, reason, operator, order_id, now)
            return out

    async def set_credit(self, kind: str, value: str, score: int, reason: str, operator: str, now: datetime) -> int:
        """Set one identity's score (an operator's decision); recorded with the reason and operator."""
        if kind not in CREDIT_KINDS:
            raise ValueError(f"credit is kept per {', '.join(CREDIT_KINDS)}, not per {kind}")
        identity = self._cipher.identity_hash(kind, normalize(kind, value))
        async with self._write() as conn:
            return await self._change_credit(conn, kind, identity, 0, reason, operator, None, now, absolute=score)

    async def buyer(self, kind: str, value: str, *, limit: int = 50) -> BuyerView:
        """One identity's score, its history (newest first) and its latest orders."""
        identity = self._cipher.identity_hash(kind, normalize(kind, value))
        async with self._read() as conn:
            score = await conn.scalar(select(risk_credit.c.score).where(risk_credit.c.hash == identity))
            c = risk_credit_changes.c
            changes = await conn.execute(
                select(c.at, c.delta, c.score, c.reason, c.operator, orders.c.ref)
                .select_from(risk_credit_changes.outerjoin(orders, orders.c.id == c.order_id))
                .where(c.hash == identity)
                .order_by(c.id.desc())
                .limit(limit)
            )
            history = tuple(CreditChange(r.at, r.delta, r.score, r.reason, r.operator, r.ref) for r in changes)
            found = await conn.execute(
                select(orders).where(orders.c[f"{kind}_hash"] == identity).order_by(orders.c.id.desc()).limit(limit)
            )
            mine = tuple(order_from_row(r) for r in found)
        start = self.risk_credit.start
        shown = mask_identity(kind, value)
        return BuyerView(kind, shown, score if score is not None and kind in CREDIT_KINDS else start, history, mine)

    async def risk_report(self, ref: str, reason: str, operator: str, now: datetime) -> dict[str, int]:
        """The shop reports a delivered order refunded (a chargeback): the buyer's credit loses
        `credit.chargeback_penalty`, recorded with the reason and operator."""
        async with self._read() as conn:
            row = await self._order_by_ref(conn, ref)
        if row is None:
            raise NotFound(f"no order {ref}")
        penalty = self.risk_credit.chargeback_penalty
        changed = await self.adjust_credit_for_order(row.id, -penalty, f"reported: {reason}", operator, now)
        async with self._write() as conn:
            await self._event(conn, "risk.report", now, order_id=row.id, operator=operator,
                              data={"reason": reason, "penalty": penalty})  # fmt: skip
        return changed

