"""Intake rules and import-file parsing, without a database."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from fulfil import intake
from fulfil.config import Config, config_from_data
from fulfil.domain import NewOrder


@pytest.fixture
def config() -> Config:
    return config_from_data(
        {
            "suppliers": [
                {"name": "shelf", "type": "stock"},
                {"name": "up", "type": "fulu", "base_url": "http://x", "app_key": "k", "secret": "s"},
            ],
            "products": {
                "steam-100": {"kind": "card", "max_qty": 5, "offers": [{"supplier": "shelf"}]},
                "mobile-50": {"kind": "direct", "offers": [{"supplier": "up", "product_id": "1"}]},
            },
        },
        environ={},
    )


def test_acceptable_order_has_no_reasons(config: Config) -> None:
    assert intake.validate_order(NewOrder("R1", "steam-100", 5, None, Decimal("10")), config) == []
    assert intake.validate_order(NewOrder("R2", "mobile-50", 1, "13800000000"), config) == []


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (NewOrder("R1", "nope", 1), "unknown sku 'nope'"),
        (NewOrder("R1", "steam-100", 0), "qty 0 is below 1"),
        (NewOrder("R1", "steam-100", -3), "qty -3 is below 1"),
        (NewOrder("R1", "steam-100", 6), "qty 6 is above max_qty 5 for steam-100"),
        (NewOrder("R1", "mobile-50", 1), "account is required for direct top-up product 'mobile-50'"),
        (NewOrder("R1", "steam-100", 1, None, Decimal("-1")), "amount -1 is not a non-negative number"),
        (NewOrder("", "steam-100", 1), "ref is empty"),
        (NewOrder("x" * 129, "steam-100", 1), "ref is longer than 128 characters"),
        (NewOrder("R\x001", "steam-100", 1), "ref contains control characters"),
    ],
)
def test_each_rejection_reason(config: Config, order: NewOrder, reason: str) -> None:
    assert intake.validate_order(order, config) == [reason]


def test_all_reasons_are_given_at_once(config: Config) -> None:
    reasons = intake.validate_order(NewOrder("R1", "mobile-50", 0, None), config)
    assert reasons == ["qty 0 is below 1", "account is required for direct top-up product 'mobile-50'"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"sku": "s", "qty": 1}, "missing ref"),
        ({"ref": "R", "qty": 1}, "missing sku"),
        ({"ref": "R", "sku": "s"}, "missing qty"),
        ({"ref": "R", "sku": "s", "qty": "two"}, "qty 'two' is not a whole number"),
        ({"ref": "R", "sku": "s", "qty": "1.5"}, "qty '1.5' is not a whole number"),
        ({"ref": "R", "sku": "s", "qty": True}, "qty must be a whole number"),
        ({"ref": "R", "sku": "s", "qty": 1, "amount": "ten"}, "amount 'ten' is not a number"),
        ({"ref": "R", "sku": "s", "qty": 1, "amount": "NaN"}, "amount 'NaN' is not a number"),
        ({"ref": ["R"], "sku": "s", "qty": 1}, "ref must be text, got list"),
        ({"ref": "R", "sku": "s", "qty": 1, "quantity": 2}, "unknown field(s): quantity"),
    ],
)
def test_fields_that_are_not_an_order(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError) as info:
        intake.order_from_fields(fields)
    assert str(info.value).startswith(error)


def test_fields_are_normalised() -> None:
    order = intake.order_from_fields(
        {"ref": 1001, "sku": " steam-100 ", "qty": "2", "account": 138, "amount": "9.90"}
    )
    assert order == NewOrder("1001", "steam-100", 2, "138", Decimal("9.90"))
    assert (
        intake.order_from_fields({"ref": "R", "sku": "s", "qty": 1, "account": "", "amount": ""}).account
        is None
    )


def test_jsonl_lines_are_numbered_and_amounts_exact() -> None:
    text = (
        '{"ref": "A", "sku": "steam-100", "qty": 1, "amount": 98.50}\n'
        "\n"
        "not json\n"
        '["a list"]\n'
        '{"ref": "B", "sku": "steam-100", "qty": 2}\n'
    )
    parsed = intake.parse_import_text(text, "jsonl")
    assert [(p.line, p.order is not None) for p in parsed.lines] == [
        (1, True),
        (3, False),
        (4, False),
        (5, True),
    ]
    first = parsed.lines[0].order
    assert first is not None and first.amount == Decimal("98.50") and str(first.amount) == "98.50"
    assert parsed.lines[1].error is not None and parsed.lines[1].error.startswith("not valid JSON")
    assert parsed.lines[2].error == "expected a JSON object with ref, sku, qty, account, amount"


def test_csv_line_numbers_count_the_header_and_quoted_newlines() -> None:
    text = (
        'ref,sku,qty,account,amount\nA,steam-100,1,,\n"B\nB",steam-100,1,,\nC,steam-100\n\nD,steam-100,x,,\n'
    )
    parsed = intake.parse_import_text(text, "csv")
    assert [(p.line, p.error) for p in parsed.lines] == [
        (2, None),
        (3, None),
        (5, "expected 5 columns, found 2"),
        (7, "qty 'x' is not a whole number"),
    ]


def test_csv_header_problems_refuse_the_whole_file() -> None:
    with pytest.raises(intake.ImportFileError, match="missing column"):
        intake.parse_import_text("ref,sku,quantity\nA,s,1\n", "csv")
    with pytest.raises(intake.ImportFileError, match="unknown column"):
        intake.parse_import_text("ref,sku,qty,acount\nA,s,1,x\n", "csv")
    with pytest.raises(intake.ImportFileError, match="empty"):
        intake.parse_import_text("\n\n", "csv")


def test_csv_with_semicolons_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "orders.txt"
    path.write_text("\ufeffref;sku;qty\nA;steam-100;3\n", encoding="utf-8")
    parsed = intake.read_import_file(path)
    assert parsed.format == "csv"
    assert parsed.lines[0].order == NewOrder("A", "steam-100", 3)


def test_format_is_detected_by_extension_then_content(tmp_path: Path) -> None:
    assert intake.detect_format(Path("x.jsonl"), "ref,sku") == "jsonl"
    assert intake.detect_format(Path("x.csv"), "{}") == "csv"
    assert intake.detect_format(Path("x.txt"), '\n {"ref": 1}') == "jsonl"
    assert intake.detect_format(Path("x"), "ref,sku,qty") == "csv"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(intake.ImportFileError, match="cannot read"):
        intake.read_import_file(tmp_path / "missing.csv")
    binary = tmp_path / "orders.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(intake.ImportFileError, match="not UTF-8"):
        intake.read_import_file(binary)


def test_plan_sorts_lines(config: Config) -> None:
    lines = [
        intake.ParsedLine(1, NewOrder("A", "steam-100", 1)),
        intake.ParsedLine(2, error="missing sku"),
        intake.ParsedLine(3, NewOrder("B", "nope", 1)),
        intake.ParsedLine(4, NewOrder("A", "steam-100", 1)),
        intake.ParsedLine(5, NewOrder("A", "steam-100", 2)),
        intake.ParsedLine(6, NewOrder("C", "steam-100", 9)),
    ]
    plan = intake.plan_import(lines, config)
    assert plan.to_write == [(1, NewOrder("A", "steam-100", 1))]
    assert plan.repeated == [(4, 1)]
    assert [(r.line, r.reason) for r in plan.rejected] == [
        (2, "missing sku"),
        (3, "unknown sku 'nope'"),
        (5, "ref A is also on line 1 with different content"),
        (6, "qty 9 is above max_qty 5 for steam-100"),
    ]


def test_differences_name_the_changed_fields() -> None:
    new = NewOrder("R", "steam-100", 2, None, Decimal("5"))
    old = NewOrder("R", "steam-100", 1, "acc", Decimal("5"))
    assert intake.differences(new, old) == ["qty 1 -> 2", "account acc -> (none)"]
