"""Issue 9 acceptance kit (no tests here): a dujiaoka or acg-faka shop in MariaDB beside a real `fulfil run` and a
fulu simulator, and the books checked at the end: the shop's rows against fulfil's deliveries against the
supplier's ledger.

Sizes: the CI run is small; `FULFIL_SHOP_SCALE=full` runs the issue's sizes (dujiaoka 500 manual + 100 abnormal
orders with 10 kills, acg-faka 300 orders, the shop's database away for 30 s).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemonkit import Sim, charged_orders, fulu_supplier, order_views, read_config, write_config

from fulfil.crypto import CardCipher, load_card_key
from fulfil.storage import Store
from tests.shopdb import acg_order, dujiaoka_order

FULL = os.environ.get("FULFIL_SHOP_SCALE") == "full"
CARD, NUMBERED, TOPUP = "steam-100", "netease-50", "qq-topup"
ABNORMAL_TEXT = "库存可使用卡密不足，请联系管理员核查"


@dataclass(frozen=True)
class Sizes:
    manual: int
    abnormal: int
    kills: int
    acg: int
    outage: float


SIZES = Sizes(500, 100, 10, 300, 30.0) if FULL else Sizes(60, 20, 3, 40, 10.0)


def shop_daemon_config(tmp_path: Path, sim: Sim, sources: list[dict[str, Any]], **overrides: Any) -> Path:
    """fulfil on SQLite beside the shop: cards (16 characters), cards with a 12-digit number, direct top-ups, all
    from one fulu simulator."""
    sections: dict[str, Any] = {
        "daemon": {"poll_interval": "50ms", "batch_size": 50, "concurrency": 32, "lease": "10s",
                   "shutdown_timeout": "5s"},
        "suppliers": [fulu_supplier("fulu-sim", sim)],
        "products": {
            CARD: {"kind": "card", "max_qty": 5, "card_pattern": "^[A-Z0-9]{16}$",
                   "offers": [{"supplier": "fulu-sim", "product_id": "10001", "cost": "95.00"}]},
            NUMBERED: {"kind": "card", "max_qty": 5, "card_pattern": "^[A-Z0-9]{16}$", "number_pattern": "^[0-9]{12}$",
                       "offers": [{"supplier": "fulu-sim", "product_id": "10002", "cost": "48.50"}]},
            TOPUP: {"kind": "direct", "max_qty": 1,
                    "offers": [{"supplier": "fulu-sim", "product_id": "10003", "cost": "9.80"}]},
        },
        "sources": sources,
        **overrides,
    }  # fmt: skip
    return write_config(tmp_path, **sections)


def dujiaoka_source(url: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": "shop",
        "type": "dujiaoka",
        "url": url,
        "poll_interval": "200ms",
        "goods": {"12": CARD, "13": TOPUP, "14": NUMBERED},
        "account_field": "充值账号",
        "rescue_abnormal": ["14"],
        "batch_size": 100,
        "timeout": "5s",
        "retry_backoff": "200ms",
        "max_backoff": "2s",
        **changes,
    }


def acg_source(url: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": "faka",
        "type": "acg_faka_shop",
        "url": url,
        "poll_interval": "200ms",
        "goods": {"3": CARD, "4": TOPUP},
        "account_field": "account",
        "batch_size": 100,
        "timeout": "5s",
        "retry_backoff": "200ms",
        "max_backoff": "2s",
        **changes,
    }


# --- the shop's orders -----------------------------------------------------------------------------------


def dujiaoka_orders(manual: int, abnormal: int, tag: str = "S") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mapped orders, orders fulfil must leave alone): manual card and top-up orders with the buyer's inputs,
    abnormal automatic ones to rescue; unmapped goods, an abnormal order of goods not rescued, unpaid and
    expired ones."""
    rng = random.Random(9)
    mapped = []
    for i in range(manual):
        if i % 5 == 4:
            mapped.append(dujiaoka_order(f"{tag}M{i:05d}", 13, info=f"充值账号:qq{100000 + i}\n备注:谢谢"))
        else:
            info = rng.choice(["", "备注:请尽快", "联系QQ:12345\n备注:无"])
            mapped.append(dujiaoka_order(f"{tag}M{i:05d}", 12, info=info or None, buy_amount=2 if i % 7 == 0 else 1))
    for i in range(abnormal):
        mapped.append(dujiaoka_order(f"{tag}A{i:05d}", 14, type_=1, status=6, info=ABNORMAL_TEXT,
                                     buy_amount=1 + i % 2))  # fmt: skip
    alone = [dujiaoka_order(f"{tag}U{i:03d}", 77, info="充值账号:x") for i in range(8)]
    alone += [dujiaoka_order(f"{tag}N{i:03d}", 15, type_=1, status=6, info=ABNORMAL_TEXT) for i in range(3)]
    alone += [dujiaoka_order(f"{tag}P{i:03d}", 12, status=1) for i in range(3)]
    alone += [dujiaoka_order(f"{tag}X{i:03d}", 12, status=-1) for i in range(3)]
    alone += [dujiaoka_order(f"{tag}D{i:03d}", 12, deleted=True) for i in range(2)]
    return mapped, alone


