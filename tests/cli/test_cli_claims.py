"""`fulfil claims list | export | set-status` against a real SQLite database."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil import render
from fulfil.domain import ClaimReason, ClaimRecord
from fulfil.storage import Store

if TYPE_CHECKING:
    from tests.cli.conftest import Env


def _claims(env: Env) -> list[ClaimRecord]:
    """Two orders, each with an attempt at a supplier, and a claim on each."""
    for ref in ("K1", "K2"):
        assert env.cli("orders", "add", "--ref", ref, "--sku", "steam-100", "--qty", "1").exit_code == 0

    async def body(store: Store) -> list[ClaimRecord]:
        now = datetime.now(UTC)
        made = []
        for order, (supplier, reason) in zip(
            await store.claim_orders("w", 10, 60.0, now),
            [("fulu-main", ClaimReason.INVALID_KEY), ("acg", ClaimReason.CHARGED_NOT_DELIVERED)],
            strict=True,
        ):
            attempt = await store.open_attempt(order.id, "w", supplier, 0, 1, Decimal("98.50"), now)
            evidence = {"code": "0", "request": {"sign": "SIGNATURE", "app_key": "APPKEY"}}
            made.append(await store.open_claim(attempt.id, reason, Decimal("98.50"), 1, evidence, now))
        return made

    return env.store(body)


def test_list_filters_and_json_shape(env: Env) -> None:
    k1, k2 = _claims(env)
    everything = env.json("claims", "list", "--json")
    assert [c["claim_no"] for c in everything] == [k1.claim_no, k2.claim_no]
    assert list(everything[0]) == list(render.CLAIM_FIELDS)
    first = everything[0]
    assert (
        first["supplier"] == "fulu-main" and first["order_ref"] == "K1" and first["reason"] == "invalid_key"
    )
    assert first["amount"] == "98.50" and first["qty"] == 1 and first["status"] == "open"
    assert first["supplier_order_no"] and first["supplier_order_id"] is None

    by_supplier = env.json("claims", "list", "--supplier", "acg", "--json")
    assert [c["claim_no"] for c in by_supplier] == [k2.claim_no]
    assert env.json("claims", "list", "--status", "settled", "--json") == []
    table = env.cli("claims", "list")
    assert k1.claim_no in table.stdout and "invalid_key" in table.stdout


def test_set_status_moves_and_refuses_with_the_allowed_moves(env: Env) -> None:
    k1, _ = _claims(env)
    result = env.cli(
        "claims", "set-status", k1.claim_no, "submitted", "--note", "ticket 42", "--operator", "erin"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{k1.claim_no}: submitted (next: accepted, rejected)\n"
    (claim,) = env.json("claims", "list", "--status", "submitted", "--json")
    assert claim["note"] == "ticket 42"

    async def events(store: Store) -> list[tuple[str | None, object]]:
        return [(e.operator, e.data.get("to")) for e in await store.events(name="claim.status")]

    assert env.store(events) == [("erin", "submitted")]

    refused = env.cli("claims", "set-status", k1.claim_no, "open")
    assert refused.exit_code == 2
    assert "accepted" in refused.stderr and "rejected" in refused.stderr
    unknown = env.cli("claims", "set-status", "C-00000000-999999", "submitted")
    assert unknown.exit_code == 2 and "no claim" in unknown.stderr
    assert env.cli("claims", "set-status", k1.claim_no, "lost").exit_code == 2


def test_export_csv_and_json(env: Env) -> None:
    k1, k2 = _claims(env)
    out = env.tmp / "claims.csv"
    result = env.cli("claims", "export", "--format", "csv", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "2 claim(s) written to" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert list(rows[0]) == [*render.CLAIM_FIELDS, "evidence"]
    assert [r["claim_no"] for r in rows] == [k1.claim_no, k2.claim_no]
    assert rows[0]["amount"] == "98.50" and rows[1]["reason"] == "charged_not_delivered"
    assert "SIGNATURE" not in out.read_text(encoding="utf-8") and "APPKEY" not in out.read_text(
        encoding="utf-8"
    )

    exported = env.json("claims", "export", "--format", "json")
    assert [c["claim_no"] for c in exported] == [k1.claim_no, k2.claim_no]
    assert list(exported[0]) == [*render.CLAIM_FIELDS, "evidence"]
    assert exported[0]["evidence"]["request"] == {"app_key": "<redacted>", "sign": "<redacted>"}
    plain = env.json("claims", "export", "--format", "json", "--no-evidence", "--supplier", "acg")
    assert [list(c) for c in plain] == [list(render.CLAIM_FIELDS)]


@pytest.mark.parametrize(
    ("since", "count"),
    [
        (lambda now: (now - timedelta(days=1)).date().isoformat(), 2),
        (lambda now: (now + timedelta(days=1)).date().isoformat(), 0),
        (lambda now: (now + timedelta(hours=2)).isoformat(), 0),
    ],
    ids=["yesterday", "tomorrow", "in-two-hours"],
)
def test_export_since(env: Env, since: Callable[[datetime], str], count: int) -> None:
    _claims(env)
    # The date is taken after the claims are written, not when the tests were collected (a run across
    # midnight UTC once made "tomorrow" today).
    assert len(env.json("claims", "export", "--format", "json", "--since", since(datetime.now(UTC)))) == count


def test_export_bad_since_is_a_usage_error(env: Env) -> None:
    result = env.cli("claims", "export", "--format", "csv", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "is not a date" in result.stderr


def test_export_json_is_valid_when_empty(env: Env) -> None:
    result = env.cli("claims", "export", "--format", "json")
    assert json.loads(result.stdout) == []
