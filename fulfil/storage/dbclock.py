"""The database's clock: lease expiry, claimability and parking are measured by it, never by a daemon's.

Several daemons share one PostgreSQL database and their hosts' clocks may disagree. A deadline written from
one daemon's clock and compared with another's would let a daemon whose clock runs fast take an order whose
lease was just renewed. So a deadline is written as "the database's now + seconds", and compared with the
database's now, both in SQL; the daemons only ever say how many seconds.

- PostgreSQL: comparisons use now(), the start of the (short) transaction: never later than the real time,
  so an order looks claimable no sooner than it is, and stable, so the claim index still serves. Deadlines
  use clock_timestamp(), the time of writing, so a lease never loses the time its write waited on a lock.
- SQLite: strftime('%Y-%m-%d %H:%M:%f', 'now', ...) padded to microseconds, which is exactly the text
  UTCDateTime stores (naive UTC, 'YYYY-MM-DD HH:MM:SS.ffffff'): text order is time order only if both sides
  have the same shape ('...:05.250' sorts before '...:05.250000').
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Interval, String, func, literal, type_coerce

from fulfil.storage.coltypes import UTCDateTime

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f"  # milliseconds: '000' pads it to the six digits stored


def db_now(dialect: str) -> ColumnElement[datetime]:
    """The database's current time, as a SQL expression to compare lease and parking deadlines with."""
    if dialect == "postgresql":
        return func.now(type_=UTCDateTime())
    return _sqlite_time(func.strftime(_SQLITE_FORMAT, "now", type_=String()))


def db_after(dialect: str, seconds: float) -> ColumnElement[datetime]:
    """The database's time `seconds` from now (negative: ago), as a SQL expression: a deadline to store."""
    if not math.isfinite(seconds):
        raise ValueError(f"a deadline needs a finite number of seconds, not {seconds!r}")
    if dialect == "postgresql":
        later = func.clock_timestamp() + literal(timedelta(seconds=seconds), Interval())
        return type_coerce(later, UTCDateTime())
    # SQLite's modifiers take fractional seconds; its text keeps milliseconds.
    return _sqlite_time(func.strftime(_SQLITE_FORMAT, "now", f"{seconds:+.3f} seconds", type_=String()))


def _sqlite_time(text: ColumnElement[str]) -> ColumnElement[datetime]:
    return type_coerce(text.concat("000"), UTCDateTime())
