"""`fulfil held list | release` and `fulfil review resolve --from-held` against a real SQLite database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from fulfil.crypto import mask
from fulfil.domain import AttemptState, ClaimReason, OrderStatus
from fulfil.storage import EventRecord, Store
from suppliers.taxonomy import Card

if TYPE_CHECKING:
    from tests.cli.conftest import Env

BAD = "BADKEY0000000001"
GOOD = ("GOODKEY000000001", "GOODKEY000000002")


def _bought(
    env: Env,
    ref: str,
    held: Sequence[tuple[str, str]],
    *,
    qty: int = 1,
    claim: ClaimReason | None = None,
    claim_units: int = 0,
) -> list[int]:
    """An order in review whose purchase at fulu-main (10.00 a key) held these (key, reason); the held ids."""
    result = env.cli("orders", "add", "--ref", ref, "--sku", "steam-100", "--qty", str(qty))
    assert result.exit_code == 0, result.output

    async def body(store: Store) -> list[int]:
        at = datetime.now(UTC)
        view = await store.get_order(ref)
        assert view is not None
        [order] = [o for o in await store.claim_orders("w", 1000, 60.0, at) if o.id == view.order.id]
        attempt = await store.open_attempt(order.id, "w", "fulu-main", 0, qty, Decimal("10.00"), at)
        if claim is not None:
            await store.open_claim(attempt.id, claim, attempt.cost_of(claim_units), claim_units, {}, at)
        for key, reason in held:
            await store.hold_cards(attempt.id, [Card(key)], reason, at)
        await store.mark_attempt(attempt.id, AttemptState.SUCCEEDED, at, error_class="invalid_key")
        await store.finish_order(order.id, "w", OrderStatus.REVIEW, "invalid_keys: held", at)
        return [h.id for h in await store.held_cards(order_ref=ref)]

    return env.store(body)


def _events(env: Env, name: str) -> list[EventRecord]:
    async def body(store: Store) -> list[EventRecord]:
        return await store.events(name=name)

    return env.store(body)


def test_list_masks_keys_unless_revealed_and_records_the_reveal(env: Env) -> None:
    ids = _bought(env, "H1", [(BAD, "invalid_key"), (GOOD[0], "partial_invalid_batch")], qty=2,
                  claim=ClaimReason.INVALID_KEY, claim_units=1)  # fmt: skip

    table = env.cli("held", "list")
    assert table.exit_code == 0, table.output
    assert BAD not in table.output and GOOD[0] not in table.output
    assert mask(BAD) in table.stdout and "masked: --reveal to show" in table.stdout
    header, first, second = table.stdout.splitlines()[:3]
    assert header.split()[:4] == ["ID", "ORDER", "SKU", "SUPPLIER"]
    assert first.split()[:3] == [str(ids[0]), "H1", "steam-100"] and "invalid_key" in first and "C-" in first
    assert "partial_invalid_batch" in second

    listed = env.json("held", "list", "--json", "--reason", "invalid_key")
    assert [(h["id"], h["order_ref"], h["supplier"], h["reason"]) for h in listed] == [
        (ids[0], "H1", "fulu-main", "invalid_key")
    ]
    assert listed[0]["card"]["password"] == mask(BAD)
    assert [(c["reason"], c["amount"]) for c in listed[0]["claims"]] == [("invalid_key", "10.00")]
    assert env.json("held", "list", "--json", "--order", "nope") == []
    assert _events(env, "held.revealed") == [], "masked listings are not reveals"

    revealed = env.json("held", "list", "--json", "--reveal", "--operator", "erin")
    assert [h["card"]["password"] for h in revealed] == [BAD, GOOD[0]]
    [event] = _events(env, "held.revealed")
    assert (event.operator, event.data["ids"]) == ("erin", ids)


def test_release_to_stock_once_and_the_claim_follows(env: Env) -> None:
    ids = _bought(env, "H2", [(BAD, "invalid_key")], claim=ClaimReason.INVALID_KEY, claim_units=1)

    result = env.cli("held", "release", str(ids[0]), "--to-stock", "--operator", "frank")
    assert result.exit_code == 0, result.output
    assert f"released 1 held key(s) to stock: {ids[0]}" in result.stdout
    assert "(invalid_key): 10.00 -> 0.00 (1 key(s) recovered, 10.00)" in result.stdout
    assert env.json("stock", "list", "--json")["steam-100"] == {"available": 1, "used": 0}
    [claim] = env.json("claims", "export", "--format", "json", "--evidence")
    assert (claim["amount"], claim["evidence"]["recovered_units"], claim["evidence"]["recovered_amount"]) == (
        "0.00", 1, "10.00"
    )
    assert [e.operator for e in _events(env, "held.released")] == ["frank"]
    assert env.cli("held", "list").stdout == "no held keys\n"

    again = env.cli("held", "release", str(ids[0]), "--to-stock", "--operator", "frank")
    assert again.exit_code == 2
    assert f"released already: {ids[0]} to stock" in again.stderr
    assert env.json("stock", "list", "--json")["steam-100"] == {"available": 1, "used": 0}

    nowhere = env.cli("held", "release", str(ids[0]))
    assert nowhere.exit_code == 2 and "--to-stock" in nowhere.stderr
    assert env.cli("held", "release", "999", "--to-stock").exit_code == 2


def test_release_refuses_a_key_already_in_stock(env: Env) -> None:
    ids = _bought(env, "H3", [(GOOD[0], "surplus"), (GOOD[1], "surplus")], qty=2)
    path = env.write("keys.txt", f"{GOOD[1]}\n")
    assert env.cli("stock", "import", "steam-100", str(path)).exit_code == 0

    result = env.cli("held", "release", *map(str, ids), "--to-stock")
    assert result.exit_code == 2
    assert f"held key(s) {ids[1]}: this key is in stock or delivered already; nothing written" in result.stderr
    assert env.json("stock", "list", "--json")["steam-100"] == {"available": 1, "used": 0}
    assert [h["id"] for h in env.json("held", "list", "--json")] == ids


def test_review_resolve_from_held_delivers_once(env: Env) -> None:
    ids = _bought(env, "H4", [(BAD, "invalid_key"), (GOOD[0], "partial_invalid_batch")],
                  claim=ClaimReason.INVALID_KEY, claim_units=1)  # fmt: skip

    neither = env.cli("review", "resolve", "H4")
    assert neither.exit_code == 2 and "give one of --cards FILE or --from-held" in neither.stderr

    result = env.cli("review", "resolve", "H4", "--from-held", "--operator", "gina")
    assert result.exit_code == 0, result.output
    assert f"H4: delivered from held keys {ids[1]}" in result.stdout
    order = env.json("orders", "show", "H4", "--json")
    assert order["status"] == "delivered"
    assert [c["password"] for c in order["cards"]] == [mask(GOOD[0])]
    assert [a["supplier"] for a in order["attempts"]] == ["fulu-main"], "delivered under the purchase itself"
    [event] = _events(env, "review.resolve")
    assert (event.operator, event.data["from_held"]) == ("gina", [ids[1]])
    assert [h["id"] for h in env.json("held", "list", "--json")] == [ids[0]]

    again = env.cli("review", "resolve", "H4", "--from-held", str(ids[0]))
    assert again.exit_code == 2 and "is delivered, not in review" in again.stderr


def test_review_resolve_from_held_refusals(env: Env) -> None:
    ids = _bought(env, "H5", [(GOOD[0], "late_keys")], qty=2, claim=ClaimReason.POSSIBLE_DOUBLE, claim_units=2)
    short = env.cli("review", "resolve", "H5", "--from-held")
    assert short.exit_code == 2
    assert "order H5 is for 2 key(s) but 1 usable key(s) are held for it" in short.stderr

    other = _bought(env, "H6", [(GOOD[1], "surplus")])
    sold = env.write("sold.txt", f"{GOOD[0]}\n")
    assert env.cli("review", "resolve", "H6", "--cards", str(sold)).exit_code == 0
    assert env.cli("orders", "add", "--ref", "H7", "--sku", "steam-100", "--qty", "1").exit_code == 0
    env.put_in_review("H7")
    foreign = env.cli("review", "resolve", "H7", "--from-held", str(other[0]))
    assert foreign.exit_code == 2 and "bought for another order, not H7" in foreign.stderr

    # H5's key went to H6 by hand meanwhile: never delivered twice
    two = _bought(env, "H8", [(GOOD[0], "late_keys")], claim=ClaimReason.POSSIBLE_DOUBLE, claim_units=1)
    dup = env.cli("review", "resolve", "H8", "--from-held", str(two[0]))
    assert dup.exit_code == 2 and "this key is in stock or delivered already; nothing written" in dup.stderr
    assert env.json("orders", "show", "H8", "--json")["status"] == "review"
    assert {h["id"] for h in env.json("held", "list", "--json")} == {ids[0], other[0], two[0]}
