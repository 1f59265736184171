"""Writing outbox rows inside another operation's transaction (the transactional outbox).

The store holds `notify_routes` (set from the config's `notify:` by whoever opens it for a daemon or a
command). A change calls `write_outbox` in its own transaction: nothing at all when no channel subscribes to
the event's type, else one INSERT of one row per subscribed channel. ON CONFLICT DO NOTHING on (channel, key):
an event that happens once per order can never be written twice, whoever writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.storage.dbclock import db_after
from fulfil.storage.schema import alert_state, outbox

# Events of the event log that are operator alerts too (raised in the transaction that records them).
ALERT_EVENTS = frozenset(
    {
        "supplier.breaker_opened",
        "supplier.breaker_closed",
        "supplier.balance_low",
        "supplier.demoted",
        "supplier.account",
        "supplier.our_bug",
        "supplier.non_keys",
    }
)


class OutboxRoutes(Protocol):
    """`fulfil.notify.events.Routes`: which channels want a type, and the rows of one event."""

    @property
    def alert_quiet(self) -> float: ...

    def wants(self, event_type: str) -> bool: ...

    def rows(
        self,
        install_id: str,
        event_type: str,
        now: datetime,
        *,
        order_id: int | None = None,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]: ...


class _NoRoutes:
    alert_quiet = 0.0

    def wants(self, event_type: str) -> bool:
        return False

    def rows(self, install_id: str, event_type: str, now: datetime, **_: Any) -> list[dict[str, Any]]:
        return []


NO_ROUTES: OutboxRoutes = _NoRoutes()


_INSERTS: dict[str, Any] = {}


def insert_outbox(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (channel, key) DO NOTHING, built once per dialect (it is on the delivery path)."""
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = _INSERTS[dialect] = insert_(outbox).on_conflict_do_nothing(index_elements=["channel", "key"])
    return stmt


async def write_rows(conn: AsyncConnection, dialect: str, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert_outbox(dialect), list(rows))


async def write_outbox(
    conn: AsyncConnection,
    dialect: str,
    routes: OutboxRoutes,
    install_id: str,
    event_type: str,
    now: datetime,
    *,
    order_id: int | None = None,
    subject: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Part of the caller's transaction: this event's outbox rows, if any channel wants it."""
    if not routes.wants(event_type):
        return
    rows = routes.rows(install_id, event_type, now, order_id=order_id, subject=subject, data=data)
    await write_rows(conn, dialect, rows)


async def write_outbox_many(
    conn: AsyncConnection,
    dialect: str,
    routes: OutboxRoutes,
    install_id: str,
    event_type: str,
    order_ids: Sequence[int],
    now: datetime,
    data: Mapping[str, Any],
) -> None:
    """Part of the caller's transaction: one event of this type per order, one INSERT for all (e.g.
    `order.accepted` for every order an intake took in, whichever intake: CLI, HTTP, a shop source)."""
    if not order_ids or not routes.wants(event_type):
        return
    rows = [
        row
        for order_id in order_ids
        for row in routes.rows(install_id, event_type, now, order_id=order_id, data=data)
    ]
    await write_rows(conn, dialect, rows)


async def raise_alert(
    conn: AsyncConnection,
    dialect: str,
    routes: OutboxRoutes,
    install_id: str,
    kind: str,
    subject: str,
    data: Mapping[str, Any],
    quiet: float,
    now: datetime,
) -> bool:
    """Part of the caller's transaction: an operator alert (`supplier.alert` for kinds `supplier.*`, else
    `system.alert`), once per `quiet` seconds per (kind, subject) whichever daemon raises it. True if raised."""
    event_type = "supplier.alert" if kind.startswith("supplier.") else "system.alert"
    if not routes.wants(event_type):
        return False
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One conditional upsert decides, so two daemons seeing the same thing raise it once.
    # On the database's clock, like leases: daemons whose clocks disagree still keep one quiet period.
    new = insert_(alert_state).values(key=f"{kind}:{subject}"[:200], last_at=db_after(dialect, 0))
    stmt = new.on_conflict_do_update(
        index_elements=["key"],
        set_={"last_at": db_after(dialect, 0)},
        where=alert_state.c.last_at <= db_after(dialect, -quiet),
    ).returning(alert_state.c.key)
    if await conn.scalar(stmt) is None:
        return False
    payload = {"kind": kind, "subject": subject, **data}
    await write_outbox(conn, dialect, routes, install_id, event_type, now, subject=subject, data=payload)
    return True


async def alert_for_event(
    conn: AsyncConnection,
    dialect: str,
    routes: OutboxRoutes,
    install_id: str,
    name: str,
    supplier: str | None,
    data: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    """Part of the transaction that records event `name`: the operator alert it is, if it is one."""
    if name in ALERT_EVENTS and routes.wants("supplier.alert"):
        await raise_alert(
            conn, dialect, routes, install_id, name, supplier or "-", _alert_data(data), routes.alert_quiet, now
        )


def _alert_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an alert carries of an event's data: small scalar facts (no evidence bodies, no keys)."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if isinstance(value, bool | int | float) or value is None:
            out[str(key)] = value
        elif isinstance(value, str):
            out[str(key)] = value[:300]
    return out
