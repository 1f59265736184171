"""acg-faka as a shop, against a real MariaDB: paid undelivered orders of mapped goods, the widget's account,
the write-back conditional on `delivery_status = 0`, the table prefix."""

from __future__ import annotations

import json

import pytest

from fulfil.sources import RowState, Taken, Written, build_source
from fulfil.sources.acg_faka_shop import AcgFakaShopSource
from tests.shopdb import acg_order, acg_rows, create_database, drop_database, execute, insert_acg, insert_commodities
from tests.shopdb import mysql_server_or_skip as server
from tests.sources.conftest import acg_entry, shop_config

pytestmark = pytest.mark.mysql
WAIT_TEXT = "请稍候，正在为您发货"


def source(url: str, **changes: object) -> AcgFakaShopSource:
    built = build_source(shop_config("sqlite:///x.db", [acg_entry(url, **changes)]).sources[0])
    assert isinstance(built, AcgFakaShopSource)
    return built


def widget(**inputs: str) -> str:
    return json.dumps({name: {"value": value, "cn": "充值账号"} for name, value in inputs.items()}, ensure_ascii=False)


async def test_poll_reads_paid_undelivered_orders_and_the_widget_account(shop_url: str) -> None:
    await insert_acg(shop_url, [
        acg_order("T000000000000000001", 3, card_num=2, amount="20.00"),
        acg_order("T000000000000000002", 4, widget=widget(account="qq-77")),
        acg_order("T000000000000000003", 3, status=0),  # unpaid
        acg_order("T000000000000000004", 3, delivery_status=1, secret="KEY"),  # delivered by the shop
        acg_order("T000000000000000005", 9),  # unmapped
        acg_order("T000000000000000006", 4, widget="{not json"),
        acg_order("T000000000000000007", 4, widget="[]"),  # PHP's empty array: no inputs
    ])  # fmt: skip
    src = source(shop_url)
    try:
        found = {o.ref[-1]: o for o in await src.poll(0, 100)}
        assert sorted(found) == ["1", "2", "6", "7"]  # char(19) refs come back as stored
        assert (found["1"].qty, str(found["1"].amount), found["1"].account) == (2, "20.00", None)
        assert found["2"].account == "qq-77" and found["2"].problem is None
        assert found["6"].problem is not None and found["6"].problem.startswith("widget is not JSON")
        assert found["7"].account is None and found["7"].problem is None
        assert await src.unmapped() == {"9": 1}
    finally:
        await src.aclose()


async def test_write_back_replaces_the_shop_text_once(shop_url: str) -> None:
    await insert_acg(shop_url, [acg_order("A000000000000000001", 3, card_num=2)])
    src = source(shop_url)
    try:
        (order,) = await src.poll(0, 10)
        taken = Taken(order.ref, order.row_id, order.status, order.kind, None)
        assert await src.take([order], None) == {order.ref}  # no shop mark: fulfil's record is the mark
        assert (await src.examine(taken)).state is RowState.OURS
        lines = ["KEYAAAAAAAAAAAA1", "KEYAAAAAAAAAAAA2"]
        assert (await src.write_delivered(taken, lines)).result is Written.WRITTEN
        row = (await acg_rows(shop_url))[order.ref]
        assert (row["delivery_status"], row["secret"]) == (1, "KEYAAAAAAAAAAAA1\nKEYAAAAAAAAAAAA2")
        assert (await src.write_delivered(taken, lines)).result is Written.ALREADY
        assert (await src.write_delivered(taken, ["OTHER"])).result is Written.CHANGED
        assert (await src.examine(taken)).state is RowState.CHANGED
        assert await src.poll(0, 10) == []
    finally:
        await src.aclose()


async def test_delivered_by_a_person_meanwhile_is_not_overwritten(shop_url: str) -> None:
    await insert_acg(shop_url, [acg_order("B000000000000000001", 3), acg_order("B000000000000000002", 3)])
    src = source(shop_url)
    try:
        b1, b2 = await src.poll(0, 10)
        await execute(shop_url, f"UPDATE acg_order SET secret = 'by hand', delivery_status = 1 WHERE id = {b1.row_id}")
        # An empty secret is not "undelivered": delivery_status decides.
        await execute(shop_url, f"UPDATE acg_order SET secret = '' WHERE id = {b2.row_id}")
        t1 = Taken(b1.ref, b1.row_id, b1.status, b1.kind, None)
        t2 = Taken(b2.ref, b2.row_id, b2.status, b2.kind, None)
        assert (await src.write_delivered(t1, ["KEYBBBBBBBBBBBB1"])).result is Written.CHANGED
        assert (await src.write_delivered(t2, ["KEYBBBBBBBBBBBB2"])).result is Written.WRITTEN
        rows = await acg_rows(shop_url)
        assert rows[b1.ref]["secret"] == "by hand" and rows[b2.ref]["secret"] == "KEYBBBBBBBBBBBB2"
    finally:
        await src.aclose()


async def test_a_failure_tells_the_buyer_and_stays_undelivered(shop_url: str) -> None:
    await insert_acg(shop_url, [acg_order("F000000000000000001", 4, widget=widget(account="x"))])
    src = source(shop_url)
    silent = source(shop_url, failure_text=None)
    try:
        (order,) = await src.poll(0, 10)
        taken = Taken(order.ref, order.row_id, order.status, order.kind, None)
        assert (await silent.write_failed(taken, "rejected")).result is Written.ALREADY  # nothing to write
        assert (await acg_rows(shop_url))[order.ref]["secret"] == WAIT_TEXT
        assert (await src.write_failed(taken, "rejected")).result is Written.WRITTEN
        assert (await src.write_failed(taken, "rejected")).result is Written.ALREADY
        row = (await acg_rows(shop_url))[order.ref]
        assert (row["delivery_status"], row["secret"]) == (0, "自动发货失败，请联系客服处理退款")
    finally:
        await src.aclose()
        await silent.aclose()


async def test_prefix_and_goods_checks() -> None:
    url = await create_database(server(), dujiaoka=False, acg_prefix="shop_")
    try:
        await insert_commodities(url, [(3, "Steam 100", 1), (4, "QQ top-up", 0)], prefix="shop_")
        await insert_acg(url, [acg_order("P000000000000000001", 3)], prefix="shop_")
        src = source(url, table_prefix="shop_")
        try:
            assert [o.ref for o in await src.poll(0, 10)] == ["P000000000000000001"]
            checks = await src.check()
            assert [c.ok for c in checks] == [True, True, True, True, False], checks
            assert "delivery_way 0 is automatic" in checks[-1].what
        finally:
            await src.aclose()
        default = source(url)
        try:
            assert [c.what for c in await default.check() if not c.ok] == [
                "table acg_order: not found (or no privilege on it)",
                "table acg_commodity: not found (or no privilege on it)",
            ]
        finally:
            await default.aclose()
    finally:
        await drop_database(url)
