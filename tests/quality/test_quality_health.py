"""SupplierQuality over a real store: breakers fed by calls, counts flushed in batches, scores and demotion
from the database, balance watch, stock checks; what the snapshot says."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from qualitykit import FakeSupplier, LocalFake, attempt, eventually, invalid_keys

from fulfil.breaker import BreakerState
from fulfil.config import BreakerConfig, Config, RoutingConfig, ScoringConfig, SupplierConfig
from fulfil.domain import AttemptState
from fulfil.quality import LOW_BALANCE_WEIGHT, SupplierQuality
from fulfil.storage import Store, StoreError
from suppliers.base import Balance, StockCheck
from suppliers.taxonomy import SupplierError

HOUR = timedelta(hours=1)


def make_config(**sections: object) -> Config:
    base: dict[str, object] = {
        "suppliers": (
            SupplierConfig(name="main", type="fake", balance_floor=Decimal("100")),
            SupplierConfig(name="backup", type="fake"),
            SupplierConfig(name="shelf", type="stock"),
        ),
        "scoring": ScoringConfig(interval=0, balance_interval=60),
        "breaker": BreakerConfig(consecutive_failures=3, base_ejection=30),
    }
    base.update(sections)
    return Config.model_validate(base)


def make_quality(
    store: Store, config: Config | None = None, **kw: int
) -> tuple[SupplierQuality, dict[str, FakeSupplier]]:
    suppliers = {"main": FakeSupplier("main"), "backup": FakeSupplier("backup"), "shelf": LocalFake("shelf")}
    return SupplierQuality(store, config or make_config(), suppliers, **kw), suppliers


async def event_names(store: Store, supplier: str | None = None) -> list[str]:
    found = await store.events(limit=1000)
    return [e.name for e in reversed(found) if e.name.startswith("supplier.") and supplier in (None, e.supplier)]


async def test_failures_open_the_breaker_and_the_snapshot_says_so(store: Store, now: datetime) -> None:
    quality, _ = make_quality(store)
    assert quality.allows("main", now)
    for i in range(3):
        quality.record("main", False, 0.5, now + timedelta(seconds=i))
    assert not quality.allows("main", now + timedelta(seconds=5))
    assert quality.allows("backup", now)
    await quality.periodic(now + timedelta(seconds=5))
    assert await event_names(store) == ["supplier.breaker_opened"]
    snapshot = {row.supplier: row for row in await store.supplier_health()}
    main = snapshot["main"]
    assert (main.breaker, main.ejections, main.opened_until) == ("open", 1, now + timedelta(seconds=32))
    assert main.detail["breaker_reason"] == "3 consecutive failures"
    assert snapshot["backup"].breaker == "closed"
    found = await store.supplier_windows(now - HOUR, now + HOUR)
    assert (found["main"].calls, found["main"].calls_ok) == (3, 0)


async def test_probe_success_closes_and_is_recorded(store: Store, now: datetime) -> None:
    quality, _ = make_quality(store)
    quality.trip("main", "insufficient balance", now)
    assert not quality.allows("main", now + timedelta(seconds=29))
    assert quality.allows("main", now + timedelta(seconds=30))  # a probe
    quality.record("main", True, 0.2, now + timedelta(seconds=31))
    assert quality.breaker_view("main", now + timedelta(seconds=31)).state is BreakerState.CLOSED
    await quality.periodic(now + timedelta(seconds=32))
    assert await event_names(store, "main") == ["supplier.breaker_opened", "supplier.breaker_closed"]
    opened = (await store.events(name="supplier.breaker_opened"))[0]
    assert opened.data["reason"] == "insufficient balance" and opened.at == now


async def test_calls_are_flushed_in_the_background_once_many_piled_up(store: Store, now: datetime) -> None:
    quality, _ = make_quality(store, flush_at=10)
    for _ in range(9):
        quality.record("backup", True, 0.1, now)
    await asyncio.sleep(0.05)
    assert await store.supplier_windows(now - HOUR, now + HOUR) == {}
    quality.record("backup", True, 0.1, now)  # the tenth: no periodic needed

    async def flushed() -> bool:
        found = await store.supplier_windows(now - HOUR, now + HOUR)
        return "backup" in found and found["backup"].calls == 10

    await eventually(flushed)


class FlakyStore:
    """The real store, whose next `record_quality` fails the way a database error surfaces."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def record_quality(self, *args: object, **kwargs: object) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database error: disk I/O error")
        await self.store.record_quality(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_failed_flush_keeps_the_counts_for_the_next(store: Store, now: datetime) -> None:
    flaky = FlakyStore(store)
    quality = SupplierQuality(flaky, make_config(), {"main": FakeSupplier("main")})  # type: ignore[arg-type]
    quality.record("main", True, 0.1, now)
    quality.trip("main", "bad credentials", now)
    with pytest.raises(StoreError):
        await quality.periodic(now)  # raised to the worker, which logs it
    quality.record("main", False, None, now)
    await quality.flush()
    found = await store.supplier_windows(now - HOUR, now + HOUR)
    assert (found["main"].calls, found["main"].calls_ok) == (2, 1)
    assert await event_names(store) == ["supplier.breaker_opened"]


async def test_scores_come_from_the_database_and_demotion_is_announced_once(store: Store, now: datetime) -> None:
    config = make_config(
        routing=RoutingConfig(min_score=50, probe_share=0.05), scoring=ScoringConfig(interval=0, prior_weight=2)
    )
    quality, _ = make_quality(store, config)
    assert quality.weight("main") == pytest.approx(90.0)  # the prior, before any record
    t = now - timedelta(minutes=30)
    for _ in range(6):
        await invalid_keys(store, "main", t)
    for _ in range(5):
        await attempt(store, "backup", t)
    await quality.periodic(now)
    assert quality.score_of("main").value < 50 < quality.score_of("backup").value
    assert quality.demoted("main") and not quality.demoted("backup")
    assert quality.probe_share == 0.05
    await quality.periodic(now + timedelta(seconds=1))  # still demoted: no second alert
    assert await event_names(store, "main") == ["supplier.demoted"]
    demoted = (await store.events(name="supplier.demoted"))[0]
    assert demoted.data["why"] == "score below min_score"

    for _ in range(20):  # it got better
        await attempt(store, "main", now)
    await quality.periodic(now + timedelta(minutes=1))
    assert not quality.demoted("main")
    assert await event_names(store, "main") == ["supplier.demoted", "supplier.restored"]
    row = {r.supplier: r for r in await store.supplier_health()}["main"]
    assert row.score == pytest.approx(quality.score_of("main").value, abs=0.01)
    assert row.components["samples"]["key_validity"] == 26


async def test_our_own_stock_is_never_demoted(store: Store, now: datetime) -> None:
    config = make_config(routing=RoutingConfig(min_score=95))
    quality, _ = make_quality(store, config)
    for _ in range(5):
        await attempt(store, "shelf", now - HOUR / 2, state=AttemptState.FAILED, error_class="product_unavailable")
    await quality.periodic(now)
    assert quality.score_of("shelf").value < 95
    assert not quality.demoted("shelf")


async def test_balance_below_the_floor_alerts_cuts_weight_and_demotes(store: Store, now: datetime) -> None:
    quality, suppliers = make_quality(store)
    main = suppliers["main"]
    main.balance_answer = Balance(Decimal("99.99"))
    suppliers["backup"].balance_answer = SupplierError("user.info refused")  # logged, not fatal
    await quality.periodic(now)
    assert main.balance_calls == 1 and suppliers["shelf"].balance_calls == 0  # local stock has no balance
    assert quality.balance_of("main") == Decimal("99.99")
    assert quality.weight("main") == pytest.approx(90.0 * LOW_BALANCE_WEIGHT)
    assert quality.demoted("main")
    await quality.periodic(now + timedelta(seconds=30))  # within the poll interval: not asked again
    assert main.balance_calls == 1
    assert await event_names(store, "main") == ["supplier.balance_low", "supplier.demoted"]
    low = (await store.events(name="supplier.balance_low"))[0]
    assert low.data == {"balance": "99.99", "floor": "100"}
    row = {r.supplier: r for r in await store.supplier_health()}["main"]
    assert (row.balance, row.balance_at, row.demoted, row.detail["balance_low"]) == (
        Decimal("99.99"),
        now,
        True,
        True,
    )

    main.balance_answer = Balance(Decimal("5000"))
    await quality.periodic(now + timedelta(seconds=61))
    assert main.balance_calls == 2
    assert not quality.demoted("main") and quality.weight("main") == pytest.approx(90.0)
    assert await event_names(store, "main") == [
        "supplier.balance_low",
        "supplier.demoted",
        "supplier.balance_ok",
        "supplier.restored",
    ]


async def test_stock_check_is_cached_per_supplier_and_product(store: Store, now: datetime) -> None:
    quality, suppliers = make_quality(store)
    main = suppliers["main"]
    main.stock_answer = StockCheck(available=True, level="plenty")
    assert await quality.in_stock(main, "10001", 2, now)
    assert await quality.in_stock(main, "10001", 1, now + timedelta(seconds=10))  # fewer than checked: cached
    assert main.stock_calls == [("10001", 2)]
    main.stock_answer = StockCheck(available=False, level="empty")
    assert not await quality.in_stock(main, "10001", 3, now + timedelta(seconds=11))  # more: asked again
    assert not await quality.in_stock(main, "10001", 5, now + timedelta(seconds=12))  # empty for 3: for 5 too
    assert await quality.in_stock(main, "10002", 1, now) is False  # another product: asked
    assert len(main.stock_calls) == 3
    main.stock_answer = StockCheck(available=True, level="low")
    assert await quality.in_stock(main, "10001", 3, now + timedelta(seconds=45))  # the 30 s are over
    assert len(main.stock_calls) == 4


async def test_a_failed_or_missing_stock_check_never_blocks(store: Store, now: datetime) -> None:
    quality, suppliers = make_quality(store)
    main, backup = suppliers["main"], suppliers["backup"]
    main.stock_answer = SupplierError("fulu main: stock check failed (connection refused)")
    assert await quality.in_stock(main, "10001", 1, now)
    assert await quality.in_stock(main, "10001", 1, now + timedelta(seconds=1))
    assert len(main.stock_calls) == 1  # the failure is remembered: a down supplier is not asked by every order
    backup.stock_answer = None  # the protocol has none
    assert await quality.in_stock(backup, "x", 1, now)
    assert await quality.in_stock(backup, "x", 99, now)
    assert len(backup.stock_calls) == 1


async def test_concurrent_stock_checks_share_one_call(store: Store, now: datetime) -> None:
    quality, suppliers = make_quality(store)
    main = suppliers["main"]
    main.stock_answer = StockCheck(available=False, level="empty")
    main.stock_gate = asyncio.Event()
    waiting = [asyncio.create_task(quality.in_stock(main, "10001", 1, now)) for _ in range(20)]
    await asyncio.sleep(0.01)
    main.stock_gate.set()
    assert await asyncio.gather(*waiting) == [False] * 20
    assert len(main.stock_calls) == 1


async def test_a_hanging_stock_check_gives_up_and_allows(
    store: Store, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fulfil.quality.STOCK_CHECK_TIMEOUT", 0.05)
    quality, suppliers = make_quality(store)
    main = suppliers["main"]
    main.stock_gate = asyncio.Event()  # never set
    assert await quality.in_stock(main, "10001", 1, now)


async def test_config_follows_a_reload(store: Store, now: datetime) -> None:
    current = [make_config()]
    suppliers = {"main": FakeSupplier("main")}
    quality = SupplierQuality(store, lambda: current[0], suppliers)
    for i in range(3):
        quality.record("main", False, None, now + timedelta(seconds=i))
    assert not quality.allows("main", now + timedelta(seconds=3))
    quality.record("backup", False, None, now)
    current[0] = make_config(breaker=BreakerConfig(consecutive_failures=10))
    for i in range(5):
        quality.record("backup", False, None, now + timedelta(seconds=i))
    assert quality.allows("backup", now + timedelta(seconds=6))  # 6 in a row: under the new threshold


async def test_balance_polls_run_side_by_side_and_trouble_stays_with_one_supplier(
    store: Store, now: datetime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("fulfil.quality.BALANCE_TIMEOUT", 0.3)
    quality, suppliers = make_quality(store)
    suppliers["main"].balance_gate = asyncio.Event()  # hangs
    suppliers["backup"].balance_answer = Balance(Decimal("7.00"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await quality.periodic(now)
    assert loop.time() - started < 0.6  # one timeout, not one per supplier
    assert quality.balance_of("backup") == Decimal("7.00") and quality.balance_of("main") is None
    suppliers["backup"].balance_answer = KeyError("an adapter bug")
    caplog.set_level(logging.ERROR, logger="fulfil.quality")
    await quality.periodic(now + timedelta(minutes=2))  # logged, contained: the snapshot is still written
    assert "supplier.balance_crashed" in caplog.messages
    assert {row.supplier for row in await store.supplier_health()} == {"main", "backup", "shelf"}


async def test_an_adapter_bug_in_the_stock_check_is_loud_but_does_not_block(
    store: Store, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    quality, suppliers = make_quality(store)
    suppliers["main"].stock_answer = KeyError("stock_status")
    caplog.set_level(logging.ERROR, logger="fulfil.quality")
    assert await quality.in_stock(suppliers["main"], "10001", 1, now)
    assert "stock.check_crashed" in caplog.messages
