"""Routing: priority order, skipping used, cooling, disabled and broken offers; weighted split by score."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fulfil.config import OfferConfig, ProductConfig
from fulfil.domain import AttemptRecord, AttemptState
from fulfil.health import NullHealth
from fulfil.routing import plan_offers

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def product(*offers: OfferConfig) -> ProductConfig:
    return ProductConfig(offers=offers)


def attempt(supplier: str, index: int, state: AttemptState, error: str | None = None) -> AttemptRecord:
    return AttemptRecord(1, 1, supplier, index, "N1", state, NOW, error_class=error)


class Weights(NullHealth):
    def __init__(self, weights: dict[str, float], broken: set[str] | None = None) -> None:
        self.weights = weights
        self.broken = broken or set()

    def allows(self, supplier: str, now: datetime) -> bool:
        return supplier not in self.broken

    def weight(self, supplier: str) -> float:
        return self.weights.get(supplier, 50.0)


P = product(
    OfferConfig(supplier="shelf", priority=0),
    OfferConfig(supplier="main", product_id="1", cost=Decimal("9.5"), priority=1),
    OfferConfig(supplier="backup", product_id="2", cost=Decimal("9.0"), priority=2),
)
ENABLED = {"shelf": True, "main": True, "backup": True}


def names(offers: list) -> list[str]:  # type: ignore[type-arg]
    return [o.supplier for o in offers]


def test_priority_order() -> None:
    offers, skipped = plan_offers(P, [], cooldowns={}, enabled=ENABLED, health=NullHealth(), now=NOW)
    assert names(offers) == ["shelf", "main", "backup"]
    assert skipped == []


def test_used_cooling_disabled_and_broken_are_skipped_with_why() -> None:
    tried = [attempt("shelf", 0, AttemptState.FAILED, "product_unavailable")]
    cooling = {("main", "1"): NOW + timedelta(minutes=5)}
    offers, skipped = plan_offers(P, tried, cooldowns=cooling, enabled=ENABLED, health=Weights({}, {"backup"}), now=NOW)
    assert offers == []
    assert [s.why for s in skipped] == ["tried: product_unavailable", "cooling down", "breaker open"]
    # Only a breaker is a block worth waiting for (one that cannot say when it ends: now, asked again soon).
    assert [s.until for s in skipped] == [None, None, NOW]
    offers, _ = plan_offers(P, [], cooldowns={}, enabled={**ENABLED, "main": False}, health=NullHealth(), now=NOW)
    assert names(offers) == ["shelf", "backup"]


def test_a_breaker_that_knows_when_it_reopens_says_so_and_disabled_never_ends() -> None:
    class Reopening(Weights):
        def reopens_at(self, supplier: str, now: datetime) -> datetime | None:
            return now + timedelta(seconds=42)

    health = Reopening({}, {"main"})
    offers, skipped = plan_offers(P, [], cooldowns={}, enabled={**ENABLED, "backup": False}, health=health, now=NOW)
    assert names(offers) == ["shelf"]
    assert [(s.offer.supplier, s.why, s.until) for s in skipped] == [
        ("main", "breaker open", NOW + timedelta(seconds=42)),
        ("backup", "disabled", None),
    ]


def test_expired_cooldown_no_longer_skips() -> None:
    cooling = {("main", "1"): NOW - timedelta(seconds=1)}
    offers, _ = plan_offers(P, [], cooldowns=cooling, enabled=ENABLED, health=NullHealth(), now=NOW)
    assert "main" in names(offers)


def test_cost_strategy_within_a_level() -> None:
    same = product(
        OfferConfig(supplier="main", product_id="1", cost=Decimal("9.5")),
        OfferConfig(supplier="backup", product_id="2", cost=Decimal("9.0")),
    )
    offers, _ = plan_offers(same, [], cooldowns={}, enabled=ENABLED, health=NullHealth(), now=NOW, strategy="cost")
    assert names(offers) == ["backup", "main"]


def test_score_strategy_splits_in_proportion() -> None:
    same = product(OfferConfig(supplier="main", product_id="1"), OfferConfig(supplier="backup", product_id="2"))
    health = Weights({"main": 80.0, "backup": 20.0})
    rng = random.Random(7)
    firsts = Counter(
        plan_offers(same, [], cooldowns={}, enabled=ENABLED, health=health, now=NOW, strategy="score", rng=rng)[0][
            0
        ].supplier
        for _ in range(2000)
    )
    share = firsts["main"] / 2000
    assert 0.75 <= share <= 0.85
    assert firsts["backup"] > 0
