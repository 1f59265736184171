"""acg-faka as a shop (PHP, MySQL/MariaDB): its `order` table, read and written directly.

Facts this module relies on (tables `<prefix>order` and `<prefix>commodity`, prefix `acg_` by default):

- `trade_no` char(19) unique: the order number (fulfil's ref); `commodity_id`; `card_num` (quantity); `status`
  0 unpaid / 1 paid; `delivery_status` 0 not delivered / 1 delivered; `secret` longtext: what the buyer sees as
  the keys (at payment the shop puts its delivery message or a "please wait" text there); `contact`; `widget`:
  JSON of the buyer's inputs, `{"<name>": {"value": ..., "cn": ...}}`; `create_ip`; `amount`.
- goods: `<prefix>commodity.delivery_way` 0 automatic (the shop's own keys) / 1 manual.

acg-faka has no "processing" state: fulfil's own record of taking an order is the only mark (`marks_taken` is
False), and the write-back is conditional on `delivery_status = 0`: `secret` gets the keys (one per line,
replacing the shop's text) and `delivery_status = 1`. "Delivered" is judged by `delivery_status`, never by
`secret` being empty. A failed order keeps `delivery_status = 0` (the shop's admin still sees it undelivered, to
refund) and, unless `failure_text` is null, `secret` says so to the buyer. acg-faka has no "abnormal" state,
so there is nothing to rescue.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import TableClause, column, func, select, table, update

from fulfil import failpoints
from fulfil.config import SourceConfig
from fulfil.sources import text
from fulfil.sources.base import Check, Examined, RowState, ShopOrder, Source, SourceError, Taken, WriteOutcome, Written
from fulfil.sources.shopdb import column_check, rows_changed, shop_connection, shop_engine, table_columns

UNPAID, PAID = 0, 1
NOT_DELIVERED, DELIVERED = 0, 1
AUTOMATIC_DELIVERY, MANUAL_DELIVERY = 0, 1
ORDER_COLUMNS = ("id", "trade_no", "commodity_id", "card_num", "status", "delivery_status", "secret", "contact",
                 "widget", "create_ip", "amount")  # fmt: skip
COMMODITY_COLUMNS = ("id", "name", "delivery_way")


def order_table(prefix: str) -> TableClause:
    return table(f"{prefix}order", *(column(name) for name in ORDER_COLUMNS))


def commodity_table(prefix: str) -> TableClause:
    return table(f"{prefix}commodity", *(column(name) for name in COMMODITY_COLUMNS))


class AcgFakaShopSource(Source):
    type_name: ClassVar[str] = "acg_faka_shop"
    marks_taken: ClassVar[bool] = False

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self.prefix = config.table_prefix if config.table_prefix is not None else "acg_"
        self.orders = order_table(self.prefix)
        self.commodities = commodity_table(self.prefix)
        self.goods = sorted(int(goods) for goods in config.goods)
        self.timeout = config.timeout
        self._engine = shop_engine(config.url, config.timeout)

    async def poll(self, after: int, limit: int) -> list[ShopOrder]:
        o = self.orders.c
        if not self.goods:
            return []
        stmt = (
            select(o.id, o.trade_no, o.commodity_id, o.card_num, o.status, o.contact, o.widget, o.create_ip, o.amount)
            .where(o.status == PAID, o.delivery_status == NOT_DELIVERED, o.commodity_id.in_(self.goods), o.id > after)
            .order_by(o.id)
            .limit(limit)
        )
        async with shop_connection(self._engine, self.timeout) as conn:
            rows = (await conn.execute(stmt)).all()
        return [self._order(row._mapping) for row in rows]

    def _order(self, m: Any) -> ShopOrder:
        problem = None
        account = None
        try:
            account = text.account_from_widget(m["widget"], self.config.account_field)
        except text.RowProblem as exc:
            problem = str(exc)
        return ShopOrder(
            ref=str(m["trade_no"]).strip(),
            row_id=int(m["id"]),
            goods_id=str(m["commodity_id"]),
            qty=int(m["card_num"]) if m["card_num"] is not None else 0,
            status=int(m["status"]),
            kind="manual",
            account=account,
            amount=Decimal(m["amount"]) if m["amount"] is not None else None,
            problem=problem,
            contact=m["contact"],
            ip=m["create_ip"],
        )

    async def unmapped(self) -> dict[str, int]:
        o = self.orders.c
        stmt = select(o.commodity_id, func.count()).where(o.status == PAID, o.delivery_status == NOT_DELIVERED)
        if self.goods:
            stmt = stmt.where(o.commodity_id.not_in(self.goods))
        async with shop_connection(self._engine, self.timeout) as conn:
            rows = (await conn.execute(stmt.group_by(o.commodity_id))).all()
        return {str(goods): int(count) for goods, count in rows}

    async def examine(self, taken: Taken) -> Examined:
        async with shop_connection(self._engine, self.timeout) as conn:
            row = await self._row(conn, taken, lock=False)
        if row is None:
            return Examined(RowState.GONE, "the order is no longer in the shop's table")
        if row.delivery_status == NOT_DELIVERED and row.status == PAID:
            return Examined(RowState.OURS)  # fulfil's record is the mark: untouched means still ours
        return Examined(RowState.CHANGED, f"delivery_status is {row.delivery_status}, status {row.status}")

    async def _row(self, conn: Any, taken: Taken, *, lock: bool) -> Any:
        o = self.orders.c
        stmt = select(o.status, o.delivery_status, o.secret).where(o.id == taken.row_id, o.trade_no == taken.ref)
        return (await conn.execute(stmt.with_for_update() if lock else stmt)).first()

    async def write_delivered(self, taken: Taken, lines: Sequence[str]) -> WriteOutcome:
        secret = "\n".join(lines)
        async with shop_connection(self._engine, self.timeout, write=True) as conn:
            row = await self._row(conn, taken, lock=True)
            if row is None:
                return WriteOutcome(Written.CHANGED, "the order is no longer in the shop's table")
            if row.delivery_status != NOT_DELIVERED or row.status != PAID:
                if row.delivery_status == DELIVERED and row.secret == secret:
                    return WriteOutcome(Written.ALREADY)
                return WriteOutcome(Written.CHANGED, f"delivery_status is {row.delivery_status} (delivered by someone)")
            await self._set(conn, taken, secret=secret, delivery_status=DELIVERED)
            await failpoints.pause("source_in_write")
        return WriteOutcome(Written.WRITTEN)

    async def write_failed(self, taken: Taken, reason: str) -> WriteOutcome:
        failure = self.config.failure_text
        async with shop_connection(self._engine, self.timeout, write=True) as conn:
            row = await self._row(conn, taken, lock=True)
            if row is None:
                return WriteOutcome(Written.CHANGED, "the order is no longer in the shop's table")
            if row.delivery_status != NOT_DELIVERED:
                return WriteOutcome(Written.CHANGED, f"delivery_status is {row.delivery_status} (delivered by someone)")
            if failure is None or row.secret == failure:
                return WriteOutcome(Written.ALREADY)
            await self._set(conn, taken, secret=failure)
            await failpoints.pause("source_in_write")
        return WriteOutcome(Written.WRITTEN)

    async def _set(self, conn: Any, taken: Taken, **values: Any) -> None:
        o = self.orders.c
        result = await conn.execute(
            update(self.orders)
            .where(o.id == taken.row_id, o.trade_no == taken.ref, o.delivery_status == NOT_DELIVERED)
            .values(**values)
        )
        if rows_changed(result) != 1:  # the row is locked FOR UPDATE: only a bug gets here
            raise SourceError(f"order {taken.ref}: the conditional write changed {rows_changed(result)} rows")

    async def check(self) -> list[Check]:
        checks: list[Check] = []
        async with shop_connection(self._engine, self.timeout) as conn:
            version = await conn.scalar(select(func.version()))
            checks.append(Check(True, f"connected: MySQL/MariaDB {version}"))
            for name, wanted in (("order", ORDER_COLUMNS), ("commodity", COMMODITY_COLUMNS)):
                name = f"{self.prefix}{name}"
                checks.append(column_check(name, await table_columns(conn, name), wanted))
            if self.goods and all(check.ok for check in checks):
                checks.extend(await self._check_goods(conn))
        return checks

    async def _check_goods(self, conn: Any) -> list[Check]:
        """Mapped goods should be manual-delivery ones: the shop delivers automatic goods itself."""
        c = self.commodities.c
        rows = await conn.execute(select(c.id, c.name, c.delivery_way).where(c.id.in_(self.goods)))
        seen = {str(row.id): row for row in rows}
        checks = []
        for goods in sorted(self.config.goods, key=int):
            row = seen.get(goods)
            if row is None:
                checks.append(Check(False, f"goods {goods}: no such commodity at the shop"))
            elif row.delivery_way != MANUAL_DELIVERY:
                why = "automatic: the shop delivers it from its own keys; map manual-delivery goods"
                checks.append(Check(False, f"goods {goods} ({row.name}): delivery_way {row.delivery_way} is {why}"))
            else:
                checks.append(Check(True, f"goods {goods} ({row.name}): manual delivery"))
        return checks

    async def aclose(self) -> None:
        await self._engine.dispose()
