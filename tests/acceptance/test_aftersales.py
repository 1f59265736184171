"""Issue 12 acceptance: after-sales against a real daemon (`fulfil run`), real fulu simulators and real HTTP.

200 delivered orders; 20 buyers report `key_invalid` over HTTP. Those within the rules are reissued by L1
and delivered with new keys within 30 s of the report (report time to the new delivery, both read from the
database), from the backup supplier, each with an `invalid_key_reported` claim against the supplier that sold
the bad key; the others wait in L2 with a reason; the ledger lists exactly the reissues. Then the same with
kill -9 of the daemon while the reissues are being bought (paused between receipt and delivery): nothing is
bought twice, every unit either supplier charged is delivered or claimed.
"""

from __future__ import annotations

import json
import random
import re
import socket
import statistics
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemonkit import (
    SKU,
    _with_store,
    charged_units,
    fulfil,
    import_orders,
    order_line,
    order_views,
    start_daemon,
    start_sim,
    status_counts,
    upgrade,
    wait_until,
    write_scenario,
)
from hookreceiver import SECRET, ReceiverThread
from test_engine_kit import (
    BACKUP,
    CARD_PRODUCT,
    PRIMARY,
    claims_json,
    log_counts,
    reconcile,
    two_fulu_config,
    wait_settled,
)

pytestmark = pytest.mark.slow

SHORT = "steam-short"  # a product whose after-sales window is over a moment after delivery
TOKEN = "aftersales-acceptance-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _setup(
    tmp_path: Path, env: dict[str, str], orders: int, short: int, **overrides: Any
) -> tuple[Path, str, Any, Any]:
    primary = start_sim(write_scenario(tmp_path / "primary.yaml", seed=5))
    backup = start_sim(write_scenario(tmp_path / "backup.yaml", seed=8))
    port = _free_port()
    offers = [
        {"supplier": PRIMARY, "product_id": CARD_PRODUCT, "cost": "95.00", "priority": 0},
        {"supplier": BACKUP, "product_id": CARD_PRODUCT, "cost": "96.00", "priority": 1},
    ]
    config = two_fulu_config(
        tmp_path,
        primary,
        backup,
        products={SHORT: {"kind": "card", "max_qty": 5, "card_pattern": "^[A-Z0-9]{16}$", "offers": offers}},
        http={"enabled": True, "listen": f"127.0.0.1:{port}"},
        **{
            "aftersales": {"products": {SHORT: {"window": "1ms"}}, "interval": "1s", "hotspots": {"interval": "1s"}},
            **overrides,
        },
    )
    upgrade(config, env)
    lines = [
        order_line(f"A{i:04d}", SHORT if i < short else SKU, 1 + i % 2, contact=f"buyer{i}@example.com")
        for i in range(orders)
    ]
    import_orders(config, env, lines, tmp_path / "orders.jsonl")
    return config, f"http://127.0.0.1:{port}", primary, backup


def _report(base: str, view: Mapping[str, Any], key: str, i: int) -> dict[str, Any]:
    proof = f"  BUYER{i}@Example.COM "  # trimmed and case-folded
    body = {"ref": view["ref"], "proof": proof, "problem": "key_invalid", "keys": [key], "text": "已被使用"}
    response = httpx.post(f"{base}/aftersales", json=body, timeout=10.0)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def _cases(config: Path, env: Mapping[str, str]) -> list[Any]:
    return _with_store(config, env, lambda store: store.list_cases())  # type: ignore[no-any-return]


def _reissue_delays(config: Path, env: Mapping[str, str]) -> dict[str, float]:
    """Case -> seconds from the report (the case's opened_at) to the reissue's delivery (its delivered_at)."""

    async def read(store: Any) -> dict[str, float]:
        out = {}
        for case in await store.list_cases():
            for ref in case.reissue_refs:
                view = await store.get_order(ref)
                if view is not None and view.order.delivered_at is not None:
                    out[case.case_no] = (view.order.delivered_at - case.opened_at).total_seconds()
        return out

    return _with_store(config, env, read)  # type: ignore[no-any-return]


def _index(ref: str) -> int:
    return int(ref[1:])


