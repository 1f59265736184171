"""Console operators (named accounts with a role) and their login sessions.

Passwords arrive here already hashed (fulfil/web/accounts.py hashes with argon2); a session is stored as the
SHA-256 of its cookie token, so a copy of the database logs nobody in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from fulfil.storage.base import StoreBase
from fulfil.storage.errors import Conflict, NotFound
from fulfil.storage.schema import console_sessions, operators

ROLES = ("viewer", "agent", "admin")


@dataclass(frozen=True)
class OperatorRecord:
    name: str
    role: str
    password_hash: str
    created_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class SessionRecord:
    operator: OperatorRecord
    csrf: str
    expires_at: datetime


def _operator(m: object) -> OperatorRecord:
    row = m._mapping  # type: ignore[attr-defined]
    return OperatorRecord(
        name=row["name"],
        role=row["role"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        last_login_at=row["last_login_at"],
    )


class OperatorOps(StoreBase):
    async def add_operator(self, name: str, role: str, password_hash: str, by: str, now: datetime) -> OperatorRecord:
        """A new account; an existing name is a Conflict (names are never reused: events carry them)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        values = {"name": name, "role": role, "password_hash": password_hash, "created_at": now}
        async with self._write() as conn:
            if await conn.scalar(select(operators.c.name).where(operators.c.name == name)) is not None:
                raise Conflict(f"operator {name!r} exists already")
            await conn.execute(operators.insert().values(**values))
            await self._event(conn, "operator.added", now, operator=by, data={"name": name, "role": role})
        return OperatorRecord(name, role, password_hash, now, None, None)

    async def list_operators(self) -> list[OperatorRecord]:
        async with self._read() as conn:
            return [_operator(row) for row in await conn.execute(select(operators).order_by(operators.c.name))]

    async def get_operator(self, name: str) -> OperatorRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(operators).where(operators.c.name == name))).first()
        return _operator(row) if row is not None else None

    async def disable_operator(self, name: str, by: str, now: datetime) -> None:
        """No more logins, and every open session of the account ends now."""
        async with self._write() as conn:
            done = await conn.execute(
                update(operators).where(operators.c.name == name, operators.c.disabled_at.is_(None)).values(
                    disabled_at=now
                )
            )
            if not done.rowcount:
                found = await conn.scalar(select(operators.c.name).where(operators.c.name == name))
                if found is None:
                    raise NotFound(f"no operator {name!r}")
                return
            await conn.execute(delete(console_sessions).where(console_sessions.c.operator == name))
            await self._event(conn, "operator.disabled", now, operator=by, data={"name": name})

    async def set_operator_password(self, name: str, password_hash: str) -> None:
        """A rehash on login (argon2 parameters raised since the password was set)."""
        async with self._write() as conn:
            await conn.execute(update(operators).where(operators.c.name == name).values(password_hash=password_hash))

    # -- sessions -------------------------------------------------------------------------------------

    async def open_session(self, token_hash: str, name: str, csrf: str, expires_at: datetime, now: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
            await conn.execute(
                console_sessions.insert().values(
                    token_hash=token_hash, operator=name, csrf=csrf, created_at=now, expires_at=expires_at
                )
            )
            await conn.execute(update(operators).where(operators.c.name == name).values(last_login_at=now))
            await self._event(conn, "operator.login", now, operator=name, data={"name": name})

    async def session(self, token_hash: str, now: datetime) -> SessionRecord | None:
        """The live session of an active operator, else None (expired, logged out, account disabled)."""
        stmt = (
            select(operators, console_sessions.c.csrf, console_sessions.c.expires_at)
            .join(console_sessions, console_sessions.c.operator == operators.c.name)
            .where(
                console_sessions.c.token_hash == token_hash,
                console_sessions.c.expires_at > now,
                operators.c.disabled_at.is_(None),
            )
        )
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return SessionRecord(operator=_operator(row), csrf=row.csrf, expires_at=row.expires_at)

    async def close_session(self, token_hash: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == token_hash))
