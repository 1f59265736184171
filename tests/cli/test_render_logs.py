"""Rendering orders and claims, and the log formatters' redaction, without a database."""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fulfil import render
from fulfil.domain import (
    AttemptRecord,
    AttemptState,
    ClaimReason,
    ClaimRecord,
    ClaimStatus,
    Order,
    OrderStatus,
    OrderView,
)
from fulfil.logs import JsonFormatter, TextFormatter, redact, setup_logging
from suppliers.taxonomy import Card

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 21, 10, 0, 3, tzinfo=UTC)


def _claim() -> ClaimRecord:
    return ClaimRecord(
        id=1,
        claim_no="C-20261121-000001",
        supplier="fulu-main",
        order_id=7,
        order_ref="R7",
        attempt_id=3,
        supplier_order_no="abc123",
        supplier_order_id="F998",
        reason=ClaimReason.INVALID_KEY,
        amount=Decimal("98.50"),
        qty=1,
        status=ClaimStatus.OPEN,
        created_at=T0,
        updated_at=T1,
        note=None,
        evidence={"code": "0", "response": {"sign": "deadbeef", "cards": ["X"]}},
    )


def _view() -> OrderView:
    order = Order(7, "R7", "steam-100", 1, None, Decimal("100.00"), OrderStatus.DELIVERED, None, T0, T1)
    attempt = AttemptRecord(3, 7, "fulu-main", 1, "abc123", AttemptState.SUCCEEDED, T0, finished_at=T1)
    return OrderView(order, (Card("AAAABBBBCCCCDDDD", "SN000123"),), (attempt,), (_claim(),))


def test_order_json_shape_masked() -> None:
    data = render.order_to_dict(_view())
    assert list(data) == [
        "ref", "sku", "qty", "account", "amount", "status", "reason", "created_at", "delivered_at",
        "cards", "attempts", "claims",
    ]  # fmt: skip
    assert data["amount"] == "100.00"
    assert data["created_at"] == "2026-11-21T10:00:00+00:00"
    assert data["cards"] == [{"number": "******23", "password": "**************DD", "expires": None}]
    assert data["attempts"] == [
        {
            "supplier": "fulu-main",
            "supplier_order_no": "abc123",
            "state": "succeeded",
            "error_class": None,
            "started_at": "2026-11-21T10:00:00+00:00",
            "finished_at": "2026-11-21T10:00:03+00:00",
        }
    ]
    assert list(data["claims"][0]) == list(render.CLAIM_FIELDS)
    json.dumps(data)  # everything is JSON-ready


def test_order_json_revealed() -> None:
    data = render.order_to_dict(_view(), reveal=True)
    assert data["cards"] == [{"number": "SN000123", "password": "AAAABBBBCCCCDDDD", "expires": None}]


def test_order_text_masks_unless_revealed() -> None:
    assert "AAAABBBBCCCCDDDD" not in render.order_text(_view())
    assert "**************DD" in render.order_text(_view())
    assert "AAAABBBBCCCCDDDD" in render.order_text(_view(), reveal=True)


def test_claims_csv_has_the_same_columns_and_redacted_evidence() -> None:
    out = io.StringIO()
    assert render.write_claims_csv([_claim()], out, evidence=True) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == [*render.CLAIM_FIELDS, "evidence"]
    assert rows[0]["claim_no"] == "C-20261121-000001"
    assert rows[0]["amount"] == "98.50"
    assert rows[0]["note"] == ""
    evidence = json.loads(rows[0]["evidence"])
    assert evidence == {"code": "0", "response": {"cards": "<redacted>", "sign": "<redacted>"}}


def test_table_aligns_columns() -> None:
    text = render.table(("A", "NUM"), [("x", 5), ("longer", 12)])
    assert text.splitlines() == ["A       NUM", "x         5", "longer   12"]


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("fulfil.test", logging.INFO, __file__, 1, "order.delivered", (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_one_line_with_fields_and_redaction() -> None:
    record = _record(
        ref="R1",
        qty=2,
        cost=Decimal("9.50"),
        password="AAAABBBBCCCCDDDD",
        cards=[Card("EEEEFFFFGGGGHHHH")],
        evidence={"request": {"app_key": "k1", "sign": "s1", "x": 1}},
        fulu_secret="s3cr3t",
        card=Card("IIIIJJJJKKKKLLLL"),
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "order.delivered" and data["level"] == "info" and data["logger"] == "fulfil.test"
    assert data["ref"] == "R1" and data["qty"] == 2 and data["cost"] == "9.50"
    assert data["password"] == data["cards"] == data["card"] == data["fulu_secret"] == "<redacted>"
    assert data["evidence"] == {"request": {"app_key": "<redacted>", "sign": "<redacted>", "x": 1}}
    for secret in ("AAAABBBB", "EEEEFFFF", "IIIIJJJJ", "s3cr3t", "k1", "s1"):
        assert secret not in line


def test_text_formatter_redacts_too() -> None:
    line = TextFormatter().format(_record(ref="R1", password="AAAABBBBCCCCDDDD", token="t0ken"))
    assert "order.delivered ref=R1 password=<redacted> token=<redacted>" in line
    assert "AAAABBBB" not in line and "t0ken" not in line


def test_a_card_anywhere_in_extra_is_redacted() -> None:
    assert redact({"x": [Card("P")], "y": (1, {"z": Card("Q")})}) == {
        "x": ["<redacted>"],
        "y": [1, {"z": "<redacted>"}],
    }


def test_setup_logging_replaces_its_handler_and_keeps_third_party_quiet() -> None:
    out = io.StringIO()
    setup_logging("json", "DEBUG", stream=io.StringIO())
    setup_logging("text", "DEBUG", stream=out)
    root = logging.getLogger()
    assert len([h for h in root.handlers if getattr(h, "_fulfil", False)]) == 1
    logging.getLogger("fulfil.x").debug("thing.happened", extra={"n": 1})
    logging.getLogger("httpx").info("GET https://example/?sign=abc")
    assert "thing.happened n=1" in out.getvalue()
    assert "sign=abc" not in out.getvalue()


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("xml", "INFO")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "created",
    [1764977446.0, 1764977446.0004, 1764977446.9996, 1764977447.25, 1764977446.5, 0.999, 1764977446.123,
     1764977446.9999995],
    ids=["on-the-second", "just-after", "just-before-the-next", "next-second", "back-again", "epoch",
         "float-below-its-millisecond", "rounds-into-the-next-second"],
)
def test_a_line_stamps_the_instant_it_was_logged_in_utc_to_the_millisecond(created: float) -> None:
    """The formatter remembers the last second it formatted: a line in another second (also an earlier one, a
    thread's record formatted late) must not be stamped with it."""
    record = logging.LogRecord("fulfil.engine", logging.INFO, __file__, 1, "order.delivered", None, None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0  # as logging sets them
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert json.loads(JsonFormatter().format(record))["ts"] == expected


def test_stamps_agree_with_datetime_over_many_instants() -> None:
    """Float instants near millisecond and second edges, in random order (the cached second goes back and forth)."""
    rng = random.Random(14)
    formatter = JsonFormatter()
    for _ in range(20_000):
        created = 1764977446 + rng.randrange(3) + rng.choice([rng.random(), rng.randrange(1000) / 1000, 0.9999996])
        record = logging.LogRecord("fulfil.engine", logging.INFO, __file__, 1, "x", None, None)
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert json.loads(formatter.format(record))["ts"] == expected, repr(created)
