"""What the engine reads before working on orders, for a whole claimed batch in one read transaction.

A fresh order has no past: the batch costs one statement for the attempts of all its orders and one for the
active cool-downs; claims and `review retry` events are read only for orders that have attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from fulfil.domain import AttemptRecord, ClaimRecord, Cooldowns, WorkContext
from fulfil.storage.base import StoreBase, attempt_from_row, chunks
from fulfil.storage.schema import attempts, events
from fulfil.storage.store_claims import active_cooldowns_in, claims_query


class WorkOps(StoreBase):
    async def work_contexts(self, order_ids: Sequence[int], now: datetime) -> tuple[dict[int, WorkContext], Cooldowns]:
        """Each order's WorkContext (every id gets one) and the cool-downs active at `now`."""
        tries: dict[int, list[AttemptRecord]] = {i: [] for i in order_ids}
        claims: dict[int, list[ClaimRecord]] = {}
        retried: dict[int, int] = {}
        async with self._read() as conn:
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
                    select(events.c.order_id, events.c.data).where(
                        events.c.name == "review.retry", events.c.order_id.in_(part)
                    )
                )
                for order_id, data in found:
                    after = int(data.get("after_attempt", 0))
                    retried[order_id] = max(retried.get(order_id, after), after)
            cooled = await active_cooldowns_in(conn, now)
        contexts = {i: WorkContext(tuple(tries[i]), tuple(claims.get(i, ())), retried.get(i)) for i in order_ids}
        return contexts, cooled
