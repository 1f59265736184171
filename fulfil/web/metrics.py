"""`GET /metrics`: the counters and histograms of `fulfil.metrics`, plus gauges read from the database at
scrape time by indexed COUNT/MIN queries over the open states only (never a table load): queue depths and
oldest ages, outbox lag, the last delivery's age, each supplier's breaker, score and balance, local stock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fulfil import metrics
from fulfil.storage import Store

BREAKER = {"closed": 0, "half_open": 1, "open": 2}


class _Snapshot(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


async def gauges(store: Store, now: datetime) -> list[GaugeMetricFamily]:
    backlog = await store.backlog(now)
    depth = GaugeMetricFamily("fulfil_queue_depth", "Orders or outbox rows waiting, by queue.", labels=["queue"])
    for queue, n in (
        ("pending", backlog.pending),
        ("processing", backlog.processing),
        ("review", backlog.review),
        ("outbox_due", backlog.outbox_due),
        ("outbox_dead", backlog.outbox_dead),
        ("waiting", backlog.waiting),  # of pending: waiting for a supplier
    ):
        depth.add_metric([queue], n)
    oldest = GaugeMetricFamily(
        "fulfil_oldest_age_seconds", "Age of the oldest item waiting, by queue (0 when empty).", labels=["queue"]
    )
    oldest.add_metric(["pending"], _age(now, backlog.oldest_pending))
    oldest.add_metric(["review"], _age(now, backlog.oldest_review))
    lag = GaugeMetricFamily("fulfil_outbox_lag_seconds", "How long the oldest due notification has waited.")
    lag.add_metric([], _age(now, backlog.oldest_outbox_due))
    last = await store.last_delivery()
    since = GaugeMetricFamily(
        "fulfil_last_delivery_age_seconds", "Seconds since the latest delivery (any daemon); -1 before the first."
    )
    since.add_metric([], _age(now, last) if last is not None else -1.0)
    breaker = GaugeMetricFamily(
        "fulfil_supplier_breaker_state", "Circuit breaker per supplier: 0 closed, 1 half-open, 2 open.",
        labels=["supplier"],
    )
    score = GaugeMetricFamily("fulfil_supplier_score", "Quality score per supplier (0-100).", labels=["supplier"])
    balance = GaugeMetricFamily("fulfil_supplier_balance", "Last known balance per supplier.", labels=["supplier"])
    for row in await store.supplier_snapshot():
        state = row["breaker"]
        if state == "open" and row["opened_until"] is not None and row["opened_until"] <= now:
            state = "half_open"
        breaker.add_metric([row["supplier"]], BREAKER.get(state, 0))
        score.add_metric([row["supplier"]], float(row["score"]))
        if row["balance"] is not None:
            balance.add_metric([row["supplier"]], float(row["balance"]))
    stock = GaugeMetricFamily("fulfil_stock_available", "Unused keys in local stock, by product.", labels=["sku"])
    for sku, available in sorted((await store.available_stock()).items()):
        stock.add_metric([sku], available)
    return [depth, oldest, lag, since, breaker, score, balance, stock]


async def metrics_text(store: Store, now: datetime) -> bytes:
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(await gauges(store, now)))
    return generate_latest(metrics.REGISTRY) + generate_latest(snapshot)
