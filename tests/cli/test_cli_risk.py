"""`fulfil risk ...`, `review release|refuse` and buyer fields at intake, against a real SQLite database."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fulfil.domain import OrderStatus
from fulfil.storage import Store

if TYPE_CHECKING:
    from tests.cli.conftest import Env

CONTACT = "Thief@Example.com"


def test_block_list_unblock_masks_values_and_records_the_operator(env: Env) -> None:
    result = env.cli("risk", "block", "--contact", CONTACT, "--reason", "stolen cards", "--operator", "alice")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("blocked contact T***@Example.com (#1) until never: stolen cards")
    assert env.cli("risk", "block", "--ip", "203.0.113.0/24", "--until", "7d", "--operator", "alice").exit_code == 0
    assert env.cli("risk", "block", "--account", "acct-123456", "--operator", "alice").exit_code == 0
    listed = env.json("risk", "blocks", "--json")
    assert [(e["kind"], e["value"], e["operator"]) for e in listed] == [
        ("contact", "T***@Example.com", "alice"), ("ip", "203.0.113.0/24", "alice"), ("account", "ac***56", "alice")
    ]  # fmt: skip
    assert listed[1]["until"] is not None and listed[0]["until"] is None
    table = env.cli("risk", "blocks").stdout
    assert "thief" not in table.lower() and "acct-123456" not in table

    # Blocking again updates the entry (reason, expiry) instead of adding a second one.
    again = env.cli("risk", "block", "--contact", "thief@example.com", "--reason", "chargebacks", "--operator", "carol")
    assert again.stdout.startswith("updated contact")
    assert len(env.json("risk", "blocks", "--json")) == 3

    assert env.cli("risk", "unblock", "contact:THIEF@example.com", "--operator", "bob").exit_code == 0
    missing = env.cli("risk", "unblock", "contact:thief@example.com")
    assert missing.exit_code == 2 and "no block for contact" in missing.output

    async def events(store: Store) -> list[tuple[str, str | None]]:
        found = await store.events(limit=100)
        return [(e.name, e.operator) for e in found if e.name.startswith("risk.")]

    assert sorted(env.store(events)) == [("risk.block", "alice")] * 3 + [
        ("risk.block", "carol"),
        ("risk.unblock", "bob"),
    ]


def test_block_refuses_bad_input_and_writes_nothing(env: Env) -> None:
    cases = [
        (("--ip", "300.1.2.3"), "is not an address or a network"),
        (("--contact", "a@b", "--ip", "1.2.3.4"), "exactly one of"),
        ((), "exactly one of"),
        (("--user", "u1", "--until", "2001-01-01"), "is in the past"),
        (("--user", "u1", "--until", "tomorrow"), "expected a date"),
    ]
    for args, message in cases:
        result = env.cli("risk", "block", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    bad_file = env.write(
        "blocks.csv", "kind,value,reason\ncontact,a@example.com,ok\nphone,123,bad kind\nip,1.2.3.999,x\n"
    )
    result = env.cli("risk", "block", "--file", str(bad_file))
    assert result.exit_code == 2
    assert "line 3: kind 'phone' is not one of" in result.output and "line 4: ip: '1.2.3.999'" in result.output
    assert env.json("risk", "blocks", "--json") == []


def test_block_file_imports_csv_and_json_lines(env: Env) -> None:
    csv_file = env.write(
        "b.csv", "kind,value,reason,until\ncontact,x@example.com,fraud,\nip,192.0.2.0/28,farm,2099-01-01\n"
    )
    assert env.cli("risk", "block", "--file", str(csv_file)).exit_code == 0
    jsonl = env.write("b.jsonl", '{"kind": "device", "value": "dev-77", "reason": "emulator"}\n')
    assert env.cli("risk", "block", "--file", str(jsonl)).exit_code == 0
    listed = env.json("risk", "blocks", "--json")
    assert [(e["kind"], e["reason"]) for e in listed] == [("contact", "fraud"), ("ip", "farm"), ("device", "emulator")]
    assert listed[1]["until"].startswith("2099-01-01T23:59:59")


def test_credit_set_and_buyer_history(env: Env) -> None:
    no_reason = env.cli("risk", "credit", "user:u-1", "--set", "55")
    assert no_reason.exit_code == 2 and "--set needs --reason" in no_reason.output
    assert env.cli("risk", "credit", "ip:1.2.3.4").exit_code == 2  # no score per ip
    result = env.cli("risk", "credit", "user:u-1", "--set", "55", "--reason", "disputes", "--operator", "alice")
    assert result.exit_code == 0 and result.stdout.strip() == "user u***: credit 55"
    assert env.cli("risk", "credit", "user:u-1").stdout.strip().endswith("credit 55")
    assert env.cli("risk", "credit", "contact:new@example.com").stdout.strip() == "contact n***@example.com: credit 100"
    assert env.cli("orders", "add", "--ref", "B1", "--sku", "steam-100", "--qty", "1", "--user", "u-1").exit_code == 0
    data = env.json("risk", "buyer", "user:u-1", "--json")
    assert data["credit"] == 55
    assert [(h["delta"], h["score"], h["reason"], h["operator"]) for h in data["history"]] == [
        (55, 55, "disputes", "alice")
    ]
    assert [o["ref"] for o in data["orders"]] == ["B1"]
    text = env.cli("risk", "buyer", "user:u-1").stdout
    assert "credit 55" in text and "disputes by alice" in text and "B1" in text


def test_buyer_fields_at_intake_are_validated_hashed_and_never_shown(env: Env) -> None:
    bad = env.cli("orders", "add", "--ref", "I0", "--sku", "steam-100", "--qty", "1", "--ip", "999.1.1.1")
    assert bad.exit_code == 2 and "ip '999.1.1.1' is not an IPv4 or IPv6 address" in bad.output
    ok = env.cli("orders", "add", "--ref", "I1", "--sku", "steam-100", "--qty", "1", "--ip", "203.0.113.9",
                 "--user", "u-900", "--device", "dev-abcdef", "--contact", "Buyer@Example.com")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    imported = env.write(
        "o.csv", "ref,sku,qty,contact,ip,user,device\nI2,steam-100,1,c@example.com,2001:db8::1,u-2,d-2\n"
    )
    assert env.cli("orders", "import", str(imported)).exit_code == 0
    jsonl = env.write("o.jsonl", '{"ref": "I3", "sku": "steam-100", "qty": 1, "ip": "not-an-ip"}\n')
    refused = env.cli("orders", "import", str(jsonl))
    assert "ip 'not-an-ip' is not an IPv4 or IPv6 address" in refused.output

    async def hashes(store: Store) -> dict[str, dict[str, str]]:
        return {v.order.ref: dict(v.order.identities) for v in await store.list_orders()}

    found = env.store(hashes)
    cipher = env.cipher()
    assert found["I1"] == {
        "contact": cipher.identity_hash("contact", "buyer@example.com"),
        "ip": cipher.identity_hash("ip", "203.0.113.9"),
        "user": cipher.identity_hash("user", "u-900"),
        "device": cipher.identity_hash("device", "dev-abcdef"),
    }
    assert set(found["I2"]) == {"contact", "ip", "user", "device"}
    explained = env.json("risk", "explain", "I1", "--json")
    assert explained["buyer"] == {"contact": "B***@Example.com", "ip": "203.0.*.*", "user": "u-***00",
                                  "device": "de***ef"}  # fmt: skip
    shown = env.cli("orders", "show", "I1", "--json").stdout + env.cli("risk", "explain", "I1").stdout
    for secret in ("203.0.113.9", "u-900", "dev-abcdef", "Buyer@Example.com"):
        assert secret not in shown


def test_review_release_and_refuse_only_take_risk_holds(env: Env) -> None:
    for ref in ("H1", "H2", "N1"):
        assert (
            env.cli("orders", "add", "--ref", ref, "--sku", "steam-100", "--qty", "1", "--user", "u-5").exit_code == 0
        )
    env.put_in_review("H1", "risk: ip-burst: 6 orders (max 5) per ip in 1m")
    env.put_in_review("H2", "risk: credit 55 is below 60")
    env.put_in_review("N1", "out_of_stock")
    listed = env.json("review", "list", "--json")
    assert {o["ref"] for o in listed} == {"H1", "H2", "N1"}

    released = env.cli("review", "release", "H1", "--operator", "alice")
    assert released.exit_code == 0 and "released, back to pending" in released.stdout
    refused = env.cli("review", "refuse", "H2", "--operator", "bob")
    assert refused.exit_code == 0 and "failed (refund the buyer); reason: risk: credit 55" in refused.stdout
    other = env.cli("review", "release", "N1")
    assert other.exit_code == 2 and "not risk" in other.output

    async def states(store: Store) -> dict[str, OrderStatus]:
        return {v.order.ref: v.order.status for v in await store.list_orders()}

    assert env.store(states) == {"H1": OrderStatus.PENDING, "H2": OrderStatus.FAILED, "N1": OrderStatus.REVIEW}
    buyer = env.json("risk", "buyer", "user:u-5", "--json")
    assert buyer["credit"] == 80 and buyer["history"][0]["operator"] == "bob"


def test_report_a_chargeback_lowers_credit(env: Env) -> None:
    assert env.cli("orders", "add", "--ref", "C1", "--sku", "steam-100", "--qty", "1", "--contact", "c@example.com",
                   "--user", "u-3").exit_code == 0  # fmt: skip
    result = env.cli("risk", "report", "C1", "--reason", "chargeback", "--operator", "alice")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["C1: contact credit now 70", "C1: user credit now 70"]
    assert env.cli("risk", "report", "NOPE", "--reason", "chargeback").exit_code == 2
    history = env.json("risk", "buyer", "contact:c@example.com", "--json")["history"]
    assert [(h["delta"], h["reason"], h["operator"], h["order"]) for h in history] == [
        (-30, "reported: chargeback", "alice", "C1")
    ]
    assert json.loads(env.cli("risk", "explain", "C1", "--json").stdout)["decision"] is None
