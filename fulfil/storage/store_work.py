"""What the engine reads before working on orders, for a whole claimed batch in one read transaction.

A fresh order has no past: the batch costs one statement for the attempts of all its orders and one for the
active cool-downs, and one for whether risk must look at any of them (a block active, a buyer's credit low);
claims, `review retry` and `order.waiting` events are read only for orders that have attempts. On PostgreSQL
the three go over the hot path's asyncpg connections (fulfil/storage/direct.py), the rest as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import AttemptRecord, ClaimRecord, Cooldowns, WorkContext
from fulfil.storage import statements
from fulfil.storage.base import StoreBase, attempt_from_row, chunks
from fulfil.storage.coltypes import UTCDateTime
from fulfil.storage.direct import Script, Step
from fulfil.storage.schema import attempts, events, orders
from fulfil.storage.statements import needs_risk
from fulfil.storage.store_claims import active_cooldowns_in, claims_query


class WorkOps(StoreBase):
    async def work_contexts(
        self, order_ids: Sequence[int], now: datetime, credit_start: int = 100
    ) -> tuple[dict[int, WorkContext], Cooldowns]:
        """Each order's WorkContext (every id gets one) and the cool-downs active at `now`; `credit_start` is
        the score a buyer starts with (below it, risk looks at the order)."""
        past = _Past({i: [] for i in order_ids})
        if self._direct.postgresql and order_ids:
            # A fresh batch's three reads on the hot path's connections (no transaction: at READ COMMITTED
            # one would not make them a single snapshot either); a past, if any, read as on SQLite.
            checked_rows, attempt_rows, cooled_rows = await self._direct.each(
                self._fresh_reads(list(order_ids), now, credit_start)
            )
            past.checked.update(row["id"] for row in checked_rows)
            for row in attempt_rows:
                past.tries[row["order_id"]].append(attempt_from_row(row))
            cooled = {(row["supplier"], row["product_id"]): row["until"] for row in cooled_rows}
            if past.with_past():
                async with self._read() as conn:
                    await past.read(conn)
        else:
            async with self._read() as conn:  # one read transaction: on SQLite, one snapshot
                # Risk with no rules configured still has blocklists and credit: which orders it must look at.
                needed = needs_risk(literal(now, UTCDateTime()), literal(credit_start))
                for part in chunks(list(order_ids)):
                    found_ids = await conn.execute(select(orders.c.id).where(orders.c.id.in_(part), needed))
                    past.checked.update(found_ids.scalars())
                for part in chunks(list(order_ids)):
                    found = await conn.execute(
                        select(attempts).where(attempts.c.order_id.in_(part)).order_by(attempts.c.id)
                    )
                    for row in found:
                        past.tries[row.order_id].append(attempt_from_row(row))
                await past.read(conn)
                cooled = await active_cooldowns_in(conn, now)
        return past.contexts(), cooled

    def _fresh_reads(self, ids: list[int], now: datetime, credit_start: int) -> Script:
        """PostgreSQL: the risk check, the attempts and the cool-downs, three statements."""
        prepared = self._direct.prepared
        checked = yield Step(
            prepared(("risk_checked",), statements.risk_checked_postgresql),
            {"ids": ids, "now": now, "credit_start": credit_start},
        )
        tried = yield Step(prepared(("attempts_of",), statements.attempts_of_postgresql), {"ids": ids})
        cooled = yield Step(prepared(("cooldowns",), statements.cooldowns_postgresql), {"now": now})
        return checked, tried, cooled


class _Past:
    """What a batch's orders have behind them: attempts, and for those with attempts their claims and the
    `review retry` / `order.waiting` watermarks; which orders risk must look at."""

    def __init__(self, tries: dict[int, list[AttemptRecord]]) -> None:
        self.tries = tries
        self.checked: set[int] = set()
        self.claims: dict[int, list[ClaimRecord]] = {}
        self.retried: dict[int, int] = {}
        self.waited: dict[int, int] = {}

    def with_past(self) -> list[int]:
        return [i for i, found in self.tries.items() if found]

    async def read(self, conn: AsyncConnection) -> None:
        """Claims and watermarks of the orders with attempts."""
        for part in chunks(self.with_past()):
            for claim in await claims_query(conn, order_ids=part):
                self.claims.setdefault(claim.order_id, []).append(claim)
            found = await conn.execute(
                select(events.c.order_id, events.c.name, events.c.data).where(
                    events.c.name.in_(("review.retry", "order.waiting")), events.c.order_id.in_(part)
                )
            )
            for order_id, name, data in found:
                after = int(data.get("after_attempt", 0))
                marks = self.retried if name == "review.retry" else self.waited
                marks[order_id] = max(marks.get(order_id, after), after)

    def contexts(self) -> dict[int, WorkContext]:
        return {
            i: WorkContext(
                tuple(found),
                tuple(self.claims.get(i, ())),
                self.retried.get(i),
                self.waited.get(i),
                risk_check=i in self.checked,
            )
            for i, found in self.tries.items()
        }
