"""Bad input at the intake edge: fields longer than their columns, numbers out of range, files the parsers choke on.

Each is refused naming the line and the field, and nothing is written for it; nothing raises past the CLI.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulfil import intake
from fulfil.config import ConfigError, config_from_data
from fulfil.domain import NewOrder

if TYPE_CHECKING:
    from fulfil.storage import Store
    from tests.cli.conftest import Env

CONFIG = config_from_data(
    {
        "suppliers": [{"name": "shelf", "type": "stock"}],
        "products": {"steam-100": {"kind": "card", "max_qty": 5, "offers": [{"supplier": "shelf"}]}},
    },
    environ={},
)


def _refs(env: Env) -> set[str]:
    async def body(store: Store) -> set[str]:
        return {view.order.ref for view in await store.list_orders()}

    return env.store(body)


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (NewOrder("R", "s" * 129, 1), "sku is longer than 128 characters"),
        (NewOrder("r" * 129, "steam-100", 1), "ref is longer than 128 characters"),
        (NewOrder("R", "steam-100", 1, "a" * 257), "account is longer than 256 characters"),
        (NewOrder("R", "steam-100", 1, None, Decimal("1e15")), "amount 1E+15 is too large (below 10^15)"),
        (NewOrder("R", "steam-100", 1, None, Decimal("0.123456789")), "more than 8 decimal places"),
        (NewOrder("R", "steam-100", 1, None, Decimal("1." + "0" * 29 + "1")), "more than 8 decimal places"),
    ],
    ids=["sku", "ref", "account", "amount-large", "amount-places", "amount-places-past-28-digits"],
)
def test_oversized_values_are_refused_naming_the_field(order: NewOrder, reason: str) -> None:
    reasons = intake.validate_order(order, CONFIG)
    assert len(reasons) == 1 and reason in reasons[0]
    assert len(reasons[0]) < 200  # the value itself is not echoed whole


def test_trailing_zeros_are_not_decimal_places() -> None:
    order = NewOrder("R", "steam-100", 1, None, Decimal("10.50000000000000"))
    assert intake.validate_order(order, CONFIG) == []


def test_a_product_key_longer_than_its_column_is_refused_by_the_config() -> None:
    products = {"s" * 129: {"offers": [{"supplier": "shelf"}]}}
    data = {"suppliers": [{"name": "shelf", "type": "stock"}], "products": products}
    with pytest.raises(ConfigError) as caught:
        config_from_data(data, environ={})
    assert any("a sku is at most 128 characters" in error for error in caught.value.errors)


@pytest.mark.parametrize(
    ("value", "amount"),
    [(10, Decimal("10")), (10.5, Decimal("10.5")), (0.1, Decimal("0.1")), ("9.90", Decimal("9.90"))],
)
def test_amount_may_be_a_number(value: object, amount: Decimal) -> None:
    order = intake.order_from_fields({"ref": "R", "sku": "s", "qty": 1, "amount": value})
    assert order.amount == amount and str(order.amount) == str(amount)


@pytest.mark.parametrize(
    ("fields", "field", "missing"),
    [
        ({"ref": "R", "sku": "s", "qty": 1, "amount": True}, "amount", False),
        ({"ref": "R", "sku": "s", "qty": 1, "amount": float("nan")}, "amount", False),
        ({"ref": "R", "sku": "s", "qty": 1, "amount": float("inf")}, "amount", False),
        ({"ref": "R", "sku": "s", "qty": "1" * 5000}, "qty", False),
        ({"ref": "R", "sku": "s", "qty": 10**30}, "qty", False),
        ({"ref": "R", "sku": "s", "qty": 2.5}, "qty", False),
        ({"ref": 10**200, "sku": "s", "qty": 1}, "ref", False),
        ({"sku": "s", "qty": 1}, "ref", True),
    ],
    ids=["bool", "nan", "inf", "long-qty-text", "huge-qty", "fractional-qty", "huge-int-ref", "missing"],
)
def test_field_errors_name_the_field(fields: dict[str, object], field: str, missing: bool) -> None:
    with pytest.raises(intake.FieldError) as caught:
        intake.order_from_fields(fields)
    assert caught.value.field == field and caught.value.missing is missing
    assert field in str(caught.value) and len(str(caught.value)) < 200


def test_import_names_the_line_and_field_and_writes_nothing_for_it(env: Env) -> None:
    lines = [
        {"ref": "OK1", "sku": "steam-100", "qty": 1},
        {"ref": "L" * 129, "sku": "steam-100", "qty": 1},
        {"ref": "S1", "sku": "s" * 129, "qty": 1},
        {"ref": "A1", "sku": "mobile-50", "qty": 1, "account": "1" * 257},
        {"ref": "Q1", "sku": "steam-100", "qty": "9" * 5000},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n"
    path = env.write("orders.jsonl", text)
    result = env.cli("orders", "import", str(path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "accepted:  1\n" in out and "rejected:  5\n" in out
    assert "  line 2: LLLL" in out and "ref is longer than 128 characters" in out
    assert "  line 3: S1: sku is longer than 128 characters\n" in out
    assert "  line 4: A1: account is longer than 256 characters\n" in out
    assert "  line 5: qty is too large" in out
    assert "  line 6: not valid JSON (nested deeper than 64 levels)\n" in out
    assert "L" * 129 not in out
    assert _refs(env) == {"OK1"}


def test_csv_field_over_the_csv_limit_refuses_the_file_naming_the_line(env: Env) -> None:
    text = "ref,sku,qty,account,amount\nC1,steam-100,1,,\nC2,steam-100,1," + "a" * 200_000 + ",\n"
    path = env.write("orders.csv", text)
    result = env.cli("orders", "import", str(path))
    assert result.exit_code == 2
    assert "line 3" in result.stderr and "field larger than field limit" in result.stderr
    assert _refs(env) == set()


def test_add_refuses_an_oversized_sku(env: Env) -> None:
    result = env.cli("orders", "add", "--ref", "BIG", "--sku", "s" * 129, "--qty", "1")
    assert result.exit_code == 2
    assert "order BIG refused: sku is longer than 128 characters" in result.stderr
    result = env.cli("orders", "add", "--ref", "BIG", "--sku", "steam-100", "--qty", "1", "--amount", "1e20")
    assert result.exit_code == 2 and "amount 1E+20 is too large" in result.stderr
    assert _refs(env) == set()


# --- properties -------------------------------------------------------------------------------------------

_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from([*intake.FIELDS, "other"]), _value))
def test_fields_become_an_order_or_a_value_error(fields: dict[str, object]) -> None:
    try:
        order = intake.order_from_fields(fields)
    except ValueError as exc:
        assert str(exc)
        return
    reasons = intake.validate_order(order, CONFIG)  # never raises either
    assert all(isinstance(reason, str) and len(reason) < 400 for reason in reasons)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.sampled_from(["jsonl", "csv"]))
def test_import_text_parses_or_refuses_the_file(text: str, fmt: str) -> None:
    try:
        parsed = intake.parse_import_text(text, "jsonl" if fmt == "jsonl" else "csv")
    except intake.ImportFileError:
        return
    for line in parsed.lines:
        assert (line.order is None) != (line.error is None)
    intake.plan_import(parsed.lines, CONFIG)
