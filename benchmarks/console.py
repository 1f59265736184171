"""Console page speed at scale: every console page, the storefront figures and the /metrics scrape, timed over
real loopback HTTP against a SQLite database holding N orders (1,000,000 by default) with their attempts,
operator events and claims, bulk-inserted straight into the tables.

    python -m benchmarks.console                  # 1,000,000 orders over 90 days (about a minute to build)
    python -m benchmarks.console --orders 100000  # quicker

For each page: the median and the slowest of several requests, in ms, measured by the client (so HTTP, the
session lookup, the queries and the template are all in). "computed": the page's window aggregates emptied before each
request, so the request computes them (what the first view after a start does); "served": what every other view
gets (the console serves them while it recomputes them in the background every 15 s; the figures once a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from fulfil.admin import AdminServer
from fulfil.app import build_engine, build_suppliers
from fulfil.config import config_from_data
from fulfil.crypto import CardCipher, generate_key, load_card_key
from fulfil.storage import Store
from fulfil.web.accounts import hash_password

SKUS = ("steam-100", "steam-50", "qq-coins-10", "psn-200", "itunes-25")
SUPPLIERS = ("fulu-a", "fulu-b", "shop-c")
PASSWORD = "benchmark password"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def build(path: Path, n: int, days: int, cipher: CardCipher, install: str, seed: int = 7) -> dict[str, Any]:
    """Bulk-insert n orders (and one attempt each, operator events on ~1%, claims on ~0.5%) spread over `days`."""
    rng = random.Random(seed)
    contacts = [f"buyer{i}@example.com" for i in range(20_000)]
    hashes = [cipher.identity_hash("contact", c) for c in contacts]
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    step = (now - start) / n
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    probe: dict[str, Any] = {}
    batch_o: list[tuple[Any, ...]] = []
    batch_a: list[tuple[Any, ...]] = []
    batch_e: list[tuple[Any, ...]] = []
    batch_c: list[tuple[Any, ...]] = []

    def flush() -> None:
        db.executemany(
            "INSERT INTO orders (id, ref, sku, qty, account, amount, status, reason, created_at, updated_at,"
            " delivered_at, contact_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            batch_o,
        )
        db.executemany(
            "INSERT INTO attempts (id, order_id, number, supplier, offer_index, qty, cost, state, error_class,"
            " supplier_order_id, evidence, started_at, sent_at, finished_at, checks) VALUES"
            " (?,?,?,?,?,?,?,?,?,?,'{}',?,?,?,0)",
            batch_a,
        )
        db.executemany(
            "INSERT INTO events (at, name, order_id, supplier, operator, data) VALUES (?,?,?,?,?,'{}')", batch_e
        )
        db.executemany(
            "INSERT INTO claims (claim_no, attempt_id, order_id, supplier, reason, amount, qty, status, evidence,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'{}',?,?)",
            batch_c,
        )
        for b in (batch_o, batch_a, batch_e, batch_c):
            b.clear()

    for i in range(1, n + 1):
        created = start + step * i
        sku = SKUS[i % len(SKUS)]
        roll = rng.random()
        recent = (now - created) < timedelta(hours=1)
        status = (
            "pending" if recent and roll < 0.02 else "review" if roll < 0.003 else "failed" if roll < 0.02
            else "delivered"
        )
        done = created + timedelta(seconds=rng.uniform(2, 20) if rng.random() < 0.95 else rng.uniform(20, 600))
        contact = rng.randrange(len(contacts))
        account = f"{rng.randrange(10**8, 10**9)}" if sku == "qq-coins-10" else None
        supplier = SUPPLIERS[i % len(SUPPLIERS)]
        number = f"F{install}{i:010d}"
        supplier_no = f"S{i * 7919 % 10**9:09d}"
        batch_o.append((
            i, f"shop-{i:08d}", sku, 1, account, f"{rng.choice((10, 30, 50, 100, 200))}.00", status,
            None if status == "delivered" else "supplier trouble", _ts(created),
            _ts(done if status != "pending" else created), _ts(done) if status == "delivered" else None,
            hashes[contact],
        ))
        state = "succeeded" if status == "delivered" else "failed" if status != "pending" else "sent"
        batch_a.append((
            i, i, number, supplier, 0, 1, "9.50", state, None if state != "failed" else "product_unavailable",
            supplier_no, _ts(created), _ts(created), _ts(done) if status != "pending" else None,
        ))
        if rng.random() < 0.01 and status in ("delivered", "failed"):
            batch_e.append((_ts(done), "review.retry", i, None, "agent-1"))
        if rng.random() < 0.005 and status == "delivered":
            batch_c.append((f"C-{i:08d}", i, i, supplier, "invalid_key", "9.50", 1, "open", _ts(done), _ts(done)))
        if i == n // 2:
            probe = {"ref": f"shop-{i:08d}", "contact": contacts[contact], "account": account or "",
                     "number": number, "supplier_no": supplier_no}
        if len(batch_o) >= 20_000:
            flush()
    flush()
    db.commit()
    db.execute("ANALYZE")
    db.close()
    probe["account"] = probe["account"] or "123456789"
    return probe


async def timed(client: httpx.AsyncClient, path: str, rounds: int, before: Callable[[], None] | None = None,
                headers: dict[str, str] | None = None) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        t0 = time.perf_counter()
        response = await client.get(path, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return statistics.median(times), max(times)


async def main_async(n: int, days: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fulfil-bench-console-"))
    url = f"sqlite:///{workdir / 'fulfil.db'}"
    cipher = CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": generate_key()}))
    Store.upgrade(url)
    store = await Store.open(url, cipher)
    t0 = time.perf_counter()
    probe = await asyncio.to_thread(build, workdir / "fulfil.db", n, days, cipher, store.install_id)
    print(f"built {n:,} orders over {days} days in {time.perf_counter() - t0:.0f} s ({workdir / 'fulfil.db'})")
    config = config_from_data(
        {
            "suppliers": [{"name": s, "type": "stock"} for s in SUPPLIERS],
            "products": {sku: {"kind": "card", "offers": [{"supplier": s} for s in SUPPLIERS]} for sku in SKUS},
        },
        environ={},
    )
    suppliers = build_suppliers(config, store)
    server = AdminServer(store, build_engine(config, store, cipher, suppliers), lambda: config,
                         environ={"FULFIL_ADMIN_TOKEN": "bench"})
    await store.add_operator("bench", "admin", hash_password(PASSWORD), "bench", datetime.now(UTC))
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
            page = await client.get("/console/login")
            csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
            await client.post("/console/login", data={"name": "bench", "password": PASSWORD, "csrf": csrf})
            since = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
            month = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()

            def cold() -> None:  # the figures a first view computes (later ones are served while refreshed)
                server.console.slow.clear()

            def cold_figures() -> None:
                server.figures._cache.clear()

            pages: list[tuple[str, str, Callable[[], None] | None]] = [
                ("overview (computed)", "/console/", cold),
                ("overview (served)", "/console/", None),
                ("orders: newest", "/console/orders", None),
                ("orders: by ref", f"/console/orders?ref={probe['ref']}", None),
                ("orders: by contact", f"/console/orders?contact={probe['contact']}", None),
                ("orders: by account", f"/console/orders?account={probe['account']}", None),
                ("orders: by supplier order no.", f"/console/orders?supplier_order={probe['supplier_no']}", None),
                ("orders: by our number", f"/console/orders?supplier_order={probe['number']}", None),
                ("orders: since + status + product", f"/console/orders?since={since}&status=failed&sku=steam-50",
                 None),
                ("orders: amount range", "/console/orders?amount_min=150&amount_max=250", None),
                ("orders: amount alone, none match", "/console/orders?amount_min=100000", None),
                ("orders: 30 days + amount, none match", f"/console/orders?since={month}&amount_min=100000", None),
                ("orders: status review (rare)", "/console/orders?status=review", None),
                ("orders: status pending (rare)", "/console/orders?status=pending", None),
                ("orders: older page (before=)", f"/console/orders?status=delivered&before={n // 3}", None),
                ("order page", f"/console/orders/{probe['ref']}", None),
                ("queues", "/console/queues", None),
                ("suppliers (computed)", "/console/suppliers", cold),
                ("suppliers (served)", "/console/suppliers", None),
                ("claims & reconciliation (computed)", "/console/claims", cold),
                ("claims & reconciliation (served)", "/console/claims", None),
                ("webhooks", "/console/webhooks", None),
                ("figures (computed)", "/public/products/steam-100/figures", cold_figures),
                ("figures (served)", "/public/products/steam-100/figures", None),
            ]
            print(f"\n{'page':40} {'median ms':>10} {'max ms':>10}")
            for name, path, before in pages:
                median, worst = await timed(client, path, rounds, before)
                flag = "" if median < 200 else "  <-- over 200 ms"
                print(f"{name:40} {median:10.1f} {worst:10.1f}{flag}")
            median, worst = await timed(client, "/metrics", rounds, headers={"Authorization": "Bearer bench"})
            print(f"{'/metrics scrape':40} {median:10.1f} {worst:10.1f}")
    finally:
        await server.stop()
        for supplier in suppliers.values():
            await supplier.aclose()
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.orders, args.days, args.rounds))



if __name__ == "__main__":
    main()
