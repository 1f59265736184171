"""Time passing on the database's clock, for tests of leases and parking.

Lease expiry and parking are measured by the database's clock, so a test cannot make a lease run out by
passing a later `now`; instead it moves the stored deadlines into the past, as if that much time had gone by.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fulfil.storage.database import parse_url

_SQLITE = """
UPDATE orders SET
    lease_expires = strftime('%Y-%m-%d %H:%M:%f', lease_expires, :shift) || '000',
    not_before = strftime('%Y-%m-%d %H:%M:%f', not_before, :shift) || '000'
WHERE lease_expires IS NOT NULL OR not_before IS NOT NULL
"""
_POSTGRESQL = """
UPDATE orders SET
    lease_expires = lease_expires - make_interval(secs => :seconds),
    not_before = not_before - make_interval(secs => :seconds)
WHERE lease_expires IS NOT NULL OR not_before IS NOT NULL
"""


async def let_time_pass(url: str, seconds: float) -> None:
    """Every lease and parking deadline in `url` comes `seconds` closer (a NULL stays NULL)."""
    dialect, parsed = parse_url(url)
    engine = create_async_engine(parsed, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            if dialect == "sqlite":
                await conn.execute(text(_SQLITE), {"shift": f"{-seconds:+.3f} seconds"})
            else:
                await conn.execute(text(_POSTGRESQL), {"seconds": float(seconds)})
    finally:
        await engine.dispose()
