"""The pure parts of risk: the decision from facts and figures, the config's checks, identities."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fulfil.config import ConfigError, RiskConfig, config_from_data
from fulfil.crypto import CardCipher, identity_hash
from fulfil.risk.identity import IdentityError, mask_identity, normalize, parse_identity
from fulfil.risk.rules import BlockHit, Figures, OrderFacts, decide, lock_keys, queries

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FAMILIES = {"s20": "steam", "s50": "steam", "s100": "steam", "other": None}


def risk(*rules: dict[str, object], **credit: int) -> RiskConfig:
    return RiskConfig.model_validate({"rules": list(rules), "credit": credit})


def facts(**identities: str) -> OrderFacts:
    return OrderFacts(1, "s100", 1, Decimal("100"), identities)


def test_identity_hash_is_the_shared_definition() -> None:
    key = bytes(range(32))
    subkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fulfil buyer identity v1").derive(key)
    expected = hmac.new(subkey, b"contact:bob@example.com", hashlib.sha256).hexdigest()
    assert identity_hash(key, "contact", "  Bob@Example.COM ") == expected
    assert CardCipher(key).identity_hash("contact", "bob@example.com") == expected
    assert identity_hash(key, "user", " U1 ") != identity_hash(key, "user", "u1")  # only contacts lower-cased
    assert identity_hash(key, "ip", "1.2.3.4") != identity_hash(key, "device", "1.2.3.4")  # the kind is hashed


def test_identities_are_normalised_masked_and_named() -> None:
    assert normalize("ip", " 2001:DB8:0::1 ") == "2001:db8::1"
    assert mask_identity("contact", "bob@example.com") == "b***@example.com"
    assert mask_identity("contact", "13812345678") == "138****5678"
    assert mask_identity("ip", "203.0.113.9") == "203.0.*.*"
    assert mask_identity("ip", "2001:db8::1") == "2001:0db8:*"
    assert mask_identity("user", "u-12345") == "u-***45"
    assert mask_identity("device", "abc") == "a***"
    assert parse_identity("contact:B@x.com") == ("contact", "B@x.com")
    assert parse_identity("b@x.com") == ("contact", "b@x.com")
    assert parse_identity("ip:2001:db8::1") == ("ip", "2001:db8::1")
    for bad, message in (("phone:1", "KIND:VALUE"), ("user:", "empty"), ("ip:1.2.3", "not an IP")):
        with pytest.raises(IdentityError, match=message):
            parse_identity(bad)


def test_the_most_severe_hit_decides_and_score_rules_lower_credit() -> None:
    rules = risk(
        {"name": "soft", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 1, "action": "score -10"},
        {"name": "hold-it", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 2, "action": "hold"},
        {"name": "refuse-it", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 3, "action": "refuse"},
    )
    order = facts(ip="h-ip", account="h-acct")
    two = decide(order, rules, {n: Figures(orders=2) for n in ("soft", "hold-it", "refuse-it")}, {}, [])
    assert (two.action, two.rule, two.reason) == ("hold", "hold-it", "risk: hold-it: 3 orders (max 2) per ip in 1m")
    assert (two.penalty, two.action_penalty, two.action_reason) == (10, 5, "held by hold-it")
    three = decide(order, rules, {n: Figures(orders=3) for n in ("soft", "hold-it", "refuse-it")}, {}, [])
    assert (three.action, three.rule, three.action_penalty) == ("refuse", "refuse-it", 20)
    allowed = decide(order, rules, {n: Figures() for n in ("soft", "hold-it", "refuse-it")}, {}, [])
    assert (allowed.action, allowed.reason, allowed.penalty) == ("allow", None, 0)
    # A score rule that takes credit below hold_below holds, without a penalty of its own on top.
    low = decide(order, rules, {"soft": Figures(orders=1)}, {"h-acct": 65}, [])
    assert (low.action, low.reason, low.penalty, low.action_penalty) == ("hold", "risk: credit 55 is below 60", 10, 0)


def test_blocks_refuse_and_credit_thresholds() -> None:
    order = facts(contact="h-c", user="h-u")
    blocked = decide(order, risk(), {}, {}, [BlockHit("contact", "stolen cards")])
    assert (blocked.action, blocked.reason, blocked.action_penalty) == (
        "refuse", "risk: blocked contact: stolen cards", 20
    )  # fmt: skip
    assert decide(order, risk(), {}, {"h-u": 29}, []).reason == "risk: credit 29 is below 30"
    assert decide(order, risk(), {}, {"h-u": 59, "h-c": 90}, []).action == "hold"  # the lowest identity counts
    assert decide(order, risk(), {}, {"h-u": 60}, []).action == "allow"
    assert decide(facts(ip="h-ip"), risk(), {}, {"h-ip": 10}, []).action == "allow"  # no credit per ip


def test_queries_ask_only_what_the_rules_need() -> None:
    rules = risk(
        {"name": "v", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 5, "max_amount": 500},
        {"name": "d", "kind": "denominations", "per": "account", "window": "60s", "max_skus": 2},
        {"name": "p", "kind": "product_limit", "per": "user", "max_units": 3, "skus": ["other"]},
        {"name": "f", "kind": "first_order", "min_amount": 200},
    )
    asked = queries(facts(ip="h-ip", account="h-a", contact="h-c"), rules, FAMILIES, NOW)
    shapes = [(q.rule, q.per, q.measures, q.skus) for q in asked]
    assert shapes == [
        ("v", "ip", ("orders", "amount"), None),
        ("d", "account", ("skus",), ("s20", "s50")),  # the family's other face values
        ("f", "account", ("seen",), None),
        ("f", "contact", ("seen",), None),
    ]  # the product limit is on another sku, and the order has no user
    assert lock_keys(facts(ip="h-ip", account="h-a", device="h-d"), rules) == ["h-a", "h-ip"]
    d = decide(facts(account="h-a"), rules, {"d": Figures(skus=2), "f": Figures(seen=True)}, {}, [])
    assert d.reason == "risk: d: 3 skus of one family per account in 1m (max 2)"


def test_the_config_names_what_is_wrong_with_a_rule() -> None:
    cases = [
        ({"name": "a", "kind": "velocity", "window": "60s", "max_orders": 5}, "a velocity rule needs per:"),
        ({"name": "a", "kind": "velocity", "per": "ip", "max_orders": 5}, "needs a window"),
        ({"name": "a", "kind": "velocity", "per": "ip", "window": "60s"}, "needs max_orders, max_units or"),
        ({"name": "a", "kind": "denominations", "per": "ip", "window": "1m"}, "needs max_skus"),
        ({"name": "a", "kind": "first_order"}, "needs min_amount"),
        ({"name": "a", "kind": "credit", "below": 50, "per": "ip"}, "not per ip"),
        ({"name": "a", "kind": "first_order", "min_amount": 1, "action": "score -0"}, "is not hold, refuse"),
        ({"name": "a", "kind": "velocity", "per": "phone", "window": "1m", "max_orders": 1}, "risk.rules[0].per:"),
    ]
    for rule, message in cases:
        with pytest.raises(ConfigError) as exc:
            config_from_data({"risk": {"rules": [rule]}}, environ={})
        assert message in str(exc.value), (rule, str(exc.value))
    with pytest.raises(ConfigError, match="rule names must be unique: x"):
        config_from_data({"risk": {"rules": [{"name": "x", "kind": "first_order", "min_amount": 1}] * 2}}, environ={})
    with pytest.raises(ConfigError, match="refuse_below <= hold_below <= start"):
        config_from_data({"risk": {"credit": {"hold_below": 20, "refuse_below": 30}}}, environ={})
    with pytest.raises(ConfigError, match=r"risk.rules\[0\].skus: unknown sku 'nope'"):
        rule = {"name": "p", "kind": "product_limit", "per": "user", "max_units": 1, "skus": ["nope"]}
        config_from_data({"risk": {"rules": [rule]}}, environ={})
    with pytest.raises(ConfigError, match="on_error"):
        config_from_data({"risk": {"on_error": "ignore"}}, environ={})
