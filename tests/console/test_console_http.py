"""The console over real HTTP on real SQLite and PostgreSQL: login, cookies, CSRF, roles, search, timeline,
audited reveal, actions recorded with the operator, rate-limited logins."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fulfil.crypto import CardCipher
from fulfil.domain import WAITING_REASON, OrderStatus
from fulfil.storage import Store
from tests.console.consolekit import add_operator, browser, console_config, csrf_of, make_order, serving


async def test_pages_need_a_login_and_the_cookie_is_locked_down(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    await add_operator(store, "ann", "viewer", now)
    async with serving(store, cipher) as server, browser(server) as b:
        first = await b.client.get("/console/orders")
        assert first.status_code == 302 and first.headers["location"] == "/console/login"
        assert (await b.client.post("/console/orders/x/refund", data={"csrf": "x"})).status_code == 403
        wrong = await b.login("ann", "not the password")
        assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        ok = await b.login("ann")
        assert ok.status_code == 302
        cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and "fulfil_console=" in v)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert (await b.client.get("/console/orders")).status_code == 200
    async with serving(store, cipher) as server, browser(server) as b:
        page = await b.client.get("/console/login")
        behind_tls = await b.client.post(
            "/console/login",
            data={"name": "ann", "password": "correct horse battery", "csrf": csrf_of(page.text)},
            headers={"X-Forwarded-Proto": "https"},
        )
        cookie = next(v for k, v in behind_tls.headers.multi_items() if k == "set-cookie" and "fulfil_console=" in v)
        assert "Secure" in cookie


async def test_an_agent_refunds_with_one_click_and_the_event_names_them(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    await add_operator(store, "bob", "agent", now)
    await make_order(store, "r-1", OrderStatus.REVIEW, now - timedelta(minutes=5), contact="Buyer@Example.com")
    async with serving(store, cipher) as server, browser(server, "bob") as b:
        # No CSRF token: refused, nothing changes.
        bare = await b.client.post("/console/orders/r-1/refund")
        assert bare.status_code == 403
        assert (await store.get_order("r-1")).order.status is OrderStatus.REVIEW  # type: ignore[union-attr]
        done = await b.post("/console/orders/r-1/refund")
        assert done.status_code == 303
        page = await b.client.get("/console/orders/r-1")
    view = await store.get_order("r-1")
    assert view is not None and view.order.status is OrderStatus.FAILED
    refunds = await store.events(name="review.refund", order_id=view.order.id)
    assert [e.operator for e in refunds] == ["bob"]
    assert "review.refund" in page.text and "bob" in page.text
    assert "Buyer@Example.com" not in page.text and "B***@Example.com" in page.text


async def test_an_agent_holds_a_pending_order_and_then_refunds_it(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    """A pending order (here one waiting out an outage) shows a hold button; holding it takes it into review
    with who and why, after which review's own buttons decide it. A delivered order has nothing to hold."""
    await add_operator(store, "bob", "agent", now)
    order_id = await make_order(store, "p-1", OrderStatus.PENDING, now)
    [claimed] = await store.claim_orders("w1", 1, 60, now)
    await store.park_for(claimed.id, "w1", 600, f"{WAITING_REASON}main#0 breaker open", now)
    await make_order(store, "d-1", OrderStatus.DELIVERED, now)
    # Parked on a purchase the supplier has not answered yet: nothing to hold (it settles by itself).
    open_id = await make_order(store, "p-open", OrderStatus.PENDING, now)
    await store.claim_orders("w1", 1, 60, now)
    await store.open_attempt(open_id, "w1", "shelf", 0, 1, None, now, sent=True)
    await store.park_for(open_id, "w1", 600, "awaiting shelf", now)
    async with serving(store, cipher) as server, browser(server, "bob") as b:
        assert 'id="action-hold"' not in (await b.client.get("/console/orders/p-open")).text
        forced = await b.post("/console/orders/p-open/hold")
        assert forced.status_code == 409 and "purchase still open at the supplier" in forced.text
        page = await b.client.get("/console/orders/p-1")
        assert 'id="action-hold"' in page.text and 'id="action-refund"' not in page.text
        assert 'id="hold-note"' in page.text  # the why goes with the hold
        assert (await b.client.post("/console/orders/p-1/hold")).status_code == 403  # no CSRF token
        bad = await b.post("/console/orders/p-1/hold", note="cancel\x00")
        assert bad.status_code == 400 and "note holds a control character (U+0000)" in bad.text
        long = await b.post("/console/orders/p-1/hold", note="x" * 1001)
        assert long.status_code == 400 and "at most 1000" in long.text
        assert (await b.post("/console/orders/p-1/hold", note=" buyer cancelled ")).status_code == 303
        page = await b.client.get("/console/orders/p-1")
        assert 'id="action-hold"' not in page.text and 'id="action-refund"' in page.text
        assert "held by bob: buyer cancelled (was: waiting for a supplier: main#0 breaker open)" in page.text
        again = await b.post("/console/orders/p-1/hold")
        assert again.status_code == 409 and "not pending: nothing to hold" in again.text
        refused = await b.post("/console/orders/d-1/hold")
        assert refused.status_code == 409 and "d-1 is delivered" in refused.text
        assert (await b.post("/console/orders/p-1/refund")).status_code == 303
    view = await store.get_order("p-1")
    assert view is not None and view.order.status is OrderStatus.FAILED and view.attempts == ()
    holds = await store.events(name="review.hold", order_id=order_id)
    assert [(e.operator, e.data) for e in holds] == [
        ("bob", {"reason": f"{WAITING_REASON}main#0 breaker open", "note": "buyer cancelled"})
    ]


