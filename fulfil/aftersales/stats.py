"""The figures the console shows, from `Store.case_figures`. Pure.

- automation rate: of the cases closed, the share closed at L1 (no person involved);
- handling time per level: report to close, p50 / p95 in seconds, by the level a case closed at;
- supplier-caused share: of all cases, those that ended with a claim against a supplier;
- reissue cost recovered: what reissues cost, and what accepted or settled claims recover of it;
- after-sales rate (the console's overview): cases opened ÷ orders delivered in the same window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from fulfil.aftersales.model import CaseFigure, CaseStatus


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (non-empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def figures(cases: Sequence[CaseFigure]) -> dict[str, Any]:
    closed = [c for c in cases if c.status is not CaseStatus.OPEN and c.closed_at is not None]
    times: dict[str, list[float]] = {}
    for case in closed:
        assert case.closed_at is not None
        times.setdefault(case.level.value, []).append((case.closed_at - case.opened_at).total_seconds())
    cost = sum((c.reissue_cost for c in cases), Decimal(0))
    recovered = sum((c.recovered for c in cases), Decimal(0))
    return {
        "cases": len(cases),
        "open": len(cases) - len(closed),
        "closed": len(closed),
        "automation_rate": _share(sum(1 for c in closed if c.level.value == "L1"), len(closed)),
        "handling_seconds": {
            level: {
                "count": len(values),
                "p50": round(percentile(values, 50), 3),
                "p95": round(percentile(values, 95), 3),
            }
            for level, values in sorted(times.items())
        },
        "supplier_caused_share": _share(sum(1 for c in cases if c.supplier_caused), len(cases)),
        "reissue_cost": str(cost.quantize(Decimal("0.01"))),
        "recovered": str(recovered.quantize(Decimal("0.01"))),
        "recovered_share": _share_money(recovered, cost),
    }


def aftersales_rate(cases: Sequence[CaseFigure], delivered: int) -> dict[str, Any]:
    """The overview's after-sales figures for one window: `delivered` counts original orders only."""
    return {
        "opened": len(cases),
        "delivered": delivered,
        "rate": _share(len(cases), delivered),
        "supplier_caused_share": _share(sum(1 for c in cases if c.supplier_caused), len(cases)),
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _share_money(part: Decimal, whole: Decimal) -> float | None:
    return round(float(part / whole), 4) if whole else None
