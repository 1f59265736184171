"""What the engine reads before working on orders, for a whole claimed batch in one read transaction.

A fresh order has no past: the batch costs one statement for the attempts of all its orders and one for the
active cool-downs, and one for whether risk must look at any of them (a block active, a buyer's credit low);
claims, `review retry` and `order.waiting` events are read only for orders that have attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, or_, select

from fulfil.config import CREDIT_KINDS
from fulfil.domain import AttemptRecord, ClaimRecord, Cooldowns, WorkContext
from fulfil.storage.base import StoreBase, attempt_from_row, chunks
from fulfil.storage.schema import attempts, events, orders, risk_blocks, risk_credit
from fulfil.storage.store_claims import active_cooldowns_in, claims_query


class WorkOps(StoreBase):
    async def work_contexts(
        self, order_ids: Sequence[int], now: datetime, credit_start: int = 100
    ) -> tuple[dict[int, WorkContext], Cooldowns]:
        """Each order's WorkContext (every id gets one) and the cool-downs active at `now`; `credit_start` is
        the score a buyer starts with (below it, risk looks at the order)."""
        tries: dict[int, list[AttemptRecord]] = {i: [] for i in order_ids}
        claims: dict[int, list[ClaimRecord]] = {}
        retried: dict[int, int] = {}
        waited: dict[int, int] = {}
        checked: set[int] = set()
        async with self._read() as conn:
            # Risk with no rules configured still has blocklists and credit: which orders it must look at.
            block_active = exists().where(or_(risk_blocks.c.until.is_(None), risk_blocks.c.until > now))
            hashes = [orders.c[f"{kind}_hash"] for kind in CREDIT_KINDS]
            low_credit = exists().where(risk_credit.c.hash.in_(hashes), risk_credit.c.score < credit_start)
            for part in chunks(list(order_ids)):
                found_ids = await conn.execute(
                    select(orders.c.id).where(orders.c.id.in_(part), or_(block_active, low_credit))
                )
                checked.update(found_ids.scalars())
            for part in chunks(list(order_ids)):
                found = await conn.execute(
                    select(attempts).where(attempts.c.order_id.in_(part)).order_by(attempts.c.id)
                )
                for row in found:
                    tries[row.order_id].append(attempt_from_row(row))
            with_past = [i for i, found in tries.items() if found]
            for part in chunks(with_past):
                for claim in await claims_query(conn, order_ids=part):
                    claims.setdefault(claim.order_id, []).append(claim)
                found = await conn.execute(
                    select(events.c.order_id, events.c.name, events.c.data).where(
                        events.c.name.in_(("review.retry", "order.waiting")), events.c.order_id.in_(part)
                    )
                )
                for order_id, name, data in found:
                    after = int(data.get("after_attempt", 0))
                    marks = retried if name == "review.retry" else waited
                    marks[order_id] = max(marks.get(order_id, after), after)
            cooled = await active_cooldowns_in(conn, now)
        contexts = {
            i: WorkContext(
                tuple(tries[i]), tuple(claims.get(i, ())), retried.get(i), waited.get(i), risk_check=i in checked
            )
            for i in order_ids
        }
        return contexts, cooled
