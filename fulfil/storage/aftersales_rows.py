"""Rows of the after-sales tables as records, and the pieces of other transactions that touch them (a reissue
delivered or given up on settles its case in the transaction that ends the reissue order)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.aftersales.model import Case, CaseStatus, Level, Outcome, Problem
from fulfil.storage.schema import aftersales_cases, claims, orders, reissues


def attachment_refs(stored: dict[str, Any] | None) -> tuple[str, ...]:
    """The column holds a JSON object: {"refs": [...]}."""
    refs = (stored or {}).get("refs") or []
    return tuple(str(ref) for ref in refs)


def case_from_row(row: Row[Any], order_ref: str, reissue_refs: tuple[str, ...], claim_nos: tuple[str, ...]) -> Case:
    m = row._mapping
    return Case(
        id=m["id"],
        case_no=m["case_no"],
        order_id=m["order_id"],
        order_ref=order_ref,
        problem=Problem(m["problem"]),
        status=CaseStatus(m["status"]),
        level=Level(m["level"]),
        outcome=Outcome(m["outcome"]) if m["outcome"] else None,
        reason=m["reason"],
        text=m["text"],
        attachments=attachment_refs(m["attachments"]),
        units=m["units"],
        supplier=m["supplier"],
        attempt_id=m["attempt_id"],
        decided_by=m["decided_by"],
        reports=m["reports"],
        due_at=m["due_at"],
        opened_at=m["opened_at"],
        level_at=m["level_at"],
        closed_at=m["closed_at"],
        updated_at=m["updated_at"],
        reissue_refs=reissue_refs,
        claim_nos=claim_nos,
    )


async def cases_in(conn: AsyncConnection, where: Any, *, order_by: Any = None, limit: int | None = None) -> list[Case]:
    """Cases matching `where`, with their order's ref, their reissues' refs and their claims."""
    stmt = (
        select(aftersales_cases, orders.c.ref.label("order_ref"))
        .join(orders, orders.c.id == aftersales_cases.c.order_id)
        .where(where)
        .order_by(order_by if order_by is not None else aftersales_cases.c.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = (await conn.execute(stmt)).all()
    ids = [row.id for row in rows]
    refs: dict[int, list[str]] = {i: [] for i in ids}
    claim_nos: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        child = orders.alias("child")
        found = await conn.execute(
            select(reissues.c.case_id, child.c.ref, claims.c.claim_no)
            .join(child, child.c.id == reissues.c.reissue_order_id)
            .outerjoin(claims, claims.c.id == reissues.c.claim_id)
            .where(reissues.c.case_id.in_(ids))
            .order_by(reissues.c.id)
        )
        for case_id, ref, claim_no in found:
            refs[case_id].append(ref)
            if claim_no and claim_no not in claim_nos[case_id]:
                claim_nos[case_id].append(claim_no)
    return [case_from_row(row, row.order_ref, tuple(refs[row.id]), tuple(claim_nos[row.id])) for row in rows]


async def settle_reissue_case(
    conn: AsyncConnection, order_id: int, now: datetime, *, delivered: bool, reason: str | None = None
) -> tuple[int, str, str] | None:
    """Part of the transaction that ends order `order_id`: if it is a reissue, its case is resolved (delivered)
    or handed to a person (failed, review). Returns (original order id, case_no, new status) when it was one."""
    link = (
        await conn.execute(
            select(reissues.c.case_id, reissues.c.order_id).where(reissues.c.reissue_order_id == order_id)
        )
    ).first()
    if link is None:
        return None
    case = aftersales_cases.c
    if delivered:
        values: dict[str, Any] = {
            "status": CaseStatus.RESOLVED.value,
            "outcome": Outcome.REISSUED.value,
            "closed_at": now,
            "open_key": None,
            "updated_at": now,
        }
        stmt = update(aftersales_cases).where(case.id == link.case_id, case.status == CaseStatus.OPEN.value)
    else:
        # A reissue the engine could not buy: a person takes the case (L1 -> L2; L2/L3 stay and are told why).
        values = {"reason": f"the reissue was not delivered: {reason}"[:1000], "updated_at": now}
        stmt = update(aftersales_cases).where(case.id == link.case_id, case.status == CaseStatus.OPEN.value)
        level = await conn.scalar(select(case.level).where(case.id == link.case_id))
        if level == Level.L1.value:
            values.update(level=Level.L2.value, level_at=now, due_at=None)
    row = (await conn.execute(stmt.values(**values).returning(case.case_no, case.status))).first()
    if row is None:
        return None
    return link.order_id, row.case_no, row.status
