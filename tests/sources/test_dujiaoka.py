"""The dujiaoka source against a real MariaDB: what it takes, how it marks, what it writes back, when it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fulfil.sources import RowState, ShopUnavailable, Taken, Written, build_source
from fulfil.sources.dujiaoka import DujiaokaSource
from tests.shopdb import dujiaoka_order, dujiaoka_rows, execute, insert_dujiaoka
from tests.sources.conftest import dujiaoka_entry, shop_config

pytestmark = pytest.mark.mysql
NOW = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=UTC)
INFO = "充值账号:user-001\n备注:尽快"


def source(url: str, **changes: object) -> DujiaokaSource:
    built = build_source(shop_config("sqlite:///x.db", [dujiaoka_entry(url, **changes)]).sources[0])
    assert isinstance(built, DujiaokaSource)
    return built


async def test_poll_takes_paid_manual_and_rescued_abnormal_orders_only(shop_url: str) -> None:
    await insert_dujiaoka(shop_url, [
        dujiaoka_order("M1", 12, info=INFO, buy_amount=2, actual_price="19.80"),
        dujiaoka_order("M2", 13, info="充值账号: qq-42 \n"),
        dujiaoka_order("A1", 14, type_=1, status=6, info="库存可使用卡密不足，请联系管理员核查"),
        dujiaoka_order("A2", 12, type_=1, status=6),  # abnormal, but goods 12 is not rescued
        dujiaoka_order("U1", 99, info=INFO),  # unmapped goods
        dujiaoka_order("P1", 12, status=1),  # awaiting payment
        dujiaoka_order("C1", 12, status=4),  # completed
        dujiaoka_order("T1", 12, type_=1, status=2),  # automatic goods never sit at 2; not ours either way
        dujiaoka_order("D1", 12, deleted=True),
    ])  # fmt: skip
    src = source(shop_url)
    try:
        found = await src.poll(0, 100)
        assert [(o.ref, o.kind, o.status, o.qty) for o in found] == [
            ("M1", "manual", 2, 2), ("M2", "manual", 2, 1), ("A1", "abnormal", 6, 1)
        ]  # fmt: skip
        m1, m2, a1 = found
        assert (m1.account, str(m1.amount), m1.goods_id, m1.problem) == ("user-001", "19.80", "12", None)
        assert m2.account == "qq-42" and a1.account is None  # an abnormal order's info is the shop's error text
        assert "buyer@example.com" not in repr(m1)  # the buyer's contact stays out of logs and reprs
        assert [o.ref for o in await src.poll(m1.row_id, 1)] == ["M2"]  # paging by row id
        assert await src.unmapped() == {"99": 1, "12": 1}  # U1, and A2 (abnormal, not rescued)
    finally:
        await src.aclose()


async def test_garbage_info_is_a_problem_not_a_crash(shop_url: str) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order("G1", 12, info=INFO)])
    await execute(shop_url, "ALTER TABLE orders MODIFY info mediumtext")  # a shop that widened the column
    await execute(shop_url, "UPDATE orders SET info = REPEAT('y', 70000)")
    src = source(shop_url)
    try:
        (order,) = await src.poll(0, 10)
        assert order.problem == "info is larger than 65535 bytes" and order.account is None
    finally:
        await src.aclose()


async def test_take_is_conditional_on_the_status_seen(shop_url: str) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order("K1", 12, info=INFO), dujiaoka_order("K2", 12, info=INFO)])
    src = source(shop_url)
    try:
        k1, k2 = await src.poll(0, 10)
        await execute(shop_url, "UPDATE orders SET status = 4 WHERE order_sn = 'K2'")  # a person was quicker
        mark = src.new_mark(NOW)
        assert mark == "2026-12-01 08:30:15"
        assert await src.take([k1, k2], mark) == {"K1"}
        assert await src.take([k1], mark) == set()  # never twice
        rows = await dujiaoka_rows(shop_url)
        assert (rows["K1"]["status"], str(rows["K1"]["updated_at"])) == (3, "2026-12-01 08:30:15")
        assert rows["K2"]["status"] == 4
        assert await src.poll(0, 10) == []
    finally:
        await src.aclose()


async def test_examine_tells_ours_from_untouched_and_changed(shop_url: str) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order(f"E{i}", 12, info=INFO) for i in range(5)])
    src = source(shop_url)
    try:
        orders = await src.poll(0, 10)
        mark = src.new_mark(NOW)
        taken = {o.ref: Taken(o.ref, o.row_id, o.status, o.kind, mark) for o in orders}
        await src.take([o for o in orders if o.ref in ("E1", "E2")], mark)
        await execute(shop_url, "UPDATE orders SET updated_at = NOW() + INTERVAL 2 SECOND WHERE order_sn = 'E2'")
        await execute(shop_url, "UPDATE orders SET status = 3, updated_at = NOW() WHERE order_sn = 'E3'")
        await execute(shop_url, "DELETE FROM orders WHERE order_sn = 'E4'")
        states = {ref: (await src.examine(t)).state for ref, t in taken.items()}
        assert states == {
            "E0": RowState.AS_SEEN, "E1": RowState.OURS, "E2": RowState.CHANGED, "E3": RowState.CHANGED,
            "E4": RowState.GONE,
        }  # fmt: skip
        assert "saved by someone else" in (await src.examine(taken["E3"])).detail
    finally:
        await src.aclose()


async def test_write_back_appends_to_inputs_replaces_error_text_and_is_found_again(shop_url: str) -> None:
    abnormal_text = "库存可使用卡密不足，请联系管理员核查"
    await insert_dujiaoka(shop_url, [
        dujiaoka_order("W1", 12, info=INFO + "\n"),
        dujiaoka_order("W2", 14, type_=1, status=6, info=abnormal_text),
    ])  # fmt: skip
    src = source(shop_url)
    try:
        orders = await src.poll(0, 10)
        mark = src.new_mark(NOW)
        assert await src.take(orders, mark) == {"W1", "W2"}
        w1, w2 = (Taken(o.ref, o.row_id, o.status, o.kind, mark) for o in orders)
        lines = ["123456789012----ABCDEFGH12345678", "QWERTYUIOP123456"]
        assert (await src.write_delivered(w1, lines)).result is Written.WRITTEN
        assert (await src.write_delivered(w2, lines[1:])).result is Written.WRITTEN
        rows = await dujiaoka_rows(shop_url)
        assert rows["W1"]["info"] == INFO + "\n" + "\n".join(lines) and rows["W1"]["status"] == 4
        assert rows["W2"]["info"] == "QWERTYUIOP123456" and rows["W2"]["status"] == 4
        # After a crash between the shop's commit and fulfil's: found, not written twice.
        assert (await src.write_delivered(w1, lines)).result is Written.ALREADY
        assert (await src.write_delivered(w2, lines[1:])).result is Written.ALREADY
        assert (await src.write_delivered(w1, ["OTHERKEY00000000"])).result is Written.CHANGED
        assert (await dujiaoka_rows(shop_url))["W1"]["info"] == rows["W1"]["info"]
    finally:
        await src.aclose()


async def test_a_row_a_person_changed_is_never_written(shop_url: str) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order(f"X{i}", 12, info=INFO) for i in range(3)])
    src = source(shop_url)
    try:
        orders = await src.poll(0, 10)
        mark = src.new_mark(NOW)
        await src.take(orders, mark)
        x0, x1, x2 = (Taken(o.ref, o.row_id, o.status, o.kind, mark) for o in orders)
        await execute(shop_url, "UPDATE orders SET info = 'edited', updated_at = '2030-01-01' WHERE order_sn = 'X0'")
        await execute(shop_url, "UPDATE orders SET status = 4, info = 'by hand' WHERE order_sn = 'X1'")
        await execute(shop_url, "UPDATE orders SET deleted_at = NOW() WHERE order_sn = 'X2'")
        for taken in (x0, x1, x2):
            outcome = await src.write_delivered(taken, ["KEY0000000000001"])
            assert outcome.result is Written.CHANGED, outcome
            assert (await src.write_failed(taken, "x")).result is Written.CHANGED
        rows = await dujiaoka_rows(shop_url)
        assert [rows[r]["info"] for r in ("X0", "X1")] == ["edited", "by hand"]
    finally:
        await src.aclose()


async def test_a_failure_is_status_5_with_no_keys(shop_url: str) -> None:
    await insert_dujiaoka(shop_url, [dujiaoka_order("F1", 13, info="充值账号:bad")])
    src = source(shop_url)
    try:
        (order,) = await src.poll(0, 10)
        mark = src.new_mark(NOW)
        await src.take([order], mark)
        taken = Taken(order.ref, order.row_id, order.status, order.kind, mark)
        assert (await src.write_failed(taken, "order_rejected")).result is Written.WRITTEN
        assert (await src.write_failed(taken, "order_rejected")).result is Written.ALREADY
        row = (await dujiaoka_rows(shop_url))["F1"]
        assert (row["status"], row["info"]) == (5, "充值账号:bad")
    finally:
        await src.aclose()


async def test_check_names_missing_columns_and_changes_nothing(shop_url: str) -> None:
    src = source(shop_url)
    try:
        checks = await src.check()
        assert all(c.ok for c in checks), checks
        await execute(shop_url, "ALTER TABLE orders DROP COLUMN buy_ip")
        assert [c.what for c in await src.check() if not c.ok] == ["table orders: missing column(s) buy_ip"]
    finally:
        await src.aclose()
    prefixed = source(shop_url, table_prefix="dj_")
    try:
        failed = [c.what for c in await prefixed.check() if not c.ok]
        assert failed == ["table dj_orders: not found (or no privilege on it)"]
    finally:
        await prefixed.aclose()


async def test_an_unreachable_shop_is_unavailable(shop_url: str) -> None:
    src = source("mysql+asyncmy://root@127.0.0.1:9/nothing", timeout="2s")
    try:
        with pytest.raises(ShopUnavailable):
            await src.poll(0, 10)
    finally:
        await src.aclose()
