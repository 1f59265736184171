"""A supplier's quality score: what one rolling window of its record holds, and the 0–100 number made from it.

Pure: the storage module fills `WindowStats` with SQL aggregates, `score` turns them into a number.

Every component is a rate in [0, 1] smoothed towards a neutral prior, `(successes + prior·k) / (n + k)` with
`k = prior_weight`: a supplier with three orders sits near the prior whatever they were, one with a thousand
shows its own record. The score is the weighted mean of the components, times 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from fulfil.config import ScoringConfig

COMPONENTS = ("call_success", "fulfilment", "key_validity", "latency", "claims")


@dataclass(frozen=True)
class WindowStats:
    """One supplier's (or offer's) record over one time window. Counts are raw, rates are derived."""

    calls: int = 0  # supplier calls (place, query) and how many did not end in an error
    calls_ok: int = 0
    call_latency_avg: float | None = None  # seconds per call, and the slowest
    call_latency_max: float | None = None
    finished: int = 0  # attempts that ended (delivered or failed), not counting the buyer's or our own fault
    fulfilled: int = 0  # ... of which delivered what was ordered
    units: int = 0  # units the supplier handed over (keys or top-ups), and how many were invalid keys
    invalid_units: int = 0
    on_time: int = 0  # attempts that delivered within the product's promise (a failed one never is)
    latency_p50: float | None = None  # seconds from attempt start to keys, over fulfilled attempts
    latency_p95: float | None = None
    claims: int = 0
    claims_amount: Decimal = field(default_factory=lambda: Decimal("0.00"))

    @property
    def call_success_rate(self) -> float | None:
        return _rate(self.calls_ok, self.calls)

    @property
    def fulfilment_rate(self) -> float | None:
        return _rate(self.fulfilled, self.finished)

    @property
    def key_validity_rate(self) -> float | None:
        return _rate(self.units - min(self.invalid_units, self.units), self.units)

    @property
    def on_time_rate(self) -> float | None:
        return _rate(self.on_time, self.finished)

    def as_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "call_success_rate": _round(self.call_success_rate),
            "call_latency_avg": _round(self.call_latency_avg, 3),
            "call_latency_max": _round(self.call_latency_max, 3),
            "attempts": self.finished,
            "fulfilment_rate": _round(self.fulfilment_rate),
            "units": self.units,
            "invalid_units": self.invalid_units,
            "key_validity_rate": _round(self.key_validity_rate),
            "latency_p50": _round(self.latency_p50, 3),
            "latency_p95": _round(self.latency_p95, 3),
            "on_time_rate": _round(self.on_time_rate),
            "claims": self.claims,
            "claims_amount": str(self.claims_amount),
        }


@dataclass(frozen=True)
class Score:
    value: float  # 0..100
    components: Mapping[str, float]  # smoothed rates, 0..1
    samples: Mapping[str, int]  # how many observations each component rests on

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.value, 1),
            "components": {name: round(rate, 4) for name, rate in self.components.items()},
            "samples": dict(self.samples),
        }


def smoothed(successes: int, n: int, prior: float, prior_weight: float) -> float:
    """The Bayesian mean of a success rate: `prior_weight` imaginary observations at `prior`."""
    successes = max(0, min(successes, n))
    if n + prior_weight <= 0:
        return prior
    return (successes + prior * prior_weight) / (n + prior_weight)


def score(stats: WindowStats, cfg: ScoringConfig) -> Score:
    # Claims counted by creation time, attempts by start time: near the window's edge they can disagree.
    unclaimed = stats.finished - min(stats.claims, stats.finished)
    observed = {
        "call_success": (stats.calls_ok, stats.calls),
        "fulfilment": (stats.fulfilled, stats.finished),
        "key_validity": (stats.units - min(stats.invalid_units, stats.units), stats.units),
        # Of the attempts that ended, delivered within the promise: one that never delivers is never on time.
        "latency": (stats.on_time, stats.finished),
        "claims": (unclaimed, stats.finished),
    }
    weights = {
        "call_success": cfg.weight_call_success,
        "fulfilment": cfg.weight_fulfilment,
        "key_validity": cfg.weight_key_validity,
        "latency": cfg.weight_latency,
        "claims": cfg.weight_claims,
    }
    components = {name: smoothed(ok, n, cfg.prior, cfg.prior_weight) for name, (ok, n) in observed.items()}
    total = sum(weights.values())
    value = (
        100.0 * sum(weights[name] * components[name] for name in COMPONENTS) / total
        if total > 0
        else 100.0 * cfg.prior
    )
    return Score(value, components, {name: n for name, (_, n) in observed.items()})


def neutral(cfg: ScoringConfig) -> Score:
    """The score of a supplier with no record at all: the prior."""
    return score(WindowStats(), cfg)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None
