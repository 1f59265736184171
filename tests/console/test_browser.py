"""The console in a real browser: Python Playwright driving Debian's chromium (/usr/bin/chromium; the project's
.ci/run installs it, never Playwright's own download). Log in, find an order by the buyer's contact, open it,
refund it with one click and see the event; a viewer gets no button and the server refuses a forged POST; the
figures badge renders. Screenshots of the main pages go to artifacts/screenshots/ for review."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from fulfil.crypto import CardCipher
from fulfil.demo import DemoConsole, run_demo
from fulfil.domain import OrderStatus
from fulfil.storage import Store
from tests.aftersales.askit import make_shop
from tests.console.consolekit import PASSWORD, add_operator, console_of, l2_case, make_order, serving

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (once, before any loop work)
        message = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} but CI=true: the browser tests must run in CI")
        pytest.skip(message)
    async with async_playwright() as p:
        # --no-sandbox: CI containers run as root, where chromium's sandbox refuses to start.
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def login(page: Page, base: str, name: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/console/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("#login")
    await page.wait_for_selector("#me")


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_agent_finds_an_order_by_contact_and_refunds_it(
    browser: Browser, store: Store, cipher: CardCipher
) -> None:
    now = datetime.now(UTC)
    await add_operator(store, "agent-amy", "agent", now)
    await add_operator(store, "viewer-vic", "viewer", now)
    await make_order(store, "shop-1001", OrderStatus.DELIVERED, now - timedelta(hours=2), contact="zhang@example.com")
    await make_order(store, "shop-1002", OrderStatus.REVIEW, now - timedelta(minutes=20), contact="li@example.com",
                     reason="possible_double at fulu-main: operator must decide")
    await make_order(store, "shop-1003", OrderStatus.DELIVERED, now - timedelta(hours=1), contact="wang@example.com")
    async with serving(store, cipher) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.new_page(locale="en-US")
        await login(page, base, "agent-amy")
        await page.click("text=Orders")
        await page.fill("input[name=contact]", "LI@example.com ")
        await page.click("#search-go")
        results = page.locator("#results tbody tr")
        assert await results.count() == 1
        assert "shop-1002" in await results.inner_text()
        await shot(page, "orders-search")
        await page.click("#results >> text=shop-1002")
        await page.wait_for_selector("#order-ref")
        assert "l***@example.com" in await page.inner_text("#contact")
        await shot(page, "order-in-review")
        await page.click("#action-refund")  # one click
        await page.wait_for_selector("#order-status")
        assert (await page.inner_text("#order-status")).strip() == "failed"
        timeline = await page.inner_text("#timeline")
        assert "review.refund" in timeline and "agent-amy" in timeline
        await shot(page, "order-refunded")

        viewer = await browser.new_page(locale="zh-CN")
        await login(viewer, base, "viewer-vic")
        await viewer.goto(f"{base}/console/orders/shop-1002")
        await viewer.goto(f"{base}/console/queues")
        await make_order(store, "shop-1004", OrderStatus.REVIEW, now, reason="unknown_sku")
        await viewer.goto(f"{base}/console/orders/shop-1004")
        assert await viewer.locator("#action-refund").count() == 0  # nothing to click
        status = await viewer.evaluate(
            """async () => {
                const csrf = document.querySelector('input[name=csrf]').value;
                const r = await fetch(location.pathname + '/refund', {
                    method: 'POST',
                    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                    body: 'csrf=' + encodeURIComponent(csrf)});
                return r.status;
            }"""
        )
        assert status == 403  # a forged POST with the viewer's own session and CSRF token
        await shot(viewer, "order-viewer-zh")
    view = await store.get_order("shop-1004")
    assert view is not None and view.order.status is OrderStatus.REVIEW


async def test_screens_of_a_demo_run_and_the_figures_badge(browser: Browser) -> None:
    """The pages with real traffic in them (the demo: two simulated suppliers, faults, claims)."""
    seen: list[DemoConsole] = []

    async def serving_demo(console: DemoConsole) -> None:
        seen.append(console)

    async def look() -> None:
        console = seen[0]
        base = console.url.removesuffix("/console/")
        page = await browser.new_page(locale="en-US", viewport={"width": 1400, "height": 900})
        await login(page, base, console.operator, console.password)
        await shot(page, "overview")
        assert "Automation rate" in await page.inner_text("#window-today")
        await page.goto(f"{base}/console/orders?status=delivered")
        await shot(page, "orders")
        first = page.locator("#results tbody tr a").first
        await first.click()
        await page.wait_for_selector("#timeline")
        await shot(page, "order")
        await page.goto(f"{base}/console/suppliers")
        assert await page.locator("section.supplier").count() >= 2
        await shot(page, "suppliers")
        for name in ("queues", "claims", "webhooks"):
            await page.goto(f"{base}/console/{name}")
            await shot(page, name)
        zh = await browser.new_page(locale="zh-CN", viewport={"width": 1400, "height": 900})
        await login(zh, base, console.operator, console.password)
        assert "自动化率" in await zh.inner_text("#window-today")
        await shot(zh, "overview-zh")
        badge = await browser.new_page()
        answer = await badge.goto(f"{base}/public/products/steam-100/figures.svg")
        assert answer is not None and answer.ok and answer.headers["content-type"].startswith("image/svg+xml")
        assert "%" in (await badge.locator("svg").text_content() or "")
        # Embedded as a storefront would: an <img> on another page, drawn by the browser.
        badge = await browser.new_page()
        await badge.set_content(f'<p>Steam 100 <img id="b" src="{base}/public/products/steam-100/figures.svg"></p>')
        await badge.wait_for_function("document.getElementById('b').complete")
        width = await badge.evaluate("document.getElementById('b').naturalWidth")
        height = await badge.evaluate("document.getElementById('b').naturalHeight")
        assert width > 100 and height == 20
        await shot(badge, "figures-badge")

    result = await run_demo(150, port=0, on_serving=serving_demo, linger=look, out=io.StringIO())
    assert result.all_delivered
    assert all((SHOTS / f"{n}.png").stat().st_size > 5000 for n in ("overview", "order", "suppliers"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_agent_reissues_from_the_after_sales_queue_with_a_note(
    browser: Browser, store: Store, cipher: CardCipher
) -> None:
    """The case buttons share one form (the note) through `formaction`: the browser must post to the clicked one."""
    shop = make_shop(store, cipher)
    await add_operator(store, "agent-amy", "agent", datetime.now(UTC))
    case = await l2_case(shop, "shop-2001")
    async with console_of(shop) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.new_page(locale="en-US", viewport={"width": 1400, "height": 900})
        await login(page, base, "agent-amy")
        await page.goto(f"{base}/console/queues")
        row = page.locator(f"#case-{case.case_no}")
        assert await row.locator(".countdown").count() == 1
        await shot(page, "queues-aftersales")
        await row.locator("input[name=note]").fill("screenshot checks out")
        await row.locator("button.reissue").click()
        await page.wait_for_selector("#cases")
        assert "amy" in await page.inner_text(f"#case-{case.case_no}")
    events = await store.events(name="aftersales.reissue")
    assert [(e.operator, e.data["note"]) for e in events] == [("agent-amy", "screenshot checks out")]
