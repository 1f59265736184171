"""The SQL privileges README.md gives each shop's fulfil user are enough for the whole cycle, and no more is used:
a user with exactly those grants takes, writes back and passes `sources test` on real MariaDB."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from fulfil.sources import build_source
from fulfil.sources.runner import SourceRunner
from fulfil.storage import Store
from tests.shopdb import (
    acg_order,
    acg_rows,
    dujiaoka_order,
    dujiaoka_rows,
    execute,
    insert_acg,
    insert_commodities,
    insert_dujiaoka,
)
from tests.sources.conftest import acg_entry, dujiaoka_entry, shop_config
from tests.sources.test_runner import finish, keys

pytestmark = pytest.mark.mysql
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_grants(shop: str) -> list[str]:
    """The GRANT statements of the README's block for `shop` (```sql fenced, marked `-- fulfil grants: <shop>`)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(rf"-- fulfil grants: {shop}\n(.*?)```", text, re.S)
    assert block is not None, f"README.md has no grants block for {shop}"
    sql = re.sub(r"--[^\n]*", "", block.group(1))
    return [s.strip() for s in sql.split(";") if s.strip().upper().startswith("GRANT")]


@pytest.fixture
async def limited(shop_url: str) -> AsyncIterator[tuple[str, str]]:
    """A user with only the README's grants: (user name, URL for it)."""
    user = f"fulfil_t_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    await execute(shop_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        yield user, make_url(shop_url).set(username=user, password=password).render_as_string(hide_password=False)
    finally:
        await execute(shop_url, f"DROP USER IF EXISTS '{user}'@'%'")


async def grant(shop_url: str, user: str, shop: str, prefix: str = "") -> None:
    database = make_url(shop_url).database
    for statement in readme_grants(shop):
        statement = statement.replace("shopdb.", f"`{database}`.").replace("'fulfil'@'10.0.0.5'", f"'{user}'@'%'")
        await execute(shop_url, statement)


async def test_dujiaoka_with_the_readme_grants_only(store: Store, shop_url: str, limited: tuple[str, str]) -> None:
    user, url = limited
    await grant(shop_url, user, "dujiaoka")
    await insert_dujiaoka(shop_url, [
        dujiaoka_order("G1", 12, info="备注:x"),
        dujiaoka_order("G2", 14, type_=1, status=6, info="库存可使用卡密不足，请联系管理员核查"),
        dujiaoka_order("G3", 12),
    ])  # fmt: skip
    config = shop_config("sqlite:///x.db", [dujiaoka_entry(url)])
    source = build_source(config.sources[0])
    runner = SourceRunner(store, {"shop": source}, lambda: config)
    try:
        assert all(check.ok for check in await source.check())
        assert (await runner.tick("shop")).taken == 3
        await finish(store, deliver={"G1": keys(1, "G1"), "G2": keys(1, "G2")}, fail={"G3": "order_rejected"})
        report = await runner.tick("shop")
        assert (report.written, report.error) == (3, None)
        assert await source.unmapped() == {}
    finally:
        await runner.aclose()
    rows = await dujiaoka_rows(shop_url)
    assert [rows[r]["status"] for r in ("G1", "G2", "G3")] == [4, 4, 5]


async def test_acg_faka_with_the_readme_grants_only(store: Store, shop_url: str, limited: tuple[str, str]) -> None:
    user, url = limited
    await grant(shop_url, user, "acg_faka_shop")
    await insert_commodities(shop_url, [(3, "Steam", 1), (4, "QQ", 1)])
    await insert_acg(shop_url, [acg_order("H000000000000000001", 3), acg_order("H000000000000000002", 3)])
    config = shop_config("sqlite:///x.db", [acg_entry(url)])
    source = build_source(config.sources[0])
    runner = SourceRunner(store, {"faka": source}, lambda: config)
    try:
        assert all(check.ok for check in await source.check()), await source.check()
        assert (await runner.tick("faka")).taken == 2
        await finish(store, deliver={"H000000000000000001": keys(1, "H1")}, fail={"H000000000000000002": "no"})
        report = await runner.tick("faka")
        assert (report.written, report.error) == (2, None)
    finally:
        await runner.aclose()
    rows = await acg_rows(shop_url)
    assert rows["H000000000000000001"]["delivery_status"] == 1


async def test_without_the_write_grant_the_write_back_waits_and_says_why(
    store: Store, shop_url: str, limited: tuple[str, str]
) -> None:
    user, url = limited
    database = make_url(shop_url).database
    await grant(shop_url, user, "dujiaoka")
    await insert_dujiaoka(shop_url, [dujiaoka_order("N1", 12)])
    config = shop_config("sqlite:///x.db", [dujiaoka_entry(url)])
    runner = SourceRunner(store, {"shop": build_source(config.sources[0])}, lambda: config)
    try:
        assert (await runner.tick("shop")).taken == 1
        await execute(shop_url, f"REVOKE UPDATE (info) ON `{database}`.orders FROM '{user}'@'%'")
        await finish(store, deliver={"N1": keys(1, "N1")})
        report = await runner.tick("shop")
        assert report.retried == 1 and report.error is not None and "denied" in report.error
    finally:
        await runner.aclose()
    record = (await store.source_records("shop", ["N1"]))["N1"]
    assert record.state.value == "taken" and record.tries == 1  # retried later, keys safe in fulfil
