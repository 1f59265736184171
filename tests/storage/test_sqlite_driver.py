"""The one-hand-off aiosqlite connection under SQLAlchemy: rows, counts, errors, and its cursor on its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from fulfil.storage import sqlite_driver

meta = MetaData()
items = Table("items", meta, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


async def test_statements_rows_counts_and_errors_through_sqlalchemy(tmp_path: Path) -> None:
    path = str(tmp_path / "one.db")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", async_creator=sqlite_driver.connector(path))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(5)])  # executemany
            new_id = await conn.scalar(insert(items).values(name="last").returning(items.c.id))
            assert new_id == 6
            changed = await conn.execute(update(items).where(items.c.id <= 2).values(name=items.c.name + "x"))
            assert changed.rowcount == 2
            names = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
            assert names == ["n0x", "n1x", "n2", "n3", "n4", "last"]
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(insert(items).values(name="n2"))
        async with engine.connect() as conn:  # the failed transaction left nothing behind
            assert await conn.scalar(text("SELECT count(*) FROM items")) == 6
    finally:
        await engine.dispose()


async def test_the_cursor_buffers_what_one_execute_returned(tmp_path: Path) -> None:
    factory = sqlite_driver.connector(str(tmp_path / "two.db"))
    connection = await factory()
    try:
        cursor = connection.cursor()
        async with cursor:
            await cursor.execute("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")
            assert cursor.description is not None
            assert await cursor.fetchone() == (1,)
            assert await cursor.fetchmany(5) == [(2,), (3,)]
            assert await cursor.fetchall() == []
            with pytest.raises(sqlite3.OperationalError):
                await cursor.execute("SELECT * FROM nowhere")
    finally:
        await connection.close()
