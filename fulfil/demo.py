"""`fulfil demo`: the daemon doing its job end to end on an embedded default, with nothing to set up.

A temporary SQLite database, a generated card key and config, some local stock, two simulated Fulu suppliers
on loopback (the primary loses answers after charging, throws system errors and sells invalid keys; the backup
is clean), a few hundred paid orders, live progress, and a summary that reconciles every unit the suppliers
charged for against what was delivered and claimed.

Among the buyers are a few risky ones, decided before anything is bought for them: one address flooding the
shop (5 orders go through, the rest are held), a blocked contact (refused) and a buyer whose credit fell to 55
after a chargeback (held). The summary lists them; the run fails if any other order was not delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.console import Group
from rich.live import Live
from rich.table import Table

from fulfil.admin import AdminServer
from fulfil.app import build_engine, build_suppliers
from fulfil.config import Config, config_from_data
from fulfil.crypto import CardCipher, generate_key, load_card_key
from fulfil.domain import AttemptRecord, AttemptState, NewOrder, OrderStatus, OrderView
from fulfil.logs import setup_logging
from fulfil.loopwatch import LoopWatch
from fulfil.render import table
from fulfil.storage import Store
from fulfil.web.accounts import generate_password, hash_password
from fulfil.worker import Worker
from suppliers.sim.server import Simulator, running_sim
from suppliers.taxonomy import Card

SECRET = "0123456789abcdef0123456789abcdef"
CARD_SKU, DIRECT_SKU = "steam-100", "qq-coins-10"
PRODUCTS = {
    "10001": {
        "name": "Steam 100",
        "kind": "card",
        "price": "95.00",
        "stock": 100000,
        "card_pattern": "[A-Z0-9]{16}",
    },
    "10003": {"name": "QQ coins 10", "kind": "direct", "price": "9.80"},
}
PRIMARY_FAULTS: list[dict[str, Any]] = [
    {"kind": "lost_after_commit", "probability": 0.08},
    {"kind": "system_error", "code": 5000, "probability": 0.08},
    {"kind": "invalid_keys", "mode": "not_matching", "probability": 0.04},
    {"kind": "drop_before_commit", "probability": 0.04},
    {"kind": "refuse", "from": "1s", "to": "1500ms"},  # a short outage: connections refused, retried
]


def _scenario(faults: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    return {
        "protocol": "fulu",
        "app_key": "demo-app",
        "secret": SECRET,
        "balance": "1000000.00",
        "seed": seed,
        "products": PRODUCTS,
        "faults": faults,
    }


def demo_config(db_url: str, primary: str, backup: str) -> Config:
    fulu = {
        "type": "fulu",
        "app_key": "demo-app",
        "secret": SECRET,
        "timeout": "2s",
        "poll_interval": "200ms",
    }
    data = {
        "database": {"url": db_url},
        "daemon": {"poll_interval": "100ms", "batch_size": 50, "concurrency": 32, "lease": "30s"},
        "http": {"enabled": False},
        "retry": {"budget": "30s", "initial_backoff": "200ms", "max_backoff": "2s"},
        "ambiguity": {"query_interval": "300ms", "give_up_after": "10m", "policy": "wait"},
        # The primary's short outage opens its breaker; cool-downs scaled to a demo of seconds, not minutes.
        "breaker": {"base_ejection": "2s", "max_ejection": "10s"},
        "suppliers": [
            {"name": "shelf", "type": "stock"},
            {"name": "fulu-primary", "base_url": primary, **fulu},
            {"name": "fulu-backup", "base_url": backup, **fulu},
        ],
        # Risk before money: one address may place 5 orders a minute; a blocked buyer is refused; a buyer whose
        # credit is below 60 is held (the defaults of risk.credit).
        "risk": {
            "rules": [{"name": "ip-burst", "kind": "velocity", "per": "ip", "window": "60s", "max_orders": 5}],
        },
        "products": {
            CARD_SKU: {
                "kind": "card",
                "max_qty": 5,
                "card_pattern": "^[A-Z0-9]{16}$",
                "offers": [
                    {"supplier": "shelf", "priority": 0},
                    {"supplier": "fulu-primary", "product_id": "10001", "cost": "95.00", "priority": 1},
                    {"supplier": "fulu-backup", "product_id": "10001", "cost": "96.00", "priority": 2},
                ],
            },
            DIRECT_SKU: {
                "kind": "direct",
                "max_qty": 1,
                "offers": [
                    {"supplier": "fulu-primary", "product_id": "10003", "cost": "9.80", "priority": 0},
                    {"supplier": "fulu-backup", "product_id": "10003", "cost": "9.90", "priority": 1},
                ],
            },
        },
    }
    return config_from_data(data, environ={})


FLOOD_IP, BLOCKED_CONTACT, LOW_CREDIT_USER = "203.0.113.66", "carder@example.com", "u-chargeback"
FLOOD = 8  # orders from one address: ip-burst lets 5 through and holds 3
EXPECTED_RISK = {"held": FLOOD - 5 + 1, "refused": 1}  # the flood's extra orders and the low-credit buyer


def demo_orders(count: int, rng: random.Random) -> list[NewOrder]:
    orders = []
    for i in range(count):
        contact = f"buyer{i % 97}@example.com"  # what support would be told: try it in the console's search
        ip = f"198.51.{i // 250}.{i % 250 + 1}"  # every ordinary buyer on an address of their own
        if rng.random() < 0.15:
            account = f"{rng.randrange(10**8, 10**9)}"
            orders.append(NewOrder(f"demo-{i:05d}", DIRECT_SKU, 1, account=account, contact=contact, ip=ip))
        else:
            qty = rng.choice((1, 1, 1, 2, 3))
            orders.append(
                NewOrder(f"demo-{i:05d}", CARD_SKU, qty, amount=Decimal("100"), contact=contact, ip=ip)
            )
    return orders


def risky_orders() -> list[NewOrder]:
    flood = [NewOrder(f"flood-{i}", CARD_SKU, 1, amount=Decimal("100"), ip=FLOOD_IP) for i in range(FLOOD)]
    return [
        *flood,
        NewOrder("blocked-1", CARD_SKU, 1, amount=Decimal("100"), contact=BLOCKED_CONTACT),
        NewOrder("credit-1", CARD_SKU, 1, amount=Decimal("100"), user=LOW_CREDIT_USER),
    ]


def demo_stock(count: int, rng: random.Random) -> list[Card]:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return [Card(password="".join(rng.choice(alphabet) for _ in range(16))) for _ in range(count)]


@dataclass
class DemoResult:
    statuses: Counter[str]
    elapsed: float
    charged_units: dict[str, int] = field(default_factory=dict)
    delivered_units: dict[str, int] = field(default_factory=dict)
    claimed_units: dict[str, int] = field(default_factory=dict)

    risk: Counter[str] = field(default_factory=Counter)  # held / refused by risk
    others_undelivered: int = 0  # orders not delivered for any reason but risk

    @property
    def all_delivered(self) -> bool:
        """Every order delivered, except exactly the risky buyers' orders risk held or refused."""
        return self.others_undelivered == 0 and dict(self.risk) == EXPECTED_RISK

    @property
    def reconciled(self) -> bool:
        return all(
            self.charged_units[name] == self.delivered_units.get(name, 0) + self.claimed_units.get(name, 0)
            for name in self.charged_units
        )


