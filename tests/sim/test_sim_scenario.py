"""Scenario validation (every error names its field), the ready scenario files, and card patterns."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from simkit import ACG_DATA, FULU_DATA, scenario

from suppliers.sim import scenario as scenario_module
from suppliers.sim.cards import CardPattern, PatternError
from suppliers.sim.scenario import ScenarioError, coerce_scenario, load_scenario, scenario_from_data

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def errors_of(data: Any, protocol: str | None = None) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        scenario_from_data(data, protocol)
    return info.value.errors


def fault_errors(*faults: dict[str, Any], base: dict[str, Any] = FULU_DATA) -> list[str]:
    return errors_of(scenario(base, faults=list(faults)))


@pytest.mark.parametrize(
    "name",
    ["fulu-clean.yaml", "fulu-flaky.yaml", "fulu-down.yaml", "acg-clean.yaml", "acg-flaky.yaml", "acg-real.yaml"],
)
def test_ready_scenarios_load(name: str) -> None:
    loaded = load_scenario(SCENARIOS / name)
    assert loaded.protocol == ("fulu" if name.startswith("fulu") else "acg_faka")
    assert loaded.products


def test_flaky_scenario_has_the_promised_shares() -> None:
    flaky = load_scenario(SCENARIOS / "fulu-flaky.yaml")
    shares: dict[str, float] = {}
    for fault in flaky.faults:
        shares[fault.kind] = shares.get(fault.kind, 0.0) + (fault.probability or 0.0)
    assert shares == pytest.approx({"lost_after_commit": 0.10, "system_error": 0.10, "invalid_keys": 0.05})
    assert all(not f.committed for f in flaky.faults if f.kind == "system_error")


def test_a_valid_scenario_becomes_frozen_objects() -> None:
    loaded = scenario_from_data(FULU_DATA)
    assert loaded.products["10001"].card_pattern is not None
    assert loaded.products["10003"].card_pattern is None
    assert str(loaded.balance) == "1000.00"
    with pytest.raises(AttributeError):
        loaded.seed = 4  # type: ignore[misc]


def test_secret_is_not_in_the_repr() -> None:
    assert FULU_DATA["secret"] not in repr(scenario_from_data(FULU_DATA))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"protocol": "soap"}, "protocol: expected one of fulu, acg_faka"),
        ({"secret": "short"}, "secret: a fulu app secret is 32 characters"),
        ({"balance": "lots"}, "balance: expected an amount"),
        ({"balance": -1}, "balance: must be a non-negative amount"),
        ({"max_skew": 10}, "max_skew: write a unit"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"app_id": "x"}, "app_id: only used by the acg_faka protocol"),
        ({"products": {}}, "products: expected a non-empty mapping"),
        ({"products": {"abc": {"price": "1"}}}, "products.abc: fulu product ids are positive integers"),
        ({"products": {1: {"price": "1", "kind": "gift"}}}, "products.1.kind: expected one of card, direct"),
        ({"products": {1: {"kind": "card"}}}, "products.1.price: required"),
        ({"products": {1: {"price": "1", "stock": -2}}}, "products.1.stock: must be >= 0"),
        ({"products": {1: {"price": "1", "card_pattern": "(a|b)"}}}, "products.1.card_pattern: '('"),
        (
            {"products": {1: {"price": "1", "kind": "direct", "card_pattern": "[A]{2}"}}},
            "products.1.card_pattern",
        ),
        ({"callback_url": "ftp://x"}, "callback_url: expected an http(s) URL"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], expected: str) -> None:
    errors = errors_of(scenario(FULU_DATA, **change))
    assert any(e.startswith(expected) for e in errors), errors


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of(scenario(FULU_DATA, balance="x", seed=-1, faults=[{"kind": "nope"}]))
    assert [e.split(":")[0] for e in errors] == ["faults[0].kind", "seed", "balance"]


def test_missing_credentials_are_named() -> None:
    data = scenario(ACG_DATA)
    del data["app_id"]
    assert errors_of(data) == ["app_id: expected a non-empty string, got None"]


def test_protocol_from_the_command_line_must_agree() -> None:
    assert errors_of(FULU_DATA, "acg_faka") == ["protocol: the scenario is for 'fulu' but 'acg_faka' was asked for"]
    data = scenario(ACG_DATA)
    del data["protocol"]
    assert scenario_from_data(data, "acg_faka").protocol == "acg_faka"


def test_acg_products_are_card_products_without_numbers() -> None:
    products = {"a": {"price": "1", "kind": "direct"}, "b": {"price": "1", "number_pattern": "[0-9]{4}"}}
    errors = errors_of(scenario(ACG_DATA, products=products))
    assert any(e.startswith("products.a.kind: acg_faka products are card products") for e in errors)
    assert any(e.startswith("products.b.number_pattern: only fulu cards") for e in errors)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"kind": "meteor"}, "faults[0].kind: expected one of latency, refuse"),
        (
            {"kind": "lost_after_commit", "probability": 1.5},
            "faults[0].probability: must be a number between 0 and 1",
        ),
        (
            {"kind": "lost_after_commit", "requests": "20-10"},
            "faults[0].requests: requests are counted from 1",
        ),
        ({"kind": "lost_after_commit", "requests": "often"}, "faults[0].requests: expected a request range"),
        ({"kind": "lost_after_commit", "from": "5s", "to": "2s"}, "faults[0].to: must be after `from`"),
        ({"kind": "lost_after_commit", "products": [999]}, "faults[0].products: unknown product(s) [999]"),
        ({"kind": "lost_after_commit", "on": ["refund"]}, "faults[0].on: lost_after_commit applies to"),
        ({"kind": "out_of_stock", "on": ["query"]}, "faults[0].on: out_of_stock applies to order, stock"),
        ({"kind": "lost_after_commit", "committed": False}, "faults[0].committed: unknown field"),
        ({"kind": "refuse", "probability": 0.5}, "faults[0].probability: unknown field"),
        ({"kind": "refuse", "requests": "1-3"}, "faults[0].requests: unknown field"),
        ({"kind": "latency", "distribution": "uniform", "min": "50ms"}, "faults[0].max: required"),
        (
            {"kind": "latency", "distribution": "normal", "mean": "5ms", "stddev": "1ms", "delay": "1s"},
            "faults[0].delay",
        ),
        ({"kind": "latency", "delay": 5}, "faults[0].delay: write a unit"),
        ({"kind": "http_5xx", "status": 404}, "faults[0].status: must be between 500 and 599"),
        ({"kind": "processing", "then": "success"}, "faults[0].duration: required"),
        (
            {"kind": "processing", "duration": "1s", "then": "maybe"},
            "faults[0].then: expected one of success, failure",
        ),
        ({"kind": "invalid_keys", "mode": "expired"}, "faults[0].mode: expected one of not_matching, resold"),
        ({"kind": "system_error", "committed": "yes"}, "faults[0].committed: expected true or false"),
        ("lost", "faults[0]: expected a mapping"),
    ],
)
def test_fault_errors_name_the_field(fault: Any, expected: str) -> None:
    errors = fault_errors(fault)
    assert any(e.startswith(expected) for e in errors), errors


def test_fault_kinds_belong_to_their_protocol() -> None:
    errors = fault_errors({"kind": "bad_signature"}, {"kind": "processing", "duration": "1s"}, base=ACG_DATA)
    assert "faults[0].kind: bad_signature is not a fault of the acg_faka protocol" in errors
    assert "faults[1].kind: processing is not a fault of the acg_faka protocol" in errors
    errors = fault_errors({"kind": "system_error", "code": 5000}, base=ACG_DATA)
    assert errors == ["faults[0].code: acg_faka errors all have code 0: set `message` instead"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"kind": "html_error", "status": 404}, "faults[0].status: an error page comes with 200 or a 5xx status"),
        ({"kind": "purchase_limit", "mode": "daily"}, "faults[0].mode: expected one of per_person, per_trade"),
        ({"kind": "purchase_limit", "limit": 0}, "faults[0].limit: must be >= 1"),
        ({"kind": "grabbed", "on": ["query"]}, "faults[0].on: grabbed applies to order"),
        ({"kind": "charged_then_error", "message": ""}, "faults[0].message: expected a non-empty string"),
        ({"kind": "manual_delivery", "committed": True}, "faults[0].committed: unknown field"),
    ],
)
def test_acg_fault_errors_name_the_field(fault: Any, expected: str) -> None:
    errors = fault_errors(fault, base=ACG_DATA)
    assert any(e.startswith(expected) for e in errors), errors


def test_acg_only_faults_and_products() -> None:
    kinds = ("manual_delivery", "grabbed", "purchase_limit", "charged_then_error")
    errors = fault_errors(*({"kind": kind} for kind in kinds))
    assert errors == [f"faults[{i}].kind: {kind} is not a fault of the fulu protocol" for i, kind in enumerate(kinds)]
    errors = errors_of(scenario(FULU_DATA, products={1: {"price": "1", "delivery": "manual"}}))
    assert errors == ["products.1.delivery: only acg_faka products can be delivered by hand"]
    products = {
        "a": {"price": "1", "delivery_message": "hi"},
        "b": {"price": "1", "delivery": "manual", "stock": 5},
        "c": {"price": "1", "delivery": "by pigeon"},
    }
    errors = errors_of(scenario(ACG_DATA, products=products))
    assert any(e.startswith("products.a.delivery_message: only a `delivery: manual` product") for e in errors)
    assert any(e.startswith("products.b.stock: a manual-delivery product keeps no stock") for e in errors)
    assert any(e.startswith("products.c.delivery: expected one of auto, manual") for e in errors)


def test_acg_fault_defaults() -> None:
    faults = [
        {"kind": "html_error"},
        {"kind": "manual_delivery"},
        {"kind": "purchase_limit"},
        {"kind": "charged_then_error"},
        {"kind": "grabbed"},
    ]
    html, manual, limit, charged, grabbed = scenario_from_data(scenario(ACG_DATA, faults=faults)).faults
    assert (html.status, html.committed) == (200, False)  # the real shop's error pages come with HTTP 200
    assert manual.message == "正在发货中，请耐心等待…"
    assert (limit.mode, limit.limit) == ("per_person", 1)
    assert charged.message == "商品不存在"
    assert all(f.on == {"order"} for f in (manual, limit, charged, grabbed))
    assert scenario_from_data(scenario(FULU_DATA, faults=[{"kind": "html_error"}])).faults[0].status == 502


def test_fault_defaults() -> None:
    loaded = scenario_from_data(
        scenario(
            FULU_DATA,
            faults=[
                {"kind": "system_error", "requests": "10-"},
                {"kind": "http_5xx"},
                {"kind": "latency", "distribution": "uniform", "min": "5ms", "max": "20ms"},
                {"kind": "out_of_stock", "products": [10001]},
                {"kind": "timeout_before_commit", "requests": 3},
            ],
        )
    )
    system, http5xx, latency, stock, timeout = loaded.faults
    assert (system.code, system.committed, system.requests, system.on) == (
        5000,
        False,
        (10, None),
        frozenset({"order"}),
    )
    assert (http5xx.status, http5xx.committed) == (500, True)
    assert latency.latency is not None and (latency.latency.a, latency.latency.b) == (0.005, 0.02)
    assert latency.on == {"order", "query", "stock", "account"}
    assert stock.on == {"order", "stock"} and stock.products == frozenset({"10001"})
    assert (timeout.duration, timeout.requests) == (60.0, (3, 3))


def test_a_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("protocol: fulu\napp_key: k\nsecret: s\nproducts: {1: {price: '1'}}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.errors == [f"{path}: secret: a fulu app secret is 32 characters (AES-256 key), got 1"]
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        path.write_text("protocol: [fulu\n")
        load_scenario(path)


def test_coerce_checks_the_protocol() -> None:
    loaded = scenario_from_data(FULU_DATA)
    assert coerce_scenario(loaded) is loaded
    with pytest.raises(ScenarioError, match="protocol"):
        coerce_scenario(loaded, "acg_faka")


# --- card patterns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["[A-Z0-9]{16}", "[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", "CD[0-9]{3,6}", "[a-f0-9]{32}", r"X\-[0-9]{2}"],
)
def test_generated_keys_match_and_mismatches_do_not(source: str) -> None:
    pattern = CardPattern.parse(source)
    rng = random.Random(5)
    for _ in range(50):
        assert pattern.matches(pattern.generate(rng))
        bad = pattern.mismatch(rng)
        assert bad and not pattern.matches(bad)


def test_a_permissive_pattern_still_gets_a_mismatch() -> None:
    pattern = CardPattern.parse("[ -~]{1,4}")  # every printable character, any length up to 4
    assert not pattern.matches(pattern.mismatch(random.Random(1)))


@pytest.mark.parametrize("source", ["", "[A-Z", "[^A]{3}", "A{2", "A{x}", "A{0}", "(AB)", "A*", "[Z-A]", "A\\"])
def test_unsupported_patterns_are_refused(source: str) -> None:
    with pytest.raises(PatternError):
        CardPattern.parse(source)


def test_the_documented_example_is_valid() -> None:
    doc = scenario_module.__doc__ or ""
    example = doc[doc.index("    protocol: fulu") : doc.index("Fault kinds")]
    loaded = scenario_from_data(yaml.safe_load("\n".join(line[4:] for line in example.splitlines())))
    assert [f.kind for f in loaded.faults] == ["lost_after_commit", "system_error", "refuse"]
    assert loaded.products["10003"].processing_time == 2.0 and loaded.products["10003"].stock is None
