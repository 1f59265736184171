"""What every group of store operations shares: transactions, lease fencing, card encryption, row mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fulfil.config import IDENTITY_KINDS
from fulfil.crypto import CardCipher
from fulfil.domain import OPEN_ATTEMPT_STATES, AttemptRecord, AttemptState, Order, OrderStatus
from fulfil.storage import statements
from fulfil.storage.aftersales_rows import settle_reissue_case
from fulfil.storage.database import WRITE
from fulfil.storage.direct import Direct, Script, Step
from fulfil.storage.errors import Conflict, LeaseLost, NotFound, StoreError
from fulfil.storage.outbox import NO_ROUTES, OutboxRoutes, write_outbox
from fulfil.storage.schema import deliveries, events, held_cards, orders
from suppliers import values
from suppliers.taxonomy import Card

# Keep IN (...) lists well under SQLite's bound-parameter limit.
CHUNK = 500
# Supplier-facing numbers: F + 8-character install id + 10 digits. acg-faka stores request_no as char(19).
MAX_NUMBER_LENGTH = 19
# The attempt states that may still be open at a supplier, as stored (for `attempts.c.state.in_`).
OPEN_STATE_VALUES = [s.value for s in OPEN_ATTEMPT_STATES]
# The order statuses of an order still to be worked on (pending) or being worked on (processing), as stored: an
# engine acts on such an order's attempts and receipts itself.
WAITING_STATUS_VALUES = (OrderStatus.PENDING.value, OrderStatus.PROCESSING.value)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def duplicates_within(fingerprints: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for fp in fingerprints:
        (twice if fp in seen else seen).add(fp)
    return twice


async def delivered_in(conn: AsyncConnection, fingerprints: Sequence[str]) -> set[str]:
    """Which of these card fingerprints were delivered to some order already."""
    found: set[str] = set()
    for part in chunks(sorted(set(fingerprints))):
        result = await conn.execute(select(deliveries.c.fingerprint).where(deliveries.c.fingerprint.in_(part)))
        found.update(result.scalars())
    return found


def order_from_row(row: Row[Any] | Mapping[str, Any]) -> Order:
    m = row._mapping if isinstance(row, Row) else row
    return Order(
        id=m["id"],
        ref=m["ref"],
        sku=m["sku"],
        qty=m["qty"],
        account=m["account"],
        amount=m["amount"],
        status=OrderStatus(m["status"]),
        reason=m["reason"],
        created_at=m["created_at"],
        delivered_at=m["delivered_at"],
        lease_owner=m["lease_owner"],
        lease_expires=m["lease_expires"],
        reissue_of=m.get("reissue_of"),
        avoid_supplier=m.get("avoid_supplier"),
        identities=tuple((kind, m[f"{kind}_hash"]) for kind in IDENTITY_KINDS if m.get(f"{kind}_hash")),
        risk_passed=m.get("risk_passed_at") is not None,
    )


def attempt_from_row(row: Row[Any] | Mapping[str, Any]) -> AttemptRecord:
    m = row._mapping if isinstance(row, Row) else row
    return AttemptRecord(
        id=m["id"],
        order_id=m["order_id"],
        supplier=m["supplier"],
        offer_index=m["offer_index"],
        number=m["number"],
        state=AttemptState(m["state"]),
        started_at=m["started_at"],
        error_class=m["error_class"],
        supplier_order_id=m["supplier_order_id"],
        cost=m["cost"],
        qty=m["qty"],
        sent_at=m["sent_at"],
        finished_at=m["finished_at"],
        evidence=m["evidence"],
        supplier_cost=m["supplier_cost"],
        last_sent_at=m["last_sent_at"],
        next_check_at=m["next_check_at"],
        checks=m["checks"],
    )


async def mark_receipt_applied(conn: AsyncConnection, attempt_id: int, now: datetime) -> None:
    """Part of the transaction that makes an attempt final: its receipt has been acted on."""
    await conn.execute(statements.receipt_applied(), {"p_attempt": attempt_id, "now": now})


class StoreBase:
    """Holds the engine and the cipher; subclasses add the operations."""

    dialect: str
    install_id: str
    # Who wants which notification (fulfil.notify.events.Routes); none: no outbox row is ever written.
    notify_routes: OutboxRoutes = NO_ROUTES

    def __init__(self, engine: AsyncEngine, dialect: str, cipher: CardCipher, install_id: str) -> None:
        self._engine = engine
        self.dialect = dialect
        self._cipher = cipher
        self.install_id = install_id
        self._direct = Direct(engine, dialect)

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"<Store {self.dialect} install={self.install_id}>"

    # -- transactions ---------------------------------------------------------------------------------

    def _one_statement(self, key: Any, build: Any, params: dict[str, Any]) -> Script:
        """A direct script of one statement (`build()`, prepared once under `key`); its rows."""
        rows = yield Step(self._direct.prepared(key, build), params)
        return rows

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE). Commits on exit, rolls back on any exception."""
        try:
            async with self._engine.connect() as conn:
                await conn.execution_options(**{WRITE: True})
                async with conn.begin():
                    yield conn
        except IntegrityError as exc:
            raise Conflict(f"write refused by a constraint: {exc.orig}") from exc
        except DBAPIError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        except StatementError as exc:  # a value we could not bind: naive datetime, data not JSON-able
            raise StoreError(f"cannot store a value: {exc.orig}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        except StatementError as exc:
            raise StoreError(f"cannot use a value: {exc.orig}") from exc

    def _insert_ignore(self, table: Table, keys: list[str]) -> Any:
        """INSERT ... ON CONFLICT (keys) DO NOTHING: a row someone else wrote first is left as it is."""
        insert_ = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return insert_(table).on_conflict_do_nothing(index_elements=keys)

    def _upsert(self, table: Table, values: dict[str, Any], keys: list[str]) -> Any:
        insert_ = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert_(table).values(**values)
        changes = {k: v for k, v in values.items() if k not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=changes)

    async def delivered_fingerprints(self, fingerprints: Iterable[str]) -> set[str]:
        """Which of these were delivered before (the engine's duplicate-key check)."""
        async with self._read() as conn:
            return await delivered_in(conn, list(fingerprints))

    # -- shared pieces of write transactions ----------------------------------------------------------

    async def _fence(self, conn: AsyncConnection, order_id: int, owner: str, now: datetime) -> None:
        """Lock the order row if `owner` still holds it, else LeaseLost (the caller's transaction rolls back).

        An UPDATE rather than a SELECT: it takes the row lock on PostgreSQL, so a claim by another worker
        (FOR UPDATE SKIP LOCKED) cannot slip in between this check and the caller's writes.
        """
        held = await conn.scalar(statements.fence(), {"order_id": order_id, "owner": owner, "now": now})
        if held is None:
            raise LeaseLost(f"order {order_id}: lease no longer held by {owner}")

    def _number(self, attempt_id: int) -> str:
        if not self.install_id:
            raise StoreError("this database has no install id: run `fulfil db upgrade`")
        number = f"F{self.install_id}{attempt_id:010d}"
        if len(number) > MAX_NUMBER_LENGTH:
            # acg-faka keeps request_no in a char(19) column and refuses a longer one: never send one.
            raise StoreError(f"attempt number {number!r} is longer than {MAX_NUMBER_LENGTH} characters")
        return number

    async def _insert_attempt(self, conn: AsyncConnection, values: dict[str, Any]) -> AttemptRecord:
        """One INSERT that picks the new id and makes the number from it (the number is unique, so a clash
        fails the statement rather than sending one number for two attempts)."""
        self._number(0)  # no install id: refuse before writing anything
        stmt = statements.insert_attempt(self.dialect, f"F{self.install_id}", tuple(values), False)
        row = (await conn.execute(stmt, values)).one()
        self._check_number(row.id, row.number)
        return attempt_from_row(row)

    def _check_number(self, attempt_id: int, number: str) -> None:
        """An id past ten digits would make a cut-off number, and a number that is not the attempt's is never sent.
        On SQLite inside the inserting transaction, so it rolls back; PostgreSQL's single INSERT commits on its
        own, and its CHECK (migration 0010) refuses such an id before anything is written."""
        if number != self._number(attempt_id):
            raise StoreError(f"attempt {attempt_id} got the number {number!r}, not {self._number(attempt_id)!r}")

    def _encrypted(self, card: Card) -> dict[str, Any]:
        return {
            "number_enc": self._cipher.encrypt(card.number),
            "password_enc": self._cipher.encrypt(card.password),
            # Bounded here too (not only at the adapter edge): a value wider than its column would make every
            # delivery of the order fail on PostgreSQL. The same helpers as the adapters', so one id is one id.
            "expires": values.expires(card.expires),
            "fingerprint": self._cipher.fingerprint(card),
        }

    def _card(self, m: Any) -> Card:
        return Card(
            password=self._cipher.decrypt(m["password_enc"]),
            number=self._cipher.decrypt(m["number_enc"]),
            expires=m["expires"],
        )

    async def _complete_delivery(
        self,
        conn: AsyncConnection,
        order_id: int,
        attempt_id: int,
        rows: list[dict[str, Any]],
        now: datetime,
        *,
        owner: str | None,
    ) -> None:
        """Order -> delivered, deliveries rows, attempt -> succeeded, its receipt applied.

        With `owner`, the order update is the lease fence (LeaseLost if it is gone). It comes first: it locks
        the order row before the attempt's, in the order every other writer takes them."""
        params = {"order_id": order_id, "owner": owner, "now": now}
        delivered = await conn.scalar(statements.deliver_order(owner is not None), params)
        if delivered is None:
            raise LeaseLost(f"order {order_id}: lease no longer held by {owner}")
        if rows:
            await conn.execute(
                insert(deliveries),
                [{**row, "order_id": order_id, "attempt_id": attempt_id, "created_at": now} for row in rows],
            )
        found = await conn.scalar(
            statements.attempt_succeeded(), {"p_attempt": attempt_id, "p_order": order_id, "now": now}
        )
        if found is None:
            raise NotFound(f"no attempt {attempt_id} for order {order_id}")
        await mark_receipt_applied(conn, attempt_id, now)
        await self._notify(conn, "order.delivered", now, order_id=order_id, data={"status": "delivered"})
        await self._settle_reissue(conn, order_id, now, delivered=True)

    async def _settle_reissue(
        self, conn: AsyncConnection, order_id: int, now: datetime, *, delivered: bool, reason: str | None = None
    ) -> None:
        """Part of the transaction that ends an order: a reissue's case is resolved, or goes to a person."""
        settled = await settle_reissue_case(conn, order_id, now, delivered=delivered, reason=reason)
        if settled is None:
            return
        original, case_no, status = settled
        name = "aftersales.resolved" if delivered else "aftersales.escalated"
        data = {"case_no": case_no, "status": status, "outcome": "reissued" if delivered else None, "reason": reason}
        await self._case_event(conn, name, original, None, data, now)

    async def _case_event(
        self,
        conn: AsyncConnection,
        name: str,
        order_id: int,
        operator: str | None,
        data: dict[str, Any],
        now: datetime,
    ) -> None:
        """An after-sales case's event, in the log and (for the shop and the buyer) in the outbox, with the
        order's ref: a receiver knows which order without asking back."""
        ref = await conn.scalar(select(orders.c.ref).where(orders.c.id == order_id))
        data = {"ref": ref, **data}
        await self._event(conn, name, now, order_id=order_id, operator=operator, data=data)
        await self._notify(conn, name, now, order_id=order_id, data=data)

    async def _hold(
        self, conn: AsyncConnection, attempt_id: int, cards: Sequence[Card], reason: str, now: datetime
    ) -> int:
        """Keep keys charged for but not delivered; the same key held twice for one attempt is a no-op."""
        if not cards:
            return 0
        rows = [
            {**self._encrypted(card), "attempt_id": attempt_id, "reason": reason, "created_at": now} for card in cards
        ]
        stmt = self._insert_ignore(held_cards, ["attempt_id", "fingerprint"]).returning(held_cards.c.id)
        held = len((await conn.execute(stmt, rows)).all())
        await self._event(conn, "cards.held", now, data={"attempt_id": attempt_id, "held": held, "reason": reason})
        return held

    async def _event(
        self,
        conn: AsyncConnection,
        name: str,
        now: datetime,
        *,
        order_id: int | None = None,
        supplier: str | None = None,
        operator: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        await conn.execute(
            insert(events).values(
                at=now, name=name, order_id=order_id, supplier=supplier, operator=operator, data=data or {}
            )
        )

    async def _notify(
        self,
        conn: AsyncConnection,
        event_type: str,
        now: datetime,
        *,
        order_id: int | None = None,
        subject: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """The event's outbox rows in this transaction, when a configured channel wants its type."""
        routes, install = self.notify_routes, self.install_id
        await write_outbox(
            conn, self.dialect, routes, install, event_type, now, order_id=order_id, subject=subject, data=data
        )

    async def _order_by_ref(self, conn: AsyncConnection, ref: str) -> Row[Any] | None:
        return (await conn.execute(select(orders).where(orders.c.ref == ref))).first()
