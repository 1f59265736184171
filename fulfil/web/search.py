"""The console's order search form, read and checked: each bad field named, nothing searched with a form
half understood."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from aiohttp import web

from fulfil.domain import OrderStatus
from fulfil.storage.store_console import OrderQuery

MAX_FIELD = 256
# An amount range narrows other criteria; alone (prices repeat, no index can serve it) it looks at this many days.
AMOUNT_ONLY_DAYS = 7


def as_int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def order_query(request: web.Request, now: datetime) -> tuple[OrderQuery, list[str], list[str]]:
    """The search form, checked: (the query, each bad field named, notes on how it was read). Nothing is
    searched with a half-understood form."""
    q = request.query
    problems: list[str] = []

    def text(name: str) -> str | None:
        value = q.get(name, "").strip()
        if len(value) > MAX_FIELD or not value.isprintable():
            problems.append(f"{name}: too long or not printable")
            return None
        return value or None

    def day(name: str, end: bool) -> datetime | None:
        value = text(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            problems.append(f"{name}: {value!r} is not a date (YYYY-MM-DD)")
            return None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if end and len(value) <= 10:  # a whole day: up to its end
            parsed += timedelta(days=1)
        return parsed

    def amount(name: str) -> Decimal | None:
        value = text(name)
        if value is None:
            return None
        try:
            found = Decimal(value)
        except InvalidOperation:
            problems.append(f"{name}: {value!r} is not an amount")
            return None
        if not found.is_finite():
            problems.append(f"{name}: {value!r} is not an amount")
            return None
        return found

    status = text("status")
    if status and status not in {s.value for s in OrderStatus}:
        problems.append(f"status: {status!r} is not one of {', '.join(s.value for s in OrderStatus)}")
        status = None
    query = OrderQuery(
        ref=text("ref"),
        contact=text("contact"),
        account=text("account"),
        supplier_order=text("supplier_order"),
        since=day("since", False),
        until=day("until", True),
        amount_min=amount("amount_min"),
        amount_max=amount("amount_max"),
        status=status,
        sku=text("sku"),
    )
    query, notes = _bounded(query, now)
    return query, problems, notes


def _bounded(query: OrderQuery, now: datetime) -> tuple[OrderQuery, list[str]]:
    narrow = (query.ref, query.contact, query.account, query.supplier_order, query.since, query.until)
    if (query.amount_min is None and query.amount_max is None) or any(narrow):
        return query, []
    note = f"An amount range alone looks at the last {AMOUNT_ONLY_DAYS} days: give dates for older orders."
    return replace(query, since=now - timedelta(days=AMOUNT_ONLY_DAYS)), [note]


