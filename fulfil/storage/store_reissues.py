"""Reading after-sales back: the reissue ledger (a view of reissues, attempts, orders and claims), the figures
for the console, the counts hotspots are judged on, and the rows of an order's evidence file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.aftersales.hotspots import Counts
from fulfil.aftersales.model import CaseFigure, CaseStatus, Level, Outcome, Problem, ReissueEntry
from fulfil.domain import ClaimStatus, OrderStatus
from fulfil.storage.base import StoreBase, attempt_from_row, chunks
from fulfil.storage.schema import aftersales_cases, attempts, claims, events, orders, outbox, reissues

_RECOVERED = (ClaimStatus.ACCEPTED.value, ClaimStatus.SETTLED.value)


@dataclass(frozen=True)
class LedgerFilter:
    """Support staff's search: any combination; None means any."""

    ref: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    supplier: str | None = None  # the original or the new supplier
    sku: str | None = None
    account: str | None = None
    min_amount: Decimal | None = None  # the original order's amount paid
    max_amount: Decimal | None = None


class ReissueOps(StoreBase):
    async def reissue_ledger(self, where: LedgerFilter | None = None) -> list[ReissueEntry]:
        """Every reissue, oldest first, as the ledger shows it. The buyer's contact is decrypted into the entry
        for the caller's contact filter; whoever prints an entry masks it."""
        f = where or LedgerFilter()
        original = orders.alias("original")
        child = orders.alias("child")
        conditions: list[Any] = []
        if f.ref is not None:
            conditions.append(original.c.ref == f.ref)
        if f.since is not None:
            conditions.append(reissues.c.created_at >= f.since)
        if f.until is not None:
            conditions.append(reissues.c.created_at < f.until)
        if f.sku is not None:
            conditions.append(original.c.sku == f.sku)
        if f.account is not None:
            conditions.append(original.c.account == f.account)
        if f.min_amount is not None:
            conditions.append(original.c.amount >= f.min_amount)
        if f.max_amount is not None:
            conditions.append(original.c.amount <= f.max_amount)
        stmt = (
            select(
                reissues,
                original.c.ref.label("ref"),
                original.c.sku.label("sku"),
                original.c.account.label("account"),
                original.c.amount.label("amount"),
                original.c.contact_enc.label("contact_enc"),
                child.c.ref.label("child_ref"),
                child.c.status.label("child_status"),
                aftersales_cases.c.case_no.label("case_no"),
                claims.c.claim_no.label("claim_no"),
                claims.c.status.label("claim_status"),
            )
            .join(original, original.c.id == reissues.c.order_id)
            .join(child, child.c.id == reissues.c.reissue_order_id)
            .join(aftersales_cases, aftersales_cases.c.id == reissues.c.case_id)
            .outerjoin(claims, claims.c.id == reissues.c.claim_id)
            .where(and_(true(), *conditions))
            .order_by(reissues.c.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
            bought = await self._bought(conn, [row.reissue_order_id for row in rows])
            first_ids = [row.original_attempt_id for row in rows if row.original_attempt_id is not None]
            firsts = await self._attempts(conn, first_ids)
        out: list[ReissueEntry] = []
        for row in rows:
            first = firsts.get(row.original_attempt_id) if row.original_attempt_id is not None else None
            new = bought.get(row.reissue_order_id)
            entry = ReissueEntry(
                ref=row.ref,
                case_no=row.case_no,
                reason=row.reason,
                original_supplier=first.supplier if first else None,
                original_supplier_order_no=first.number if first else None,
                new_supplier=new.supplier if new else None,
                new_supplier_order_no=new.number if new else None,
                units=row.units,
                cost=(new.supplier_cost if new.supplier_cost is not None else new.cost_of(new.qty)) if new else None,
                claim_no=row.claim_no,
                decided_by=row.decided_by,
                created_at=row.created_at,
                reissue_ref=row.child_ref,
                reissue_status=row.child_status,
                sku=row.sku,
                account=row.account,
                amount=row.amount,
                contact=self._cipher.decrypt(row.contact_enc) if row.contact_enc else None,
                claim_status=row.claim_status,
            )
            if f.supplier is not None and f.supplier not in (entry.original_supplier, entry.new_supplier):
                continue
            out.append(entry)
        return out

    async def _bought(self, conn: AsyncConnection, order_ids: list[int]) -> dict[int, Any]:
        """Reissue order id -> the attempt that delivered it (or its latest, while it is under way)."""
        out: dict[int, Any] = {}
        for part in chunks(order_ids):
            found = await conn.execute(select(attempts).where(attempts.c.order_id.in_(part)).order_by(attempts.c.id))
            for row in found:
                attempt = attempt_from_row(row)
                current = out.get(attempt.order_id)
                delivered = attempt.state.value == "succeeded" and attempt.error_class is None
                if current is None or delivered or not (current.state.value == "succeeded" and not current.error_class):
                    out[attempt.order_id] = attempt
        return out

    async def _attempts(self, conn: AsyncConnection, ids: list[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for part in chunks(sorted(set(ids))):
            for row in await conn.execute(select(attempts).where(attempts.c.id.in_(part))):
                out[row.id] = attempt_from_row(row)
        return out

    async def case_figures(self, since: datetime, until: datetime) -> list[CaseFigure]:
        """Cases opened in [since, until) with what the figures need: level and times, whether the supplier
        was found at fault (a claim came of it), what its reissues cost and what accepted claims recover."""
        c = aftersales_cases.c
        async with self._read() as conn:
            rows = (await conn.execute(select(aftersales_cases).where(c.opened_at >= since, c.opened_at < until))).all()
            ids = [row.id for row in rows]
            cost: dict[int, Decimal] = {}
            recovered: dict[int, Decimal] = {}
            claimed: set[int] = set()
            for part in chunks(ids):
                found = await conn.execute(
                    select(reissues.c.case_id, reissues.c.reissue_order_id, claims.c.status, claims.c.amount)
                    .outerjoin(claims, claims.c.id == reissues.c.claim_id)
                    .where(reissues.c.case_id.in_(part))
                )
                links = found.all()
                bought = await self._bought(conn, [link.reissue_order_id for link in links])
                for link in links:
                    attempt = bought.get(link.reissue_order_id)
                    spent = Decimal(0)
                    if attempt is not None and attempt.state.value == "succeeded":
                        spent = attempt.supplier_cost or attempt.cost_of(attempt.qty) or Decimal(0)
                    cost[link.case_id] = cost.get(link.case_id, Decimal(0)) + spent
                    if link.status is not None:
                        claimed.add(link.case_id)
                    if link.status in _RECOVERED:
                        recovered[link.case_id] = recovered.get(link.case_id, Decimal(0)) + min(
                            spent, link.amount if link.amount is not None else spent
                        )
        return [
            CaseFigure(
                level=Level(row.level),
                status=CaseStatus(row.status),
                outcome=Outcome(row.outcome) if row.outcome else None,
                opened_at=row.opened_at,
                closed_at=row.closed_at,
                supplier_caused=row.id in claimed,
                reissue_cost=cost.get(row.id, Decimal(0)),
                recovered=recovered.get(row.id, Decimal(0)),
            )
            for row in rows
        ]

    async def aftersales_counts(self, since: datetime, until: datetime) -> dict[tuple[str, str | None], Counts]:
        """Reports opened and orders delivered in [since, until), per (sku, supplier) and per (sku, None).
        Reissue orders are not counted as deliveries (they would dilute the rate they were caused by)."""
        c = aftersales_cases.c
        cases: dict[tuple[str, str | None], int] = {}
        delivered: dict[tuple[str, str | None], int] = {}
        async with self._read() as conn:
            found = await conn.execute(
                select(orders.c.sku, c.supplier, func.count())
                .join(orders, orders.c.id == c.order_id)
                .where(c.opened_at >= since, c.opened_at < until, c.problem != Problem.OTHER.value)
                .group_by(orders.c.sku, c.supplier)
            )
            for sku, supplier, count in found:
                for key in ((sku, supplier), (sku, None)):
                    cases[key] = cases.get(key, 0) + count
            found = await conn.execute(
                select(orders.c.sku, attempts.c.supplier, func.count())
                .join(attempts, attempts.c.order_id == orders.c.id)
                .where(
                    orders.c.delivered_at >= since,
                    orders.c.delivered_at < until,
                    orders.c.status == OrderStatus.DELIVERED.value,
                    orders.c.reissue_of.is_(None),
                    attempts.c.state == "succeeded",
                    attempts.c.error_class.is_(None),
                )
                .group_by(orders.c.sku, attempts.c.supplier)
            )
            for sku, supplier, count in found:
                for key in ((sku, supplier), (sku, None)):
                    delivered[key] = delivered.get(key, 0) + count
        return {key: Counts(cases.get(key, 0), delivered.get(key, 0)) for key in set(cases) | set(delivered)}

    async def evidence_rows(self, order_ids: list[int]) -> dict[str, list[dict[str, Any]]]:
        """The event log and the notifications of these orders, oldest first (the evidence file's timeline)."""
        out: dict[str, list[dict[str, Any]]] = {"events": [], "notifications": []}
        async with self._read() as conn:
            for part in chunks(order_ids):
                found = await conn.execute(select(events).where(events.c.order_id.in_(part)).order_by(events.c.id))
                out["events"] += [dict(row._mapping) for row in found]
                found = await conn.execute(
                    select(
                        outbox.c.event_id,
                        outbox.c.type,
                        outbox.c.channel,
                        outbox.c.order_id,
                        outbox.c.state,
                        outbox.c.attempts,
                        outbox.c.created_at,
                        outbox.c.done_at,
                        outbox.c.last_status,
                    )
                    .where(outbox.c.order_id.in_(part))
                    .order_by(outbox.c.id)
                )
                out["notifications"] += [dict(row._mapping) for row in found]
        return out

    async def reissue_children(self, order_id: int) -> list[str]:
        """The refs of an order's reissue orders."""
        child = orders.alias("child")
        async with self._read() as conn:
            found = await conn.execute(
                select(child.c.ref)
                .join(reissues, reissues.c.reissue_order_id == child.c.id)
                .where(reissues.c.order_id == order_id)
                .order_by(reissues.c.id)
            )
            return list(found.scalars())

    async def order_skus(self, order_ids: list[int]) -> dict[int, str]:
        """The sku of each order (the after-sales queues show a case's product)."""
        out: dict[int, str] = {}
        async with self._read() as conn:
            for part in chunks(sorted(set(order_ids))):
                for order_id, sku in await conn.execute(select(orders.c.id, orders.c.sku).where(orders.c.id.in_(part))):
                    out[int(order_id)] = str(sku)
        return out

    async def case_queue_depth(self) -> dict[str, tuple[int, datetime | None]]:
        """Open cases per level (L2, L3): how many and since when the oldest waits at its level."""
        c = aftersales_cases.c
        out: dict[str, tuple[int, datetime | None]] = {level.value: (0, None) for level in (Level.L2, Level.L3)}
        async with self._read() as conn:
            found = await conn.execute(
                select(c.level, func.count(), func.min(c.level_at))
                .where(c.status == CaseStatus.OPEN.value, c.level.in_(tuple(out)))
                .group_by(c.level)
            )
            for level, count, oldest in found:
                out[str(level)] = (int(count), oldest)
        return out