def test_twenty_reports_over_http_reissued_within_30s_with_claims_the_rest_in_l2(
    db_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    env = {**env, "FULFIL_ADMIN_TOKEN": TOKEN}
    config, base, primary, backup = _setup(tmp_path, env, orders=200, short=10, database={"url": db_url})
    daemon = start_daemon(config, env)
    counts = wait_settled(config, env, 200, timeout=180)
    assert counts["delivered"] == 200, counts
    views = {v["ref"]: v for v in order_views(config, env)}
    card = {ref: v["cards"][0]["password"] for ref, v in views.items()}
    within = [f"A{i:04d}" for i in range(10, 25)]  # 15 reports L1 may reissue
    late = [f"A{i:04d}" for i in range(3)]  # 3 past their product's after-sales window
    not_theirs = [f"A{i:04d}" for i in range(30, 32)]  # 2 naming a key of another order
    reports: dict[str, dict[str, Any]] = {}
    for ref in within + late:
        reports[ref] = _report(base, views[ref], card[ref], _index(ref))
    for ref in not_theirs:
        reports[ref] = _report(base, views[ref], card["A0100"], _index(ref))
    assert len(reports) == 20 and all(r["level"] in ("L1", "L2") for r in reports.values())

    def all_reissued() -> bool:
        cases = {c.order_ref: c for c in _cases(config, env)}
        return all(str(cases[ref].status) == "resolved" for ref in within)

    wait_until(all_reissued, timeout=60, message="the L1 reissues resolved")
    cases = {c.order_ref: c for c in _cases(config, env)}
    delays = _reissue_delays(config, env)
    print(
        f"\nreport -> new delivery over {len(delays)} reissues: median {statistics.median(delays.values()):.2f}s, "
        f"max {max(delays.values()):.2f}s"
    )
    for ref in within:
        case = cases[ref]
        assert (str(case.status), str(case.level), str(case.outcome)) == ("resolved", "L1", "reissued"), case
        assert delays[case.case_no] <= 30.0, (ref, delays[case.case_no])
        shown = httpx.get(f"{base}/aftersales/{case.case_no}", params={"proof": f"buyer{_index(ref)}@example.com"})
        assert shown.json()["outcome"] == "reissued" and len(shown.json()["keys"]) == 1
    for ref in late:
        assert (str(cases[ref].status), str(cases[ref].level)) == ("open", "L2")
        assert "after-sales window" in (cases[ref].reason or "")
    for ref in not_theirs:
        assert (str(cases[ref].level), cases[ref].reason) == ("L2", "1 of 1 named keys are not this order's")

    # The order's own view: the bad key marked replaced, the new one listed, the order still delivered.
    shown = httpx.get(
        f"{base}/orders/{within[0]}", params={"reveal": "1"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    order = shown.json()
    assert order["status"] == "delivered"
    assert [c["password"] for c in order["cards"] if c.get("replaced")] == [card[within[0]]]
    assert len([c for c in order["cards"] if c.get("reissued")]) == 1

    claims = [c for c in claims_json(config, env) if c["reason"] == "invalid_key_reported"]
    assert sorted(c["order_ref"] for c in claims) == sorted(within)
    assert {c["supplier"] for c in claims} == {PRIMARY} and all(c["qty"] == 1 for c in claims)

    ledger = json.loads(fulfil("reissues", "--json", config=config, env=env).stdout)
    assert sorted(row["ref"] for row in ledger) == sorted(within)
    assert {(row["original_supplier"], row["new_supplier"], row["decided_by"]) for row in ledger} == {
        (PRIMARY, BACKUP, "L1")
    }
    assert sorted(row["claim_no"] for row in ledger) == sorted(c["claim_no"] for c in claims)
    csv_text = fulfil("reissues", "--csv", "--supplier", BACKUP, config=config, env=env).stdout
    assert csv_text.splitlines()[0] == (
        "ref,case_no,reason,original_supplier,original_supplier_order_no,new_supplier,new_supplier_order_no,"
        "units,cost,claim_no,decided_by,created_at"
    )
    assert len(csv_text.splitlines()) == 16
    one = json.loads(fulfil("reissues", "--json", "--contact", "BUYER12@example.com", config=config, env=env).stdout)
    assert [row["ref"] for row in one] == ["A0012"] and one[0]["contact"] == "b***@example.com"

    # 15 reports against 190 deliveries of the primary's offer in the last 24 h, none before: a hotspot. The
    # daemon's after-sales pass pauses that offer, so later orders go to the backup.
    def paused() -> bool:
        cooling = _with_store(config, env, lambda store: store.active_cooldowns(datetime.now(UTC)))
        return (PRIMARY, CARD_PRODUCT) in cooling

    wait_until(paused, timeout=15, message="the primary's offer paused by the hotspot")
    import_orders(config, env, [order_line(f"L{i}", SKU, 1) for i in range(5)], tmp_path / "later.jsonl")
    wait_settled(config, env, 220, timeout=60)
    later = [v for v in order_views(config, env) if v["ref"].startswith("L")]
    assert [a["supplier"] for v in later for a in v["attempts"]] == [BACKUP] * 5

    stats = json.loads(fulfil("aftersales", "stats", "--json", config=config, env=env).stdout)
    assert stats["cases"] == 20 and stats["automation_rate"] == 1.0 and stats["open"] == 5
    evidence = fulfil("evidence", within[0], "--format", "html", config=config, env=env).stdout
    assert cases[within[0]].case_no in evidence and card[within[0]] not in evidence
    assert daemon.stop() == 0
    # The suppliers' books: every original from the primary, every reissue from the backup, once.
    assert charged_units(backup.ledger()) == len(within) + 5
    assert charged_units(primary.ledger()) == sum(v["qty"] for v in views.values())


def test_kill_9_while_reissues_are_bought_buys_none_twice(db_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    # Two orders at a time and short leases: the reissues are bought a few at a time, so kills land among them.
    daemon_settings = {"concurrency": 2, "batch_size": 2, "lease": "2s"}
    config, base, primary, backup = _setup(
        tmp_path, env, orders=60, short=0, daemon=daemon_settings, database={"url": db_url}
    )
    daemon = start_daemon(config, env)
    wait_settled(config, env, 60, timeout=120)
    views = {v["ref"]: v for v in order_views(config, env)}
    assert daemon.stop() == 0
    # Every reissue waits 0.3 s between its receipt and its delivery: the kills land there.
    paused = {**env, "FULFIL_FAILPOINTS": "after_receipt=0.3"}
    daemon = start_daemon(config, paused)
    reported = [f"A{i:04d}" for i in range(20)]
    for ref in reported:
        _report(base, views[ref], views[ref]["cards"][0]["password"], _index(ref))
    rng = random.Random(12)
    kills = 0
    while open_reissues := [c for c in _cases(config, env) if str(c.status) == "open"]:
        time.sleep(rng.uniform(0.2, 0.8))
        daemon.kill()
        kills += 1
        assert kills < 40, f"reissues still open after {kills} kills: {open_reissues}"
        daemon = start_daemon(config, paused)
    wait_settled(config, env, 80, timeout=120)
    time.sleep(1.0)
    assert daemon.stop() == 0
    events = log_counts(tmp_path, ("receipt.written", "attempt.from_receipt", "order.delivered"))
    print(f"\n20 reissues through {kills} kills; log {events}")
    assert kills >= 3, "kills landed while reissues were open"
    assert events["attempt.from_receipt"] > 0, "some reissues were finished from their receipt after a kill"
    cases = _cases(config, env)
    assert len(cases) == 20 and all(len(c.reissue_refs) == 1 for c in cases)
    assert all((str(c.status), str(c.outcome)) == ("resolved", "reissued") for c in cases)
    counts = status_counts(config, env)
    assert counts["delivered"] == 80, counts
    # The suppliers' books, number by number: the backup charged exactly one unit per reissue.
    assert charged_units(backup.ledger()) == 20
    all_views = order_views(config, env)
    for view in all_views:  # the originals' views also list their reissues' keys: count those once
        view["cards"] = [c for c in view["cards"] if not c.get("reissued")]
    claims = [c for c in claims_json(config, env) if c["reason"] != "invalid_key_reported"]
    books = reconcile(all_views, claims, {PRIMARY: primary.ledger(), BACKUP: backup.ledger()})
    assert not books.problems, "\n".join(books.problems[:20])
    assert books.suppliers[BACKUP].charged == books.suppliers[BACKUP].delivered == 20
    reported_claims = [c for c in claims_json(config, env) if c["reason"] == "invalid_key_reported"]
    assert sorted(c["order_ref"] for c in reported_claims) == sorted(reported)


def test_a_case_left_in_l2_past_its_limit_escalates_to_l3_and_alerts(tmp_path: Path, env: dict[str, str]) -> None:
    with ReceiverThread() as rx:
        alert = {"name": "ops", "type": "webhook", "url": rx.url, "secret": SECRET}
        config, base, _, _ = _setup(
            tmp_path,
            env,
            orders=4,
            short=0,
            aftersales={"levels": {"L2": {"time_limit": "2s"}}, "interval": "500ms", "hotspots": {"enabled": False}},
            notify={"alerts": [alert]},
        )
        daemon = start_daemon(config, env)
        wait_settled(config, env, 4, timeout=60)
        views = {v["ref"]: v for v in order_views(config, env)}
        case = _report(base, views["A0001"], views["A0002"]["cards"][0]["password"], 1)  # not this order's key
        assert case["level"] == "L2"

        def escalated() -> bool:
            return any(str(c.level) == "L3" for c in _cases(config, env))

        wait_until(escalated, timeout=20, message="the L2 case escalated")
        wait_until(lambda: any(s.type == "system.alert" for s in rx.snapshot()), timeout=20, message="an alert")
        assert daemon.stop() == 0
    alerts = [s.data for s in rx.snapshot() if s.type == "system.alert"]
    assert [(a["kind"], a["subject"]) for a in alerts] == [("aftersales.escalated", case["case_no"])]
    (found,) = [c for c in _cases(config, env) if c.case_no == case["case_no"]]
    assert (str(found.status), str(found.level)) == ("open", "L3")
    assert "past the L2 time limit" in (found.reason or "")


def test_kill_9_after_the_decision_before_the_answer_the_buyer_retries_and_nothing_is_bought_twice(
    tmp_path: Path, env: dict[str, str]
) -> None:
    config, base, primary, backup = _setup(tmp_path, env, orders=3, short=0)
    daemon = start_daemon(config, env)
    wait_settled(config, env, 3, timeout=60)
    view = next(v for v in order_views(config, env) if v["ref"] == "A0001")
    assert daemon.stop() == 0
    # The report's transaction commits (case, reissue order, claim), then the daemon dies before answering.
    daemon = start_daemon(config, {**env, "FULFIL_FAILPOINTS": "aftersales_decided=5"})
    body = {
        "ref": "A0001",
        "proof": "buyer1@example.com",
        "problem": "key_invalid",
        "keys": [view["cards"][0]["password"]],
    }
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{base}/aftersales", json=body, timeout=1.0)
    daemon.kill()
    daemon = start_daemon(config, env)
    retry = httpx.post(f"{base}/aftersales", json=body, timeout=10.0)  # the buyer, who saw no answer, asks again
    wait_settled(config, env, 4, timeout=60)
    assert daemon.stop() == 0
    cases = _cases(config, env)
    first = next(c for c in cases if c.reissue_refs)
    if retry.status_code == 200:  # the reissue was still under way: the same case
        assert retry.json()["case_no"] == first.case_no and len(cases) == 1
    else:  # already reissued: a new report of the same key waits for a person, naming the first case
        assert retry.status_code == 201 and retry.json()["level"] == "L2"
        assert [c.reason for c in cases if not c.reissue_refs] == [
            f"a named key was reported before (case {first.case_no})"
        ]
    assert len(first.reissue_refs) == 1 and charged_units(backup.ledger()) == 1


def _console_login(client: httpx.Client, name: str, password: str) -> str:
    """Log in to the console; the CSRF token of the session."""
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post("/console/login", data={"name": name, "password": password, "csrf": token.group(1)})
    assert answer.status_code == 302, answer.text
    home = client.get("/console/")
    found = re.search(r'name="csrf" value="([^"]+)"', home.text)
    assert found
    return found.group(1)


def test_kill_9_after_a_console_reissue_before_the_answer_the_second_click_buys_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """An agent clicks "reissue" on an L2 case in the console; the daemon dies after the action committed, before
    the page came back. After a restart the agent clicks again: refused; the reissue is bought once."""
    config, base, primary, backup = _setup(tmp_path, env, orders=3, short=0)
    fulfil("operators", "add", "amy", "--role", "agent", "--password-stdin", config=config, env=env,
           input="a long agent password\n")
    daemon = start_daemon(config, env)
    wait_settled(config, env, 3, timeout=60)
    before = charged_units(primary.ledger()) + charged_units(backup.ledger())
    report = {"ref": "A0001", "proof": "buyer1@example.com", "problem": "other", "text": "it does not work"}
    opened = httpx.post(f"{base}/aftersales", json=report, timeout=10.0)
    assert opened.status_code == 201 and opened.json()["level"] == "L2", opened.text
    case_no = opened.json()["case_no"]
    assert daemon.stop() == 0
    daemon = start_daemon(config, {**env, "FULFIL_FAILPOINTS": "aftersales_acted=5"})
    with httpx.Client(base_url=base, timeout=10.0) as client:
        csrf = _console_login(client, "amy", "a long agent password")
        with pytest.raises(httpx.HTTPError):
            client.post(f"/console/cases/{case_no}/reissue", data={"csrf": csrf, "note": "first click"}, timeout=1.0)
    daemon.kill()
    daemon = start_daemon(config, env)
    with httpx.Client(base_url=base, timeout=10.0) as client:
        csrf = _console_login(client, "amy", "a long agent password")
        again = client.post(f"/console/cases/{case_no}/reissue", data={"csrf": csrf, "note": "second click"})
    # refused either way: the reissue under way, or the case closed once it was delivered
    assert again.status_code == 409 and ("under way" in again.text or "no more actions" in again.text), again.text
    wait_settled(config, env, 4, timeout=60)
    assert daemon.stop() == 0
    case = next(c for c in _cases(config, env) if c.case_no == case_no)
    assert len(case.reissue_refs) == 1 and case.decided_by == "amy"
    qty = next(v for v in order_views(config, env) if v["ref"] == "A0001")["qty"]
    assert charged_units(primary.ledger()) + charged_units(backup.ledger()) == before + qty  # bought once
    events = _with_store(config, env, lambda store: store.events(name="aftersales.reissue"))
    assert [(e.operator, e.data["note"]) for e in events] == [("amy", "first click")]
