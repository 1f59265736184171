"""After-sales in the console over real loopback HTTP: the L2/L3 queues with their countdowns, one-click case
actions through the desk (the CLI's `aftersales act`) with the operator's name, the viewer refused, and the
order page's cases and reissues. Real store (SQLite and PostgreSQL), real engine, fake suppliers."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fulfil.aftersales.model import Action, Problem, Report
from fulfil.crypto import CardCipher
from fulfil.storage import Store
from tests.aftersales.askit import make_shop
from tests.console.consolekit import add_operator, browser, console_of, l2_case


def section(page: str, name: str) -> str:
    found = re.search(rf'<section id="queue-{name}">(.*?)</section>', page, re.S)
    assert found, f"no queue {name} on the page"
    return found.group(1)


async def test_an_agent_works_the_l2_queue_and_the_events_name_them(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    now = datetime.now(UTC)
    await add_operator(store, "amy", "agent", now)
    reissued, escalated = await l2_case(shop, "as-1"), await l2_case(shop, "as-2")
    async with console_of(shop) as server, browser(server, "amy") as b:
        page = (await b.client.get("/console/queues")).text
        l2 = section(page, "aftersales-L2")
        assert reissued.case_no in l2 and escalated.case_no in l2
        assert reissued.case_no not in section(page, "aftersales-L3")
        # the countdown is the case's own due_at, not a queue-wide limit
        left = re.search(rf'id="case-{reissued.case_no}".*?data-left="(-?\d+)"', l2, re.S)
        assert left is not None
        assert abs(int(left.group(1)) - (reissued.due_at - now).total_seconds()) < 60  # type: ignore[operator]
        assert f'formaction="/console/cases/{reissued.case_no}/reissue"' in l2

        done = await b.post(f"/console/cases/{reissued.case_no}/reissue", note="screenshot checks out")
        assert done.status_code == 303 and done.headers["Location"].startswith("/console/orders/as-1")
        again = await b.post(f"/console/cases/{reissued.case_no}/reissue")
        assert again.status_code == 409 and "under way" in again.text  # one reissue, not two
        moved = await b.post(f"/console/cases/{escalated.case_no}/escalate", note="needs a supervisor")
        assert moved.status_code == 303

        page = (await b.client.get("/console/queues")).text
        assert escalated.case_no in section(page, "aftersales-L3")
        assert escalated.case_no not in section(page, "aftersales-L2")
        assert (await b.post(f"/console/cases/{escalated.case_no}/explode")).status_code == 404
        assert (await b.post("/console/cases/AS-NOPE/resolve")).status_code == 409

        case = await store.get_case(reissued.case_no)
        assert case is not None and len(case.reissue_refs) == 1 and case.decided_by == "amy"
        order_page = (await b.client.get("/console/orders/as-1")).text
        assert f'id="case-{reissued.case_no}"' in order_page
        assert case.reissue_refs[0] in order_page
        child_page = (await b.client.get(f"/console/orders/{case.reissue_refs[0]}")).text
        assert 'id="reissue-of"' in child_page

    events = await store.events(name="aftersales.reissue")
    assert [(e.operator, e.data["case_no"], e.data["note"]) for e in events] == [
        ("amy", reissued.case_no, "screenshot checks out")
    ]
    escalations = [e for e in await store.events(name="aftersales.escalated") if e.data["case_no"] == escalated.case_no]
    assert [(e.operator, e.data["to"]) for e in escalations] == [("amy", "L3")]
    # the reissue is bought by the worker like any order: the case closes as reissued
    await shop.run_pending()
    closed = await store.get_case(reissued.case_no)
    assert closed is not None and (str(closed.status), str(closed.outcome)) == ("resolved", "reissued")


async def test_a_viewer_sees_the_case_queues_but_cannot_act(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    now = datetime.now(UTC)
    await add_operator(store, "vic", "viewer", now)
    await add_operator(store, "amy", "agent", now)
    case = await l2_case(shop, "as-v")
    async with console_of(shop) as server:
        async with browser(server, "vic") as viewer:
            l2 = section((await viewer.client.get("/console/queues")).text, "aftersales-L2")
            assert case.case_no in l2 and "/console/cases/" not in l2  # no buttons
            for action in ("reissue", "refund", "resolve", "escalate", "reject"):
                forged = await viewer.post(f"/console/cases/{case.case_no}/{action}", note="x")
                assert forged.status_code == 403, action
        async with browser(server, "amy") as agent:
            no_token = await agent.client.post(f"/console/cases/{case.case_no}/reject", data={"note": "x"})
            assert no_token.status_code == 403 and "CSRF" in no_token.text
    after = await store.get_case(case.case_no)
    assert after is not None and (str(after.status), str(after.level), after.reissue_refs) == ("open", "L2", ())
    assert [e for e in await store.events() if e.name.startswith("aftersales.") and e.operator in ("vic", "amy")] == []


def _dd(page: str, pattern: str) -> str:
    found = re.search(pattern, page, re.S)
    assert found, f"{pattern} not on the page"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


async def test_the_overview_shows_the_aftersales_rate_and_the_case_queues(store: Store, cipher: CardCipher) -> None:
    """Four sales; a bad key (L1 reissue with a claim on the supplier), two cases for a person, one escalated:
    3 cases / 4 delivered, 1 of 3 caused by a supplier, one case waiting at L2 and one at L3."""
    shop = make_shop(store, cipher)
    now = datetime.now(UTC)
    await add_operator(store, "val", "viewer", now)
    bad = await shop.delivered_order("ov-1")
    found = await store.order_for_proof("ov-1")
    assert found is not None
    report = Report(Problem.KEY_INVALID, (bad.cards[0].password,))
    assert (await shop.desk.report(found[0], found[1], report, reporter="buyer")).case.reissue_refs
    await shop.run_pending()  # the reissue is delivered: not a fourth sale
    await l2_case(shop, "ov-2")
    up = await l2_case(shop, "ov-3")
    await shop.delivered_order("ov-4")
    await shop.desk.act(up.case_no, Action.ESCALATE, None, "amy")
    async with console_of(shop) as server, browser(server, "val") as b:
        page = (await b.client.get("/console/")).text
    for window in ("today", "7d"):
        card = _dd(page, rf'id="window-{window}">(.*?)</section>')
        assert "75.0% (3 / 4)" in card, card
        assert "Caused by suppliers33.3%" in card, card
        # a buyer's report and L1's reissue are not a person acting; amy's escalation is: 3 of 4 automatic
        assert "Automation rate75.0%" in card, card
    assert _dd(page, r'id="case-queue-L2">(.*?)</dd>').startswith("1 · oldest")
    assert _dd(page, r'id="case-queue-L3">(.*?)</dd>').startswith("1 · oldest")
