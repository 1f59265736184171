"""Shop databases for tests: a MariaDB/MySQL database per test with dujiaoka's and acg-faka's tables.

The server comes from FULFIL_TEST_MYSQL_URL (e.g. mysql+asyncmy://root@127.0.0.1:3306/test, as .ci/run sets
it). Unset, the tests that need it skip; with CI=true they fail instead, as the PostgreSQL ones do. Each test
gets a database of its own (`fulfil_shop_<pid>_<random>`), dropped afterwards; databases of runs that were
killed are dropped by the next run.

The DDL below is written from the shops' facts as issue 9 gives them (and Laravel's timestamps on dujiaoka's
`orders`), not copied from either project: the columns fulfil reads and writes, with their types, plus a few
others a real row has.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

T = TypeVar("T")
MYSQL_ENV = "FULFIL_TEST_MYSQL_URL"
PREFIX = "fulfil_shop_"

DUJIAOKA_DDL = [
    """
    CREATE TABLE `{p}orders` (
      `id` bigint NOT NULL AUTO_INCREMENT,
      `order_sn` varchar(150) NOT NULL,
      `goods_id` int NOT NULL,
      `title` varchar(200) NOT NULL DEFAULT '',
      `type` tinyint(1) NOT NULL DEFAULT 1,
      `goods_price` decimal(10,2) NOT NULL DEFAULT 0.00,
      `buy_amount` int NOT NULL DEFAULT 1,
      `total_price` decimal(10,2) NOT NULL DEFAULT 0.00,
      `actual_price` decimal(10,2) NOT NULL DEFAULT 0.00,
      `search_pwd` varchar(200) DEFAULT '',
      `email` varchar(200) NOT NULL,
      `info` text,
      `pay_id` int DEFAULT NULL,
      `buy_ip` varchar(50) NOT NULL,
      `trade_no` varchar(200) DEFAULT '',
      `status` tinyint(1) NOT NULL DEFAULT 1,
      `created_at` timestamp NULL DEFAULT NULL,
      `updated_at` timestamp NULL DEFAULT NULL,
      `deleted_at` timestamp NULL DEFAULT NULL,
      PRIMARY KEY (`id`),
      UNIQUE KEY `orders_order_sn_unique` (`order_sn`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
    """,
    """
    CREATE TABLE `{p}goods` (
      `id` int NOT NULL AUTO_INCREMENT,
      `gd_name` varchar(200) NOT NULL,
      `type` tinyint(1) NOT NULL DEFAULT 1,
      `other_ipu_cnf` text,
      `api_hook` text,
      `deleted_at` timestamp NULL DEFAULT NULL,
      PRIMARY KEY (`id`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
    """,
]

ACG_DDL = [
    """
    CREATE TABLE `{p}commodity` (
      `id` int unsigned NOT NULL AUTO_INCREMENT,
      `name` varchar(255) NOT NULL,
      `delivery_way` tinyint unsigned NOT NULL DEFAULT 0,
      `widget` text,
      PRIMARY KEY (`id`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci
    """,
    """
    CREATE TABLE `{p}order` (
      `id` int unsigned NOT NULL AUTO_INCREMENT,
      `owner` int unsigned NOT NULL DEFAULT 0,
      `trade_no` char(19) NOT NULL,
      `amount` decimal(10,2) unsigned NOT NULL,
      `commodity_id` int unsigned NOT NULL,
      `card_num` int unsigned NOT NULL DEFAULT 0,
      `pay_id` int unsigned NOT NULL DEFAULT 1,
      `create_time` datetime NOT NULL,
      `create_ip` varchar(64) NOT NULL,
      `create_device` tinyint unsigned NOT NULL DEFAULT 0,
      `pay_time` datetime DEFAULT NULL,
      `status` tinyint unsigned NOT NULL DEFAULT 0,
      `secret` longtext,
      `password` varchar(32) DEFAULT NULL,
      `contact` varchar(32) DEFAULT NULL,
      `delivery_status` tinyint unsigned NOT NULL DEFAULT 0,
      `widget` text,
      `request_no` char(19) DEFAULT NULL,
      PRIMARY KEY (`id`),
      UNIQUE KEY `trade_no` (`trade_no`),
      KEY `commodity_id` (`commodity_id`),
      KEY `delivery_status` (`delivery_status`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci
    """,
]


def mysql_server_or_skip() -> str:
    url = os.environ.get(MYSQL_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MYSQL_ENV} is not set but CI=true: the shop (MySQL/MariaDB) tests must run in CI")
        pytest.skip(f"{MYSQL_ENV} not set")
    return url


def _engine(url: str) -> AsyncEngine:
    return create_async_engine(make_url(url).set(drivername="mysql+asyncmy"), poolclass=NullPool)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """For synchronous tests (acceptance): run one of the async helpers here."""
    return asyncio.run(coro)


async def create_database(server_url: str, *, dujiaoka: bool = True, acg: bool = True, acg_prefix: str = "acg_") -> str:
    """A new database on the test server with the shops' tables; its URL."""
    admin = _engine(server_url)
    name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    try:
        async with admin.begin() as conn:
            await _drop_abandoned(conn)
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    finally:
        await admin.dispose()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = _engine(url)
    try:
        async with engine.begin() as conn:
            for ddl in (DUJIAOKA_DDL if dujiaoka else []):
                await conn.execute(text(ddl.format(p="")))
            for ddl in (ACG_DDL if acg else []):
                await conn.execute(text(ddl.format(p=acg_prefix)))
    finally:
        await engine.dispose()
    return url


async def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = _engine(make_url(url).set(database="mysql").render_as_string(hide_password=False))
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await admin.dispose()


async def _drop_abandoned(conn: Any) -> None:
    names = (await conn.execute(text("SHOW DATABASES LIKE :p"), {"p": PREFIX.replace("_", "\\_") + "%"})).scalars()
    for name in list(names):
        try:
            pid = int(name.removeprefix(PREFIX).split("_")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        except (ValueError, PermissionError):
            pass


@asynccontextmanager
async def connect(url: str) -> Any:
    engine = _engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET time_zone = '+00:00'"))
            yield conn
    finally:
        await engine.dispose()


async def execute(url: str, sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run one statement (executemany with a list of params); rows matched."""
    async with connect(url) as conn:
        result = await conn.execute(text(sql), params if params is not None else {})
        return int(result.rowcount)


async def rows(url: str, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    async with connect(url) as conn:
        return [dict(row._mapping) for row in await conn.execute(text(sql), params or {})]


# --- dujiaoka rows ------------------------------------------------------------------------------------------


def dujiaoka_order(
    order_sn: str,
    goods_id: int,
    *,
    type_: int = 2,
    status: int = 2,
    buy_amount: int = 1,
    info: str | None = None,
    email: str = "buyer@example.com",
    actual_price: str = "10.00",
    deleted: bool = False,
) -> dict[str, Any]:
    return {
        "order_sn": order_sn,
        "goods_id": goods_id,
        "title": f"goods {goods_id}",
        "type": type_,
        "buy_amount": buy_amount,
        "actual_price": Decimal(actual_price),
        "total_price": Decimal(actual_price),
        "email": email,
        "info": info,
        "buy_ip": "203.0.113.7",
        "status": status,
        "deleted": 1 if deleted else 0,
    }


async def insert_dujiaoka(url: str, orders: Iterable[Mapping[str, Any]]) -> None:
    batch = list(orders)
    if not batch:
        return
    await execute(
        url,
        "INSERT INTO orders (order_sn, goods_id, title, type, buy_amount, actual_price, total_price, email, info, "
        "buy_ip, status, created_at, updated_at, deleted_at) VALUES (:order_sn, :goods_id, :title, :type, "
        ":buy_amount, :actual_price, :total_price, :email, :info, :buy_ip, :status, NOW() - INTERVAL 1 HOUR, "
        "NOW() - INTERVAL 1 HOUR, IF(:deleted, NOW(), NULL))",
        batch,
    )


async def dujiaoka_rows(url: str) -> dict[str, dict[str, Any]]:
    return {r["order_sn"]: r for r in await rows(url, "SELECT * FROM orders ORDER BY id")}


# --- acg-faka rows ------------------------------------------------------------------------------------------


def acg_order(
    trade_no: str,
    commodity_id: int,
    *,
    card_num: int = 1,
    status: int = 1,
    delivery_status: int = 0,
    widget: str | None = None,
    secret: str | None = "请稍候，正在为您发货",
    amount: str = "10.00",
    contact: str = "buyer@example.com",
) -> dict[str, Any]:
    return {
        "trade_no": trade_no,
        "commodity_id": commodity_id,
        "card_num": card_num,
        "status": status,
        "delivery_status": delivery_status,
        "widget": widget,
        "secret": secret,
        "amount": Decimal(amount),
        "contact": contact,
    }


async def insert_acg(url: str, orders: Iterable[Mapping[str, Any]], prefix: str = "acg_") -> None:
    batch = list(orders)
    if not batch:
        return
    await execute(
        url,
        f"INSERT INTO {prefix}order (trade_no, commodity_id, card_num, status, delivery_status, widget, secret, "
        "amount, contact, create_time, create_ip, pay_time) VALUES (:trade_no, :commodity_id, :card_num, :status, "
        ":delivery_status, :widget, :secret, :amount, :contact, NOW(), '198.51.100.9', NOW())",
        batch,
    )


async def insert_commodities(url: str, commodities: Iterable[tuple[int, str, int]], prefix: str = "acg_") -> None:
    batch = [{"id": i, "name": n, "way": w} for i, n, w in commodities]
    await execute(url, f"INSERT INTO {prefix}commodity (id, name, delivery_way) VALUES (:id, :name, :way)", batch)


async def acg_rows(url: str, prefix: str = "acg_") -> dict[str, dict[str, Any]]:
    return {r["trade_no"]: r for r in await rows(url, f"SELECT * FROM {prefix}order ORDER BY id")}
