"""The adapter contract suite's one parametrized fixture: every contract test runs against every adapter kind.

Like procrastinate's acceptance tests run against each connector, `supplier_under_test` yields
(adapter, harness) for fulu and acg_faka talking over loopback HTTP to the real simulator (in-process), and
for the stock adapter on a real migrated SQLite database and a real PostgreSQL schema (the latter `pg`).
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from contractkit import (
    ACG_PRODUCTS,
    FULU_PRODUCTS,
    GROUPED_PATTERN,
    KEY_PATTERN,
    NUMBER_PATTERN,
    Harness,
    acg_scenario,
    fulu_scenario,
    sim_supplier,
    stock_keys,
)

from fulfil.config import SupplierConfig
from fulfil.crypto import CardCipher
from fulfil.storage import Store
from suppliers.base import Supplier
from suppliers.registry import build_supplier
from suppliers.sim import running_sim

STOCK_POOL = "contract-pool"
STOCK_KEYS = 20

ADAPTER_KINDS = [
    "fulu",
    "acg_faka",
    "stock-sqlite",
    pytest.param("stock-pg", marks=pytest.mark.pg),
]


@contextmanager
def stock_database(request: pytest.FixtureRequest, database: str, directory: Path) -> Iterator[str]:
    """A migrated database for the stock adapter, from the shared fixtures of tests/conftest.py.

    `store` there is parametrized over both databases for every test that asks for it; here only the stock
    variants need a database, so the session fixtures behind it (the migrated SQLite template, the pool of
    migrated PostgreSQL schemas) are asked for directly.
    """
    if database == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = directory / "fulfil.db"
        shutil.copyfile(template, path)
        with sqlite3.connect(path) as conn:  # its own install id, as a real migration gives
            conn.execute("UPDATE meta SET value = ? WHERE key = 'install_id'", (uuid.uuid4().hex[:8].upper(),))
        conn.close()
        yield f"sqlite:///{path}"
        return
    pool: Any = request.getfixturevalue("_pg_schemas")  # skips without FULFIL_TEST_PG_URL, fails in CI
    schema, url = pool.take()
    try:
        yield url
    finally:
        pool.give_back(schema, url)


@pytest.fixture(params=ADAPTER_KINDS)
async def supplier_under_test(
    request: pytest.FixtureRequest, cipher: CardCipher, tmp_path: Path
) -> AsyncIterator[tuple[Supplier, Harness]]:
    kind: str = request.param
    if kind.startswith("stock-"):
        with stock_database(request, kind.removeprefix("stock-"), tmp_path) as url:
            store = await Store.open(url, cipher)
            try:
                supplier, harness = await _stock_harness(store)
                try:
                    yield supplier, harness
                finally:
                    await supplier.aclose()
            finally:
                await store.close()
        return
    scenario = fulu_scenario() if kind == "fulu" else acg_scenario()
    async with running_sim(scenario) as sim:
        supplier = sim_supplier(sim)
        try:
            if kind == "fulu":
                harness = Harness(
                    kind,
                    supplier,
                    product="10002",  # a card number and a password: both must stay out of evidence
                    sold_out="10009",
                    key_pattern=GROUPED_PATTERN,
                    number_pattern=NUMBER_PATTERN,
                    price=Decimal(FULU_PRODUCTS["10002"]["price"]),
                    sim=sim,
                )
            else:
                harness = Harness(
                    kind,
                    supplier,
                    product="steam-100",
                    sold_out="sold-out",
                    key_pattern=KEY_PATTERN,
                    number_pattern=None,
                    price=Decimal(ACG_PRODUCTS["steam-100"]["price"]),
                    sim=sim,
                )
            yield supplier, harness
        finally:
            await supplier.aclose()


async def _stock_harness(store: Store) -> tuple[Supplier, Harness]:
    added = await store.import_stock(STOCK_POOL, stock_keys(STOCK_KEYS), datetime.now(UTC))
    assert added.added == STOCK_KEYS
    supplier = build_supplier(SupplierConfig(name="own-stock", type="stock"), store=store)
    harness = Harness(
        "stock",
        supplier,
        product=STOCK_POOL,
        sold_out="contract-empty-pool",
        key_pattern=KEY_PATTERN,
        number_pattern=None,
        price=None,
        store=store,
        has_balance=False,
    )
    return supplier, harness
