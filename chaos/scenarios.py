"""What the run is made of: the simulators' scenarios (catalogue, faults), fulfil's config, and the orders.

Three suppliers: `fulu-primary` (flaky), `fulu-backup` (a little flaky) and `acg-shop` (an acg-faka upstream,
a little flaky; its lost answers are truly ambiguous: it cannot be asked by our number). Three SKUs:
`steam-100` cards (primary, backup, acg in that order), `steam-acg` cards (acg first, then the backup) and
`qq-coins-10` direct top-ups (primary, backup).
"""

from __future__ import annotations

import random
from typing import Any

FULU_KEY, FULU_SECRET = "chaos-fulu-app", "0123456789abcdef0123456789abcdef"
ACG_ID, ACG_KEY = "10086", "chaos-acg-key"
PRIMARY, BACKUP, ACG = "fulu-primary", "fulu-backup", "acg-shop"
SUPPLIERS = (PRIMARY, BACKUP, ACG)
CARD_SKU, ACG_SKU, DIRECT_SKU = "steam-100", "steam-acg", "qq-coins-10"
CARD_PATTERN = "[A-Z0-9]{16}"


def _slow(share: float) -> list[dict[str, Any]]:
    """Slow answers: every call waits a little, a share of them a lot (before the purchase is made)."""
    return [
        {"kind": "latency", "distribution": "uniform", "min": "20ms", "max": "250ms", "on": ["order", "query"]},
        {"kind": "latency", "distribution": "uniform", "min": "1s", "max": "4s", "probability": share},
    ]


def fulu_faults(kind: str) -> list[dict[str, Any]]:
    """flaky: 10 % lost after the charge, 5 % system errors before it and 5 % after it, 5 % invalid keys
    (3 % off-pattern, 2 % resold), 2 % 5xx after the charge, slow answers. light: a third of that."""
    scale = 1.0 if kind == "flaky" else 0.33
    return [
        *_slow(0.05 * scale),
        {"kind": "lost_after_commit", "probability": round(0.10 * scale, 3)},
        {"kind": "system_error", "code": 5000, "probability": round(0.05 * scale, 3)},
        {"kind": "system_error", "code": 5000, "committed": True, "probability": round(0.05 * scale, 3)},
        {"kind": "invalid_keys", "mode": "not_matching", "probability": round(0.03 * scale, 3)},
        # Resold keys only once the supplier has sold a while (in the opening burst it would repeat keys
        # inside one batch, which is a partly valid batch: rightly held for review).
        {"kind": "invalid_keys", "mode": "resold", "probability": round(0.02 * scale, 3), "requests": "150-"},
        {"kind": "http_5xx", "status": 502, "probability": round(0.02 * scale, 3)},
    ]


def acg_faults(kind: str) -> list[dict[str, Any]]:
    scale = 0.5 if kind == "flaky" else 0.25
    return [
        *_slow(0.03),
        {"kind": "lost_after_commit", "probability": round(0.05 * scale, 3)},
        {"kind": "system_error", "probability": round(0.10 * scale, 3)},
        {"kind": "invalid_keys", "mode": "not_matching", "probability": round(0.04 * scale, 3)},
        {"kind": "html_error", "status": 502, "probability": round(0.02 * scale, 3)},
    ]


def scenario(supplier: str, seed: int, faults: str) -> dict[str, Any]:
    """A simulator's scenario (its fault RNG seeded from the run's seed)."""
    if supplier == ACG:
        return {
            "protocol": "acg_faka",
            "app_id": ACG_ID,
            "app_key": ACG_KEY,
            "balance": "100000000.00",
            "seed": seed,
            "products": {"steam-100": {"name": "Steam 100", "price": "96.00", "stock": 1_000_000,
                                       "card_pattern": CARD_PATTERN}},
            "faults": acg_faults(faults),
        }
    return {
        "protocol": "fulu",
        "app_key": FULU_KEY,
        "secret": FULU_SECRET,
        "balance": "100000000.00",
        "seed": seed,
        "processing_time": "0s",
        "products": {
            10001: {"name": "Steam 100", "kind": "card", "price": "95.00", "stock": 1_000_000,
                    "card_pattern": CARD_PATTERN},
            10003: {"name": "QQ coins", "kind": "direct", "price": "9.80"},
        },
        "faults": fulu_faults(faults) if supplier == PRIMARY else fulu_faults("light"),
    }  # fmt: skip