async def run_demo(
    orders: int = 300,
    stock: int = 60,
    seed: int = 2026,
    out: TextIO = sys.stdout,
    *,
    port: int = 8089,
    linger: Callable[[], Awaitable[None]] | None = None,
    on_serving: Callable[[DemoConsole], Awaitable[None]] | None = None,
) -> DemoResult:
    """The demo end to end. `linger` is awaited before shutting down (make demo: until Enter, so the console
    can be looked at); `on_serving` is called once the console answers (tests scrape it)."""
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="fulfil-demo-"))
    try:
        async with (
            running_sim(_scenario(PRIMARY_FAULTS, seed)) as primary,
            running_sim(_scenario([], seed + 1)) as backup,
        ):
            run = _Run(workdir, primary, backup, orders, stock, rng, out, port, linger, on_serving)
            return await run.go()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class DemoConsole:
    url: str
    operator: str
    password: str
    metrics_token: str
    db_url: str


class _Run:
    def __init__(
        self,
        workdir: Path,
        primary: Simulator,
        backup: Simulator,
        count: int,
        stock: int,
        rng: random.Random,
        out: TextIO,
        port: int,
        linger: Callable[[], Awaitable[None]] | None,
        on_serving: Callable[[DemoConsole], Awaitable[None]] | None,
    ) -> None:
        self.workdir, self.primary, self.backup = workdir, primary, backup
        self.count, self.stock, self.rng, self.out = count, stock, rng, out
        self.port, self.linger, self.on_serving = port, linger, on_serving

    async def go(self) -> DemoResult:
        url = f"sqlite:///{self.workdir / 'fulfil.db'}"
        config = demo_config(url, self.primary.gateway_url, self.backup.gateway_url)
        cipher = CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": generate_key()}))
        await asyncio.to_thread(Store.upgrade, url)
        store = await Store.open(url, cipher)
        suppliers = build_suppliers(config, store)
        admin: AdminServer | None = None
        try:
            now = datetime.now(UTC)
            await store.import_stock(CARD_SKU, demo_stock(self.stock, self.rng), now)
            await store.risk_block("contact", BLOCKED_CONTACT, "stolen cards", None, "demo", now)
            await store.set_credit("user", LOW_CREDIT_USER, 55, "chargeback", "demo", now)
            watch = LoopWatch()  # as `fulfil run` serves it
            engine = build_engine(config, store, cipher, suppliers, stalls=watch.stalls)
            worker = Worker(store, engine, config, services=[watch])
            token = secrets.token_urlsafe(16)
            admin = AdminServer(store, engine, lambda: config, environ={"FULFIL_ADMIN_TOKEN": token})
            console = await self._serve(admin, store, token, now, url)
            self._intro(console)
            await store.add_orders(demo_orders(self.count, self.rng) + risky_orders(), now)
            if self.on_serving is not None:
                await self.on_serving(console)
            started = asyncio.get_running_loop().time()
            task = asyncio.create_task(worker.run())
            statuses = await _progress(store, now, self.out)
            worker.stop()
            await task
            elapsed = asyncio.get_running_loop().time() - started
            views = await store.list_orders()
            sims = {"fulu-primary": self.primary, "fulu-backup": self.backup}
            result = _reconcile(views, statuses, elapsed, sims)
            _summary(result, views, self.out)
            if self.linger is not None:
                print(f"\nThe console is still up at {console.url} — press Enter to stop.", file=self.out, flush=True)
                await self.linger()
            return result
        finally:
            if admin is not None:
                await admin.stop()
            for supplier in suppliers.values():
                await supplier.aclose()
            await store.close()

    async def _serve(self, admin: AdminServer, store: Store, token: str, now: datetime, db_url: str) -> DemoConsole:
        try:
            await admin.start(f"127.0.0.1:{self.port}")
        except OSError:  # the port is taken (another demo, a daemon): any free one
            await admin.start("127.0.0.1:0")
        password = generate_password()
        await store.add_operator("demo", "admin", hash_password(password), "demo", now)
        return DemoConsole(f"http://127.0.0.1:{admin.port}/console/", "demo", password, token, db_url)

    def _intro(self, console: DemoConsole) -> None:
        out = self.out
        print(f"fulfil demo: {self.count} paid orders, {self.stock} keys in local stock, two simulated Fulu suppliers",
              file=out)
        print(f"  primary {self.primary.url}  (loses answers, system errors, invalid keys, refused connections)",
              file=out)
        print(f"  backup  {self.backup.url}  (clean)", file=out)
        print(f"  and {FLOOD + 2} risky orders: {FLOOD} from one address, a blocked contact, a buyer at credit 55",
              file=out)
        print(f"  console {console.url}  login: {console.operator} / {console.password}  (this run only;"
              " find orders by the buyer's contact, e.g. buyer7@example.com)", file=out)
        metrics = console.url.replace("/console/", "/metrics")
        print(f"  metrics curl -H 'Authorization: Bearer {console.metrics_token}' {metrics}", file=out, flush=True)


