"""`fulfil orders add | import | show | list` against a real SQLite database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from fulfil.domain import AttemptState, OrderStatus
from fulfil.storage import Store
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.cli.conftest import Env


def _status(env: Env, ref: str) -> OrderStatus | None:
    async def body(store: Store) -> OrderStatus | None:
        view = await store.get_order(ref)
        return view.order.status if view else None

    return env.store(body)


def test_add_accepts_then_duplicate_is_a_no_op(env: Env) -> None:
    first = env.cli("orders", "add", "--ref", "R1", "--sku", "steam-100", "--qty", "2", "--amount", "200.00")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("R1: accepted (order id ")
    again = env.cli("orders", "add", "--ref", "R1", "--sku", "steam-100", "--qty", "2", "--amount", "200")
    assert again.exit_code == 0, again.output
    assert again.stdout == "R1: duplicate (no change)\n"
    assert _status(env, "R1") == OrderStatus.PENDING


def test_reused_ref_with_different_content_is_refused(env: Env) -> None:
    assert env.cli("orders", "add", "--ref", "R1", "--sku", "steam-100", "--qty", "1").exit_code == 0
    result = env.cli("orders", "add", "--ref", "R1", "--sku", "steam-100", "--qty", "3")
    assert result.exit_code == 2
    assert "order R1 refused: ref already used by a different order (qty 1 -> 3)" in result.stderr

    async def qty(store: Store) -> int:
        view = await store.get_order("R1")
        assert view is not None
        return view.order.qty

    assert env.store(qty) == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--sku", "nope", "--qty", "1"], "unknown sku 'nope'"),
        (["--sku", "steam-100", "--qty", "0"], "qty 0 is below 1"),
        (["--sku", "steam-100", "--qty", "11"], "qty 11 is above max_qty 10 for steam-100"),
        (["--sku", "mobile-50", "--qty", "1"], "account is required for direct top-up product 'mobile-50'"),
        (["--sku", "steam-100", "--qty", "1", "--amount", "-5"], "amount -5 is not a non-negative number"),
    ],
)
def test_add_refusals_name_the_reason_and_write_nothing(env: Env, args: list[str], reason: str) -> None:
    result = env.cli("orders", "add", "--ref", "BAD", *args)
    assert result.exit_code == 2
    assert f"order BAD refused: {reason}" in result.stderr
    assert _status(env, "BAD") is None


def test_add_bad_arguments_are_usage_errors(env: Env) -> None:
    result = env.cli("orders", "add", "--ref", "R1", "--sku", "steam-100", "--qty", "two")
    assert result.exit_code == 2
    assert "'two' is not a valid integer" in result.stderr
    result = env.cli("orders", "add", "--ref", "R1", "--sku", "steam-100", "--qty", "1", "--amount", "ten")
    assert result.exit_code == 2
    assert "'ten' is not a number" in result.stderr


def test_direct_order_with_account(env: Env) -> None:
    result = env.cli(
        "orders", "add", "--ref", "M1", "--sku", "mobile-50", "--qty", "1", "--account", "13800000000"
    )
    assert result.exit_code == 0, result.output
    data = env.json("orders", "show", "M1", "--json")
    assert data["account"] == "13800000000"


JSONL = """\
{"ref": "J1", "sku": "steam-100", "qty": 1, "amount": 100.00}
{"ref": "J2", "sku": "nope", "qty": 1}

