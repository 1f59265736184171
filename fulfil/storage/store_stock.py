"""Local stock: imports, counts, and keys that come back from suppliers (returned to stock or held)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.storage.base import StoreBase, chunks
from fulfil.storage.errors import StoreError
from fulfil.storage.schema import deliveries, stock
from fulfil.storage.types import StockCount, StockImport
from suppliers.taxonomy import Card


async def known_fingerprints(conn: AsyncConnection, fingerprints: Sequence[str]) -> set[str]:
    """Keys already in stock or already delivered: neither may enter stock again."""
    found: set[str] = set()
    for part in chunks(sorted(set(fingerprints))):
        for table in (stock, deliveries):
            result = await conn.execute(select(table.c.fingerprint).where(table.c.fingerprint.in_(part)))
            found.update(result.scalars())
    return found


class StockOps(StoreBase):
    async def import_stock(self, sku: str, cards: Sequence[Card], now: datetime) -> StockImport:
        """Add new keys for `sku` in one transaction; report (and skip) repeats in the file and known keys.

        All or nothing: an empty key, or a key another import wrote meanwhile, rolls the whole file back.
        """
        empty = [i for i, card in enumerate(cards) if not card.password.strip()]
        if empty:
            raise StoreError(f"stock import refused: cards without a password at indexes {empty[:20]}")
        rows = [self._encrypted(card) for card in cards]
        in_file: list[int] = []
        first: dict[str, int] = {}
        for i, row in enumerate(rows):
            if row["fingerprint"] in first:
                in_file.append(i)
            else:
                first[row["fingerprint"]] = i
        async with self._write() as conn:
            known = await known_fingerprints(conn, list(first))
            existing = sorted(i for fp, i in first.items() if fp in known)
            new = [{**rows[i], "sku": sku, "imported_at": now} for fp, i in first.items() if fp not in known]
            for part in chunks(new):
                await conn.execute(stock.insert(), list(part))
            await self._event(
                conn,
                "stock.imported",
                now,
                data={
                    "sku": sku,
                    "added": len(new),
                    "duplicate_in_file": len(in_file),
                    "duplicate_existing": len(existing),
                },
            )
        return StockImport(added=len(new), duplicate_in_file=in_file, duplicate_existing=existing)

    async def stock_counts(self) -> dict[str, StockCount]:
        used = func.count(stock.c.used_by_attempt)
        async with self._read() as conn:
            result = await conn.execute(
                select(stock.c.sku, func.count() - used, used).group_by(stock.c.sku).order_by(stock.c.sku)
            )
            return {sku: StockCount(available=avail, used=n_used) for sku, avail, n_used in result}

    async def return_to_stock(self, sku: str, attempt_id: int, cards: Sequence[Card], now: datetime) -> int:
        """Put a supplier's keys (e.g. late ones after a failover) into stock; known keys are skipped."""
        rows = {row["fingerprint"]: row for row in map(self._encrypted, cards)}
        async with self._write() as conn:
            known = await known_fingerprints(conn, list(rows))
            new = [
                {**row, "sku": sku, "imported_at": now, "source_attempt": attempt_id}
                for fp, row in rows.items()
                if fp not in known
            ]
            added = 0
            if new:
                stmt = self._insert_ignore(stock, ["fingerprint"]).returning(stock.c.id)
                added = len((await conn.execute(stmt, new)).all())
            await self._event(conn, "stock.returned", now, data={"sku": sku, "attempt_id": attempt_id, "added": added})
        return added

    async def hold_cards(self, attempt_id: int, cards: Sequence[Card], reason: str, now: datetime) -> None:
        """Keep keys the supplier charged for but we will not deliver (on a claim, or for review)."""
        if not cards:
            return
        async with self._write() as conn:
            await self._hold(conn, attempt_id, cards, reason, now)
