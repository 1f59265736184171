"""Risk's storage: the decision's transaction, and a person's release or refusal of a held order.

Blocklist entries are in `store_blocks.py`, credit scores and their history in `store_credit.py`.

The decision runs inside the order's claim (its lease fenced) and before any attempt exists. Counts are
indexed queries over the orders let through recently (`ix_orders_<kind>_risk`: identity hash, then time),
so history is never loaded. Exact under concurrency: on SQLite the single writer (BEGIN IMMEDIATE) already
serialises decisions; on PostgreSQL, where two daemons decide at once under READ COMMITTED, the decision
first takes a transaction-scoped advisory lock per identity its rules count (`pg_advisory_xact_lock`, on
the identity hash's first 60 bits, in sorted order). A second order of the same buyer waits there until the
first one's decision is committed, and its counts, read after the wait, include it. An advisory lock rather
than a lock row: nothing to create or clean up per identity and window, and it ends with the transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import String, any_, bindparam, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil import failpoints
from fulfil.config import CREDIT_KINDS, IDENTITY_KINDS, RiskConfig
from fulfil.domain import Order, OrderStatus
from fulfil.risk.identity import mask_identity
from fulfil.risk.rules import BlockHit, Decision, Figures, OrderFacts, Query, decide, lock_keys, queries
from fulfil.storage.base import order_from_row
from fulfil.storage.errors import InvalidTransition, LeaseLost, NotFound, StoreError
from fulfil.storage.schema import orders, risk_blocks, risk_credit, risk_credit_changes
from fulfil.storage.store_credit import CreditOps
from fulfil.storage.store_review import ReviewOps

_PROCESSING = OrderStatus.PROCESSING.value
_REVIEW = OrderStatus.REVIEW.value
_FAILED = OrderStatus.FAILED.value
RISK_PREFIX = "risk:"


@dataclass(frozen=True)
class Explanation:
    order: Order
    identities: dict[str, str]  # kind -> masked value
    record: dict[str, Any]  # the decision as kept on the order ({} when none was made)


# Snapshot statements by (dialect, shape of the rules' queries): built once, values bound per order. Shapes are
# few (rules x which identities an order has), so this stays small. On PostgreSQL the statement is kept as the
# SQL text psycopg runs (lists bound as arrays, so the text never changes with their length).
_SNAPSHOTS: dict[tuple[str, tuple[Any, ...]], Any] = {}


def _one_of(column: Any, name: str, dialect: str) -> Any:
    if dialect == "postgresql":
        return column == any_(cast(bindparam(name), ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))


def _snapshot_statement(dialect: str, shape: tuple[tuple[str, tuple[str, ...], bool], ...]) -> Any:
    b = risk_blocks.c
    now = bindparam("now", type_=b.until.type)
    columns: list[Any] = [
        select(func.count())
        .where(or_(_one_of(b.hash, "hashes", dialect), b.network.is_not(None)), or_(b.until.is_(None), b.until > now))
        .scalar_subquery()
        .label("blocks"),
        select(func.min(risk_credit.c.score))
        .where(_one_of(risk_credit.c.hash, "credit", dialect))
        .scalar_subquery()
        .label("credit"),
    ]
    for i, (per, measures, has_skus) in enumerate(shape):
        for measure in measures:
            columns.append(_measure(dialect, i, per, measure, has_skus).label(f"q{i}_{measure}"))
    stmt = select(*columns)
    if dialect == "postgresql":
        compiled = stmt.compile(dialect=psycopg_dialect())  # type: ignore[no-untyped-call]
        # The SQL and the values the statement carries itself (LIMIT 1's), which psycopg must be given too.
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        return str(compiled), fixed
    return stmt


def _measure(dialect: str, i: int, per: str, measure: str, has_skus: bool) -> Any:
    o = orders.c
    column = o[f"{per}_hash"]
    if measure == "seen":
        # Delivered before risk existed counts as known too.
        known = or_(o.risk_passed_at.is_not(None), o.delivered_at.is_not(None))
        return select(o.id).where(column == bindparam(f"h{i}"), known).limit(1).scalar_subquery()
    since = bindparam(f"s{i}", type_=o.risk_passed_at.type)
    where = [column == bindparam(f"h{i}"), o.risk_passed_at >= since]
    if has_skus:
        where.append(_one_of(o.sku, f"k{i}", dialect))
    value: Any
    if measure == "orders":
        value = func.count()
    elif measure == "units":
        value = func.sum(o.qty)
    elif measure == "amount":
        # SQLite keeps Money as text: total() reads it as a number (a float; exact enough for a limit).
        value = func.sum(o.amount) if dialect == "postgresql" else func.total(o.amount)
    else:
        value = func.count(o.sku.distinct())
    return select(value).where(*where).scalar_subquery()


# All of a decision's identity locks in one statement, taken in the array's (sorted) order: no two decisions can
# each hold one identity the other waits for.
_LOCK_ALL = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(%(keys)s AS bigint[])) AS k"


async def _locked_read(conn: AsyncConnection, locks: list[int], sql: str, params: dict[str, Any]) -> Any:
    """PostgreSQL: BEGIN, the identity locks and the snapshot SELECT in one round trip (psycopg's pipeline).
    The server runs them in order: the SELECT starts, and takes its snapshot, only once every lock is held, so
    it counts whatever a decision that held one of them committed."""
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert isinstance(pg, psycopg.AsyncConnection)
    try:
        async with pg.pipeline():
            if locks:
                await pg.execute(_LOCK_ALL, {"keys": locks})
            cursor = pg.cursor(row_factory=dict_row)
            await cursor.execute(sql, params)
        return await cursor.fetchone()
    except psycopg.Error as exc:
        raise StoreError(f"database error: {exc}") from exc


def advisory_key(identity_hash: str) -> int:
    """A bigint from a hex identity hash: its first 60 bits (positive, so it fits a signed bigint)."""
    return int(identity_hash[:15], 16)


class RiskOps(CreditOps, ReviewOps):
    # -- the decision -------------------------------------------------------------------------------------

    async def risk_decide(
        self, order: Order, owner: str, risk: RiskConfig, families: Mapping[str, str | None], now: datetime
    ) -> Decision:
        """Decide on a claimed order before anything is bought for it, and write the outcome in the same
        transaction: allowed (counted from now on), held (review, `order.held`), or refused (failed, refundable).
        LeaseLost when the order is no longer `owner`'s.

        A good buyer's order costs two statements: every count, whether a block may match and whether the
        buyer's credit is low, in one SELECT of scalar subqueries (on PostgreSQL sent in one round trip with the
        BEGIN and the identity locks before it); the blocks and credit are read in detail only when that says
        they matter; the write is also the lease fence."""
        facts = OrderFacts(order.id, order.sku, order.qty, order.amount, dict(order.identities))
        wanted = queries(facts, risk, families, now)
        async with self._write() as conn:
            locks = self._locks(facts, risk)
            figures, maybe_blocked, low_credit = await self._snapshot(conn, facts, wanted, now, locks)
            blocks = await self._matching_blocks(conn, facts, now) if maybe_blocked else []
            scores = await self._recovered_scores(conn, facts, now) if low_credit else {}
            decision = decide(facts, risk, figures, scores, blocks)
            await failpoints.pause("risk_deciding")  # tests: a kill lands inside the decision's transaction
            await self._write_decision(conn, order, owner, decision, now)
        return decision

    async def _snapshot(
        self, conn: AsyncConnection, facts: OrderFacts, wanted: Sequence[Query], now: datetime, locks: list[int]
    ) -> tuple[dict[str, Figures], bool, bool]:
        """(figures per rule, may a block match, is a credit identity below the start) in one statement, read
        after `locks` are held (PostgreSQL)."""
        shape = tuple((q.per, q.measures, q.skus is not None) for q in wanted)
        stmt = _SNAPSHOTS.get((self.dialect, shape))
        if stmt is None:
            stmt = _SNAPSHOTS.setdefault((self.dialect, shape), _snapshot_statement(self.dialect, shape))
        params: dict[str, Any] = {
            "now": now,
            "hashes": sorted(set(facts.identities.values())),
            "credit": sorted({facts.identities[k] for k in CREDIT_KINDS if k in facts.identities}),
        }
        for i, q in enumerate(wanted):
            params[f"h{i}"] = q.hash
            params[f"s{i}"] = q.since
            params[f"k{i}"] = list(q.skus or ())
        if self.dialect == "postgresql":
            sql, fixed = stmt
            row = await _locked_read(conn, locks, sql, {**fixed, **params})
        else:
            row = (await conn.execute(stmt, params)).one()._mapping
        figures: dict[str, Figures] = {}
        for i, q in enumerate(wanted):
            old = figures.get(q.rule, Figures())
            for measure in q.measures:
                value = row[f"q{i}_{measure}"]
                if measure == "seen":
                    old = replace(old, seen=old.seen or value is not None)
                elif measure == "amount":
                    old = replace(old, amount=Decimal(str(round(value, 8))) if value is not None else Decimal(0))
                elif measure == "orders":
                    old = replace(old, orders=int(value or 0))
                elif measure == "units":
                    old = replace(old, units=int(value or 0))
                else:
                    old = replace(old, skus=int(value or 0))
            figures[q.rule] = old
        credit = row["credit"]
        return figures, bool(row["blocks"]), credit is not None and credit < self.risk_credit.start

    def _locks(self, facts: OrderFacts, risk: RiskConfig) -> list[int]:
        """PostgreSQL: the advisory lock keys of the identities whose counts this decision reads, sorted. (SQLite:
        none; the write transaction already excludes every other writer.)"""
        if self.dialect != "postgresql":
            return []
        return sorted({advisory_key(h) for h in lock_keys(facts, risk)})

    async def _matching_blocks(self, conn: AsyncConnection, facts: OrderFacts, now: datetime) -> list[BlockHit]:
        pairs = set(facts.identities.items())
        b = risk_blocks.c
        stmt = select(b.kind, b.hash, b.network, b.reason).where(
            or_(b.hash.in_([h for _, h in pairs]), b.network.is_not(None)),
            or_(b.until.is_(None), b.until > now),
        )
        rows = (await conn.execute(stmt)).all()
        hits = [BlockHit(r.kind, r.reason) for r in rows if r.network is None and (r.kind, r.hash) in pairs]
        networks = [r for r in rows if r.network is not None]
        if networks and "ip" in facts.identities:
            blob = await conn.scalar(select(orders.c.ip_enc).where(orders.c.id == facts.order_id))
            address = ipaddress.ip_address(self._cipher.decrypt(blob)) if blob else None
            for r in networks:
                if address is not None and address in ipaddress.ip_network(r.network):
                    hits.append(BlockHit("ip", r.reason, r.network))
        return hits

    async def _recovered_scores(self, conn: AsyncConnection, facts: OrderFacts, now: datetime) -> dict[str, int]:
        """Credit rows of the order's credit identities, first given back `recover_per_order` for each order of
        theirs delivered since they last recovered (up to the start)."""
        credit = self.risk_credit
        mine = {facts.identities[k]: k for k in CREDIT_KINDS if k in facts.identities}
        if not mine:
            return {}
        rows = (await conn.execute(select(risk_credit).where(risk_credit.c.hash.in_(sorted(mine))))).all()
        scores = {r.hash: r.score for r in rows}
        for r in rows:
            if r.score >= credit.start or credit.recover_per_order == 0:
                continue
            column = orders.c[f"{r.kind}_hash"]
            good = await conn.scalar(
                select(func.count()).where(column == r.hash, orders.c.delivered_at > r.recovered_at)
            )
            if good:
                new = await self._change_credit(
                    conn,
                    r.kind,
                    r.hash,
                    good * credit.recover_per_order,
                    f"recovered: {good} delivered order(s)",
                    None,
                    None,
                    now,
                )
                scores[r.hash] = new
        return scores

    async def _write_decision(
        self, conn: AsyncConnection, order: Order, owner: str, decision: Decision, now: datetime
    ) -> None:
        record = decision.record()
        if decision.action == "allow":
            # The lease fence and the write in one: the order must still be this worker's, being processed.
            fenced = await conn.scalar(
                update(orders)
                .where(orders.c.id == order.id, orders.c.lease_owner == owner, orders.c.status == _PROCESSING)
                .values(risk_passed_at=now, risk=record, updated_at=now)
                .returning(orders.c.id)
            )
            if fenced is None:
                raise LeaseLost(f"order {order.id}: lease no longer held by {owner}")
        else:
            await self._fence(conn, order.id, owner, now)
            status = _REVIEW if decision.action == "hold" else _FAILED
            await conn.execute(
                update(orders)
                .where(orders.c.id == order.id)
                .values(status=status, reason=decision.reason, risk=record, lease_owner=None, lease_expires=None)
            )
            name = "order.held" if decision.action == "hold" else "order.failed"
            data = {"reason": decision.reason, "rule": decision.rule}
            await self._event(conn, f"risk.{'held' if decision.action == 'hold' else 'refused'}", now,
                              order_id=order.id, data=data)  # fmt: skip
            await self._event(conn, f"order.{status}", now, order_id=order.id, data={"reason": decision.reason})
            await self._notify(conn, name, now, order_id=order.id, data={"status": status, "reason": decision.reason})
        mine = dict(order.identities)
        for kind, identity in sorted((k, mine[k]) for k in CREDIT_KINDS if k in mine):
            if decision.penalty:
                await self._change_credit(
                    conn, kind, identity, -decision.penalty, decision.penalty_reason, None, order.id, now
                )
            if decision.action_penalty and not await self._penalised_since(
                conn, identity, decision.action_reason, now - timedelta(seconds=decision.action_window)
            ):
                await self._change_credit(
                    conn, kind, identity, -decision.action_penalty, decision.action_reason, None, order.id, now
                )

    async def _penalised_since(self, conn: AsyncConnection, identity: str, reason: str, since: datetime) -> bool:
        c = risk_credit_changes.c
        found = await conn.scalar(
            select(c.id).where(c.hash == identity, c.reason == reason, c.at >= since, c.delta < 0).limit(1)
        )
        return found is not None

    # -- the operator's side of a held order -------------------------------------------------------------

    async def review_release(self, ref: str, operator: str, now: datetime) -> Order:
        """A held order back to pending, let through by a person: it is fulfilled normally, never evaluated
        again, and counted by the rules from now on."""
        async with self._write() as conn:
            row = await self._held(conn, ref)
            updated = await self._set_status(conn, row.id, OrderStatus.PENDING, None, now)
            await conn.execute(update(orders).where(orders.c.id == row.id).values(risk_passed_at=now))
            await self._event(
                conn, "review.release", now, order_id=row.id, operator=operator, data={"reason": row.reason}
            )
        return updated

    async def review_refuse(self, ref: str, operator: str, now: datetime) -> Order:
        """A held order refused by a person: failed (refundable), its `risk:` reason kept, the buyer's credit
        lowered by `credit.refuse_penalty`."""
        async with self._write() as conn:
            row = await self._held(conn, ref)
            reason = f"{row.reason} (refused by {operator})"[:1000]
            updated = await self._set_status(conn, row.id, OrderStatus.FAILED, reason, now)
            await self._event(conn, "review.refuse", now, order_id=row.id, operator=operator, data={"reason": reason})
            await self._notify(conn, "order.failed", now, order_id=row.id, data={"status": _FAILED, "reason": reason})
            penalty = self.risk_credit.refuse_penalty
            for kind in CREDIT_KINDS:
                identity = row._mapping[f"{kind}_hash"]
                if identity and penalty:
                    await self._change_credit(
                        conn, kind, identity, -penalty, "refused by a person", operator, row.id, now
                    )
        return updated

    async def _held(self, conn: AsyncConnection, ref: str) -> Any:
        row = await self._in_review(conn, ref)
        if not (row.reason or "").startswith(RISK_PREFIX):
            raise InvalidTransition(f"order {ref} is in review for another reason (not risk): use review retry")
        return row

    async def risk_explain(self, ref: str) -> Explanation:
        async with self._read() as conn:
            row = await self._order_by_ref(conn, ref)
        if row is None:
            raise NotFound(f"no order {ref}")
        m = row._mapping
        shown: dict[str, str] = {}
        for kind in IDENTITY_KINDS:
            if kind == "account" and m["account"]:
                shown[kind] = mask_identity(kind, m["account"])
            elif kind == "contact" and m["contact_enc"]:
                shown[kind] = mask_identity(kind, self._cipher.decrypt(m["contact_enc"]))
            elif kind in ("ip", "user", "device") and m[f"{kind}_enc"]:
                shown[kind] = mask_identity(kind, self._cipher.decrypt(m[f"{kind}_enc"]))
        return Explanation(order_from_row(row), shown, m["risk"] or {})
