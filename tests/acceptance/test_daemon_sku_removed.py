"""Issue 2 acceptance: an order whose SKU disappeared from the config after intake goes to `review` with a
reason naming the SKU, and the daemon keeps running and delivering everything else.

Two ways an SKU disappears under a paid order: the operator edits the config and restarts the daemon, or
edits it and reloads a running daemon with SIGHUP while the shop's intake still uses the old product list.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from daemonkit import (
    CARD_PATTERN,
    SKU,
    Daemon,
    fulfil,
    import_orders,
    import_stock,
    make_keys,
    order_line,
    order_views,
    start_daemon,
    status_counts,
    upgrade,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow

GONE = "gift-50"
BOTH = {
    SKU: {"card_pattern": CARD_PATTERN, "offers": [{"supplier": "shelf"}]},
    GONE: {"card_pattern": CARD_PATTERN, "offers": [{"supplier": "shelf"}]},
}


def _orders(prefix: str, count: int) -> list[dict[str, Any]]:
    return [order_line(f"{prefix}{i}", GONE if i % 3 == 0 else SKU) for i in range(count)]


def _check_outcome(config: Path, env: dict[str, str], orders: list[dict[str, Any]]) -> None:
    """The removed SKU's orders in review saying why; every other order delivered."""
    views = {v["ref"]: v for v in order_views(config, env)}
    for order in orders:
        view = views[order["ref"]]
        if order["sku"] == GONE:
            assert view["status"] == "review", view
            assert f"'{GONE}'" in view["reason"] and "no longer configured" in view["reason"], view["reason"]
            assert not view["cards"] and not view["attempts"], view  # nothing bought, nothing taken
        else:
            assert view["status"] == "delivered" and len(view["cards"]) == 1, view
    queue = fulfil("review", "list", config=config, env=env).stdout
    assert all(o["ref"] in queue for o in orders if o["sku"] == GONE), queue


def _settled(config: Path, env: dict[str, str], total: int) -> bool:
    counts = status_counts(config, env)
    return counts["delivered"] + counts["review"] + counts["failed"] == total


def _keeps_serving(daemon: Daemon, config: Path, env: dict[str, str], tmp_path: Path, total: int) -> None:
    """After the review, the same daemon takes and delivers new orders."""
    assert daemon.alive(), daemon.tail()
    import_stock(config, env, SKU, make_keys(5, "L"), tmp_path / "more-keys.txt")
    import_orders(config, env, [order_line(f"LATE{i}") for i in range(5)], tmp_path / "late.jsonl")
    wait_until(lambda: status_counts(config, env)["delivered"] == total + 5, timeout=20, message="late orders")
    assert daemon.alive(), daemon.tail()
    assert daemon.stop() == 0, daemon.tail()


def test_sku_removed_between_intake_and_start(tmp_path: Path, env: dict[str, str]) -> None:
    config = write_config(tmp_path, products=BOTH)
    upgrade(config, env)
    orders = _orders("A", 30)
    import_stock(config, env, SKU, make_keys(30), tmp_path / "keys.txt")
    import_stock(config, env, GONE, make_keys(30, "G"), tmp_path / "gone-keys.txt")
    import_orders(config, env, orders, tmp_path / "orders.jsonl")
    # The operator drops the product and (re)starts the daemon with orders for it still queued.
    write_config(tmp_path, products={GONE: None} | {SKU: BOTH[SKU]})

    daemon = start_daemon(config, env)
    wait_until(lambda: _settled(config, env, len(orders)), timeout=30, message="every order settled")
    _check_outcome(config, env, orders)
    review = daemon.events("order.review")
    assert len(review) == 10 and all(GONE in e["reason"] for e in review)
    _keeps_serving(daemon, config, env, tmp_path, total=20)


def test_sku_removed_by_sighup_while_running(tmp_path: Path, env: dict[str, str]) -> None:
    config = write_config(tmp_path, products=BOTH)
    upgrade(config, env)
    import_stock(config, env, SKU, make_keys(30), tmp_path / "keys.txt")
    import_stock(config, env, GONE, make_keys(30, "G"), tmp_path / "gone-keys.txt")
    # The shop's intake keeps its own copy, still listing the product.
    intake = tmp_path / "intake.yaml"
    shutil.copyfile(config, intake)

    daemon = start_daemon(config, env)
    write_config(tmp_path, products={GONE: None} | {SKU: BOTH[SKU]})
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for("config.reloaded")
    assert "products" in reloaded["changed"]

    orders = _orders("B", 30)
    import_orders(intake, env, orders, tmp_path / "orders.jsonl")
    wait_until(lambda: _settled(config, env, len(orders)), timeout=30, message="every order settled")
    _check_outcome(config, env, orders)
    _keeps_serving(daemon, config, env, tmp_path, total=20)
