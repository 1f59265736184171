"""How the console's templates show values: money, times, durations, rates (Jinja2 filters), and the order
timeline as one list in time order."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def timeline(detail: Any) -> list[dict[str, Any]]:
    """One list, in time order: intake, events (risk, operator actions, claims), attempts, deliveries,
    notifications."""
    view = detail.view
    items: list[dict[str, Any]] = [{"at": view.order.created_at, "kind": "intake", "what": "order.accepted"}]
    for e in detail.events:
        items.append({"at": e.at, "kind": "event", "what": e.name, "operator": e.operator, "data": e.data})
    for a in view.attempts:
        items.append({"at": a.started_at, "kind": "attempt", "what": f"attempt.{a.state.value}", "attempt": a})
    for n in detail.notifications:
        items.append({"at": n.created_at, "kind": "notification", "what": n.type, "row": n})
    if view.order.delivered_at is not None:
        items.append({"at": view.order.delivered_at, "kind": "delivery", "what": "order.delivered"})
    return sorted(items, key=lambda item: item["at"])


def money(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    return secs(((now or datetime.now(UTC)) - value).total_seconds())


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"
