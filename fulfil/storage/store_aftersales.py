"""After-sales cases: a buyer's report decided and written in one transaction (with its reissue order and claim
when L1 reissues), operators' actions, and the clock's escalations.

A reissue is a child order (`orders.reissue_of`) that the worker claims like any other: the engine buys it
under every money rule (write-ahead attempts, receipts, leases, failover), routing the supplier that sold the
bad key last. The decision, the child order, the `reissues` row and the claim against the original purchase
are one transaction: a crash leaves either none of them or all, and the child order is bought at most once
like any order. A second reissue of one case is refused while one is still under way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.aftersales.model import (
    Case,
    CaseStatus,
    Decision,
    Facts,
    Level,
    Opened,
    Outcome,
    Problem,
    Report,
    ReportedKey,
    Step,
)
from fulfil.config import AftersalesConfig
from fulfil.domain import ClaimReason, ClaimStatus, OrderStatus
from fulfil.storage.aftersales_rows import attachment_refs, cases_in
from fulfil.storage.base import WAITING_STATUS_VALUES, StoreBase
from fulfil.storage.errors import Conflict, InvalidTransition, NotFound
from fulfil.storage.schema import (
    aftersales_cases,
    aftersales_keys,
    attempts,
    claims,
    deliveries,
    orders,
    outbox,
    reissues,
)

_OPEN = CaseStatus.OPEN.value
_C = aftersales_cases.c
# An L1 case still open this long after the report (a crash between the report and a supplier's answer, a
# reissue order parked for long) is handed to a person rather than left waiting for nobody.
L1_STALE = 600.0


class AftersalesOps(StoreBase):
    # -- the buyer's side -----------------------------------------------------------------------------

    async def order_for_proof(self, ref: str) -> tuple[int, str, str | None] | None:
        """(order id, sku, its contact in plaintext) for checking a proof; None for an unknown ref."""
        stmt = select(orders.c.id, orders.c.sku, orders.c.contact_enc).where(orders.c.ref == ref)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return row.id, row.sku, self._cipher.decrypt(row.contact_enc) if row.contact_enc else None

    async def case_facts(self, order_id: int, report: Report, *, credit: int, product_kind: str | None) -> Facts:
        """The facts L1 would decide a report on now, written nowhere (the buyer's options)."""
        async with self._read() as conn:
            order = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
            if order is None:
                raise NotFound(f"no order {order_id}")
            return await self._facts(conn, order, report, credit, product_kind)

    async def order_passwords(self, order_id: int) -> list[str]:
        """The order's own delivered keys (passwords), for the options a buyer is offered; never logged."""
        async with self._read() as conn:
            found = await conn.execute(
                select(deliveries.c.password_enc).where(deliveries.c.order_id == order_id).order_by(deliveries.c.id)
            )
            return [self._cipher.decrypt(value) for value in found.scalars()]

    async def open_case(
        self,
        order_id: int,
        report: Report,
        *,
        credit: int,
        product_kind: str | None,
        decide: Callable[[Facts], Decision],
        config: AftersalesConfig,
        reporter: str,
        now: datetime,
    ) -> Opened:
        """Open a case for the report, or add the report to the open case of the same order and problem.

        The L1 decision is taken on facts read in this transaction and written in it: a reissue's child order,
        its ledger row and the claim against the original purchase commit together with the case."""
        try:
            async with self._write() as conn:
                return await self._open_case(
                    conn, order_id, report, credit, product_kind, decide, config, reporter, now
                )
        except Conflict:
            # Another report of the same order and problem opened the case meanwhile: this one repeats it.
            async with self._write() as conn:
                opened = await self._repeat(conn, order_id, report, now)
            if opened is None:
                raise
            return opened

    async def _open_case(
        self,
        conn: AsyncConnection,
        order_id: int,
        report: Report,
        credit: int,
        product_kind: str | None,
        decide: Callable[[Facts], Decision],
        config: AftersalesConfig,
        reporter: str,
        now: datetime,
    ) -> Opened:
        stmt = select(orders).where(orders.c.id == order_id)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()  # one report of an order at a time
        order = (await conn.execute(stmt)).first()
        if order is None:
            raise NotFound(f"no order {order_id}")
        repeated = await self._repeat(conn, order_id, report, now)
        if repeated is not None:
            return repeated
        facts = await self._facts(conn, order, report, credit, product_kind)
        decision = decide(facts)
        to_person = decision.step is Step.TO_PERSON
        level = Level.L2 if to_person else Level.L1
        values = {
            "order_id": order_id,
            "problem": report.problem.value,
            "status": _OPEN,
            "level": level.value,
            "reason": decision.reason,
            "text": report.text,
            "attachments": {"refs": list(report.attachments)},
            "units": decision.units or len(facts.matched),  # keys of this order named; 0: the order's qty
            "supplier": decision.supplier or facts.delivered_supplier,
            "attempt_id": decision.attempt_id or facts.delivered_attempt,
            "decided_by": "L1",  # L1 decided (to act, or to hand over); who reported is the event's operator
            "reports": 1,
            "open_key": f"{order_id}:{report.problem.value}",
            "due_at": now + timedelta(seconds=config.levels.L2.limit_for(report.problem)) if to_person else None,
            "opened_at": now,
            "level_at": now,
            "updated_at": now,
        }
        case_id = await conn.scalar(insert(aftersales_cases).values(**values).returning(_C.id))
        case_no = f"AS-{now:%Y%m%d}-{case_id:06d}"
        await conn.execute(update(aftersales_cases).where(_C.id == case_id).values(case_no=case_no))
        if facts.matched:
            rows = [
                {"case_id": case_id, "delivery_id": k.delivery_id, "fingerprint": k.fingerprint, "created_at": now}
                for k in facts.matched
            ]
            await conn.execute(insert(aftersales_keys), rows)
        data = {"case_no": case_no, "problem": report.problem.value, "level": level.value, "reason": decision.reason}
        await self._case_event(conn, "aftersales.opened", order_id, reporter, data, now)
        step: Step | None = None
        if decision.step is Step.REISSUE:
            await self._reissue(conn, case_id, order, decision.units, decision.attempt_id, decision.reason, "L1", now)
        elif decision.step is Step.RESEND:
            await self._resend(conn, order_id, now)
            await self._close(conn, case_id, order_id, Outcome.CONFIRMED, decision.reason, "L1", now)
        elif decision.step is Step.QUERY_TOPUP:
            step = Step.QUERY_TOPUP  # the caller asks the supplier, outside this transaction
        return Opened(await self._case(conn, case_id), created=True, step=step)

    async def _repeat(self, conn: AsyncConnection, order_id: int, report: Report, now: datetime) -> Opened | None:
        """The report repeats the open case of its order and problem: counted on it, its attachments added."""
        row = (
            await conn.execute(select(aftersales_cases).where(_C.open_key == f"{order_id}:{report.problem.value}"))
        ).first()
        if row is None:
            return None
        attachments = list(attachment_refs(row.attachments))
        attachments += [a for a in report.attachments if a not in attachments]
        await conn.execute(
            update(aftersales_cases)
            .where(_C.id == row.id)
            .values(reports=_C.reports + 1, attachments={"refs": attachments}, updated_at=now)
        )
        await self._event(conn, "aftersales.repeated", now, order_id=order_id, data={"case_no": row.case_no})
        return Opened(await self._case(conn, row.id), created=False)

    async def _facts(
        self, conn: AsyncConnection, order: Row[Any], report: Report, credit: int, product_kind: str | None
    ) -> Facts:
        found = (
            await conn.execute(
                select(deliveries, attempts.c.supplier)
                .join(attempts, attempts.c.id == deliveries.c.attempt_id)
                .where(deliveries.c.order_id == order.id)
                .order_by(deliveries.c.id)
            )
        ).all()
        named = {key.strip() for key in report.keys if key.strip()}
        matched: list[ReportedKey] = []
        for row in found:
            if self._cipher.decrypt(row.password_enc).strip() in named:
                matched.append(ReportedKey(row.id, row.attempt_id, row.supplier, row.fingerprint))
        if matched:
            before = await conn.execute(
                select(aftersales_keys.c.fingerprint, aftersales_cases.c.case_no)
                .join(aftersales_cases, aftersales_cases.c.id == aftersales_keys.c.case_id)
                .where(aftersales_keys.c.fingerprint.in_([k.fingerprint for k in matched]))
            )
            reported = {fp: case_no for fp, case_no in before}
            under = await conn.execute(
                select(claims.c.attempt_id, claims.c.claim_no).where(
                    claims.c.attempt_id.in_({k.attempt_id for k in matched})
                )
            )
            claimed = {attempt_id: claim_no for attempt_id, claim_no in under}
            matched = [
                ReportedKey(
                    k.delivery_id,
                    k.attempt_id,
                    k.supplier,
                    k.fingerprint,
                    reported.get(k.fingerprint),
                    claimed.get(k.attempt_id),
                )
                for k in matched
            ]
        delivered_attempt, delivered_supplier = await self._delivered_attempt(conn, order.id)
        return Facts(
            problem=report.problem,
            sku=order.sku,
            product_kind=product_kind,
            order_status=order.status,
            delivered_at=order.delivered_at,
            delivered_units=len(found),
            credit=credit,
            named=len(named),
            matched=tuple(matched),
            delivered_attempt=delivered_attempt,
            delivered_supplier=delivered_supplier,
        )

    async def _delivered_attempt(self, conn: AsyncConnection, order_id: int) -> tuple[int | None, str | None]:
        row = (
            await conn.execute(
                select(attempts.c.id, attempts.c.supplier)
                .where(
                    attempts.c.order_id == order_id,
                    attempts.c.state == "succeeded",
                    attempts.c.error_class.is_(None),
                )
                .order_by(attempts.c.id.desc())
                .limit(1)
            )
        ).first()
        return (row.id, row.supplier) if row is not None else (None, None)

    # -- what a decision does -------------------------------------------------------------------------

    async def _reissue(
        self,
        conn: AsyncConnection,
        case_id: int,
        order: Row[Any],
        units: int,
        attempt_id: int | None,
        reason: str,
        decided_by: str,
        now: datetime,
    ) -> str:
        """The child order that buys `units` again, its ledger row and the claim on the original purchase."""
        if units < 1:
            raise InvalidTransition("a reissue needs at least one unit")
        case = (await conn.execute(select(aftersales_cases).where(_C.id == case_id))).one()
        under_way = (
            await conn.execute(
                select(orders.c.ref)
                .join(reissues, reissues.c.reissue_order_id == orders.c.id)
                .where(
                    reissues.c.case_id == case_id,
                    orders.c.status.in_(WAITING_STATUS_VALUES),
                )
            )
        ).first()
        if under_way is not None:
            raise InvalidTransition(f"case {case.case_no}: reissue {under_way.ref} is still under way")
        count = await conn.scalar(select(func.count()).select_from(reissues).where(reissues.c.case_id == case_id))
        original = None
        if attempt_id is not None:
            original = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
        claim_id = None
        if original is not None and case.problem in (Problem.KEY_INVALID.value, Problem.TOPUP_NOT_ARRIVED.value):
            claim_id = await self._case_claim(conn, case, original, units, now)
        ref = f"RE-{case.case_no}-{(count or 0) + 1}"
        child_id = await conn.scalar(
            insert(orders)
            .values(
                ref=ref,
                sku=order.sku,
                qty=units,
                account=order.account,
                amount=None,  # nothing paid: the buyer paid for the original
                status=OrderStatus.PENDING.value,
                created_at=now,
                updated_at=now,
                contact_enc=order.contact_enc,  # the buyer hears of the new keys like of the first ones
                reissue_of=order.id,
                avoid_supplier=original.supplier if original is not None else None,
                # The after-sales decision (credit included) was this order's risk decision: the gate lets it
                # through. No buyer identities on it, so it never counts as the buyer's order in risk's rules.
                risk_passed_at=now,
            )
            .returning(orders.c.id)
        )
        await conn.execute(
            insert(reissues).values(
                case_id=case_id,
                order_id=order.id,
                reissue_order_id=child_id,
                original_attempt_id=attempt_id,
                claim_id=claim_id,
                units=units,
                reason=reason,
                decided_by=decided_by,
                created_at=now,
            )
        )
        data = {"case_no": case.case_no, "reissue": ref, "units": units, "reason": reason}
        await self._event(conn, "reissue.ordered", now, order_id=order.id, operator=decided_by, data=data)
        return ref

    async def _case_claim(
        self, conn: AsyncConnection, case: Row[Any], original: Row[Any], units: int, now: datetime
    ) -> int:
        """`invalid_key_reported` (or `topup_failed_after_charge`) on the purchase, with the evidence; the one
        already there for (attempt, reason) otherwise."""
        reason = (
            ClaimReason.INVALID_KEY_REPORTED
            if case.problem == Problem.KEY_INVALID.value
            else ClaimReason.TOPUP_FAILED_AFTER_CHARGE
        )
        amount = original.cost * units if original.cost is not None else None
        keys = (
            await conn.execute(
                select(deliveries.c.password_enc, deliveries.c.created_at)
                .join(aftersales_keys, aftersales_keys.c.delivery_id == deliveries.c.id)
                .where(aftersales_keys.c.case_id == case.id)
            )
        ).all()
        from fulfil.crypto import mask

        evidence = {
            "case_no": case.case_no,
            "reported_at": case.opened_at.isoformat(),
            "buyer_said": (case.text or "")[:500],
            "attachments": list(attachment_refs(case.attachments)),
            "number": original.number,
            "supplier_order_id": original.supplier_order_id,
            "sold_at": original.finished_at.isoformat() if original.finished_at else None,
            "keys": [
                {"password": mask(self._cipher.decrypt(k.password_enc)), "delivered_at": k.created_at.isoformat()}
                for k in keys
            ],
        }
        stmt = self._insert_ignore(claims, ["attempt_id", "reason"]).values(
            attempt_id=original.id,
            order_id=original.order_id,
            supplier=original.supplier,
            reason=reason.value,
            amount=amount,
            qty=units,
            status=ClaimStatus.OPEN.value,
            evidence=evidence,
            created_at=now,
            updated_at=now,
        )
        claim_id = await conn.scalar(stmt.returning(claims.c.id))
        if claim_id is None:
            found = await conn.scalar(
                select(claims.c.id).where(claims.c.attempt_id == original.id, claims.c.reason == reason.value)
            )
            assert found is not None
            return int(found)
        claim_no = f"C-{now:%Y%m%d}-{claim_id:06d}"
        await conn.execute(update(claims).where(claims.c.id == claim_id).values(claim_no=claim_no))
        data = {"claim_no": claim_no, "reason": reason.value, "amount": amount, "qty": units}
        await self._event(conn, "claim.opened", now, order_id=original.order_id, supplier=original.supplier, data=data)
        return int(claim_id)

    async def _resend(self, conn: AsyncConnection, order_id: int, now: datetime) -> None:
        """The delivery notification once more, on every channel that had it (the same event id: receivers
        that de-duplicate see a retry)."""
        await conn.execute(
            update(outbox)
            .where(outbox.c.order_id == order_id, outbox.c.type == "order.delivered")
            .values(state="pending", next_at=now, lease_owner=None, lease_until=None)
        )

    async def _close(
        self,
        conn: AsyncConnection,
        case_id: int,
        order_id: int,
        outcome: Outcome | None,
        note: str | None,
        operator: str,
        now: datetime,
        *,
        status: CaseStatus = CaseStatus.RESOLVED,
    ) -> None:
        values = {
            "status": status.value,
            "outcome": outcome.value if outcome else None,
            "closed_at": now,
            "open_key": None,
            "updated_at": now,
            "decided_by": operator,
        }
        if note:
            values["reason"] = note[:1000]
        row = (
            await conn.execute(
                update(aftersales_cases)
                .where(_C.id == case_id, _C.status == _OPEN)
                .values(**values)
                .returning(_C.case_no, _C.level)
            )
        ).first()
        if row is None:
            raise InvalidTransition(f"case {case_id} is not open")
        data = {"case_no": row.case_no, "status": status.value, "level": row.level, "outcome": values["outcome"]}
        await self._case_event(conn, "aftersales.resolved", order_id, operator, data, now)

    # -- reading --------------------------------------------------------------------------------------

    async def _case(self, conn: AsyncConnection, case_id: int) -> Case:
        found = await cases_in(conn, _C.id == case_id)
        if not found:
            raise NotFound(f"no case {case_id}")
        return found[0]

    async def get_case(self, case_no: str) -> Case | None:
        async with self._read() as conn:
            found = await cases_in(conn, _C.case_no == case_no)
        return found[0] if found else None

    async def list_cases(
        self,
        *,
        level: Level | None = None,
        status: CaseStatus | None = None,
        order_id: int | None = None,
        limit: int = 1000,
    ) -> list[Case]:
        """Open cases first by default (`status`), oldest first: the queue a person works down."""
        conditions = []
        if level is not None:
            conditions.append(_C.level == Level(level).value)
        if status is not None:
            conditions.append(_C.status == CaseStatus(status).value)
        if order_id is not None:
            conditions.append(_C.order_id == order_id)
        async with self._read() as conn:
            return await cases_in(conn, and_(true(), *conditions), limit=limit)
