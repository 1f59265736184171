"""Score math: the small-sample prior, weights, and the components a window's record gives."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fulfil.config import ScoringConfig
from fulfil.scoring import WindowStats, neutral, score, smoothed

CFG = ScoringConfig()  # prior 0.9 over 10 imaginary observations


def orders(n: int, *, good: bool) -> WindowStats:
    """n orders of one key each, every call and key good (or every one bad)."""
    ok = n if good else 0
    return WindowStats(
        calls=2 * n,
        calls_ok=2 * ok,
        finished=n,
        fulfilled=ok,
        units=n,
        invalid_units=n - ok,
        on_time=ok,
        claims=n - ok,
    )


def test_smoothed_is_the_bayesian_mean() -> None:
    assert smoothed(0, 0, 0.9, 10) == pytest.approx(0.9)
    assert smoothed(3, 3, 0.9, 10) == pytest.approx(12 / 13)
    assert smoothed(0, 3, 0.9, 10) == pytest.approx(9 / 13)
    assert smoothed(990, 1000, 0.9, 10) == pytest.approx(999 / 1010)
    assert smoothed(5, 5, 0.5, 0) == 1.0  # no prior: the raw rate
    assert smoothed(7, 5, 0.9, 10) == smoothed(5, 5, 0.9, 10)  # more successes than tries is clamped


def test_a_new_supplier_scores_the_prior() -> None:
    assert neutral(CFG).value == pytest.approx(90.0)
    assert score(WindowStats(), CFG).value == pytest.approx(90.0)


def test_three_orders_move_a_new_supplier_only_part_of_the_way() -> None:
    bad = score(orders(3, good=False), CFG).value
    good = score(orders(3, good=True), CFG).value
    assert 60 < bad < 75  # three failures: neither 0 ...
    assert 90 < good < 95  # ... nor three successes 100
    # calls: 0 of 6 good; every other component 0 of 3: (0 + 0.9*10) / (n + 10), weighted.
    expected = 100 * (0.35 * 9 / 16 + (0.25 + 0.35 + 0.2 + 0.1) * 9 / 13) / 1.25
    assert bad == pytest.approx(expected)


def test_a_long_record_outweighs_the_prior() -> None:
    assert score(orders(1000, good=False), CFG).value < 1.0
    assert score(orders(1000, good=True), CFG).value > 99.9


def test_components_come_from_the_window() -> None:
    stats = WindowStats(
        calls=100,
        calls_ok=80,
        finished=50,
        fulfilled=40,
        units=60,
        invalid_units=6,
        on_time=20,
        claims=5,
        claims_amount=Decimal("12.50"),
    )
    cfg = ScoringConfig(prior_weight=0)  # raw rates
    result = score(stats, cfg)
    assert result.components == {
        "call_success": pytest.approx(0.8),
        "fulfilment": pytest.approx(0.8),
        "key_validity": pytest.approx(0.9),
        "latency": pytest.approx(0.4),
        "claims": pytest.approx(0.9),
    }
    assert result.samples == {"call_success": 100, "fulfilment": 50, "key_validity": 60, "latency": 50, "claims": 50}
    weights = (0.35, 0.25, 0.35, 0.2, 0.1)
    expected = 100 * sum(w * c for w, c in zip(weights, (0.8, 0.8, 0.9, 0.4, 0.9), strict=True)) / sum(weights)
    assert result.value == pytest.approx(expected)


def test_weights_choose_what_counts() -> None:
    stats = WindowStats(calls=100, calls_ok=100, finished=100, fulfilled=100, units=100, invalid_units=50)
    only_keys = ScoringConfig(
        prior_weight=0,
        weight_call_success=0,
        weight_fulfilment=0,
        weight_latency=0,
        weight_claims=0,
        weight_key_validity=1,
    )
    assert score(stats, only_keys).value == pytest.approx(50.0)
    nothing = only_keys.model_copy(update={"weight_key_validity": 0.0})
    assert score(stats, nothing).value == pytest.approx(100 * nothing.prior)


def test_rates_and_the_json_form() -> None:
    stats = WindowStats(calls=4, calls_ok=3, finished=2, fulfilled=1, units=2, invalid_units=5, latency_p95=1.23456)
    assert stats.call_success_rate == 0.75
    assert stats.key_validity_rate == 0.0  # more invalid than received (claims counted by time) is clamped
    assert WindowStats().fulfilment_rate is None
    data = stats.as_dict()
    assert data["latency_p95"] == 1.235 and data["claims_amount"] == "0.00" and data["fulfilment_rate"] == 0.5
