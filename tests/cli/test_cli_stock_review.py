"""`fulfil stock ...` and `fulfil review ...` against a real SQLite database."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fulfil.domain import OrderStatus
from fulfil.storage import EventRecord, Store

if TYPE_CHECKING:
    from tests.cli.conftest import Env


def test_stock_import_counts_duplicates_and_invalid_lines(env: Env) -> None:
    first = env.write(
        "batch1.txt",
        """\
        # batch 1
        AAAABBBBCCCCDDDD
        0000111122223333,EEEEFFFFGGGGHHHH
        AAAABBBBCCCCDDDD
        too-short
        """,
    )
    result = env.cli("stock", "import", "steam-100", str(first))
    assert result.exit_code == 0, result.output
    assert "added:              2\n" in result.stdout
    assert "duplicate in file:  1  (line 4)\n" in result.stdout
    assert "already in stock:   0\n" in result.stdout
    assert (
        "invalid:            1\n  line 5: password does not match the product's card_pattern\n"
        in result.stdout
    )

    second = env.write(
        "batch2.txt", "EEEEFFFFGGGGHHHH\n0000111122223333,EEEEFFFFGGGGHHHH\nIIIIJJJJKKKKLLLL\n"
    )
    result = env.cli("stock", "import", "steam-100", str(second))
    assert result.exit_code == 0, result.output
    # a password alone is a different key from the same password with a number
    assert "added:              2\n" in result.stdout
    assert "already in stock:   1  (line 2)\n" in result.stdout

    counts = env.json("stock", "list", "--json")
    assert counts == {"gift-any": {"available": 0, "used": 0}, "steam-100": {"available": 4, "used": 0}}
    table = env.cli("stock", "list")
    assert table.stdout.splitlines() == [
        "SKU        AVAILABLE  USED",
        "gift-any           0     0",
        "steam-100          4     0",
    ]
    for key in ("AAAABBBB", "EEEEFFFF", "IIIIJJJJ", "too-short"):
        assert key not in result.output + table.output


def test_stock_import_refusals(env: Env) -> None:
    path = env.write("keys.txt", "AAAABBBBCCCCDDDD\n")
    unknown = env.cli("stock", "import", "nope", str(path))
    assert unknown.exit_code == 2
    assert "unknown sku 'nope' (known: gift-any, mobile-50, steam-100)" in unknown.stderr
    direct = env.cli("stock", "import", "mobile-50", str(path))
    assert direct.exit_code == 2 and "direct top-up product" in direct.stderr
    missing = env.cli("stock", "import", "steam-100", str(env.tmp / "none.txt"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    assert env.json("stock", "list", "--json")["steam-100"] == {"available": 0, "used": 0}


def _events(env: Env, order_id: int) -> list[EventRecord]:
    async def body(store: Store) -> list[EventRecord]:
        return await store.events(order_id=order_id)

    return env.store(body)


def _add(env: Env, ref: str, qty: int = 1, sku: str = "steam-100") -> None:
    result = env.cli("orders", "add", "--ref", ref, "--sku", sku, "--qty", str(qty))
    assert result.exit_code == 0, result.output


def test_review_list_and_retry_with_operator(env: Env) -> None:
    _add(env, "V1")
    _add(env, "V2")
    order_id = env.put_in_review("V1", "out_of_stock")

    listed = env.json("review", "list", "--json")
    assert [(o["ref"], o["status"], o["reason"]) for o in listed] == [("V1", "review", "out_of_stock")]
    table = env.cli("review", "list")
    assert "V1" in table.stdout and "out_of_stock" in table.stdout and "V2" not in table.stdout

    result = env.cli("review", "retry", "V1", "--operator", "alice")
    assert result.exit_code == 0, result.output
    assert result.stdout == "V1: back to pending; a worker will pick it up\n"
    (event,) = [e for e in _events(env, order_id) if e.name == "review.retry"]
    assert event.operator == "alice" and event.at is not None
    assert env.json("orders", "show", "V1", "--json")["status"] == "pending"
    assert env.cli("review", "list").stdout == "the review queue is empty\n"


def test_review_refund_keeps_the_reason_and_defaults_the_operator(env: Env) -> None:
    import getpass

    _add(env, "V3")
    order_id = env.put_in_review("V3", "no_offer_available")
    result = env.cli("review", "refund", "V3")
    assert result.exit_code == 0, result.output
    assert "V3: failed (refund the buyer); reason: no_offer_available" in result.stdout
    data = env.json("orders", "show", "V3", "--json")
    assert (data["status"], data["reason"]) == ("failed", "no_offer_available")
    (event,) = [e for e in _events(env, order_id) if e.name == "review.refund"]
    assert event.operator == getpass.getuser()


def test_review_actions_refuse_orders_not_in_review(env: Env) -> None:
    _add(env, "V4")
    for action in ("retry", "refund"):
        result = env.cli("review", action, "V4", "--operator", "bob")
        assert result.exit_code == 2
        assert "order V4 is pending, not in review" in result.stderr
    missing = env.cli("review", "retry", "NOPE")
    assert missing.exit_code == 2 and "no order NOPE" in missing.stderr
    assert env.json("orders", "show", "V4", "--json")["status"] == OrderStatus.PENDING


def test_review_hold_keeps_the_operators_note_and_refuses_a_bad_one_before_acting(env: Env) -> None:
    _add(env, "V5")
    order_id = env.store(lambda store: _order_id(store, "V5"))
    bad = env.cli("review", "hold", "V5", "--note", "cancel\x1b[31m", "--operator", "bob")
    assert bad.exit_code == 2 and "--note: note holds a control character (U+001B); plain text only" in bad.stderr
    long = env.cli("review", "hold", "V5", "--note", "x" * 1001, "--operator", "bob")
    assert long.exit_code == 2 and "--note: note is 1001 characters long; at most 1000" in long.stderr
    assert env.json("orders", "show", "V5", "--json")["status"] == "pending"  # nothing done
    result = env.cli("review", "hold", "V5", "--note", "  buyer asked to cancel, ticket 4711 ", "--operator", "bob")
    assert result.exit_code == 0, result.output
    assert result.stdout == "V5: review; reason: held by bob: buyer asked to cancel, ticket 4711\n"
    (event,) = [e for e in _events(env, order_id) if e.name == "review.hold"]
    assert (event.operator, event.data) == ("bob", {"reason": None, "note": "buyer asked to cancel, ticket 4711"})


async def _order_id(store: Store, ref: str) -> int:
    view = await store.get_order(ref)
    assert view is not None
    return view.order.id


def test_review_resolve_delivers_by_hand(env: Env) -> None:
    _add(env, "V5", qty=2)
    order_id = env.put_in_review("V5")
    cards = env.write("hand.txt", "AAAABBBBCCCCDDDD\n0000111122223333,EEEEFFFFGGGGHHHH\n")
    result = env.cli("review", "resolve", "V5", "--cards", str(cards), "--operator", "carol")
    assert result.exit_code == 0, result.output
    assert result.stdout == "V5: delivered by hand (2 key(s))\n"
    data = env.json("orders", "show", "V5", "--json", "--reveal")
    assert data["status"] == "delivered"
    assert [c["password"] for c in data["cards"]] == ["AAAABBBBCCCCDDDD", "EEEEFFFFGGGGHHHH"]
    assert [a["supplier"] for a in data["attempts"]] == ["manual"]
    (event,) = [e for e in _events(env, order_id) if e.name == "review.resolve"]
    assert event.operator == "carol"


def test_review_resolve_refusals_write_nothing(env: Env) -> None:
    _add(env, "V6", qty=2)
    _add(env, "V7", qty=1)
    env.put_in_review("V6")
    env.put_in_review("V7")

    bad = env.write("bad.txt", "AAAABBBBCCCCDDDD\nlowercase-bad\nAAAABBBBCCCCDDDD\n")
    result = env.cli("review", "resolve", "V6", "--cards", str(bad), "--operator", "dan")
    assert result.exit_code == 2
    assert "V6 not resolved, nothing written:" in result.stderr
    assert "line 2: password does not match the product's card_pattern" in result.stderr
    assert "line 3: same key as line 1" in result.stderr

    short = env.write("short.txt", "AAAABBBBCCCCDDDD\n")
    result = env.cli("review", "resolve", "V6", "--cards", str(short))
    assert result.exit_code == 2 and "the order is for 2 key(s), the file has 1" in result.stderr

    # a key already delivered elsewhere is refused
    assert env.cli("review", "resolve", "V7", "--cards", str(short)).exit_code == 0
    again = env.write("again.txt", "IIIIJJJJKKKKLLLL\nAAAABBBBCCCCDDDD\n")
    result = env.cli("review", "resolve", "V6", "--cards", str(again))
    assert result.exit_code == 2
    assert "line 2: this key was already delivered to an order" in result.stderr
    assert env.json("orders", "show", "V6", "--json")["status"] == "review"


def test_review_list_json_masks_nothing_secret(env: Env) -> None:
    _add(env, "V8")
    env.put_in_review("V8", "supplier said: out of stock")
    (order,) = env.json("review", "list", "--json")
    assert order["reason"] == "supplier said: out of stock"
    assert json.dumps(order)  # plain JSON
