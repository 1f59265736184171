"""After-sales cases after the report: a supplier's answer about a top-up acted on, operators' one-click actions,
and the clock's pass (time limits, escalations and their alerts). The report itself is `store_aftersales`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.aftersales.model import CLOCK, Action, Case, CaseStatus, Decision, Level, Outcome, Problem, Step
from fulfil.config import AftersalesConfig
from fulfil.storage.base import WAITING_STATUS_VALUES
from fulfil.storage.errors import InvalidTransition, NotFound
from fulfil.storage.outbox import raise_alert
from fulfil.storage.schema import aftersales_cases, attempts, orders, reissues
from fulfil.storage.store_aftersales import L1_STALE, AftersalesOps

_OPEN = CaseStatus.OPEN.value
_C = aftersales_cases.c


class CaseActionOps(AftersalesOps):
    async def settle_topup(
        self, case_no: str, decision: Decision, evidence: dict[str, Any], config: AftersalesConfig, now: datetime
    ) -> Case:
        """What the supplier said about a top-up, acted on: confirmed, reissued, refunded, or to a person."""
        async with self._write() as conn:
            case = await self._case_row(conn, case_no)
            order = (await conn.execute(select(orders).where(orders.c.id == case.order_id))).one()
            data = {"case_no": case_no, "supplier_said": evidence, "decision": decision.step.value}
            await self._event(conn, "aftersales.topup_checked", now, order_id=order.id, data=data)
            if decision.step is Step.CONFIRM:
                await self._close(conn, case.id, order.id, Outcome.CONFIRMED, decision.reason, "L1", now)
            elif decision.step is Step.REFUND:
                # Charged for a top-up that failed: the supplier owes it, whatever the shop does for the buyer.
                original = (await conn.execute(select(attempts).where(attempts.c.id == case.attempt_id))).first()
                if original is not None:
                    await self._case_claim(conn, case, original, order.qty, now)
                await self._close(conn, case.id, order.id, Outcome.REFUNDED, decision.reason, "L1", now)
            elif decision.step is Step.REISSUE:
                await self._reissue(conn, case.id, order, order.qty, case.attempt_id, decision.reason, "L1", now)
            else:
                await self._to_level(conn, case, Level.L2, decision.reason, CLOCK, config, now)
            return await self._case(conn, case.id)

    async def act_on_case(
        self,
        case_no: str,
        action: Action,
        note: str | None,
        operator: str,
        config: AftersalesConfig,
        now: datetime,
    ) -> Case:
        """An operator's one-click action; each an event with the operator. Refused (InvalidTransition) on a
        closed case, an escalation past L3, or a second reissue while one is under way."""
        action = Action(action)
        async with self._write() as conn:
            case = await self._case_row(conn, case_no)
            if case.status != _OPEN:
                raise InvalidTransition(f"case {case_no} is {case.status}: no more actions")
            order = (await conn.execute(select(orders).where(orders.c.id == case.order_id))).one()
            data = {"case_no": case_no, "action": action.value, "note": note}
            await self._event(conn, f"aftersales.{action.value}", now, order_id=order.id, operator=operator, data=data)
            if action is Action.REISSUE:
                units = case.units or order.qty
                await self._reissue(
                    conn, case.id, order, units, case.attempt_id, note or "reissue by an operator", operator, now
                )
                await conn.execute(update(aftersales_cases).where(_C.id == case.id).values(decided_by=operator))
            elif action is Action.REFUND:
                await self._close(conn, case.id, order.id, Outcome.REFUNDED, note, operator, now)
            elif action is Action.RESOLVE:
                await self._close(conn, case.id, order.id, Outcome.ANSWERED, note, operator, now)
            elif action is Action.REJECT:
                await self._close(conn, case.id, order.id, None, note, operator, now, status=CaseStatus.REJECTED)
            else:
                target = {Level.L1.value: Level.L2, Level.L2.value: Level.L3}.get(case.level)
                if target is None:
                    raise InvalidTransition(f"case {case_no} is at L3 already")
                await self._to_level(conn, case, target, note or "escalated by an operator", operator, config, now)
            return await self._case(conn, case.id)

    async def _case_row(self, conn: AsyncConnection, case_no: str) -> Row[Any]:
        stmt = select(aftersales_cases).where(_C.case_no == case_no)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise NotFound(f"no case {case_no}")
        return row

    async def _to_level(
        self,
        conn: AsyncConnection,
        case: Row[Any],
        level: Level,
        reason: str,
        operator: str,
        config: AftersalesConfig,
        now: datetime,
    ) -> bool:
        limits = {Level.L2: config.levels.L2, Level.L3: config.levels.L3}
        due = now + timedelta(seconds=limits[level].limit_for(case.problem)) if level in limits else None
        # Conditional on the level read: of two daemons' passes over one overdue case, one moves it.
        moved = await conn.execute(
            update(aftersales_cases)
            .where(_C.id == case.id, _C.level == case.level, _C.status == _OPEN)
            .values(level=level.value, level_at=now, due_at=due, reason=reason[:1000], updated_at=now)
        )
        if not moved.rowcount:
            return False
        data = {"case_no": case.case_no, "from": case.level, "to": level.value, "reason": reason}
        await self._case_event(conn, "aftersales.escalated", case.order_id, operator, data, now)
        return True

    async def escalate_overdue(self, config: AftersalesConfig, now: datetime) -> list[Case]:
        """The clock's pass: L2 cases past their limit go to L3 with an operator alert; L3 ones past theirs are
        alerted once; L1 cases left open (L1_STALE) go to a person. Returns the cases it moved or alerted."""
        moved: list[int] = []
        async with self._write() as conn:
            undated = await conn.execute(
                select(_C.id, _C.level, _C.problem, _C.level_at).where(
                    _C.status == _OPEN, _C.level.in_((Level.L2.value, Level.L3.value)), _C.due_at.is_(None)
                )
            )
            for row in undated.all():
                level = config.levels.L2 if row.level == Level.L2.value else config.levels.L3
                due = row.level_at + timedelta(seconds=level.limit_for(row.problem))
                await conn.execute(update(aftersales_cases).where(_C.id == row.id).values(due_at=due))
            stale = await conn.execute(
                select(aftersales_cases).where(
                    _C.status == _OPEN, _C.level == Level.L1.value, _C.level_at <= now - timedelta(seconds=L1_STALE)
                )
            )
            for case in stale.all():
                if await self._reissue_under_way(conn, case.id):
                    continue  # the engine is on it; its end settles the case
                if await self._to_level(conn, case, Level.L2, "automatic handling did not finish", CLOCK, config, now):
                    moved.append(case.id)
            for problem in Problem:
                limit = timedelta(seconds=config.levels.L2.limit_for(problem))
                overdue = await conn.execute(
                    select(aftersales_cases).where(
                        _C.status == _OPEN,
                        _C.level == Level.L2.value,
                        _C.problem == problem.value,
                        _C.level_at <= now - limit,
                    )
                )
                for case in overdue.all():
                    why = f"past the L2 time limit ({limit}) since {case.level_at.isoformat()}"
                    if await self._to_level(conn, case, Level.L3, why, CLOCK, config, now):
                        await self._alert(conn, "aftersales.escalated", case, why, now)
                        moved.append(case.id)
                limit = timedelta(seconds=config.levels.L3.limit_for(problem))
                late = await conn.execute(
                    select(aftersales_cases).where(
                        _C.status == _OPEN,
                        _C.level == Level.L3.value,
                        _C.problem == problem.value,
                        _C.alerted_at.is_(None),
                        _C.level_at <= now - limit,
                    )
                )
                for case in late.all():
                    why = f"past the L3 time limit ({limit}) since {case.level_at.isoformat()}"
                    marked = await conn.execute(
                        update(aftersales_cases).where(_C.id == case.id, _C.alerted_at.is_(None)).values(alerted_at=now)
                    )
                    if not marked.rowcount:
                        continue
                    await self._event(
                        conn, "aftersales.overdue", now, order_id=case.order_id, data={"case_no": case.case_no}
                    )
                    await self._alert(conn, "aftersales.overdue", case, why, now)
                    moved.append(case.id)
            return [await self._case(conn, case_id) for case_id in moved]

    async def _reissue_under_way(self, conn: AsyncConnection, case_id: int) -> bool:
        found = await conn.scalar(
            select(func.count())
            .select_from(reissues)
            .join(orders, orders.c.id == reissues.c.reissue_order_id)
            .where(
                reissues.c.case_id == case_id,
                orders.c.status.in_(WAITING_STATUS_VALUES),
            )
        )
        return bool(found)

    async def _alert(self, conn: AsyncConnection, kind: str, case: Row[Any], why: str, now: datetime) -> None:
        data = {"case_no": case.case_no, "problem": case.problem, "supplier": case.supplier, "why": why}
        quiet = self.notify_routes.alert_quiet
        await raise_alert(conn, self.dialect, self.notify_routes, self.install_id, kind, case.case_no, data, quiet, now)

    async def raise_system_alert(self, kind: str, subject: str, data: dict[str, Any], now: datetime) -> bool:
        """An operator alert of its own transaction (hotspots), once per quiet period per (kind, subject)."""
        routes, quiet = self.notify_routes, self.notify_routes.alert_quiet
        async with self._write() as conn:
            return await raise_alert(conn, self.dialect, routes, self.install_id, kind, subject, data, quiet, now)
