"""What risk costs per order with a big history: the decision transaction on a database of 1,000,000 orders.

    python -m benchmarks.risk                                    # SQLite (a temporary file)
    python -m benchmarks.risk --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python -m benchmarks.risk --orders 200000 --decisions 500     # quicker

The history is bulk-inserted straight into `orders` (not through intake): buyers spread over 30 days, most
orders let through by risk, a few heavy buyers with 1,000 orders in the last day (the flood a window must
count). Then `--decisions` new orders of random buyers (heavy ones included) are claimed and decided one at
a time through `Store.risk_decide` with the issue's example rules (velocity per ip and per contact amount,
denominations per account, first order), timing each decision: its whole transaction, fence, per-identity
lock on PostgreSQL, blocklist, credit, counts and the write. On PostgreSQL the benchmark works in a schema of
its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder
from fulfil.storage import Store

FACES = ("steam-20", "steam-50", "steam-100", "steam-200")
RULES: list[dict[str, Any]] = [
    {"name": "ip-burst", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 5, "action": "hold"},
    {"name": "daily-amount", "kind": "velocity", "per": "contact", "window": "1d", "max_amount": 500},
    {"name": "face-values", "kind": "denominations", "per": "account", "window": "60s", "max_skus": 3},
    {"name": "first-big", "kind": "first_order", "min_amount": 200, "action": "hold"},
]
COLUMNS = ("ref", "sku", "qty", "account", "amount", "status", "created_at", "updated_at", "delivered_at",
           "contact_hash", "ip_hash", "account_hash", "risk_passed_at")  # fmt: skip


def config() -> Config:
    product = {"card_pattern": "^K", "family": "steam", "offers": [{"supplier": "shelf"}]}
    return Config.model_validate(
        {
            "suppliers": [{"name": "shelf", "type": "stock"}],
            "products": {sku: product for sku in FACES},
            "risk": {"rules": RULES},
        },
        context={"from_file": True},
    )


class Buyers:
    """A pool of buyers with their identities' hashes computed once."""

    def __init__(self, cipher: CardCipher, count: int, rng: random.Random) -> None:
        self.plain = [(f"acct-{i}", f"buyer{i}@example.com", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
                      for i in range(count)]  # fmt: skip
        self.hashes = [
            (cipher.identity_hash("account", a), cipher.identity_hash("contact", c), cipher.identity_hash("ip", ip))
            for a, c, ip in self.plain
        ]
        self.heavy = list(range(min(20, count)))  # the first twenty: a thousand orders each in the last day
        self.rng = rng


def history(buyers: Buyers, total: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    rng = buyers.rng
    heavy_rows = len(buyers.heavy) * 1000
    for i in range(total):
        if i < heavy_rows:
            b = buyers.heavy[i // 1000]
            at = now - timedelta(seconds=rng.uniform(0, 86400))
        else:
            b = rng.randrange(len(buyers.plain))
            at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        account_hash, contact_hash, ip_hash = buyers.hashes[b]
        sku = rng.choice(FACES)
        passed = at if rng.random() < 0.97 else None
        delivered = at + timedelta(seconds=2) if passed else None
        status = "delivered" if passed else "review"
        yield (f"H{i:08d}", sku, 1, buyers.plain[b][0], f"{rng.choice((20, 50, 100, 200))}.00", status, at, at,
               delivered, contact_hash, ip_hash, account_hash, passed)  # fmt: skip


def seed_sqlite(path: Path, buyers: Buyers, total: int, now: datetime) -> None:
    conn = sqlite3.connect(path)
    marks = ",".join("?" * len(COLUMNS))
    rows = ((*r[:6], *(_iso(v) if isinstance(v, datetime) else v for v in r[6:])) for r in history(buyers, total, now))
    with conn:
        conn.executemany(f"INSERT INTO orders ({','.join(COLUMNS)}) VALUES ({marks})", rows)
    conn.execute("ANALYZE")
    conn.close()


def _iso(value: datetime) -> str:
    # As UTCDateTime stores it on SQLite (SQLAlchemy's DateTime: "YYYY-MM-DD HH:MM:SS.ffffff").
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def seed_pg(url: str, buyers: Buyers, total: int, now: datetime) -> None:
    import psycopg

    plain = make_url(url).set(drivername="postgresql")
    options = plain.query.get("options")
    dsn = plain.difference_update_query(["options"]).render_as_string(hide_password=False)
    with psycopg.connect(dsn, options=options if isinstance(options, str) else "") as conn:
        with conn.cursor() as cur, cur.copy(f"COPY orders ({','.join(COLUMNS)}) FROM STDIN") as copy:
            for row in history(buyers, total, now):
                copy.write_row(row)
        conn.execute("ANALYZE orders")


class TimedStore(Store):
    """Stamps the moment the decision is made and its write begins: evaluation = up to here; the rest is the
    write and the commit (an fsync on SQLite's WAL with synchronous=FULL)."""

    decided_at = 0.0
    decided_cpu = 0.0

    async def _write_decision(self, *args: Any, **kwargs: Any) -> None:
        self.decided_at = time.perf_counter()
        self.decided_cpu = time.process_time()
        await super()._write_decision(*args, **kwargs)


@dataclass
class Timings:
    """Seconds per decision: evaluation (wall), this process's CPU for it, the whole transaction (wall), and
    whether the buyer was a heavy one (a thousand orders in the window)."""

    evaluation: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)
    heavy: list[bool] = field(default_factory=list)


async def decide(url: str, cipher: CardCipher, buyers: Buyers, decisions: int, now: datetime) -> Timings:
    """Every decision timed. The CPU figure moves less with other load on the machine; on PostgreSQL it leaves
    out the server's share."""
    store = await TimedStore.open(url, cipher)
    rng = buyers.rng
    try:
        cfg = config()
        families = {sku: p.family for sku, p in cfg.products.items()}
        new = []
        heavy: dict[str, bool] = {}
        for i in range(decisions):
            b = rng.choice(buyers.heavy) if rng.random() < 0.05 else rng.randrange(len(buyers.plain))
            heavy[f"N{i:06d}"] = b in buyers.heavy
            account, contact, ip = buyers.plain[b]
            amount = rng.choice(("20", "50", "100", "300"))
            new.append(NewOrder(f"N{i:06d}", rng.choice(FACES), 1, account=account, contact=contact, ip=ip,
                                amount=Decimal(amount)))  # fmt: skip
        await store.add_orders(new, now)
        claimed = await store.claim_orders("bench", decisions, 3600.0, now)
        assert len(claimed) == decisions, len(claimed)
        timings = Timings()
        for order in claimed:
            start, start_cpu = time.perf_counter(), time.process_time()
            await store.risk_decide(order, "bench", cfg.risk, families, datetime.now(UTC))
            end = time.perf_counter()
            timings.evaluation.append(store.decided_at - start)
            timings.cpu.append(store.decided_cpu - start_cpu)
            timings.whole.append(end - start)
            timings.heavy.append(heavy[order.ref])
        return timings
    finally:
        await store.close()


def _line(what: str, timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    q = statistics.quantiles(ms, n=100)
    return f"  {what}: p50 {q[49]:.2f} ms, p95 {q[94]:.2f} ms, p99 {q[98]:.2f} ms, max {ms[-1]:.2f} ms"


def report(name: str, total: int, t: Timings) -> str:
    ordinary = [e for e, h in zip(t.evaluation, t.heavy, strict=True) if not h]
    flooding = [e for e, h in zip(t.evaluation, t.heavy, strict=True) if h] or [0.0, 0.0]
    return "\n".join(
        [
            f"risk {name}: {total:,} orders in the database, {len(t.whole)} decisions (load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
            _line("evaluation, wall (lock, counts, blocks, credit, rules)", t.evaluation),
            _line("evaluation, this process's CPU", t.cpu),
            _line(f"evaluation, wall, ordinary buyers ({len(ordinary)})", ordinary),
            _line(f"evaluation, wall, buyers with 1,000 orders in the day ({sum(t.heavy)})", flooding),
            _line("decision transaction, wall (evaluation + fenced write + commit)", t.whole),
        ]
    )


def run_sqlite(args: argparse.Namespace, cipher: CardCipher, buyers: Buyers, now: datetime) -> str:
    with tempfile.TemporaryDirectory(prefix="fulfil-risk-bench-", dir=args.dir) as tmp:
        path = Path(tmp) / "risk.db"
        url = f"sqlite:///{path}"
        Store.upgrade(url)
        started = time.monotonic()
        seed_sqlite(path, buyers, args.orders, now)
        print(f"seeded SQLite in {time.monotonic() - started:.0f}s")
        return report("sqlite", args.orders, asyncio.run(decide(url, cipher, buyers, args.decisions, now)))


def run_pg(args: argparse.Namespace, cipher: CardCipher, buyers: Buyers, now: datetime) -> str:
    admin = create_engine(make_url(args.pg_url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    schema = f"bench_risk_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        Store.upgrade(url)
        started = time.monotonic()
        seed_pg(url, buyers, args.orders, now)
        print(f"seeded PostgreSQL in {time.monotonic() - started:.0f}s")
        return report("postgresql", args.orders, asyncio.run(decide(url, cipher, buyers, args.decisions, now)))
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.risk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders in the history (default 1,000,000)")
    parser.add_argument("--decisions", type=int, default=2000, help="decisions timed (default 2000)")
    parser.add_argument("--buyers", type=int, default=200_000, help="distinct buyers in the history")
    parser.add_argument("--pg-url", help="PostgreSQL server (a schema of its own is created and dropped)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where the SQLite file goes (default: the system's temporary folder)")
    args = parser.parse_args(argv)
    cipher = CardCipher(secrets.token_bytes(32))
    buyers = Buyers(cipher, args.buyers, random.Random(args.seed))
    now = datetime.now(UTC)
    line = run_pg(args, cipher, buyers, now) if args.pg_url else run_sqlite(args, cipher, buyers, now)
    print(line)


if __name__ == "__main__":
    main()
