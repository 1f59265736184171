"""Routing with demotion: a demoted supplier is passed by except for probe orders, and is a last resort."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from fulfil.config import OfferConfig, ProductConfig
from fulfil.domain import AttemptRecord, AttemptState
from fulfil.health import NullHealth
from fulfil.quality import SupplierQuality
from fulfil.routing import Demoting, _demotes, plan_offers

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ENABLED = {"main": True, "backup": True, "third": True}


class Ranked(NullHealth):
    """A working fake of the quality object's routing side."""

    def __init__(self, demoted: set[str], probe_share: float, broken: set[str] | None = None) -> None:
        self._demoted = demoted
        self._share = probe_share
        self.broken = broken or set()

    def allows(self, supplier: str, now: datetime) -> bool:
        return supplier not in self.broken

    def demoted(self, supplier: str) -> bool:
        return supplier in self._demoted

    @property
    def probe_share(self) -> float:
        return self._share


PRIORITY = ProductConfig(
    offers=(
        OfferConfig(supplier="main", product_id="1", priority=0),
        OfferConfig(supplier="backup", product_id="2", priority=1),
        OfferConfig(supplier="third", product_id="3", priority=2),
    )
)


def plan(health: NullHealth, attempts: list[AttemptRecord] | None = None, rng: random.Random | None = None,
         strategy: str = "priority", product: ProductConfig = PRIORITY) -> list[str]:
    offers, _ = plan_offers(
        product, attempts or [], cooldowns={}, enabled=ENABLED, health=health, now=NOW, strategy=strategy, rng=rng
    )
    return [o.supplier for o in offers]


def test_the_quality_object_is_recognised() -> None:
    assert isinstance(Ranked(set(), 0.0), Demoting)
    assert not isinstance(NullHealth(), Demoting)
    # plan_offers' once-per-class check says the same as the Protocol (the real quality object included).
    assert _demotes(Ranked) and _demotes(SupplierQuality) and not _demotes(NullHealth)


def test_a_demoted_supplier_goes_last() -> None:
    assert plan(Ranked({"main"}, 0.0)) == ["backup", "third", "main"]
    assert plan(Ranked({"main", "backup"}, 0.0)) == ["third", "main", "backup"]
    assert plan(NullHealth()) == ["main", "backup", "third"]


def test_a_demoted_supplier_is_a_last_resort_not_a_reason_for_review() -> None:
    tried = [AttemptRecord(1, 1, "backup", 1, "N1", AttemptState.FAILED, NOW, error_class="product_unavailable")]
    health = Ranked({"main"}, 0.0, broken={"third"})
    assert plan(health, tried) == ["main"]


def test_probe_orders_still_reach_a_demoted_supplier_in_proportion() -> None:
    rng = random.Random(11)
    health = Ranked({"main"}, 0.05)
    firsts = [plan(health, rng=rng)[0] for _ in range(10_000)]
    share = firsts.count("main") / len(firsts)
    assert 0.04 <= share <= 0.06  # probe_share 5 %: sd 0.2 % over 10,000 orders


def test_score_strategy_puts_the_demoted_after_its_level() -> None:
    same = ProductConfig(
        offers=(
            OfferConfig(supplier="main", product_id="1"),
            OfferConfig(supplier="backup", product_id="2"),
            OfferConfig(supplier="third", product_id="3", priority=1),
        )
    )
    rng = random.Random(3)
    plans = [plan(Ranked({"main"}, 0.0), rng=rng, strategy="score", product=same) for _ in range(200)]
    assert all(p == ["backup", "third", "main"] for p in plans)


def test_a_probe_goes_first_within_its_level_whatever_its_weight() -> None:
    same = ProductConfig(
        offers=(OfferConfig(supplier="main", product_id="1"), OfferConfig(supplier="backup", product_id="2"))
    )

    class LowScore(Ranked):
        def weight(self, supplier: str) -> float:
            return 5.0 if supplier == "main" else 95.0

    rng = random.Random(5)
    firsts = [plan(LowScore({"main"}, 0.1), rng=rng, strategy="score", product=same)[0] for _ in range(10_000)]
    assert 0.085 <= firsts.count("main") / len(firsts) <= 0.115  # the probe share, not 10 % of 5 %
