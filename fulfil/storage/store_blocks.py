"""The blocklist: buyers (an identity by its keyed hash, or an ip network) whose orders risk refuses, each with
a reason, an optional expiry and the operator who blocked them; every change is an event."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fulfil.config import IDENTITY_KINDS
from fulfil.risk.identity import mask_identity, normalize
from fulfil.storage.base import StoreBase
from fulfil.storage.schema import risk_blocks


@dataclass(frozen=True)
class BlockEntry:
    id: int
    kind: str
    shown: str  # the value masked (a network in full: it is the operator's rule, not a buyer)
    reason: str
    until: datetime | None
    operator: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "value": self.shown,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
            "operator": self.operator,
            "created_at": self.created_at.isoformat(),
        }


def _network(kind: str, value: str) -> str | None:
    """An ip block given as a network wider than one address: its canonical text; else None."""
    if kind != "ip" or "/" not in value:
        return None
    net = ipaddress.ip_network(value.strip(), strict=False)
    return None if net.num_addresses == 1 else str(net)


class BlockOps(StoreBase):
    # -- blocklist ------------------------------------------------------------------------------------------

    async def risk_block(
        self, kind: str, value: str, reason: str, until: datetime | None, operator: str, now: datetime
    ) -> tuple[BlockEntry, bool]:
        """Block an identity (or, for ip, a network); an existing entry gets the new reason and expiry.
        Returns the entry and whether it is new."""
        return (await self.risk_block_many([(kind, value, reason, until)], operator, now))[0]

    async def risk_block_many(
        self, entries: Sequence[tuple[str, str, str, datetime | None]], operator: str, now: datetime
    ) -> list[tuple[BlockEntry, bool]]:
        """(kind, value, reason, until) entries in one transaction: all written or none."""
        out: list[tuple[BlockEntry, bool]] = []
        async with self._write() as conn:
            for kind, value, reason, until in entries:
                out.append(await self._block(conn, kind, value, reason, until, operator, now))
        return out

    async def _block(
        self,
        conn: AsyncConnection,
        kind: str,
        value: str,
        reason: str,
        until: datetime | None,
        operator: str,
        now: datetime,
    ) -> tuple[BlockEntry, bool]:
        if kind not in IDENTITY_KINDS:
            raise ValueError(f"unknown identity kind {kind!r}")
        network = _network(kind, value)
        norm = network or normalize(kind, value)
        identity = self._cipher.identity_hash("ipnet" if network else kind, norm)
        where = (risk_blocks.c.kind == kind, risk_blocks.c.hash == identity)
        old = await conn.scalar(select(risk_blocks.c.id).where(*where))
        values = {"reason": reason, "until": until, "operator": operator}
        if old is None:
            await conn.execute(
                risk_blocks.insert().values(
                    kind=kind, hash=identity, network=network, value_enc=self._cipher.encrypt(norm),
                    created_at=now, **values,
                )
            )  # fmt: skip
        else:
            await conn.execute(update(risk_blocks).where(risk_blocks.c.id == old).values(**values))
        row = (await conn.execute(select(risk_blocks).where(*where))).one()
        await self._event(
            conn, "risk.block", now, operator=operator,
            data={"kind": kind, "id": row.id, "reason": reason, "until": until.isoformat() if until else None},
        )  # fmt: skip
        return self._block_entry(row), old is None

    async def risk_unblock(self, kind: str, value: str, operator: str, now: datetime) -> bool:
        network = _network(kind, value)
        norm = network or normalize(kind, value)
        identity = self._cipher.identity_hash("ipnet" if network else kind, norm)
        async with self._write() as conn:
            gone = await conn.execute(
                risk_blocks.delete()
                .where(risk_blocks.c.kind == kind, risk_blocks.c.hash == identity)
                .returning(risk_blocks.c.id, risk_blocks.c.reason)
            )
            row = gone.first()
            if row is not None:
                await self._event(
                    conn,
                    "risk.unblock",
                    now,
                    operator=operator,
                    data={"kind": kind, "id": row.id, "reason": row.reason},
                )
        return row is not None

    async def risk_block_list(self, now: datetime, *, expired: bool = False) -> list[BlockEntry]:
        stmt = select(risk_blocks).order_by(risk_blocks.c.id)
        if not expired:
            stmt = stmt.where(or_(risk_blocks.c.until.is_(None), risk_blocks.c.until > now))
        async with self._read() as conn:
            return [self._block_entry(row) for row in await conn.execute(stmt)]

    def _block_entry(self, row: Any) -> BlockEntry:
        shown = row.network or mask_identity(row.kind, self._cipher.decrypt(row.value_enc))
        return BlockEntry(row.id, row.kind, shown, row.reason, row.until, row.operator, row.created_at)

