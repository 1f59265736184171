"""Hotspots: an after-sales rate that jumped against its own baseline. Pure.

The rate is reports per delivered order, per product and per supplier offer (supplier, product): the last
`window` against the `baseline` before it (24 h against the previous 7 days by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fulfil.config import HotspotConfig


@dataclass(frozen=True)
class Counts:
    cases: int = 0
    delivered: int = 0

    @property
    def rate(self) -> float:
        return self.cases / self.delivered if self.delivered else (1.0 if self.cases else 0.0)


@dataclass(frozen=True)
class Hotspot:
    sku: str
    supplier: str | None  # None: the product as a whole
    now: Counts
    baseline: Counts

    @property
    def subject(self) -> str:
        return f"{self.supplier}/{self.sku}" if self.supplier else self.sku

    def describe(self) -> str:
        return (
            f"after-sales rate of {self.subject}: {self.now.rate:.1%} ({self.now.cases}/{self.now.delivered}) "
            f"against {self.baseline.rate:.1%} ({self.baseline.cases}/{self.baseline.delivered}) before"
        )


def find_hotspots(
    now: Mapping[tuple[str, str | None], Counts],
    baseline: Mapping[tuple[str, str | None], Counts],
    config: HotspotConfig,
) -> list[Hotspot]:
    """Keys are (sku, supplier) for offers and (sku, None) for products."""
    out: list[Hotspot] = []
    for key, counts in sorted(now.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        base = baseline.get(key, Counts())
        if counts.cases < config.min_cases or counts.rate < config.min_rate:
            continue
        if base.delivered and counts.rate < base.rate * config.factor:
            continue
        out.append(Hotspot(key[0], key[1], counts, base))
    return out
