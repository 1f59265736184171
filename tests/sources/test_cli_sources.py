"""`fulfil sources [--json]`, `sources test NAME`, `sources retry|settle REF` against a real shop database."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from fulfil.crypto import CardCipher, generate_key, load_card_key
from fulfil.logs import OWN_LOGGERS
from fulfil.storage import Store
from tests.shopdb import (
    create_database,
    drop_database,
    dujiaoka_order,
    dujiaoka_rows,
    insert_dujiaoka,
    mysql_server_or_skip,
    run,
)
from tests.sources.conftest import SKU, dujiaoka_entry, shop_config

pytestmark = pytest.mark.mysql


class Env:
    def __init__(self, tmp: Path, shop_url: str) -> None:
        self.tmp = tmp
        self.shop_url = shop_url
        self.db = f"sqlite:///{tmp / 'fulfil.db'}"
        self.key = generate_key()
        entry = dujiaoka_entry(shop_url)
        data: dict[str, Any] = {
            "database": {"url": self.db},
            "suppliers": [{"name": "shelf", "type": "stock"},
                          {"name": "fulu", "type": "fulu", "base_url": "http://127.0.0.1:9", "app_key": "k",
                           "secret": "0123456789abcdef0123456789abcdef"}],
            "products": {SKU: {"max_qty": 5, "offers": [{"supplier": "shelf"}]},
                         "qq-topup": {"kind": "direct", "offers": [{"supplier": "fulu", "product_id": "1"}]}},
            "sources": [entry, {**entry, "name": "down", "url": "mysql+asyncmy://root@127.0.0.1:9/x", "timeout": "1s"}],
        }  # fmt: skip
        shop_config(self.db, data["sources"])  # valid
        self.config = tmp / "fulfil.yaml"
        self.config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        Store.upgrade(self.db)

    def cli(self, *args: str) -> Result:
        from fulfil.cli import main

        env = {"FULFIL_CARD_KEY": self.key, "FULFIL_CONFIG": str(self.config)}
        return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)

    def store(self, fn: Any) -> Any:
        async def body() -> Any:
            store = await Store.open(self.db, CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": self.key})))
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(body())


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    url = run(create_database(mysql_server_or_skip()))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    try:
        yield Env(tmp_path, url)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in own.items():
            logging.getLogger(name).setLevel(old)
        run(drop_database(url))


def _take(env: Env) -> None:
    """One round of the daemon's runner for source `shop`."""
    from fulfil.config import load_config
    from fulfil.sources import build_source
    from fulfil.sources.runner import SourceRunner

    config = load_config(env.config)

    async def body(store: Store) -> None:
        runner = SourceRunner(store, {"shop": build_source(config.source("shop"))}, lambda: config)
        try:
            await runner.tick("shop")
        finally:
            await runner.aclose()

    env.store(body)


def test_sources_test_prints_what_it_would_take_and_changes_nothing(env: Env) -> None:
    run(insert_dujiaoka(env.shop_url, [
        dujiaoka_order("T1", 12, info="充值账号:user-0042"),
        dujiaoka_order("T2", 13, info="备注:no account"),
        dujiaoka_order("T3", 77),
    ]))  # fmt: skip
    before = run(dujiaoka_rows(env.shop_url))
    result = env.cli("sources", "test", "shop")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ok   table orders: the 12 columns fulfil uses are there" in out
    assert "would take: T1 goods 12 -> steam-100 x1 (manual) account *******42" in out
    assert "would refuse: T2 goods 13 -> qq-topup x1 (manual): account is required" in out
    assert "unmapped goods waiting at the shop (left alone): goods 77: 1" in out
    assert "user-0042" not in out
    assert run(dujiaoka_rows(env.shop_url)) == before
    assert env.store(lambda s: s.source_records("shop", ["T1", "T2"])) == {}
    down = env.cli("sources", "test", "down")
    assert down.exit_code == 1 and "FAIL cannot reach the shop's database" in down.output
    unknown = env.cli("sources", "test", "nope")
    assert unknown.exit_code == 2 and "no source 'nope'" in unknown.output


def test_sources_lists_figures_per_source(env: Env) -> None:
    run(insert_dujiaoka(env.shop_url, [
        dujiaoka_order("L1", 12, info="x:y"), dujiaoka_order("L2", 12, buy_amount=0), dujiaoka_order("L3", 77),
    ]))  # fmt: skip
    _take(env)
    data = json.loads(env.cli("sources", "--json").stdout)
    shop, down = data["sources"]
    assert (shop["name"], shop["reachable"], shop["taken"], shop["in_progress"]) == ("shop", True, 1, 1)
    assert [r["ref"] for r in shop["refused"]] == ["L2"] and shop["unmapped"] == {"77": 1}
    assert shop["last_poll"]["error"] is None and shop["last_poll"]["ok_at"] is not None
    assert (down["reachable"], down["last_poll"]["at"]) == (False, None)
    text = env.cli("sources").output
    assert "taken 1: delivered 0, failed 0, waiting write-back 0, in progress 1 (in fulfil's review 0)" in text
    assert "L2 goods 12: qty 0 is below 1" in text
    assert "last poll: never" in text


def test_retry_and_settle_move_a_review(env: Env) -> None:
    run(insert_dujiaoka(env.shop_url, [dujiaoka_order("R1", 12, info="x:y"), dujiaoka_order("R2", 12)]))
    _take(env)

    async def to_review(store: Store) -> None:
        for ref in ("R1", "R2"):
            record = (await store.source_records("shop", [ref]))[ref]
            await store.source_to_review(record.id, "the shop row changed", datetime.now(UTC))

    env.store(to_review)
    assert env.cli("sources", "retry", "R1", "--operator", "ops").exit_code == 0
    settled = env.cli("sources", "settle", "R2", "--note", "done by hand in the admin")
    assert settled.exit_code == 0, settled.output
    again = env.cli("sources", "retry", "R1")
    assert again.exit_code == 2 and "not waiting for a person" in again.output
    records = env.store(lambda s: s.source_records("shop", ["R1", "R2"]))
    assert records["R1"].state.value == "taken" and records["R2"].outcome == "by_hand"
    assert env.cli("sources", "retry", "NOPE").exit_code == 2
