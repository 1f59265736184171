"""The sources' runner with a real store (SQLite and PostgreSQL) and a real shop database (MariaDB): taking,
refusing visibly, repairing half-done hand-overs, writing back once, and handing to a person what it cannot do."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fulfil.app import daemon
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from fulfil.sources import Taken, build_source
from fulfil.sources.runner import SourceRunner, backoff, judge
from fulfil.storage import SourceState, Store
from suppliers.sim.server import running_sim
from suppliers.taxonomy import Card
from tests.shopdb import (
    acg_order,
    acg_rows,
    dujiaoka_order,
    dujiaoka_rows,
    execute,
    insert_acg,
    insert_dujiaoka,
)
from tests.sources.conftest import SKU, TOPUP, acg_entry, dujiaoka_entry, eventually, shop_config

pytestmark = pytest.mark.mysql
OWNER = "w1"
INFO = "充值账号:user-001"
FULU_SECRET = "0123456789abcdef0123456789abcdef"


def utcnow() -> datetime:
    return datetime.now(UTC)


def keys(n: int, prefix: str = "K") -> list[str]:
    return [f"{prefix}{i:0{16 - len(prefix)}d}" for i in range(n)]


@pytest.fixture
def wake_count() -> list[int]:
    return [0]


@pytest.fixture
async def runner_for(store: Store, wake_count: list[int]) -> AsyncIterator[Any]:
    """`runner_for(config)`: a SourceRunner over every source of `config`, closed after the test."""
    made: list[SourceRunner] = []

    def make(config: Config) -> SourceRunner:
        sources = {entry.name: build_source(entry) for entry in config.sources}
        def woke() -> None:
            wake_count[0] += 1

        runner = SourceRunner(store, sources, lambda: config, on_taken=woke)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.aclose()


async def finish(
    store: Store, *, deliver: dict[str, list[str]] | None = None, fail: dict[str, str] | None = None
) -> None:
    """Play the engine: deliver these refs from stock (the keys given), fail those."""
    now = utcnow()
    deliver, fail = deliver or {}, fail or {}
    for cards in deliver.values():
        await store.import_stock(SKU, [Card(password=k) for k in cards], now)
    for order in await store.claim_orders(OWNER, 1000, 60, now):
        if order.ref in deliver:
            attempt = await store.open_attempt(order.id, OWNER, "shelf", 0, order.qty, None, now)
            assert await store.deliver_from_stock(order.id, OWNER, attempt.id, SKU, order.qty, now)
        elif order.ref in fail:
            await store.finish_order(order.id, OWNER, OrderStatus.FAILED, fail[order.ref], now)
        else:
            await store.release_leases(OWNER, [order.id], now)


async def record(store: Store, ref: str, source: str = "shop") -> Any:
    return (await store.source_records(source, [ref]))[ref]


# --- judging (pure) ---------------------------------------------------------------------------------------


def test_judge_gives_every_reason_a_row_cannot_be_an_order() -> None:
    config = shop_config("sqlite:///x.db", [dujiaoka_entry("mysql://u@h/d")])
    source = config.sources[0]
    from fulfil.sources import ShopOrder

    ok = ShopOrder("S1", 1, "12", 1, 2, "manual", account=None)
    assert judge(ok, source, config)[1] == []
    assert judge(ShopOrder("S2", 2, "12", 0, 2, "manual"), source, config)[1] == ["qty 0 is below 1"]
    assert judge(ShopOrder("S3", 3, "12", 10**9, 2, "manual"), source, config)[1] == [
        f"qty {10**9} is above max_qty 5 for {SKU}"
    ]
    (reason,) = judge(ShopOrder("S4", 4, "13", 1, 2, "manual"), source, config)[1]
    assert reason == (
        f"account is required for direct top-up product '{TOPUP}' (no info line '充值账号' in the shop's order)"
    )
    garbage = ShopOrder("S5", 5, "12", 1, 2, "manual", problem="info is larger than 65535 bytes")
    assert judge(garbage, source, config)[1] == ["info is larger than 65535 bytes"]
    too_long = ShopOrder("x" * 150, 6, "12", 1, 2, "manual")
    assert judge(too_long, source, config)[1] == ["ref is longer than 128 characters"]
    draft, reasons = judge(ShopOrder("S7", 7, "99", 1, 2, "manual"), source, config)
    assert reasons == ["goods 99 is not in the goods map"] and draft.sku == ""


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    import random

    rng = random.Random(1)
    waits = [backoff(tries, 1.0, 60.0, rng) for tries in range(10)]
    assert all(0.5 * min(60, 2**t) <= w <= min(60, 2**t) for t, w in enumerate(waits))


# --- dujiaoka end to end in-process -------------------------------------------------------------------------


async def test_daemon_takes_fulfils_and_writes_back_dujiaoka_orders(
    store: Store, cipher: CardCipher, shop_url: str
) -> None:
    scenario = {
        "protocol": "fulu", "app_key": "app", "secret": FULU_SECRET, "processing_time": "0s",
        "products": {"10003": {"name": "QQ", "kind": "direct", "price": "9.80"}},
    }  # fmt: skip
    async with running_sim(scenario) as sim:
        config = shop_config(
            "sqlite:///x.db",
            [dujiaoka_entry(shop_url)],
            suppliers=[{"name": "shelf", "type": "stock"},
                       {"name": "fulu", "type": "fulu", "base_url": sim.gateway_url, "app_key": "app",
                        "secret": FULU_SECRET, "poll_interval": "50ms"}],
        )  # fmt: skip
        await store.import_stock(SKU, [Card(password=k) for k in keys(6, "D")], utcnow())
        await insert_dujiaoka(shop_url, [
            dujiaoka_order("M1", 12, info=INFO + "\n备注:快", buy_amount=2),
            dujiaoka_order("M2", 13, info="充值账号:qq-10001"),
            dujiaoka_order("A1", 14, type_=1, status=6, info="库存可使用卡密不足，请联系管理员核查"),
            dujiaoka_order("U1", 77, info=INFO),  # unmapped: left alone
        ])  # fmt: skip
        async with daemon(config, store, cipher, serve_http=False) as d:
            assert d.sources is not None
            task = asyncio.create_task(d.worker.run())
            try:

                async def written() -> bool:
                    return (await store.source_summaries(["shop"]))["shop"].states["written"] == 3

                await eventually(written, within=30)
            finally:
                d.worker.stop()
                await task
    rows = await dujiaoka_rows(shop_url)
    m1 = (await store.get_order("M1"))
    assert m1 is not None and m1.order.status is OrderStatus.DELIVERED
    assert rows["M1"]["info"] == INFO + "\n备注:快\n" + "\n".join(c.password for c in m1.cards)
    assert rows["M2"]["info"] == "充值账号:qq-10001\n充值成功"
    a1 = await store.get_order("A1")
    assert a1 is not None and rows["A1"]["info"] == a1.cards[0].password
    assert rows["U1"]["status"] == 2 and rows["U1"]["info"] == INFO
    assert (await store.get_order("U1")) is None
    topup = await store.get_order("M2")
    assert topup is not None and topup.order.account == "qq-10001"


# --- refusing visibly ---------------------------------------------------------------------------------------


async def test_bad_rows_are_refused_once_left_alone_and_taken_once_fixed(
    store: Store, shop_url: str, runner_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fulfil")
    await insert_dujiaoka(shop_url, [
        dujiaoka_order("B1", 13, info="备注:没有账号"),  # a top-up with no account line
        dujiaoka_order("B2", 12, buy_amount=0, info=INFO),
        dujiaoka_order("B3", 12, buy_amount=2_000_000_000, info=INFO),
        dujiaoka_order("B" * 140, 12, info=INFO),
        dujiaoka_order("B5", 13, info="充值账号:bad\x01account"),
        dujiaoka_order("OK", 12, info=INFO),
    ])  # fmt: skip
    runner = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url)]))
    report = await runner.tick("shop")
    assert (report.taken, report.refused) == (1, 5)
    again = await runner.tick("shop")
    assert (again.taken, again.refused) == (0, 0)  # said once, not on every poll
    refused = [r for r in caplog.records if r.getMessage() == "source.refused"]
    assert len(refused) == 5 and all(r.levelno == logging.WARNING for r in refused)
    rows = await dujiaoka_rows(shop_url)
    assert all(rows[ref]["status"] == 2 for ref in ("B1", "B2", "B3", "B" * 140, "B5"))  # nothing half-written
    assert (await store.count_by_status())["pending"] == 1
    b1 = await record(store, "B1")
    assert b1.state is SourceState.REFUSED and "no info line '充值账号'" in b1.reason
    # The operator fixes the row at the shop: taken on the next poll.
    await execute(shop_url, "UPDATE orders SET info = '充值账号:fixed' WHERE order_sn = 'B1'")
    assert (await runner.tick("shop")).taken == 1
    view = await store.get_order("B1")
    assert view is not None and view.order.account == "fixed"


# --- write-back: failure, a person's change, an unreachable shop --------------------------------------------


async def test_failed_orders_are_failed_at_the_shop_and_changed_rows_go_to_a_person(
    store: Store, shop_url: str, runner_for: Any
) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order(f"W{i}", 12, info=INFO) for i in range(3)])
    runner = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url)]))
    assert (await runner.tick("shop")).taken == 3
    assert {r["status"] for r in (await dujiaoka_rows(shop_url)).values()} == {3}
    # A person edits W2 in the admin while fulfil works on it (a later second than fulfil's mark: see dujiaoka.py).
    await execute(
        shop_url, "UPDATE orders SET info = '客服已处理', updated_at = NOW() + INTERVAL 2 SECOND WHERE order_sn = 'W2'"
    )
    await finish(store, deliver={"W0": keys(1, "W0"), "W2": keys(1, "W2")}, fail={"W1": "order_rejected: no"})
    report = await runner.tick("shop")
    assert (report.written, report.review) == (2, 1)
    rows = await dujiaoka_rows(shop_url)
    assert (rows["W0"]["status"], rows["W0"]["info"]) == (4, INFO + "\n" + keys(1, "W0")[0])
    assert (rows["W1"]["status"], rows["W1"]["info"]) == (5, INFO)
    assert (rows["W2"]["status"], rows["W2"]["info"]) == (3, "客服已处理")  # never overwritten
    w2 = await record(store, "W2")
    assert w2.state is SourceState.REVIEW and "keys are safe in fulfil" in w2.reason
    view = await store.get_order("W2")
    assert view is not None and view.order.status is OrderStatus.DELIVERED and view.cards  # the keys are kept
    assert (await record(store, "W1")).outcome == "failed"
    # The person puts the row back as fulfil left it (status 3, fulfil's mark) and retries: written.
    await execute(shop_url, f"UPDATE orders SET info = '{INFO}', updated_at = '{w2.mark}' WHERE order_sn = 'W2'")
    await store.retry_source_order("W2", "ops", utcnow())
    assert (await runner.tick("shop")).written == 1
    assert (await dujiaoka_rows(shop_url))["W2"]["info"] == INFO + "\n" + keys(1, "W2")[0]


async def test_an_unreachable_shop_is_retried_then_handed_to_a_person(
    store: Store, shop_url: str, runner_for: Any
) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order(f"R{i}", 12, info=INFO) for i in range(2)])
    good = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url)]))
    assert (await good.tick("shop")).taken == 2
    await finish(store, deliver={"R0": keys(1, "R0"), "R1": keys(1, "R1")})
    dead_url = "mysql+asyncmy://root@127.0.0.1:9/shop"
    dead = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(dead_url, timeout="1s", give_up_after="1h")]))
    report = await dead.tick("shop")
    assert report.error is not None and report.retried == 2
    r0 = await record(store, "R0")
    assert (r0.state, r0.tries) == (SourceState.TAKEN, 1) and r0.failing_since is not None
    summary = (await store.source_summaries(["shop"]))["shop"]
    assert summary.error == report.error and summary.waiting_write_back == 2
    await asyncio.sleep(0.3)  # past the backoff (50 ms doubling, at most 200 ms)
    assert (await good.tick("shop")).written == 2  # the shop is back: caught up
    assert {r["status"] for r in (await dujiaoka_rows(shop_url)).values()} == {4}
    # Failing past give_up_after: a person's turn, the keys safe in fulfil.
    await insert_dujiaoka(shop_url, [dujiaoka_order("R9", 12, info=INFO)])
    assert (await good.tick("shop")).taken == 1
    await finish(store, deliver={"R9": keys(1, "R9")})
    impatient = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(dead_url, timeout="1s", give_up_after="1ms")]))
    await impatient.tick("shop")
    await asyncio.sleep(0.3)
    assert (await impatient.tick("shop")).review == 1
    r9 = await record(store, "R9")
    assert r9.state is SourceState.REVIEW and r9.reason.startswith("write-back failing since")


# --- repairing a hand-over a crash cut short ------------------------------------------------------------------


async def test_a_crash_at_each_step_of_taking_is_repaired_without_taking_twice(
    store: Store, shop_url: str, runner_for: Any
) -> None:
    config = shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url)])
    await insert_dujiaoka(shop_url, [dujiaoka_order(f"C{i}", 12, info=INFO) for i in range(4)])
    runner = runner_for(config)
    source = runner.sources["shop"]
    c0, c1, c2, c3 = await source.poll(0, 10)
    drafts = [judge(o, config.sources[0], config)[0] for o in (c0, c1, c2, c3)]
    mark = source.new_mark(utcnow())
    # Crashed after fulfil's record (C0), after the shop's mark (C1), and C2 marked then changed by a person.
    owned, _ = await store.start_taking(drafts[:3], mark, 3600, utcnow())
    assert await source.take([c1, c2], mark) == {"C1", "C2"}
    await execute(shop_url, "UPDATE orders SET status = 4, updated_at = NOW() WHERE order_sn = 'C2'")
    report = await runner.tick("shop", recheck_all=True)  # a restarted daemon
    assert (report.taken, report.dropped) == (3, 1)  # C0 taken now, C1 completed, C3 new; C2 not ours
    rows = await dujiaoka_rows(shop_url)
    assert [rows[f"C{i}"]["status"] for i in range(4)] == [3, 3, 4, 3]
    assert {(await record(store, f"C{i}")).state for i in (0, 1, 3)} == {SourceState.TAKEN}
    assert await store.source_records("shop", ["C2"]) == {}
    assert (await store.get_order("C2")) is None  # nothing bought for it
    assert [e.data["ref"] for e in await store.events(name="source.dropped")] == ["C2"]
    assert (await runner.tick("shop", recheck_all=True)).taken == 0  # and never twice
    assert (await store.count_by_status())["pending"] == 3


async def test_a_write_back_that_landed_before_a_crash_is_not_written_again(
    store: Store, shop_url: str, runner_for: Any
) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order("V1", 12, info=INFO)])
    runner = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url)]))
    await runner.tick("shop")
    await finish(store, deliver={"V1": keys(1, "V1")})
    v1 = await record(store, "V1")
    # The daemon wrote the shop's row and died before recording it.
    source = runner.sources["shop"]
    await source.write_delivered(Taken(v1.ref, v1.shop_id, v1.seen_status, v1.kind, v1.mark), keys(1, "V1"))
    assert (await runner.tick("shop")).written == 1
    assert (await dujiaoka_rows(shop_url))["V1"]["info"] == INFO + "\n" + keys(1, "V1")[0]  # once
    (event,) = await store.events(name="source.written")
    assert event.data["already"] is True


async def test_two_daemons_take_each_order_once(store: Store, shop_url: str, runner_for: Any) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order(f"T{i:03d}", 12, info=INFO) for i in range(60)])
    config = shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url, batch_size=25)])
    one, two = runner_for(config), runner_for(config)
    for _ in range(4):
        await asyncio.gather(one.tick("shop", recheck_all=True), two.tick("shop", recheck_all=True))
    assert (await store.count_by_status())["pending"] == 60
    assert len(await store.events(name="source.taken", limit=1000)) == 60
    assert {r["status"] for r in (await dujiaoka_rows(shop_url)).values()} == {3}


# --- acg-faka ---------------------------------------------------------------------------------------------


async def test_acg_orders_are_taken_on_fulfils_side_and_written_back(
    store: Store, shop_url: str, runner_for: Any, wake_count: list[int]
) -> None:
    await insert_acg(shop_url, [acg_order(f"Q{i:018d}", 3, card_num=1) for i in range(3)])
    await insert_acg(shop_url, [acg_order("Q" + "9" * 18, 4, widget='{"account": {"value": "qq-9", "cn": "账号"}}')])
    runner = runner_for(shop_config("sqlite:///x.db", [acg_entry(shop_url)]))
    assert (await runner.tick("faka")).taken == 4 and wake_count[0] == 1
    assert (await runner.tick("faka")).taken == 0  # still delivery_status 0 at the shop: known, not taken again
    refs = [f"Q{i:018d}" for i in range(3)]
    await finish(store, deliver={ref: keys(1, ref[-2:]) for ref in refs}, fail={"Q" + "9" * 18: "order_rejected"})
    assert (await runner.tick("faka")).written == 4
    rows = await acg_rows(shop_url)
    for ref in refs:
        assert (rows[ref]["delivery_status"], rows[ref]["secret"]) == (1, keys(1, ref[-2:])[0])
    failed = rows["Q" + "9" * 18]
    assert (failed["delivery_status"], failed["secret"]) == (0, "自动发货失败，请联系客服处理退款")
    assert (await runner.tick("faka")).taken == 0  # the failed one is known: never taken again


async def test_shop_orders_carry_the_buyers_contact_and_address_for_risk(
    store: Store, cipher: CardCipher, shop_url: str, runner_for: Any
) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order("R1", 12, info=INFO, email="Buyer@Example.com")])
    runner = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url)]))
    assert (await runner.tick("shop")).taken == 1
    view = await store.get_order("R1")
    assert view is not None
    assert dict(view.order.identities) == {
        "contact": cipher.identity_hash("contact", "buyer@example.com"),
        "ip": cipher.identity_hash("ip", "203.0.113.7"),  # dujiaoka's buy_ip
        "account": cipher.identity_hash("account", view.order.account or ""),
    }


async def test_the_runner_loops_until_stopped_and_wakes_on_push(store: Store, shop_url: str, runner_for: Any) -> None:
    runner = runner_for(shop_config("sqlite:///x.db", [dujiaoka_entry(shop_url, poll_interval="1h")]))
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.serve(stopping))
    try:
        await asyncio.sleep(0.3)  # the first round ran; the next is an hour away
        await insert_dujiaoka(shop_url, [dujiaoka_order("P1", 12, info=INFO)])
        assert runner.wake("shop") and not runner.wake("nope")

        async def taken() -> bool:
            return await store.get_order("P1") is not None

        await eventually(taken, within=5)
    finally:
        stopping.set()
        async with asyncio.timeout(5):
            await task
