"""Source tests: a shop database of their own on the MariaDB/MySQL test server (tests/shopdb.py), and configs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fulfil.config import Config, config_from_data
from tests.shopdb import create_database, drop_database, mysql_server_or_skip

SKU = "steam-100"
TOPUP = "qq-topup"
CARD_PATTERN = "^[A-Z0-9]{16}$"


@pytest.fixture
async def shop_url() -> AsyncIterator[str]:
    """A fresh database with dujiaoka's and acg-faka's tables, dropped after the test."""
    url = await create_database(mysql_server_or_skip())
    try:
        yield url
    finally:
        await drop_database(url)


def shop_config(db_url: str, sources: list[dict[str, Any]], **sections: Any) -> Config:
    """A valid config: a stock supplier for SKU (cards) and one for TOPUP (direct, a fulu offer never reached
    in these tests), the given sources."""
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "daemon": {"poll_interval": "20ms", "batch_size": 50, "concurrency": 8, "lease": "5s",
                   "shutdown_timeout": "2s"},
        "suppliers": [{"name": "shelf", "type": "stock"},
                      {"name": "fulu", "type": "fulu", "base_url": "http://127.0.0.1:9", "app_key": "k",
                       "secret": "0123456789abcdef0123456789abcdef"}],
        "products": {
            SKU: {"card_pattern": CARD_PATTERN, "max_qty": 5, "offers": [{"supplier": "shelf"}]},
            TOPUP: {"kind": "direct", "offers": [{"supplier": "fulu", "product_id": "10003"}]},
        },
        "sources": sources,
        **sections,
    }  # fmt: skip
    return config_from_data(data, environ={})


def dujiaoka_entry(url: str, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "shop",
        "type": "dujiaoka",
        "url": url,
        "poll_interval": "50ms",
        "goods": {"12": SKU, "13": TOPUP, "14": SKU},
        "account_field": "充值账号",
        "rescue_abnormal": ["14"],
        "timeout": "5s",
        "retry_backoff": "50ms",
        "max_backoff": "200ms",
    }
    entry.update(changes)
    return entry


def acg_entry(url: str, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "faka",
        "type": "acg_faka_shop",
        "url": url,
        "poll_interval": "50ms",
        "goods": {"3": SKU, "4": TOPUP},
        "account_field": "account",
        "timeout": "5s",
        "retry_backoff": "50ms",
        "max_backoff": "200ms",
    }
    entry.update(changes)
    return entry


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.05) -> None:
    """Wait until `check()` is true; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(every)
