"""Receipts: the supplier's answer about an attempt, written ahead of anything done with it.

A receipt is committed in its own short transaction that does not depend on the lease, so a lost lease, a
database error or a cancellation between the answer and the delivery never loses what the supplier charged
for. Its keys are encrypted like deliveries. The attempt row gets the facts too (supplier order id, cost).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, Final

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.domain import AttemptRecord, Receipt, ReceiptKind
from fulfil.storage import statements
from fulfil.storage.base import OPEN_STATE_VALUES, WAITING_STATUS_VALUES, StoreBase, attempt_from_row, chunks
from fulfil.storage.direct import FALL_BACK, Script, Step
from fulfil.storage.errors import NotFound, StoreError
from fulfil.storage.schema import attempts, orders, receipt_cards, receipts
from suppliers.taxonomy import Card
from suppliers.values import expires as bounded_expires
from suppliers.values import supplier_order_id as bounded_id


class ReceiptOps(StoreBase):
    async def record_receipt(
        self,
        attempt_id: int,
        kind: ReceiptKind,
        now: datetime,
        *,
        cards: Sequence[Card] = (),
        supplier_order_id: str | None = None,
        cost: Decimal | None = None,
        evidence: dict[str, Any] | None = None,
        attempt: AttemptRecord | None = None,
    ) -> Receipt:
        """Write what the supplier answered. Not fenced by the lease: the answer is a fact whoever holds the order.

        Idempotent: the first settling answer wins (a repeat or a later query cannot add keys twice); an
        acknowledged receipt is upgraded when the goods arrive. `attempt`: the caller's latest copy of the
        attempt, which saves PostgreSQL reading it first (used only if the row still holds what it says)."""
        kind = ReceiptKind(kind)
        supplier_order_id = bounded_id(supplier_order_id)
        # What is stored, and so what the receipt returned holds: expiry bounded as in the cards' rows.
        stored = tuple(Card(password=c.password, number=c.number, expires=bounded_expires(c.expires)) for c in cards)
        values = {
            "kind": kind.value,
            "supplier_order_id": supplier_order_id,
            "cost": cost,
            "cards": len(cards),
            "evidence": evidence or {},
            "updated_at": now,
        }
        direct = self._direct
        first: Any = _IN_A_TRANSACTION
        if direct.postgresql:
            seen = None if attempt is None else _seen(attempt)
            first = await direct.each(self._first_receipt_at_once(attempt_id, now, values, stored, seen))
        if first is _IN_A_TRANSACTION:
            first = await direct.run(self._first_receipt(attempt_id, now, values, stored))
        if isinstance(first, Receipt):
            return first
        # The attempt has a receipt already (a repeat, an upgrade, late keys); receipts are never deleted.
        async with self._write() as conn:
            found = (await conn.execute(statements.attempt_with_receipt(), {"attempt_id": attempt_id})).first()
            if found is None or found.r_id is None:
                raise StoreError(f"attempt {attempt_id}: its receipt is gone (receipts are never deleted)")
            m = found._mapping
            current = _receipt_from_row({c.name: m[f"r_{c.name}"] for c in receipts.c}, ())
            facts = _facts(m, values, new=current.kind is ReceiptKind.ACKNOWLEDGED)
            if _upgrades(current, kind, cards):
                values["supplier_order_id"] = supplier_order_id or current.supplier_order_id
                await conn.execute(update(receipts).where(receipts.c.id == current.id).values(**values))
                await self._insert_cards(conn, current.id, stored)
            elif cards and current.kind is ReceiptKind.CHARGED_NO_GOODS:
                # Already as final as this answer, or more: the first is kept. Keys after the charge was claimed
                # as without goods (a lost answer arriving late) are never dropped; held under the claim, whose
                # amount shrinks when they are released.
                await self._hold(conn, attempt_id, cards, "late_keys", now)
            if facts:
                await conn.execute(update(attempts).where(attempts.c.id == attempt_id).values(**facts))
            return await self._receipt(conn, current.id)

    def _first_receipt(
        self, attempt_id: int, now: datetime, values: dict[str, Any], cards: tuple[Card, ...]
    ) -> Script:
        """The common case as one direct transaction: the attempt has no receipt yet, so this answer is written
        with its keys and the attempt gets the facts. FALL_BACK (nothing written) when it has one already."""
        direct = self._direct
        found = yield from self._attempt_for_receipt(attempt_id)
        if found["r_id"] is not None:
            return FALL_BACK
        row = {"attempt_id": attempt_id, "order_id": found["order_id"], "created_at": now, **values}
        add = direct.prepared(("insert_receipt", tuple(row)), statements.insert_receipt, keys=tuple(row))
        (written,) = yield Step(add, row)
        receipt_id = written["id"]
        if cards:
            card_rows = self._card_rows(receipt_id, cards)
            insert_cards = direct.prepared("insert_receipt_cards", lambda: insert(receipt_cards), keys=_CARD_KEYS)
            yield Step(insert_cards, card_rows, many=True)
        facts = _facts(found, values, new=True)  # a first receipt: the attempt keeps the answer
        if facts:
            names = tuple(facts)
            update_ = direct.prepared(("attempt_facts", names), lambda: statements.attempt_facts(names))
            yield Step(update_, {"p_attempt": attempt_id, **{f"v_{name}": facts[name] for name in names}})
        return _receipt_from_row({**row, "id": receipt_id, "applied_at": None}, cards)  # known as written

    def _first_receipt_at_once(
        self,
        attempt_id: int,
        now: datetime,
        values: dict[str, Any],
        cards: tuple[Card, ...],
        seen: Mapping[str, Any] | None,
    ) -> Script:
        """PostgreSQL: `_first_receipt` as one statement, a transaction of its own: the receipt, its keys and the
        attempt's facts, worked out from the attempt as `seen` (the caller's copy, or read here first) and written
        only if the attempt still holds that (statements.first_receipt_postgresql). FALL_BACK, nothing written,
        when the attempt has a receipt already."""
        direct = self._direct
        keys = {
            "numbers": [self._cipher.encrypt(card.number) for card in cards],
            "passwords": [self._cipher.encrypt(card.password) for card in cards],
            "expiries": [card.expires for card in cards],
        }
        for _ in range(2):
            if seen is None:
                found = yield from self._attempt_for_receipt(attempt_id)
                if found["r_id"] is not None:
                    return FALL_BACK
                seen = found
            facts = _facts(seen, values, new=True)
            names = tuple(facts)
            write = direct.prepared(("first_receipt", names), partial(statements.first_receipt_postgresql, names))
            params = {
                "attempt_id": attempt_id,
                "now": now,
                **{f"seen_{name}": seen[name] for name in statements.FIRST_RECEIPT_SEEN},
                **{name: values[name] for name in statements.FIRST_RECEIPT_VALUES},
                **keys,
                **{f"v_{name}": value for name, value in facts.items()},
            }
            written = yield Step(write, params)
            if written:
                (w,) = written
                row = {"attempt_id": attempt_id, "order_id": w["order_id"], "created_at": now, **values}
                return _receipt_from_row({**row, "id": w["id"], "applied_at": None}, cards)  # known as written
            seen = None  # the attempt changed since, or has a receipt now: read it
        # Changed again, or its stored evidence is not as this fulfil writes it (so it never compares equal): the
        # read, write and facts in one transaction instead, which needs no comparison.
        return _IN_A_TRANSACTION

    def _attempt_for_receipt(self, attempt_id: int) -> Generator[Step, list[dict[str, Any]], dict[str, Any]]:
        """The attempt's facts and its receipt's columns (`r_id` None without one); NotFound if it is not there."""
        read = self._direct.prepared("attempt_with_receipt", statements.attempt_with_receipt)
        rows = yield Step(read, {"attempt_id": attempt_id})
        if not rows:
            raise NotFound(f"no attempt {attempt_id}")
        return rows[0]

    async def receipt_for(self, attempt_id: int) -> Receipt | None:
        async with self._read() as conn:
            receipt_id = await conn.scalar(select(receipts.c.id).where(receipts.c.attempt_id == attempt_id))
            return None if receipt_id is None else await self._receipt(conn, receipt_id)

    async def unapplied_receipts(self, limit: int = 200) -> list[tuple[Receipt, AttemptRecord]]:
        """Settling receipts whose attempt is still open and whose order no longer waits on it (not pending or
        processing): an answer nobody is left to act on. Oldest first.

        A receipt of an order still being worked on is the engine's to apply (it writes the receipt, then
        applies it): under load dozens are in that gap at any moment, and reading each one every tick to
        learn it is not an orphan cost ~2 % of the daemon's CPU."""
        stmt = (
            select(attempts, receipts.c.id.label("receipt_id"))
            .join(attempts, attempts.c.id == receipts.c.attempt_id)
            .join(orders, orders.c.id == attempts.c.order_id)
            .where(
                receipts.c.applied_at.is_(None),
                receipts.c.kind != ReceiptKind.ACKNOWLEDGED.value,
                attempts.c.state.in_(OPEN_STATE_VALUES),
                orders.c.status.not_in(WAITING_STATUS_VALUES),
            )
            .order_by(receipts.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
            # Labelled: both tables have an `id`, and the attempt's must not be the receipt's.
            return [(await self._receipt(conn, row.receipt_id), attempt_from_row(row)) for row in rows]

    def _card_rows(self, receipt_id: int, cards: Sequence[Card]) -> list[dict[str, Any]]:
        return [
            {
                "receipt_id": receipt_id,
                "position": position,
                "number_enc": self._cipher.encrypt(card.number),
                "password_enc": self._cipher.encrypt(card.password),
                "expires": card.expires,
            }
            for position, card in enumerate(cards)
        ]

    async def _insert_cards(self, conn: AsyncConnection, receipt_id: int, cards: Sequence[Card]) -> None:
        for part in chunks(self._card_rows(receipt_id, cards)):
            await conn.execute(insert(receipt_cards), list(part))

    async def _receipt(self, conn: AsyncConnection, receipt_id: int) -> Receipt:
        row = (await conn.execute(select(receipts).where(receipts.c.id == receipt_id))).one()
        found = await conn.execute(
            select(receipt_cards).where(receipt_cards.c.receipt_id == receipt_id).order_by(receipt_cards.c.position)
        )
        return _receipt_from_row(row, tuple(self._card(card._mapping) for card in found))


_IN_A_TRANSACTION: Final = object()  # `_first_receipt_at_once` leaves the receipt to `_first_receipt`
_CARD_KEYS = ("receipt_id", "position", "number_enc", "password_enc", "expires")


def _facts(attempt: Mapping[Any, Any], values: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    """What the attempt row learns from an answer: the supplier's order id and cost when it had none, and (for
    a first settling answer, `new`) the answer itself beside its evidence, for after-sales and reconciliation."""
    facts: dict[str, Any] = {}
    if values["supplier_order_id"] and not attempt["supplier_order_id"]:
        facts["supplier_order_id"] = values["supplier_order_id"]
    if values["cost"] is not None and attempt["supplier_cost"] is None:
        facts["supplier_cost"] = values["cost"]
    if new:
        facts["evidence"] = {**attempt["evidence"], "answer": values["evidence"]}
    return facts


def _seen(attempt: AttemptRecord) -> dict[str, Any]:
    """What `_facts` reads of an attempt, from the caller's copy of it."""
    return {name: getattr(attempt, name) for name in statements.FIRST_RECEIPT_SEEN}


def _upgrades(current: Receipt, kind: ReceiptKind, cards: Sequence[Card]) -> bool:
    """An acknowledgement is upgraded by any settling answer; "charged, no goods" by keys while nobody acted on
    it yet (another worker's answer with the keys may come after "already exists")."""
    if current.kind is ReceiptKind.ACKNOWLEDGED:
        return kind is not ReceiptKind.ACKNOWLEDGED
    no_goods = current.kind is ReceiptKind.CHARGED_NO_GOODS
    return no_goods and current.applied_at is None and kind is ReceiptKind.GOODS and bool(cards)


def _receipt_from_row(row: Row[Any] | Mapping[str, Any], cards: tuple[Card, ...]) -> Receipt:
    m = row._mapping if isinstance(row, Row) else row
    return Receipt(
        id=m["id"],
        attempt_id=m["attempt_id"],
        order_id=m["order_id"],
        kind=ReceiptKind(m["kind"]),
        cards=cards,
        supplier_order_id=m["supplier_order_id"],
        cost=m["cost"],
        evidence=m["evidence"],
        created_at=m["created_at"],
        applied_at=m["applied_at"],
    )
