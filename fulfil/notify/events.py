"""What an event is and who gets it: routes from the config, stable ids, masking, the JSON body. Pure.

An event is written once per channel that subscribes to its type (`Routes.channels`), in the transaction of
the change. A channel is `webhook:NAME`, `alert:NAME` or `email`. The body a channel receives is a function of
the outbox row (type, created_at, data), the order's immutable facts (ref, sku, qty, contact) and, for
`order.delivered`, the keys delivered by that change, and of the channel's settings (keys, contact): the
same on every retry.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fulfil.config import EVENT_TYPES, NotifyConfig
from fulfil.risk.identity import mask_contact as mask_contact  # re-exported: notify masks contacts

# Events of one order that happen at most once: one id per (type, order), unique per channel in the database.
ONCE_PER_ORDER = frozenset({"order.accepted", "order.delivered", "order.failed", "order.delayed", "order.held"})
ORDER_EVENTS = frozenset(name for name in EVENT_TYPES if name.startswith("order."))


def webhook_channel(name: str) -> str:
    return f"webhook:{name}"


def alert_channel(name: str) -> str:
    return f"alert:{name}"


EMAIL_CHANNEL = "email"


@dataclass(frozen=True)
class Routes:
    """Which channels want which event types (the store asks this before writing an outbox row)."""

    by_type: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    alert_quiet: float = 900.0  # the same operator alert once per this many seconds

    def channels(self, event_type: str) -> tuple[str, ...]:
        return self.by_type.get(event_type, ())

    def wants(self, event_type: str) -> bool:
        return bool(self.by_type.get(event_type))

    def __bool__(self) -> bool:
        return any(self.by_type.values())

    def rows(
        self,
        install_id: str,
        event_type: str,
        now: datetime,
        *,
        order_id: int | None = None,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return outbox_rows(self, install_id, event_type, now, order_id=order_id, subject=subject, data=data)


def _matching(patterns: Iterable[str]) -> set[str]:
    return {name for name in EVENT_TYPES if any(fnmatch.fnmatchcase(name, p) for p in patterns)}


def build_routes(config: NotifyConfig) -> Routes:
    subscribed: list[tuple[str, set[str]]] = []
    for hook in config.webhooks:
        if hook.enabled:
            subscribed.append((webhook_channel(hook.name), _matching(hook.events)))
    if config.email is not None and config.email.enabled:
        subscribed.append((EMAIL_CHANNEL, _matching(config.email.events) & ORDER_EVENTS))
    for alert in config.alerts:
        if alert.enabled:
            subscribed.append((alert_channel(alert.name), _matching(alert.events)))
    by_type = {name: tuple(channel for channel, types in subscribed if name in types) for name in EVENT_TYPES}
    wanted = {name: channels for name, channels in by_type.items() if channels}
    return Routes(wanted, alert_quiet=config.alert_rules.quiet)


def event_key(event_type: str, order_id: int | None) -> str | None:
    """The uniqueness key of an event that happens once per order; None for one that may repeat."""
    if order_id is None or event_type not in ONCE_PER_ORDER:
        return None
    return f"{event_type}:{order_id}"


def event_id(install_id: str, key: str | None) -> str:
    """The event's id: derived from its key (the same id whoever writes it), else random. Never reused."""
    if key is None:
        return f"evt_{secrets.token_hex(12)}"
    digest = hashlib.sha256(f"{install_id}|{key}".encode()).hexdigest()[:24]
    return f"evt_{digest}"


def outbox_rows(
    routes: Routes,
    install_id: str,
    event_type: str,
    now: datetime,
    *,
    order_id: int | None = None,
    subject: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The outbox rows of one event: one per subscribed channel, sharing one id. Empty when nobody wants it."""
    channels = routes.channels(event_type)
    if not channels:
        return []
    key = event_key(event_type, order_id)
    eid = event_id(install_id, key)
    return [
        {
            "event_id": eid,
            "type": event_type,
            "channel": channel,
            "key": key,
            "order_id": order_id,
            "subject": subject,
            "data": dict(data or {}),
            "created_at": now,
            "state": "pending",
            "attempts": 0,
            "next_at": now,
        }
        for channel in channels
    ]


# --- masking --------------------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """A URL as it may be printed: no query values (a WeCom robot's key), no credentials, no path secrets."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def is_email(contact: str | None) -> bool:
    if not contact or "@" not in contact:
        return False
    local, _, domain = contact.strip().rpartition("@")
    return bool(local) and "." in domain and " " not in contact.strip()


# --- the body -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderFacts:
    """What an order event says about its order: fixed at intake, so the same on every retry."""

    ref: str
    sku: str
    qty: int
    contact: str | None = field(default=None, repr=False)
    amount: str | None = None
    account: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CardText:
    number: str = field(repr=False)
    password: str = field(repr=False)
    expires: str | None = None


@dataclass(frozen=True)
class Audience:
    """What a channel may see."""

    include_keys: bool = False
    include_contact: bool = False


def event_data(
    event_type: str,
    data: Mapping[str, Any],
    facts: OrderFacts | None,
    cards: Sequence[CardText],
    audience: Audience,
) -> dict[str, Any]:
    """`data` of the JSON body. Order events: ref, sku, qty, status, reason, contact (masked unless allowed;
    null when absent) and, only for an audience with include_keys, cards."""
    if event_type not in ORDER_EVENTS:
        return dict(data)
    out: dict[str, Any] = {
        "ref": facts.ref if facts else data.get("ref"),
        "sku": facts.sku if facts else data.get("sku"),
        "qty": facts.qty if facts else data.get("qty"),
        "status": data.get("status"),
        "reason": data.get("reason"),
        "contact": None,
        "amount": facts.amount if facts else None,
    }
    if facts is not None and facts.contact is not None:
        out["contact"] = facts.contact if audience.include_contact else mask_contact(facts.contact)
    extra = {k: v for k, v in data.items() if k not in out and k != "attempt_id"}
    out.update(extra)
    if audience.include_keys and event_type == "order.delivered":
        out["cards"] = [{"number": c.number or None, "password": c.password, "expires": c.expires} for c in cards]
    return out


def body(event_type: str, created_at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks JSON payload: {type, timestamp, data}."""
    return {"type": event_type, "timestamp": created_at.isoformat().replace("+00:00", "Z"), "data": dict(data)}