async def test_a_viewer_cannot_act_even_with_a_forged_post(store: Store, cipher: CardCipher, now: datetime) -> None:
    await add_operator(store, "vic", "viewer", now)
    await make_order(store, "r-2", OrderStatus.REVIEW, now)
    await make_order(store, "d-2", OrderStatus.DELIVERED, now)
    await make_order(store, "p-2", OrderStatus.PENDING, now)
    async with serving(store, cipher) as server, browser(server, "vic") as b:
        page = await b.client.get("/console/orders/r-2")
        assert 'id="action-refund"' not in page.text  # nothing to click
        for path in (
            "/console/orders/r-2/refund",
            "/console/orders/r-2/retry",
            "/console/orders/d-2/reveal",
            "/console/orders/p-2/hold",
        ):
            forged = await b.post(path)  # a valid session and CSRF token: still refused by role
            assert forged.status_code == 403, path
        assert (await b.post("/console/suppliers/shelf/pause", product_id="x")).status_code == 403
        assert (await b.client.get("/console/claims.csv")).status_code == 403
    view = await store.get_order("r-2")
    assert view is not None and view.order.status is OrderStatus.REVIEW
    assert await store.events(name="review.refund") == [] and await store.events(name="order.revealed") == []
    assert await store.events(name="review.hold") == []


async def test_keys_are_masked_and_showing_them_is_recorded(store: Store, cipher: CardCipher, now: datetime) -> None:
    await add_operator(store, "amy", "agent", now)
    await make_order(store, "d-3", OrderStatus.DELIVERED, now)
    view = await store.get_order("d-3")
    assert view is not None
    key = view.cards[0].password
    async with serving(store, cipher) as server, browser(server, "amy") as b:
        masked = await b.client.get("/console/orders/d-3")
        assert key not in masked.text and key[-2:] in masked.text
        shown = await b.post("/console/orders/d-3/reveal")
        assert shown.status_code == 200 and key in shown.text
        assert shown.headers["Cache-Control"] == "no-store"
    reveals = await store.events(name="order.revealed", order_id=view.order.id)
    assert [e.operator for e in reveals] == ["amy"]
    # Looking is not acting: the order stays automatic.
    assert (await store.order_detail(view)).automatic


async def test_support_finds_an_order_by_what_the_buyer_says(store: Store, cipher: CardCipher) -> None:
    now = datetime.now(UTC)  # the server's clock: an amount alone searches its last 7 days
    await add_operator(store, "sue", "viewer", now)
    await make_order(store, "a-1", OrderStatus.DELIVERED, now - timedelta(days=3), contact="alice@example.com",
                     account="555001", amount="30.00")
    await make_order(store, "b-1", OrderStatus.DELIVERED, now - timedelta(days=1), contact="bob@example.com",
                     amount="99.00")
    await make_order(store, "a-2", OrderStatus.REVIEW, now, contact="  ALICE@example.com ", sku="gift")
    await make_order(store, "old-1", OrderStatus.DELIVERED, now - timedelta(days=10), amount="99.00")
    view = await store.get_order("a-1")
    assert view is not None
    number = view.attempts[0].number
    day = lambda d: (now - timedelta(days=d)).date().isoformat()  # noqa: E731

    async with serving(store, cipher) as server, browser(server, "sue") as b:

        async def refs(**query: str) -> list[str]:
            page = await b.client.get("/console/orders", params=query)
            assert page.status_code == 200, page.text
            found = [r for r in ("a-1", "a-2", "b-1", "old-1") if f">{r}</a>" in page.text]
            return found

        assert await refs(contact="alice@example.com") == ["a-1", "a-2"]  # normalised: case and spaces
        assert await refs(contact="alice@example.com", status="review") == ["a-2"]
        assert await refs(contact="nobody@example.com") == []
        assert await refs(account="555001") == ["a-1"]
        assert await refs(supplier_order=number) == ["a-1"]
        assert await refs(ref="b-1") == ["b-1"]
        assert await refs(amount_min="50") == ["b-1"]  # an amount alone: the last 7 days
        assert "amount range alone" in (await b.client.get("/console/orders", params={"amount_min": "50"})).text
        assert await refs(amount_min="50", since=day(30)) == ["b-1", "old-1"]
        assert await refs(status="delivered", until=day(5)) == ["old-1"]
        assert await refs(since=day(2), sku="steam") == ["b-1"]
        assert await refs(until=day(2)) == ["a-1", "old-1"]
        bad = await b.client.get("/console/orders", params={"amount_min": "lots", "since": "yesterday"})
        assert bad.status_code == 400 and "amount_min" in bad.text and "since" in bad.text


