"""Delay warnings, decided purely: when is an open order "slower than usual" for its product.

The threshold per product is the configured percentile (p75 by default) of payment-to-delivery times of
its orders delivered within the window, kept between a floor and a ceiling (fractions of the product's
`promise`, or durations per product). With fewer than `min_samples` deliveries (a cold start, a new product)
the ceiling is the threshold: a buyer is told no later than the promise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fulfil.config import DelayConfig, ProductConfig


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in (0, 100]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def thresholds(
    durations: Mapping[str, Sequence[float]], products: Mapping[str, ProductConfig], config: DelayConfig
) -> dict[str, float]:
    """Seconds after which an open order of each product is delayed; products with warnings off are absent."""
    out: dict[str, float] = {}
    for sku, product in products.items():
        own = config.products.get(sku)
        if own is not None and not own.enabled:
            continue
        ceiling = own.ceiling if own is not None and own.ceiling is not None else config.ceiling * product.promise
        floor = own.floor if own is not None and own.floor is not None else config.floor * product.promise
        floor = min(floor, ceiling)
        samples = durations.get(sku, ())
        if len(samples) < config.min_samples:
            out[sku] = ceiling
        else:
            out[sku] = min(max(percentile(samples, config.percentile), floor), ceiling)
    return out


def delayed(
    open_orders: Sequence[tuple[int, str, datetime]], limits: Mapping[str, float], now: datetime
) -> dict[int, dict[str, Any]]:
    """The open orders (id, sku, created_at) older than their product's threshold, with the event's data."""
    out: dict[int, dict[str, Any]] = {}
    for order_id, sku, created_at in open_orders:
        limit = limits.get(sku)
        if limit is None:
            continue
        waited = (now - created_at).total_seconds()
        if waited > limit:
            out[order_id] = {
                "status": "processing",
                "reason": "slower than usual: we are on it",
                "usual_seconds": round(limit, 3),
                "waited_seconds": round(waited, 3),
            }
    return out