{"ref": "J3", "sku": "steam-100", "qty": 0}
not json at all
{"ref": "J4", "sku": "mobile-50", "qty": 1, "account": "13800000000"}
{"ref": "J1", "sku": "steam-100", "qty": 1, "amount": 100.00}
{"ref": "J1", "sku": "steam-100", "qty": 5}
{"ref": "OLD", "sku": "steam-100", "qty": 1}
{"ref": "USED", "sku": "steam-100", "qty": 1}
{"ref": "J5", "sku": "mobile-50", "qty": 1}
"""


def test_import_jsonl_mixed_lines(env: Env) -> None:
    assert env.cli("orders", "add", "--ref", "OLD", "--sku", "steam-100", "--qty", "1").exit_code == 0
    assert env.cli("orders", "add", "--ref", "USED", "--sku", "steam-100", "--qty", "2").exit_code == 0
    path = env.write("orders.jsonl", JSONL)
    result = env.cli("orders", "import", str(path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "accepted:  2\n" in out  # J1, J4
    assert "duplicate: 2\n" in out  # J1 again (line 7), OLD (already there)
    assert "rejected:  6\n" in out
    assert "  line 2: J2: unknown sku 'nope'\n" in out
    assert "  line 4: J3: qty 0 is below 1\n" in out
    assert "  line 5: not valid JSON" in out
    assert "  line 8: J1: ref J1 is also on line 1 with different content\n" in out
    assert "  line 10: USED: ref already used by a different order\n" in out
    assert "  line 11: J5: account is required for direct top-up product 'mobile-50'\n" in out
    assert "importing orders" in result.stderr  # the progress bar goes to stderr
    assert [_status(env, ref) for ref in ("J1", "J4", "J2", "J3", "J5")] == [
        "pending",
        "pending",
        None,
        None,
        None,
    ]

    # the same file again: nothing new, the same rejections
    again = env.cli("orders", "import", str(path), "--json")
    summary = json.loads(again.stdout)
    assert again.exit_code == 0
    assert summary["accepted"] == 0 and summary["duplicate"] == 4
    assert [r["line"] for r in summary["rejected"]] == [2, 4, 5, 8, 10, 11]


def test_import_csv_mixed_lines(env: Env) -> None:
    path = env.write(
        "orders.csv",
        """\
        ref,sku,qty,account,amount
        C1,steam-100,2,,200.00
        C2,steam-100,x,,
        C3,mobile-50,1,13800000000,49.5
        C4,steam-100
        C1,steam-100,2,,200
        C5,gift-any,1,,abc
        """,
    )
    result = env.cli("orders", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "(csv, 6 records)" in result.stdout
    assert "accepted:  2\nduplicate: 1\nrejected:  3\n" in result.stdout
    assert "  line 3: qty 'x' is not a whole number\n" in result.stdout
    assert "  line 5: expected 5 columns, found 2\n" in result.stdout
    assert "  line 7: amount 'abc' is not a number\n" in result.stdout

    async def amounts(store: Store) -> dict[str, Decimal | None]:
        return {v.order.ref: v.order.amount for v in await store.list_orders()}

    assert env.store(amounts) == {"C1": Decimal("200.00"), "C3": Decimal("49.5")}


def test_import_of_an_unreadable_file_exits_2(env: Env) -> None:
    result = env.cli("orders", "import", str(env.tmp / "missing.csv"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr
    bad_header = env.write("bad.csv", "reference,sku,qty\nR,steam-100,1\n")
    result = env.cli("orders", "import", str(bad_header))
    assert result.exit_code == 2
    assert "missing column(s) ref" in result.stderr and "unknown column(s) reference" in result.stderr


def test_import_of_many_orders_writes_all_in_batches(env: Env) -> None:
    lines = "\n".join(json.dumps({"ref": f"B{i}", "sku": "gift-any", "qty": 1}) for i in range(1234))
    path = env.write("many.jsonl", lines)
    result = env.cli("orders", "import", str(path), "--json")
    assert json.loads(result.stdout)["accepted"] == 1234

    async def count(store: Store) -> int:
        return (await store.count_by_status())["pending"]

    assert env.store(count) == 1234


def _deliver(env: Env, ref: str, cards: list[Card]) -> None:
    """Deliver an order the way the worker does: claim, open an attempt, deliver."""

    async def body(store: Store) -> None:
        now = datetime.now(UTC)
        claimed = await store.claim_orders("w", 100, 60.0, now)
        order = next(o for o in claimed if o.ref == ref)
        attempt = await store.open_attempt(order.id, "w", "fulu-main", 0, order.qty, Decimal("98.50"), now)
        await store.mark_attempt(attempt.id, AttemptState.SENT, now)
        await store.deliver(order.id, "w", attempt.id, cards, now)

    env.store(body)


def test_show_json_shape_masked_and_revealed(env: Env) -> None:
    assert (
        env.cli(
            "orders", "add", "--ref", "S1", "--sku", "steam-100", "--qty", "1", "--amount", "100"
        ).exit_code
        == 0
    )
    _deliver(env, "S1", [Card("AAAABBBBCCCCDDDD", "0000111122223333", "2027-12-31")])

    data = env.json("orders", "show", "S1", "--json")
    assert list(data) == [
        "ref", "sku", "qty", "account", "amount", "status", "reason", "created_at", "delivered_at",
        "cards", "attempts", "claims",
    ]  # fmt: skip
    assert data["status"] == "delivered" and data["amount"] == "100" and data["account"] is None
    assert (
        data["delivered_at"] is not None and datetime.fromisoformat(data["delivered_at"]).tzinfo is not None
    )
    assert data["cards"] == [
        {"number": "**************33", "password": "**************DD", "expires": "2027-12-31"}
    ]
    (attempt,) = data["attempts"]
    assert list(attempt) == [
        "supplier",
        "supplier_order_no",
        "state",
        "error_class",
        "started_at",
        "finished_at",
    ]
    assert (
        attempt["supplier"] == "fulu-main"
        and attempt["state"] == "succeeded"
        and attempt["supplier_order_no"]
    )
    assert data["claims"] == []

    revealed = env.json("orders", "show", "S1", "--json", "--reveal")
    assert revealed["cards"] == [
        {"number": "0000111122223333", "password": "AAAABBBBCCCCDDDD", "expires": "2027-12-31"}
    ]

    text = env.cli("orders", "show", "S1")
    assert text.exit_code == 0 and "AAAABBBBCCCCDDDD" not in text.stdout and "--reveal to show" in text.stdout

    async def reveals(store: Store) -> list[str | None]:
        return [e.operator for e in await store.events(name="cards.revealed")]

    assert len(env.store(reveals)) == 1  # the reveal is on record, with who


def test_show_unknown_ref(env: Env) -> None:
    result = env.cli("orders", "show", "NOPE")
    assert result.exit_code == 2
    assert "no order with ref NOPE" in result.stderr


def test_list_filters_limits_and_masks(env: Env) -> None:
    for ref in ("L1", "L2", "L3"):
        assert env.cli("orders", "add", "--ref", ref, "--sku", "steam-100", "--qty", "1").exit_code == 0
    _deliver(env, "L2", [Card("EEEEFFFFGGGGHHHH")])

    everything = env.json("orders", "list", "--json")
    assert [o["ref"] for o in everything] == ["L1", "L2", "L3"]
    assert env.json("orders", "list", "--json", "--limit", "2") == everything[:2]
    delivered = env.json("orders", "list", "--status", "delivered", "--json")
    assert [o["ref"] for o in delivered] == ["L2"]
    assert delivered[0]["cards"] == [{"number": None, "password": "**************HH", "expires": None}]
    revealed = env.json("orders", "list", "--status", "delivered", "--json", "--reveal")
    assert revealed[0]["cards"][0]["password"] == "EEEEFFFFGGGGHHHH"

    table = env.cli("orders", "list")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:4] == ["REF", "SKU", "QTY", "STATUS"]
    assert "EEEEFFFF" not in table.stdout
    assert env.cli("orders", "list", "--status", "review").stdout == "no orders in status review\n"
    assert env.cli("orders", "list", "--status", "lost").exit_code == 2