async def test_logins_are_rate_limited_and_a_disabled_account_is_out_at_once(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    await add_operator(store, "eve", "admin", now)
    await add_operator(store, "dan", "agent", now)
    config = console_config(console={"login_attempts": 3, "login_window": "5m"})
    async with serving(store, cipher, config) as server, browser(server) as b:
        for _ in range(3):
            assert (await b.login("eve", "guess guess guess")).status_code == 401
        assert (await b.login("eve")).status_code == 429  # even the right password, for a while
        assert (await b.login("dan")).status_code == 429  # and from this address, any name
    assert await store.session("x", now) is None
    async with serving(store, cipher, config) as server, browser(server, "dan") as d:
        assert (await d.client.get("/console/queues")).status_code == 200
        await store.disable_operator("dan", "eve", now)
        assert (await d.client.get("/console/queues")).status_code == 302  # back to the login
        assert (await d.login("dan")).status_code == 401
    assert [e.operator for e in await store.events(name="operator.disabled")] == ["eve"]


async def test_every_page_answers_for_a_viewer(store: Store, cipher: CardCipher, now: datetime) -> None:
    await add_operator(store, "val", "viewer", now)
    await make_order(store, "p-1", OrderStatus.REVIEW, now)
    await make_order(store, "p-2", OrderStatus.DELIVERED, now)
    waiting = await make_order(store, "p-3", OrderStatus.PENDING, now)
    await store.claim_orders("kit", 1, 60, now)
    await store.park_for(waiting, "kit", 60, f"{WAITING_REASON}main#0 breaker open", now)
    async with serving(store, cipher) as server, browser(server, "val") as b:
        for path in ("/console/", "/console/orders", "/console/queues", "/console/suppliers", "/console/claims",
                     "/console/webhooks", "/console/orders/p-1"):
            page = await b.client.get(path)
            assert page.status_code == 200, (path, page.text[:500])
        queues = await b.client.get("/console/queues")
        assert ">p-1</a>" in queues.text and "countdown" in queues.text
        overview = await b.client.get("/console/")
        assert '<dd id="waiting-for-supplier">1</dd>' in overview.text  # an outage's orders, apart from a backlog
        zh = await b.client.get("/console/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
        assert "概览" in zh.text and "自动化率" in zh.text and "其中等待供应商恢复" in zh.text
        switched = await b.post("/console/lang", lang="en", back="/console/")
        assert switched.status_code == 302
        again = await b.client.get("/console/", headers={"Accept-Language": "zh-CN"})
        assert "Automation rate" in again.text


async def test_two_agents_clicking_at_once_act_once(store: Store, cipher: CardCipher, now: datetime) -> None:
    """A double click, or two agents on one order: one action happens, the other is told it is too late."""
    import asyncio

    await add_operator(store, "ann", "agent", now)
    await add_operator(store, "ben", "agent", now)
    await make_order(store, "r-9", OrderStatus.REVIEW, now)
    async with serving(store, cipher) as server, browser(server, "ann") as a, browser(server, "ben") as b:
        answers = await asyncio.gather(
            a.post("/console/orders/r-9/refund"),
            b.post("/console/orders/r-9/retry"),
            a.post("/console/orders/r-9/refund"),
        )
    codes = sorted(r.status_code for r in answers)
    assert codes == [303, 409, 409], [(r.status_code, r.text[:200]) for r in answers]
    view = await store.get_order("r-9")
    assert view is not None
    acted = await store.events(name="review.refund", order_id=view.order.id) + await store.events(
        name="review.retry", order_id=view.order.id
    )
    assert len(acted) == 1
    assert view.order.status is (OrderStatus.FAILED if acted[0].name == "review.refund" else OrderStatus.PENDING)


async def test_an_agent_delivers_keys_found_by_hand_or_nothing_is_written(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    await add_operator(store, "amy", "agent", now)
    await make_order(store, "d-1", OrderStatus.DELIVERED, now)
    known = (await store.get_order("d-1")).cards[0].password  # type: ignore[union-attr]
    await make_order(store, "r-5", OrderStatus.REVIEW, now)
    async with serving(store, cipher) as server, browser(server, "amy") as b:
        wrong = await b.post("/console/orders/r-5/deliver", cards="ABCDEFGH12345678\nABCDEFGH12345678\n")
        assert wrong.status_code == 422 and "same key as line 1" in wrong.text
        errors = re.findall(r'<p class="error">([^<]*)</p>', wrong.text)
        assert errors and not any("ABCDEFGH" in e for e in errors)  # reasons never quote a key
        twice = await b.post("/console/orders/r-5/deliver", cards=known)
        assert twice.status_code == 422 and "already delivered" in twice.text
        assert (await store.get_order("r-5")).order.status is OrderStatus.REVIEW  # type: ignore[union-attr]
        found = "# found in the supplier's back office\nZXCVBNM123456789\n"
        done = await b.post("/console/orders/r-5/deliver", cards=found)
        assert done.status_code == 303
    view = await store.get_order("r-5")
    assert view is not None and view.order.status is OrderStatus.DELIVERED
    assert [c.password for c in view.cards] == ["ZXCVBNM123456789"]
    assert [e.operator for e in await store.events(name="review.resolve", order_id=view.order.id)] == ["amy"]


async def test_results_page_newest_first_without_gaps_or_repeats(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    await add_operator(store, "sue", "viewer", now)
    for i in range(60):  # pairs taken in at the same instant: the order id breaks the tie
        await make_order(store, f"o-{i:02d}", OrderStatus.DELIVERED, now - timedelta(minutes=60 - i // 2))
    async with serving(store, cipher) as server, browser(server, "sue") as b:
        first = await b.client.get("/console/orders", params={"status": "delivered"})
        refs = re.findall(r">(o-\d\d)</a>", first.text)
        more = re.search(r'id="next-page" href="([^"]+)"', first.text)
        assert len(refs) == 50 and more is not None
        second = await b.client.get(more.group(1).replace("&amp;", "&"))
        refs += re.findall(r">(o-\d\d)</a>", second.text)
        assert 'id="next-page"' not in second.text
    assert refs == [f"o-{i:02d}" for i in reversed(range(60))]


async def test_orders_risk_held_are_released_or_refused_from_their_own_queue(
    store: Store, cipher: CardCipher, now: datetime
) -> None:
    await add_operator(store, "amy", "agent", now)
    await make_order(store, "h-1", OrderStatus.REVIEW, now, reason="risk: ip-burst (6 orders in 60s)")
    await make_order(store, "h-2", OrderStatus.REVIEW, now, reason="risk: credit 55 below 60")
    await make_order(store, "r-1", OrderStatus.REVIEW, now, reason="exhausted: no offer left")
    async with serving(store, cipher) as server, browser(server, "amy") as b:
        queues = await b.client.get("/console/queues")
        held, review = queues.text.split('id="queue-review"')
        assert ">h-1</a>" in held and ">h-2</a>" in held and ">r-1</a>" not in held
        assert ">r-1</a>" in review and "/console/orders/r-1/retry" in review
        page = await b.client.get("/console/orders/h-1")
        assert 'id="action-release"' in page.text and 'id="action-retry"' not in page.text
        assert (await b.post("/console/orders/h-1/release")).status_code == 303
        assert (await b.post("/console/orders/h-2/refuse")).status_code == 303
        assert (await b.post("/console/orders/r-1/release")).status_code == 409  # not held by risk
    statuses = {ref: (await store.get_order(ref)).order.status for ref in ("h-1", "h-2", "r-1")}  # type: ignore[union-attr]
    assert statuses == {"h-1": OrderStatus.PENDING, "h-2": OrderStatus.FAILED, "r-1": OrderStatus.REVIEW}
    acted = await store.events(name="review.release") + await store.events(name="review.refuse")
    assert sorted((e.name, e.operator) for e in acted) == [("review.refuse", "amy"), ("review.release", "amy")]
