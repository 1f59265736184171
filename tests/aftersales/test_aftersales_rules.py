"""The pure parts: L1's rules in their order, the proof and its buckets, hotspot detection, the config."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fulfil.aftersales.hotspots import Counts, find_hotspots
from fulfil.aftersales.l1 import decide, topup_verdict
from fulfil.aftersales.model import Facts, Problem, ReportedKey, Step
from fulfil.aftersales.proof import Buckets, Guard, proof_matches
from fulfil.aftersales.stats import percentile
from fulfil.config import AftersalesConfig, ConfigError, HotspotConfig, config_from_data

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEY = ReportedKey(delivery_id=1, attempt_id=7, supplier="main", fingerprint="f1")
GOOD = Facts(
    problem=Problem.KEY_INVALID,
    sku="steam",
    product_kind="card",
    order_status="delivered",
    delivered_at=NOW - timedelta(days=1),
    delivered_units=1,
    credit=100,
    named=1,
    matched=(KEY,),
    delivered_attempt=7,
    delivered_supplier="main",
)
CONFIG = AftersalesConfig()


def test_a_report_within_every_rule_is_reissued_from_its_purchase() -> None:
    decision = decide(GOOD, CONFIG, NOW)
    assert (decision.step, decision.units, decision.attempt_id, decision.supplier) == (Step.REISSUE, 1, 7, "main")


@pytest.mark.parametrize(
    ("facts", "config", "reason"),
    [
        (GOOD, AftersalesConfig.model_validate({"l1": {"enabled": False}}), "automatic decisions are off"),
        (replace(GOOD, order_status="review"), CONFIG, "the order is review, not delivered"),
        (replace(GOOD, product_kind="direct"), CONFIG, "not a card product"),
        (replace(GOOD, product_kind=None), CONFIG, "product 'steam' is not configured"),
        (replace(GOOD, named=2), CONFIG, "1 of 2 named keys are not this order's"),
        (replace(GOOD, delivered_at=NOW - timedelta(days=8)), CONFIG, "reported after the after-sales window (7d"),
        (
            replace(GOOD, delivered_at=NOW - timedelta(days=8)),
            AftersalesConfig.model_validate({"products": {"steam": {"window": "30d"}}}),
            None,
        ),
        (replace(GOOD, credit=59), CONFIG, "buyer credit 59 is below 60"),
        (
            replace(GOOD, matched=(replace(KEY, reported_in="AS-1"),)),
            CONFIG,
            "a named key was reported before (case AS-1)",
        ),
        (replace(GOOD, matched=(replace(KEY, under_claim="C-9"),)), CONFIG, "already under claim C-9"),
    ],
)
def test_the_first_rule_that_fails_is_the_reason(facts: Facts, config: AftersalesConfig, reason: str | None) -> None:
    decision = decide(facts, config, NOW)
    if reason is None:
        assert decision.step is Step.REISSUE
    else:
        assert decision.step is Step.TO_PERSON and reason in decision.reason


def test_the_other_problems() -> None:
    assert decide(replace(GOOD, problem=Problem.NOT_RECEIVED), CONFIG, NOW).step is Step.RESEND
    assert (
        decide(replace(GOOD, problem=Problem.NOT_RECEIVED, order_status="pending"), CONFIG, NOW).step is Step.TO_PERSON
    )
    assert decide(replace(GOOD, problem=Problem.TOPUP_NOT_ARRIVED), CONFIG, NOW).step is Step.TO_PERSON
    topup = replace(GOOD, problem=Problem.TOPUP_NOT_ARRIVED, product_kind="direct")
    assert decide(topup, CONFIG, NOW).step is Step.QUERY_TOPUP
    assert decide(replace(GOOD, problem=Problem.OTHER), CONFIG, NOW).step is Step.TO_PERSON
    assert topup_verdict("succeeded", CONFIG).step is Step.CONFIRM
    assert topup_verdict("failed", CONFIG).step is Step.REISSUE
    assert (
        topup_verdict("failed", AftersalesConfig.model_validate({"l1": {"topup_failed": "refund"}})).step is Step.REFUND
    )
    assert topup_verdict("pending", CONFIG).step is Step.TO_PERSON


def test_the_proof_is_the_contact_trimmed_and_case_insensitive() -> None:
    assert proof_matches("  Buyer@Example.COM ", "buyer@example.com")
    assert not proof_matches("buyer@example.co", "buyer@example.com")
    assert not proof_matches("", None) and not proof_matches("\x00" * 32, None)


def test_buckets_refuse_the_eleventh_wrong_try_and_refill_with_time() -> None:
    t = [0.0]
    guard = Guard(10, 60.0, clock=lambda: t[0])
    for _ in range(10):
        assert not guard.refused("1.2.3.4", "R1")
        guard.wrong("1.2.3.4", f"R{_}")
    assert guard.refused("1.2.3.4", "other")  # the address is spent
    assert not guard.refused("5.6.7.8", "R9")  # another address, another ref
    t[0] = 6.0  # one try back every 6 s
    assert not guard.refused("1.2.3.4", "other")
    buckets = Buckets(2, 60.0, size=2, clock=lambda: 0.0)
    for key in ("a", "b", "c"):
        buckets.spend(key)
    assert len(buckets._state) == 2  # noqa: SLF001 - bounded memory


def test_hotspots_need_volume_a_rate_and_a_jump() -> None:
    cfg = HotspotConfig(min_cases=3, min_rate=0.05, factor=3.0)
    now = {
        ("s", "a"): Counts(15, 100),
        ("s", "b"): Counts(2, 10),
        ("s", None): Counts(17, 110),
        ("t", "a"): Counts(6, 100),
    }
    before = {("s", "a"): Counts(14, 700), ("t", "a"): Counts(30, 700)}
    found = find_hotspots(now, before, cfg)
    assert [(h.sku, h.supplier) for h in found] == [("s", None), ("s", "a")]
    assert "15.0%" in found[1].describe() and "2.0%" in found[1].describe()


def test_percentiles() -> None:
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0 and percentile([1.0, 2.0, 3.0, 100.0], 95) == 100.0


def test_bad_aftersales_config_names_every_field() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_data(
            {
                "aftersales": {
                    "l1": {"min_credit": 101},
                    "window": "soon",
                    "products": {"nope": {"window": "1d"}},
                    "levels": {"L2": {"time_limit": "2h", "problems": {"key_invalid": "1h", "weird": "1h"}}},
                    "hotspots": {"pause": "everything"},
                    "rate_limit": {"trusted_proxies": ["not-an-ip"]},
                }
            },
            environ={},
        )
    text = "\n".join(info.value.errors)
    for path in (
        "aftersales.l1.min_credit",
        "aftersales.window",
        "aftersales.products.nope: unknown product",
        "aftersales.levels.L2.problems.weird",
        "aftersales.hotspots.pause",
        "aftersales.rate_limit.trusted_proxies",
    ):
        assert path in text, text
    ok = config_from_data(
        {"aftersales": {"levels": {"L2": {"time_limit": "2h", "problems": {"key_invalid": "30m"}}}}}, environ={}
    )
    assert (
        ok.aftersales.levels.L2.limit_for("key_invalid") == 1800.0
        and ok.aftersales.levels.L2.limit_for("other") == 7200.0
    )


def test_the_supplier_to_avoid_comes_last_each_group_in_its_order() -> None:
    from decimal import Decimal

    from fulfil.routing import Offer, avoid_last

    offers = [Offer(i, s, f"p{i}", Decimal(1), 0) for i, s in enumerate(["a", "b", "a", "c"])]
    assert [(o.supplier, o.index) for o in avoid_last(offers, "a")] == [("b", 1), ("c", 3), ("a", 0), ("a", 2)]
    assert avoid_last(offers, None) == offers and avoid_last(offers, "z") == offers
    assert avoid_last(offers[:1], "a") == offers[:1]  # the only one left is used
