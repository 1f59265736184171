"""dujiaoka (PHP/Laravel, MySQL/MariaDB): its `orders` table, read and written directly.

Facts of the shop this module relies on (table `orders`, Laravel's `DB_PREFIX` as `table_prefix`, default none):

- `order_sn` varchar(150) unique: the order number (fulfil's ref); `goods_id`; `buy_amount` (quantity);
  `email` (the buyer's contact); `info` text; `type` 1 automatic / 2 manual; `actual_price`; `buy_ip`;
  `status` 1 awaiting payment, 2 pending, 3 processing, 4 completed, 5 failed, 6 abnormal, -1 expired; soft
  delete `deleted_at` (only rows where it is NULL count); Laravel's `updated_at` timestamp.
- A paid order of manual goods waits at `status = 2` with the buyer's inputs in `info` as `label:value` lines.
  Automatic goods whose keys ran out: `status = 6`, `info` overwritten with the shop's error text.

What fulfil does here: takes mapped `type = 2, status = 2` orders (and `type = 1, status = 6` ones of goods in
`rescue_abnormal`) with one conditional update per row, `status -> 3` and `updated_at` set to a second fulfil
chose (its mark), `WHERE status = <seen>`; on delivery appends the keys to `info` (manual: after the buyer's
inputs; abnormal: replacing the error text) and sets `status = 4`, only `WHERE status = 3 AND updated_at =
<mark>`: a row a person saved in the admin meanwhile (a new `updated_at`) is never overwritten. A final failure
sets `status = 5`, same condition. dujiaoka mails the buyer when an admin saves a manual order; a direct write
does not (see README: fulfil's own buyer notifications).

The mark is to the second (Laravel's `updated_at` is a TIMESTAMP(0)): a person who saves the row in the admin
within the very second of fulfil's take, leaving status 3, cannot be told from fulfil; any status they set can.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import TableClause, and_, column, func, or_, select, table, update

from fulfil import failpoints
from fulfil.config import SourceConfig
from fulfil.sources import text
from fulfil.sources.base import (
    Check,
    Examined,
    RowState,
    ShopOrder,
    ShopRefused,
    Source,
    SourceError,
    Taken,
    WriteOutcome,
    Written,
)
from fulfil.sources.shopdb import column_check, rows_changed, shop_connection, shop_engine, table_columns

AWAITING_PAYMENT, PENDING, PROCESSING, COMPLETED, FAILED, ABNORMAL, EXPIRED = 1, 2, 3, 4, 5, 6, -1
AUTOMATIC, MANUAL = 1, 2
MARK_FORMAT = "%Y-%m-%d %H:%M:%S"
COLUMNS = ("id", "order_sn", "goods_id", "buy_amount", "email", "info", "type", "status", "actual_price",
           "buy_ip", "deleted_at", "updated_at")  # fmt: skip


def orders_table(prefix: str) -> TableClause:
    return table(f"{prefix}orders", *(column(name) for name in COLUMNS))


def parse_mark(mark: str | None) -> datetime | None:
    return datetime.strptime(mark, MARK_FORMAT) if mark else None


class DujiaokaSource(Source):
    type_name: ClassVar[str] = "dujiaoka"
    marks_taken: ClassVar[bool] = True

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self.prefix = config.table_prefix if config.table_prefix is not None else ""
        self.orders = orders_table(self.prefix)
        self.manual = sorted(int(goods) for goods in config.goods)
        self.rescue = sorted(int(goods) for goods in config.rescue_abnormal)
        self.timeout = config.timeout
        self._engine = shop_engine(config.url, config.timeout)

    # --- reading --------------------------------------------------------------------------------------

    def _waiting(self) -> Any:
        o = self.orders.c
        wanted = [and_(o.type == MANUAL, o.status == PENDING, o.goods_id.in_(self.manual))]
        if self.rescue:
            wanted.append(and_(o.type == AUTOMATIC, o.status == ABNORMAL, o.goods_id.in_(self.rescue)))
        return and_(o.deleted_at.is_(None), or_(*wanted))

    async def poll(self, after: int, limit: int) -> list[ShopOrder]:
        o = self.orders.c
        if not self.manual:
            return []
        stmt = (
            select(o.id, o.order_sn, o.goods_id, o.buy_amount, o.email, o.info, o.type, o.status, o.actual_price,
                   o.buy_ip)  # fmt: skip
            .where(self._waiting(), o.id > after)
            .order_by(o.id)
            .limit(limit)
        )
        async with shop_connection(self._engine, self.timeout) as conn:
            rows = (await conn.execute(stmt)).all()
        return [self._order(row._mapping) for row in rows]

    def _order(self, m: Any) -> ShopOrder:
        abnormal = m["status"] == ABNORMAL
        problem = None
        account = None
        try:
            # An abnormal order's info is the shop's error text: the buyer's inputs are gone, there is no account.
            account = None if abnormal else text.account_from_info(m["info"], self.config.account_field)
        except text.RowProblem as exc:
            problem = str(exc)
        return ShopOrder(
            ref=str(m["order_sn"]),
            row_id=int(m["id"]),
            goods_id=str(m["goods_id"]),
            qty=int(m["buy_amount"]) if m["buy_amount"] is not None else 0,
            status=int(m["status"]),
            kind="abnormal" if abnormal else "manual",
            account=account,
            amount=Decimal(m["actual_price"]) if m["actual_price"] is not None else None,
            problem=problem,
            contact=m["email"],
            ip=m["buy_ip"],
        )

    async def unmapped(self) -> dict[str, int]:
        o = self.orders.c
        mapped_manual = and_(o.type == MANUAL, o.goods_id.in_(self.manual)) if self.manual else None
        waiting = or_(and_(o.type == MANUAL, o.status == PENDING), and_(o.type == AUTOMATIC, o.status == ABNORMAL))
        stmt = select(o.goods_id, func.count()).where(o.deleted_at.is_(None), waiting)
        if mapped_manual is not None:
            stmt = stmt.where(~mapped_manual)
        if self.rescue:
            stmt = stmt.where(~and_(o.type == AUTOMATIC, o.goods_id.in_(self.rescue)))
        async with shop_connection(self._engine, self.timeout) as conn:
            rows = (await conn.execute(stmt.group_by(o.goods_id))).all()
        return {str(goods): int(count) for goods, count in rows}

    # --- taking ---------------------------------------------------------------------------------------

    def new_mark(self, now: datetime) -> str:
        return now.astimezone(UTC).strftime(MARK_FORMAT)

    async def take(self, orders: Sequence[ShopOrder], mark: str | None) -> set[str]:
        o = self.orders.c
        ours: set[str] = set()
        async with shop_connection(self._engine, self.timeout, write=True) as conn:
            for order in orders:
                kind = AUTOMATIC if order.kind == "abnormal" else MANUAL
                result = await conn.execute(
                    update(self.orders)
                    .where(o.id == order.row_id, o.order_sn == order.ref, o.status == order.status, o.type == kind,
                           o.deleted_at.is_(None))  # fmt: skip
                    .values(status=PROCESSING, updated_at=parse_mark(mark))
                )
                if rows_changed(result) == 1:
                    ours.add(order.ref)
        return ours

    async def examine(self, taken: Taken) -> Examined:
        row = await self._row(taken, lock=False)
        return _state(row, taken)

    async def _row(self, taken: Taken, *, lock: bool, conn: Any = None) -> Any:
        o = self.orders.c
        stmt = select(o.status, o.type, o.info, o.updated_at, o.deleted_at).where(
            o.id == taken.row_id, o.order_sn == taken.ref
        )
        if conn is not None:
            return (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
        async with shop_connection(self._engine, self.timeout) as fresh:
            return (await fresh.execute(stmt)).first()

    # --- writing back ---------------------------------------------------------------------------------

    async def write_delivered(self, taken: Taken, lines: Sequence[str]) -> WriteOutcome:
        manual = taken.kind != "abnormal"
        async with shop_connection(self._engine, self.timeout, write=True) as conn:
            row = await self._row(taken, lock=True, conn=conn)
            state = _state(row, taken)
            if state.state is not RowState.OURS:
                if row is not None and row.status == COMPLETED and text.holds(row.info, lines, after_inputs=manual):
                    return WriteOutcome(Written.ALREADY)
                return WriteOutcome(Written.CHANGED, state.detail)
            info = text.appended(row.info, lines) if manual else "\n".join(lines)
            if not text.size_ok(info):
                raise ShopRefused(f"the keys do not fit the order's info column ({text.MAX_INFO_BYTES} bytes)",
                                  lasting=True)  # fmt: skip
            await self._set(conn, taken, status=COMPLETED, info=info)
            await failpoints.pause("source_in_write")
        return WriteOutcome(Written.WRITTEN)

    async def write_failed(self, taken: Taken, reason: str) -> WriteOutcome:
        async with shop_connection(self._engine, self.timeout, write=True) as conn:
            row = await self._row(taken, lock=True, conn=conn)
            state = _state(row, taken)
            if state.state is not RowState.OURS:
                if row is not None and row.status == FAILED and row.deleted_at is None:
                    return WriteOutcome(Written.ALREADY)
                return WriteOutcome(Written.CHANGED, state.detail)
            await self._set(conn, taken, status=FAILED)
            await failpoints.pause("source_in_write")
        return WriteOutcome(Written.WRITTEN)

    async def _set(self, conn: Any, taken: Taken, **values: Any) -> None:
        o = self.orders.c
        result = await conn.execute(
            update(self.orders)
            .where(o.id == taken.row_id, o.order_sn == taken.ref, o.status == PROCESSING,
                   o.updated_at == parse_mark(taken.mark))  # fmt: skip
            .values(**values, updated_at=func.now())
        )
        if rows_changed(result) != 1:  # the row is locked FOR UPDATE: only a bug gets here
            raise SourceError(f"order {taken.ref}: the conditional write changed {rows_changed(result)} rows")

    # --- checking -------------------------------------------------------------------------------------

    async def check(self) -> list[Check]:
        name = f"{self.prefix}orders"
        async with shop_connection(self._engine, self.timeout) as conn:
            version = await conn.scalar(select(func.version()))
            found = await table_columns(conn, name)
        return [Check(True, f"connected: MySQL/MariaDB {version}"), column_check(name, found, COLUMNS)]

    async def aclose(self) -> None:
        await self._engine.dispose()


def _state(row: Any, taken: Taken) -> Examined:
    """The shop row against fulfil's record of taking it."""
    if row is None:
        return Examined(RowState.GONE, "the order is no longer in the shop's table")
    if row.deleted_at is not None:
        return Examined(RowState.CHANGED, "deleted at the shop")
    if row.status == PROCESSING and row.updated_at == parse_mark(taken.mark):
        return Examined(RowState.OURS)
    if row.status == taken.seen_status:
        return Examined(RowState.AS_SEEN)
    saved = "" if row.status != PROCESSING else " (saved by someone else since fulfil took it)"
    return Examined(RowState.CHANGED, f"status is {row.status}{saved}")
