"""Storefront figures: public, CORS-friendly, cached a minute, `enough_data` below `figures.min_orders`, and the
numbers equal to a direct SQL computation over the same orders (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from fulfil.aftersales.model import Action
from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from fulfil.storage import Store
from tests.aftersales.askit import make_shop
from tests.console.consolekit import console_config, console_of, l2_case, make_order, serving

DIRECT = text(
    """
    SELECT o.status, o.created_at, o.delivered_at,
           EXISTS (SELECT 1 FROM events e WHERE e.order_id = o.id AND e.operator IS NOT NULL
                   AND e.name NOT LIKE 'claim.%' AND e.name <> 'order.revealed') AS manual
    FROM orders o
    WHERE o.sku = :sku
      AND ((o.status = 'delivered' AND o.delivered_at >= :since) OR (o.status = 'failed' AND o.updated_at >= :since))
    """
)


def _when(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite keeps naive UTC text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


async def direct(store: Store, sku: str, since: datetime) -> dict[str, Any]:
    """The figures straight from the tables: one SELECT, the rest by hand (nearest-rank percentiles)."""
    bind = since.replace(tzinfo=None) if store.dialect == "sqlite" else since
    async with store._engine.connect() as conn:  # noqa: SLF001 (the test reads the tables itself)
        rows = (await conn.execute(DIRECT, {"sku": sku, "since": bind})).all()
    automatic = sum(1 for r in rows if r.status == "delivered" and not r.manual)
    waits = sorted(
        (_when(r.delivered_at) - _when(r.created_at)).total_seconds() for r in rows if r.status == "delivered"
    )

    def rank(q: float) -> float:
        return waits[max(1, math.ceil(q * len(waits))) - 1]

    return {"orders": len(rows), "success_rate": automatic / len(rows), "p50": rank(0.5), "p95": rank(0.95)}


async def test_the_figures_match_a_direct_sql_computation(store: Store, cipher: CardCipher) -> None:
    now = datetime.now(UTC)
    for i in range(30):  # delivered by machine, 5 s .. 5 min after payment
        await make_order(store, f"auto-{i}", OrderStatus.DELIVERED, now - timedelta(hours=i + 1), seconds=5 + i * i / 3)
    for i in range(4):
        await make_order(store, f"refused-{i}", OrderStatus.FAILED, now - timedelta(hours=2 + i))
    touched = await make_order(store, "by-hand", OrderStatus.DELIVERED, now - timedelta(hours=3), seconds=900)
    await store.record_event("review.resolve", now, order_id=touched, operator="ann")
    looked = await make_order(store, "looked-at", OrderStatus.DELIVERED, now - timedelta(hours=4), seconds=7)
    await store.record_event("order.revealed", now, order_id=looked, operator="ann")
    await store.record_event("claim.status", now, order_id=looked, operator="ann")  # bookkeeping, not acting
    await make_order(store, "last-month", OrderStatus.DELIVERED, now - timedelta(days=9), seconds=3)
    await make_order(store, "other", OrderStatus.DELIVERED, now - timedelta(hours=1), sku="gift", seconds=1)
    await make_order(store, "waiting", OrderStatus.PENDING, now)  # not ended: not counted

    config = console_config(figures={"min_orders": 20})
    async with serving(store, cipher, config) as server, httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}"
    ) as client:
        answer = await client.get("/public/products/steam/figures")
        assert answer.status_code == 200
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        got = answer.json()
        expected = await direct(store, "steam", datetime.fromisoformat(got["updated_at"]) - timedelta(days=7))
        assert set(got) == {
            "sku", "window_days", "orders", "success_rate", "p50_seconds", "p95_seconds", "enough_data", "updated_at"
        }
        assert got["sku"] == "steam" and got["window_days"] == 7 and got["enough_data"] is True
        assert got["orders"] == expected["orders"] == 36
        assert got["success_rate"] == round(expected["success_rate"], 4) == round(31 / 36, 4)
        assert got["p50_seconds"] == round(expected["p50"], 1)
        assert got["p95_seconds"] == round(expected["p95"], 1)

        # Computed at most once a minute: a person acting on an order does not move the figures until then.
        await store.record_event("review.retry", now, order_id=looked, operator="bob")
        assert (await direct(store, "steam", now - timedelta(days=7)))["success_rate"] != expected["success_rate"]
        assert (await client.get("/public/products/steam/figures")).json() == got

        few = (await client.get("/public/products/gift/figures")).json()
        assert few["orders"] == 1 and few["enough_data"] is False
        assert few["success_rate"] is None and few["p95_seconds"] is None and few["p50_seconds"] is None

        badge = await client.get("/public/products/steam/figures.svg", params={"lang": "zh"})
        assert badge.status_code == 200 and badge.headers["Content-Type"].startswith("image/svg+xml")
        assert f"{got['success_rate'] * 100:.1f}%" in badge.text and "近7日自动到账" in badge.text
        assert (await client.get("/public/products/nope/figures")).status_code == 404
        # Nothing about orders or buyers in the public answer.
        assert "auto-1" not in answer.text and "by-hand" not in answer.text


async def test_a_badge_in_an_unknown_language_is_refused(store: Store, cipher: CardCipher) -> None:
    async with serving(store, cipher) as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
        answer = await c.get("/public/products/steam/figures.svg", params={"lang": "fr"})
        assert answer.status_code == 400 and "lang must be en or zh" in answer.text
        assert (await c.get("/public/products/steam/figures.svg")).status_code == 200


async def test_a_reissue_child_is_not_a_sale_in_any_figure(store: Store, cipher: CardCipher) -> None:
    """Three sales, one reissued by an operator and the reissue delivered: every sales figure still sees three."""
    shop = make_shop(store, cipher)
    now = datetime.now(UTC)
    await shop.delivered_order("sale-1")
    await shop.delivered_order("sale-2")
    case = await l2_case(shop, "sale-3")
    await shop.desk.act(case.case_no, Action.REISSUE, None, "amy")
    assert [v.order.status for v in await shop.run_pending()] == [OrderStatus.DELIVERED]
    reissued = await store.get_case(case.case_no)
    assert reissued is not None and len(reissued.reissue_refs) == 1
    child = await store.get_order(reissued.reissue_refs[0])
    assert child is not None and child.order.reissue_of is not None  # the child is there, delivered

    assert {k: v for k, v in (await store.count_by_status(sales_only=True)).items() if v} == {"delivered": 3}
    assert {k: v for k, v in (await store.count_by_status()).items() if v} == {"delivered": 4}  # the work: all
    week = await store.window_figures(now - timedelta(days=7), sku="sku")
    # the reissued sale had a person act on it (the reissue by hand); the automatic child is not a fourth sale
    assert (week.created, week.delivered, week.manual_delivered) == (3, 3, 1)
    assert week.automation_rate is not None and abs(week.automation_rate - 2 / 3) < 1e-9
    assert week.success_rate is not None and abs(week.success_rate - 2 / 3) < 1e-9
    days = await store.daily_counts(now - timedelta(days=1))
    assert (sum(d[1] for d in days), sum(d[2] for d in days)) == (3, 3)
    async with console_of(shop) as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        got = (await client.get("/public/products/sku/figures")).json()
        assert got["orders"] == 3  # (below figures.min_orders: no rate published, the count is still the sales)