def supplier_entry(name: str, base_url: str) -> dict[str, Any]:
    """A `suppliers:` entry; `base_url` is the simulator's (or its proxy's) root URL."""
    common = {"timeout": "5s", "connect_timeout": "2s", "poll_interval": "300ms", "max_concurrency": 20}
    if name == ACG:
        return {"name": name, "type": "acg_faka", "base_url": base_url, "app_id": ACG_ID, "app_key": ACG_KEY,
                **common}
    return {"name": name, "type": "fulu", "base_url": base_url + "/api/getway", "app_key": FULU_KEY,
            "secret": FULU_SECRET, **common}


def fulfil_config(
    db_url: str, base_urls: dict[str, str], *, postgres: bool, give_up_after: str = "60s"
) -> dict[str, Any]:
    def offer(supplier: str, product: str, cost: str, priority: int) -> dict[str, Any]:
        return {"supplier": supplier, "product_id": product, "cost": cost, "priority": priority}

    return {
        "database": {"url": db_url},
        "http": {"enabled": False},
        "daemon": {
            "poll_interval": "100ms",
            "batch_size": 50,
            "concurrency": 32,
            # PostgreSQL: a dead daemon's orders come back when their lease runs out. SQLite: the restarted
            # daemon holds the instance lock and takes them back at once.
            "lease": "5s" if postgres else "20s",
            "shutdown_timeout": "10s",
        },
        "retry": {"budget": "15s", "initial_backoff": "200ms", "max_backoff": "2s"},
        "ambiguity": {"query_interval": "500ms", "give_up_after": give_up_after, "policy": "wait",
                      "late_keys": "stock"},
        # The primary sells a few invalid batches at random; the non-key trip wire (2 in a row by default) would
        # cool it down and take it out of the run. Short cool-downs keep every supplier under fire.
        "cooldown": {"non_keys_streak": 4, "non_keys": "5s", "product_unavailable": "5s"},
        "breaker": {"consecutive_failures": 50, "failure_rate": 0.9, "min_volume": 200, "base_ejection": "5s",
                    "max_ejection": "20s"},
        "suppliers": [supplier_entry(name, base_urls[name]) for name in SUPPLIERS],
        "products": {
            CARD_SKU: {"kind": "card", "max_qty": 5, "card_pattern": f"^{CARD_PATTERN}$", "offers": [
                offer(PRIMARY, "10001", "95.00", 0), offer(BACKUP, "10001", "96.00", 1),
                offer(ACG, "steam-100", "96.00", 2)]},
            ACG_SKU: {"kind": "card", "max_qty": 5, "card_pattern": f"^{CARD_PATTERN}$", "offers": [
                offer(ACG, "steam-100", "96.00", 0), offer(BACKUP, "10001", "96.00", 1)]},
            DIRECT_SKU: {"kind": "direct", "max_qty": 1, "offers": [
                offer(PRIMARY, "10003", "9.80", 0), offer(BACKUP, "10003", "9.90", 1)]},
        },
    }  # fmt: skip


def make_orders(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Card orders of 1-3 units (most), cards from the acg shop, and direct top-ups."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        ref = f"C{i:06d}"
        draw = rng.random()
        if draw < 0.10:
            out.append({"ref": ref, "sku": DIRECT_SKU, "qty": 1, "account": str(rng.randrange(10**8, 10**9)),
                        "amount": "10.00"})
        elif draw < 0.25:
            out.append({"ref": ref, "sku": ACG_SKU, "qty": rng.choice((1, 2)), "amount": "100.00"})
        else:
            out.append({"ref": ref, "sku": CARD_SKU, "qty": rng.choice((1, 1, 2, 3)), "amount": "100.00"})
    return out
