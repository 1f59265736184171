"""The console's work queues: each one a `Queue` (a name, a title, a time limit, its items and the actions one
click may take on an item). The review queue is the first; another (after-sales L2/L3) plugs in by adding a
`Queue` to `Console.work_queues` — the page, its countdowns and its buttons need nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fulfil.config import Config
from fulfil.storage import Store
from fulfil.storage.store_risk import RISK_PREFIX


@dataclass(frozen=True)
class QueueItem:
    ref: str  # the order the item is about (its page and its actions are the order's)
    sku: str
    amount: Decimal | None
    reason: str | None
    since: datetime  # when it entered the queue: its time limit counts from here


@dataclass(frozen=True)
class Queue:
    name: str
    title: str  # a message id of the catalogues
    limit: Callable[[Config], float | None]  # seconds an item may wait; None: no limit
    items: Callable[[], Awaitable[list[QueueItem]]]
    actions: tuple[str, ...]  # order actions (POST /console/orders/{ref}/{action}) one click takes


def review_queue(store: Store) -> Queue:
    """Orders a person must decide on (not risk's holds: those are `held_queue`)."""

    async def items() -> list[QueueItem]:
        # review_queue's OrderHit carries the time the order went to review as created_at
        return [
            QueueItem(h.ref, h.sku, h.amount, h.reason, h.created_at)
            for h in await store.review_queue()
            if not (h.reason or "").startswith(RISK_PREFIX)
        ]

    return Queue(
        name="review",
        title="Review",
        limit=lambda config: config.notify.alert_rules.review_age,
        items=items,
        actions=("retry", "refund"),
    )


def held_queue(store: Store) -> Queue:
    """Orders risk held before anything was bought: let through (release) or refuse."""

    async def items() -> list[QueueItem]:
        return [
            QueueItem(h.ref, h.sku, h.amount, h.reason, h.created_at)
            for h in await store.review_queue()
            if (h.reason or "").startswith(RISK_PREFIX)
        ]

    return Queue(
        name="held",
        title="Held by risk",
        limit=lambda config: config.notify.alert_rules.review_age,
        items=items,
        actions=("release", "refuse"),
    )
