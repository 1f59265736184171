"""The console's work queues: each one a `Queue` (a name, a title, a time limit, its items and the actions one
click may take on an item). The review queue is the first; after-sales L2/L3 plug in the same way, by adding a
`Queue` to `Console.work_queues` — the page, its countdowns and its buttons need nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fulfil.aftersales.model import CaseStatus, Level
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
    due: datetime | None = None  # an item with its own deadline (after-sales: the level's due_at)
    case_no: str | None = None  # an after-sales case: the actions are the case's, not the order's


@dataclass(frozen=True)
class Queue:
    name: str
    title: str  # a message id of the catalogues
    limit: Callable[[Config], float | None]  # seconds an item may wait; None: no limit
    items: Callable[[], Awaitable[list[QueueItem]]]
    actions: tuple[str, ...]  # actions one click takes: POST /console/orders/{ref}/{action}
    # ... or POST /console/cases/{case_no}/{action} for a queue of after-sales cases
    target: str = "orders"


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


def aftersales_queue(store: Store, level: Level) -> Queue:
    """Open after-sales cases at L2 or L3, oldest first; each counts down to its level's due_at."""

    async def items() -> list[QueueItem]:
        cases = await store.list_cases(level=level, status=CaseStatus.OPEN, limit=200)
        skus = await store.order_skus([c.order_id for c in cases])
        return [
            QueueItem(
                c.order_ref,
                skus.get(c.order_id, ""),
                None,
                f"{c.problem}: {c.reason}" if c.reason else str(c.problem),
                c.level_at,
                due=c.due_at,
                case_no=c.case_no,
            )
            for c in cases
        ]

    return Queue(
        name=f"aftersales-{level.value}",
        title=f"After-sales {level.value}",
        limit=lambda config: None,  # each case has its own due_at (per problem, per level)
        items=items,
        actions=("reissue", "refund", "resolve", "escalate", "reject") if level is Level.L2 else
        ("reissue", "refund", "resolve", "reject"),
        target="cases",
    )
