"""`Store`: the one object the rest of fulfil uses to reach the database.

The operations live in small mixins named after what they touch (orders, attempts, stock, claims, held keys, review);
this module only opens, checks and closes.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from fulfil.crypto import CardCipher
from fulfil.storage import database
from fulfil.storage.errors import StoreError
from fulfil.storage.schema import meta
from fulfil.storage.store_attempts import AttemptOps
from fulfil.storage.store_blocks import BlockOps
from fulfil.storage.store_case_actions import CaseActionOps
from fulfil.storage.store_claims import ClaimOps
from fulfil.storage.store_console import ConsoleOps
from fulfil.storage.store_held import HeldOps
from fulfil.storage.store_notify import NotifyOps
from fulfil.storage.store_operators import OperatorOps
from fulfil.storage.store_orders import OrderOps
from fulfil.storage.store_parking import ParkingOps
from fulfil.storage.store_quality import QualityOps
from fulfil.storage.store_receipts import ReceiptOps
from fulfil.storage.store_reissues import ReissueOps
from fulfil.storage.store_review import ReviewOps
from fulfil.storage.store_risk import RiskOps
from fulfil.storage.store_sources import SourceOps
from fulfil.storage.store_stock import StockOps
from fulfil.storage.store_work import WorkOps
from fulfil.storage.types import SchemaStatus


class Store(
    OrderOps,
    AttemptOps,
    ReceiptOps,
    StockOps,
    ClaimOps,
    HeldOps,
    RiskOps,
    BlockOps,
    ReviewOps,
    ParkingOps,
    CaseActionOps,
    ReissueOps,
    QualityOps,
    WorkOps,
    NotifyOps,
    SourceOps,
    ConsoleOps,
    OperatorOps,
):
    """Orders, attempts, deliveries, stock, held keys, claims, events, cool-downs, supplier quality and shop
    sources' records, on SQLite or PostgreSQL."""

    @classmethod
    async def open(cls, url: str, cipher: CardCipher, *, check_schema: bool = True) -> Store:
        """Connect; with `check_schema`, refuse a database not at this fulfil's schema (SchemaOutOfDate)."""
        if check_schema:
            missing = database.missing_sqlite_file(url)
            if missing:  # say what to do instead of creating an empty file
                raise database.schema_error(SchemaStatus(current=None, head=database.head_revision()))
        dialect, engine = database.create_store_engine(url)
        try:
            install_id = await _read_install_id(engine, check_schema)
            store = cls(engine, dialect, cipher, install_id)
        except BaseException:
            await engine.dispose()
            raise
        try:
            await store._direct.warm()
        except BaseException:
            await store.close()
            raise
        return store

    async def warm_pools(self, engine_connections: int = 2) -> None:
        """For a daemon: open the hot path's connections (PostgreSQL: all of them) and `engine_connections`
        of the engine's pool now, so that serving opens none; the pools open more only for a burst beyond."""
        await self._direct.warm(every=True)
        async with contextlib.AsyncExitStack() as held:  # held at once: the pool has to open that many
            for _ in range(engine_connections):
                await held.enter_async_context(self._engine.connect())

    async def sibling(self) -> Store:
        """Another store on the same database with an engine and connection pool of its own (the notification
        dispatcher's, so its sends never hold the engine's connections; `create_store_engine(side=True)`); the
        same routes."""
        url = self._engine.url.render_as_string(hide_password=False)
        dialect, engine = database.create_store_engine(url, side=True)
        other = type(self)(engine, dialect, self._cipher, self.install_id)
        other.notify_routes = self.notify_routes
        return other

    @staticmethod
    def upgrade(url: str) -> None:
        """Migrate the database to this fulfil's schema (alembic upgrade head). Synchronous."""
        database.upgrade(url)

    async def close(self) -> None:
        await self._direct.close()
        await self._engine.dispose()


async def _read_install_id(engine: AsyncEngine, check_schema: bool) -> str:
    try:
        async with engine.connect() as conn:
            if check_schema:
                current = await conn.run_sync(database.current_revision)
                status = SchemaStatus(current=current, head=database.head_revision())
                if not status.up_to_date:
                    raise database.schema_error(status)
            try:
                value = await conn.scalar(select(meta.c.value).where(meta.c.key == "install_id"))
            except DBAPIError:
                if check_schema:
                    raise
                value = None  # not migrated yet; only `open(check_schema=False)` gets this far
            return value or ""
    except DBAPIError as exc:
        raise StoreError(f"cannot open the database: {exc.orig}") from exc