async def _progress(store: Store, since: datetime, out: TextIO, limit: float = 300.0) -> Counter[str]:
    """A live view (rich) of orders by status, each supplier's attempt outcomes and the claims, until no order
    is open; on a terminal it redraws in place, elsewhere it prints the final view once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    console = RichConsole(file=out)
    with Live(console=console, refresh_per_second=4, transient=False, auto_refresh=False) as live:
        while True:
            counts = Counter(await store.count_by_status())
            outcomes = await store.attempt_outcomes(since)
            claims = await store.claim_counts(since)
            live.update(_view(counts, outcomes, claims), refresh=True)
            open_ = counts[OrderStatus.PENDING.value] + counts[OrderStatus.PROCESSING.value]
            if open_ == 0 or loop.time() > deadline:
                return Counter({k: v for k, v in counts.items() if v})
            await asyncio.sleep(0.25)


def _view(
    counts: Counter[str], outcomes: dict[tuple[str, str, str | None], int], claims: dict[tuple[str, str], int]
) -> Group:
    statuses = Table(title="orders", title_justify="left")
    for status in OrderStatus:
        statuses.add_column(status.value, justify="right")
    statuses.add_row(*(str(counts[s.value]) for s in OrderStatus))
    suppliers = Table("supplier", "state", "error class", "attempts", title="attempts", title_justify="left")
    for (supplier, state, error), n in sorted(outcomes.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        suppliers.add_row(supplier, state, error or "", str(n))
    owed = Table("supplier", "reason", "claims", title="claims", title_justify="left")
    for (supplier, reason), n in sorted(claims.items()):
        owed.add_row(supplier, reason, str(n))
    return Group(statuses, suppliers, owed)


def _reconcile(
    views: list[OrderView], statuses: Counter[str], elapsed: float, sims: dict[str, Simulator]
) -> DemoResult:
    result = DemoResult(statuses, elapsed)
    for view in views:
        order = view.order
        if (order.reason or "").startswith("risk:"):
            result.risk["held" if order.status is OrderStatus.REVIEW else "refused"] += 1
        elif order.status is not OrderStatus.DELIVERED:
            result.others_undelivered += 1
    for name, sim in sims.items():
        result.charged_units[name] = sum(
            o.qty for o in sim.ledger.orders if o.charged and o.state == "success"
        )
    for view in views:
        for attempt in view.attempts:
            if attempt.supplier in sims and _outcome(attempt).startswith("delivered"):
                result.delivered_units[attempt.supplier] = (
                    result.delivered_units.get(attempt.supplier, 0) + attempt.qty
                )
        for claim in view.claims:
            result.claimed_units[claim.supplier] = result.claimed_units.get(claim.supplier, 0) + claim.qty
    return result


def _outcome(attempt: AttemptRecord) -> str:
    """What became of an attempt, with the trouble it went through on the way."""
    if attempt.state is AttemptState.SUCCEEDED:
        if attempt.error_class in ("invalid_key", "late"):
            return f"charged, {attempt.error_class} (claimed)"
        return "delivered" + (f" after {attempt.error_class}" if attempt.error_class else "")
    return f"{attempt.state.value}: {attempt.error_class}" if attempt.error_class else attempt.state.value


def _summary(result: DemoResult, views: list[OrderView], out: TextIO) -> None:
    print(f"\nDone in {result.elapsed:.1f}s.\n", file=out)
    print(table(["status", "orders"], sorted(result.statuses.items())), file=out)
    outcomes: Counter[tuple[str, str]] = Counter()
    for view in views:
        for attempt in view.attempts:
            outcomes[(attempt.supplier, _outcome(attempt))] += 1
    print("\nAttempts by supplier and outcome:", file=out)
    print(
        table(["supplier", "outcome", "attempts"], [(s, o, n) for (s, o), n in sorted(outcomes.items())]),
        file=out,
    )
    claims = Counter((c.supplier, c.reason.value) for v in views for c in v.claims)
    print("\nClaims written:", file=out)
    print(
        table(["supplier", "reason", "claims"], [(s, r, n) for (s, r), n in sorted(claims.items())]), file=out
    )
    print("\nReconciliation (units the supplier charged = delivered + claimed):", file=out)
    rows = [
        (name, charged, result.delivered_units.get(name, 0), result.claimed_units.get(name, 0))
        for name, charged in result.charged_units.items()
    ]
    print(table(["supplier", "charged", "delivered", "claimed"], rows), file=out)
    risky = [v.order for v in views if (v.order.reason or "").startswith("risk:")]
    print("\nRisk (decided before anything was bought; `fulfil review release REF` lets a held one through):",
          file=out)  # fmt: skip
    print(table(["order", "status", "reason"], [(o.ref, o.status.value, o.reason or "") for o in risky]), file=out)
    verdict = (
        "every order delivered but the risky buyers' (held or refused)"
        if result.all_delivered
        else "NOT every order was delivered"
    )
    books = "books balance" if result.reconciled else "BOOKS DO NOT BALANCE"
    print(f"\n{verdict}; {books}.", file=out)


def main(orders: int = 300, *, log_dir: Path | None = None) -> int:
    """`fulfil demo`: JSON log lines go to a file (its path printed), the terminal shows the live view; on a
    terminal the console stays up after the summary until Enter."""
    log_path = Path(tempfile.mkstemp(prefix="fulfil-demo-", suffix=".log", dir=log_dir)[1])
    with log_path.open("a", encoding="utf-8") as log_file:
        setup_logging("json", "INFO", stream=log_file)
        print(f"fulfil demo: log lines go to {log_path}", flush=True)
        linger = _wait_for_enter if sys.stdin.isatty() and sys.stdout.isatty() else None
        with contextlib.suppress(KeyboardInterrupt):
            result = asyncio.run(run_demo(orders, linger=linger))
            return 0 if result.all_delivered and result.reconciled else 1
    return 130


async def _wait_for_enter() -> None:
    await asyncio.to_thread(sys.stdin.readline)
