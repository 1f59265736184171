"""Prometheus metrics the daemon counts as it works (prometheus_client), on one registry of its own.

What happens (orders ending, attempts, claims, retries, failovers, supplier calls) is counted here, in process,
as it happens; what *is* (queue depths, oldest ages, breakers, balances, outbox lag) is read from the database
at scrape time by `fulfil.web.metrics` with indexed COUNT/MIN queries, so any daemon answers for the whole
database and no scrape loads a table.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_cpu_seconds_total, resident memory, open file descriptors: a daemon out of CPU or leaking shows here.
ProcessCollector(registry=REGISTRY)

ORDERS = Counter(
    "fulfil_orders_finished",
    "Orders that reached an end state in this process, by outcome (delivered, failed, review).",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "fulfil_attempts",
    "Attempts that reached a final state, by supplier, state and error class (none when clean).",
    ["supplier", "state", "error_class"],
    registry=REGISTRY,
)
CLAIMS = Counter(
    "fulfil_claims_opened",
    "Claims opened against suppliers, by supplier and reason.",
    ["supplier", "reason"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "fulfil_retries",
    "Transient-error retries of one attempt at the same supplier.",
    ["supplier"],
    registry=REGISTRY,
)
FAILOVERS = Counter(
    "fulfil_failovers",
    "Orders moved on from an offer to the next one, by the supplier left.",
    ["supplier"],
    registry=REGISTRY,
)
ORDERS_WAITING = Counter(
    "fulfil_orders_waited",
    "Times an order was given back to wait for a supplier (its breaker open, or its attempt failed transient).",
    registry=REGISTRY,
)
# Payment (intake) to delivery: seconds for a fast supplier, minutes with retries and failover.
DELIVERY_SECONDS = Histogram(
    "fulfil_delivery_seconds",
    "Time from intake (payment) to delivery, by product.",
    ["sku"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
SUPPLIER_CALL_SECONDS = Histogram(
    "fulfil_supplier_call_seconds",
    "Latency of supplier calls (place and query), by supplier and whether the call worked.",
    ["supplier", "ok"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)

# How late the event loop ran a timer (fulfil.loopwatch): this process's own delay, not a supplier's.
EVENT_LOOP_LAG = Histogram(
    "fulfil_event_loop_lag_seconds",
    "How late the daemon's event loop ran a half-second timer: its own backlog, a blocking call or a starved core.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def order_finished(outcome: str, sku: str, seconds: float | None) -> None:
    ORDERS.labels(outcome).inc()
    if seconds is not None:
        DELIVERY_SECONDS.labels(sku).observe(max(seconds, 0.0))


def attempt_final(supplier: str, state: str, error_class: str | None) -> None:
    ATTEMPTS.labels(supplier, state, error_class or "none").inc()


def claim_opened(supplier: str, reason: str) -> None:
    CLAIMS.labels(supplier, reason).inc()


def supplier_call(supplier: str, ok: bool, seconds: float) -> None:
    SUPPLIER_CALL_SECONDS.labels(supplier, "true" if ok else "false").observe(max(seconds, 0.0))
