"""`fulfil aftersales | reissues | evidence` against a real SQLite database, orders delivered by the real engine
from the operator's own stock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fulfil.app import build_engine
from fulfil.config import load_config
from fulfil.storage import Store
from suppliers.registry import build_supplier

if TYPE_CHECKING:
    from tests.cli.conftest import Env

KEYS = ["AAAA000000000001", "AAAA000000000002", "AAAA000000000003", "AAAA000000000004"]


def _deliver_all(env: Env) -> None:
    config = load_config(env.config_path)

    async def body(store: Store) -> None:
        suppliers = {"shelf": build_supplier(config.supplier("shelf"), store=store)}  # the fulu one is fake
        engine = build_engine(config, store, env.cipher(), suppliers)
        for order in await store.claim_orders("cli-test", 100, 60.0, datetime.now(UTC)):

            class Lease:
                owner = "cli-test"

            await engine.process(order, Lease())
        for supplier in suppliers.values():
            await supplier.aclose()

    env.store(body)


def _setup(env: Env) -> None:
    keys = env.write("keys.txt", "\n".join(KEYS) + "\n")
    assert env.cli("stock", "import", "steam-100", str(keys)).exit_code == 0
    for ref, contact in (("R1", "one@example.com"), ("R2", "two@example.com")):
        result = env.cli("orders", "add", "--ref", ref, "--sku", "steam-100", "--qty", "1", "--contact", contact)
        assert result.exit_code == 0, result.output
    _deliver_all(env)


def test_the_support_desk_from_the_command_line(env: Env) -> None:
    _setup(env)
    r1 = env.json("orders", "show", "R1", "--json", "--reveal")["cards"][0]["password"]
    opened = env.json(
        "aftersales", "open", "--ref", "R1", "--problem", "key_invalid", "--key", r1, "--json", "--operator", "alice"
    )
    assert (opened["status"], opened["level"], opened["decided_by"]) == ("open", "L1", "L1")
    assert len(opened["reissues"]) == 1 and len(opened["claims"]) == 1
    other = env.json("aftersales", "open", "--ref", "R2", "--problem", "other", "--text", "where is it", "--json")
    assert (other["level"], other["reason"]) == ("L2", "a report in the buyer's words needs a person")
    assert [c["case_no"] for c in env.json("aftersales", "list", "--level", "L2", "--json")] == [other["case_no"]]
    assert len(env.json("aftersales", "list", "--json")) == 2

    moved = env.json(
        "aftersales", "act", other["case_no"], "escalate", "--note", "supplier", "--operator", "bob", "--json"
    )
    assert moved["level"] == "L3"
    again = env.cli("aftersales", "act", other["case_no"], "escalate")
    assert again.exit_code == 2 and "at L3 already" in again.output
    done = env.json("aftersales", "act", other["case_no"], "resolve", "--note", "found it", "--json")
    assert (done["status"], done["outcome"], done["reason"]) == ("resolved", "answered", "found it")
    closed = env.cli("aftersales", "act", other["case_no"], "refund")
    assert closed.exit_code == 2 and "no more actions" in closed.output

    _deliver_all(env)  # the reissue, from stock
    shown = env.json("aftersales", "show", opened["case_no"], "--json")
    assert (shown["status"], shown["outcome"]) == ("resolved", "reissued")
    order = env.json("orders", "show", "R1", "--json")
    assert [c.get("replaced", False) for c in order["cards"]] == [True, False]

    ledger = env.json("reissues", "--json")
    assert [(row["ref"], row["case_no"], row["units"], row["decided_by"]) for row in ledger] == [
        ("R1", opened["case_no"], 1, "L1")
    ]
    assert ledger[0]["contact"] == "o***@example.com"
    assert env.json("reissues", "--json", "--ref", "R2") == []
    assert len(env.json("reissues", "--json", "--contact", " ONE@example.com ")) == 1
    assert env.json("reissues", "--json", "--since", "2999-01-01") == []
    csv_out = env.cli("reissues", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("ref,case_no,reason,original_supplier") and len(csv_out) == 2
    assert env.cli("reissues", "--json", "--csv").exit_code == 2
    assert env.cli("reissues", "--min-amount", "lots").exit_code == 2

    evidence = env.json("evidence", opened["case_no"])
    assert evidence["ref"] == "R1" and evidence["case"] == opened["case_no"]
    whats = {entry["what"] for entry in evidence["timeline"]}
    assert {"order.taken", "attempt", "aftersales.opened", "claim.opened", "aftersales.resolved"} <= whats
    assert r1 not in json.dumps(evidence) and evidence["order"]["contact"] == "o***@example.com"
    html = env.cli("evidence", "R1", "--format", "html").stdout
    assert "<h1>Evidence file: order R1</h1>" in html and r1 not in html
    assert env.cli("evidence", "nope").exit_code == 2

    stats = env.json("aftersales", "stats", "--json")
    assert (stats["cases"], stats["closed"], stats["automation_rate"]) == (2, 2, 0.5)


def test_bad_arguments_are_refused_naming_what_is_wrong(env: Env) -> None:
    _setup(env)
    result = env.cli("aftersales", "open", "--ref", "R1", "--problem", "key_invalid")
    assert result.exit_code == 2 and "--key" in result.output
    result = env.cli("aftersales", "open", "--ref", "nope", "--problem", "not_received")
    assert result.exit_code == 2 and "no order 'nope'" in result.output
    result = env.cli("aftersales", "show", "AS-1")
    assert result.exit_code == 2 and "no case" in result.output
    result = env.cli("aftersales", "act", "AS-1", "explode")
    assert result.exit_code == 2
    assert env.json("aftersales", "list", "--json") == []