def acg_orders(count: int, tag: str = "F") -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        ref = f"{tag}{i:018d}"[-19:]
        if i % 4 == 3:
            widget = f'{{"account": {{"value": "user{i}", "cn": "充值账号"}}}}'
            out.append(acg_order(ref, 4, widget=widget))
        else:
            out.append(acg_order(ref, 3, card_num=1 + (i % 3 == 0)))
    return out


# --- fulfil's side -----------------------------------------------------------------------------------------


def with_store(config: Path, env: Mapping[str, str], fn: Any) -> Any:
    url = read_config(config)["database"]["url"]

    async def body() -> Any:
        store = await Store.open(url, CardCipher(load_card_key(None, env)))
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(body())


def source_states(config: Path, env: Mapping[str, str], name: str) -> dict[str, int]:
    async def read(store: Store) -> dict[str, int]:
        return dict((await store.source_summaries([name]))[name].states)

    result: dict[str, int] = with_store(config, env, read)
    return result


def written(config: Path, env: Mapping[str, str], name: str) -> int:
    return source_states(config, env, name)["written"]


def source_events(config: Path, env: Mapping[str, str], name: str) -> list[dict[str, Any]]:
    async def read(store: Store) -> list[dict[str, Any]]:
        return [{"order_id": e.order_id, **e.data} for e in await store.events(name=name, limit=1_000_000)]

    result: list[dict[str, Any]] = with_store(config, env, read)
    return result


# --- the books -------------------------------------------------------------------------------------------


def key_lines(view: Mapping[str, Any]) -> list[str]:
    return [f"{c['number']}----{c['password']}" if c.get("number") else c["password"] for c in view["cards"]]


def check_books(
    config: Path,
    env: Mapping[str, str],
    ledger: Mapping[str, Any],
    shop_rows: Mapping[str, Mapping[str, Any]],
    expected: Mapping[str, Mapping[str, Any]],
    *,
    shop: str,
) -> dict[str, int]:
    """Every mapped shop order ended right in the shop (its keys, exactly, once) and in fulfil (delivered, one
    purchase), the supplier charged each order once and for exactly what was delivered. Returns figures."""
    views = {v["ref"]: v for v in order_views(config, env)}
    assert sorted(views) == sorted(expected), sorted(set(views) ^ set(expected))[:10]
    charged = charged_orders(ledger)
    by_number = Counter(o["number"] for o in charged)
    assert all(n == 1 for n in by_number.values()), "the supplier shows one number charged twice"
    every_key: list[str] = []
    numbers: list[str] = []
    delivered_units = 0
    for ref, original in expected.items():
        view = views[ref]
        assert view["status"] == "delivered" and not view["claims"], view
        succeeded = [a for a in view["attempts"] if a["state"] == "succeeded"]
        assert len(succeeded) == 1, view["attempts"]
        mine = [a["supplier_order_no"] for a in view["attempts"] if a["supplier_order_no"] in by_number]
        assert mine == [succeeded[0]["supplier_order_no"]], f"{ref}: charged for {mine}"
        numbers.append(succeeded[0]["supplier_order_no"])
        lines = key_lines(view)
        delivered_units += len(lines) or view["qty"]
        every_key += lines
        row = shop_rows[ref]
        if shop == "dujiaoka":
            _check_dujiaoka_row(ref, row, original, lines or ["充值成功"])
        else:
            assert row["delivery_status"] == 1, row
            assert row["secret"] == "\n".join(lines or ["充值成功"]), (ref, row["secret"])
    assert len(every_key) == len(set(every_key)), "a key was written to two orders"
    assert sorted(numbers) == sorted(by_number), "a charge with no delivered order, or the reverse"
    assert sum(int(o["qty"]) for o in charged) == delivered_units
    return {"orders": len(expected), "keys": len(every_key), "purchases": len(charged), "units": delivered_units}


def _check_dujiaoka_row(ref: str, row: Mapping[str, Any], original: Mapping[str, Any], lines: Sequence[str]) -> None:
    assert row["status"] == 4, (ref, row["status"])
    block = "\n".join(lines)
    if original["status"] == 6:
        assert row["info"] == block, (ref, row["info"])  # the shop's error text replaced
    else:
        inputs = (original["info"] or "").rstrip("\r\n")
        assert row["info"] == (f"{inputs}\n{block}" if inputs.strip() else block), (ref, row["info"])


def check_left_alone(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]) -> None:
    for ref, row in before.items():
        assert after[ref] == row, f"{ref} was touched: {row} -> {after[ref]}"


def check_logs_clean(directory: Path, config: Path, env: Mapping[str, str], contacts: Sequence[str]) -> int:
    """No daemon log line holds a delivered key (number or password) or a buyer's contact. Returns lines read."""
    secrets: set[str] = set(contacts)
    for view in order_views(config, env):
        for card in view["cards"]:
            secrets.update(value for value in (card.get("number"), card["password"]) if value)
    lines = 0
    for log in sorted(directory.glob("daemon-*.log")):
        for number, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            lines += 1
            found = [s for s in secrets if s in line]
            assert not found, f"{log.name}:{number} holds a key or a contact"
    return lines
