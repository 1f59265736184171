"""Stock check and balance watch against real fulu simulators: an offer whose stock check says empty is
skipped without an attempt (and cooled down), a balance under its floor raises the alert, demotes the
supplier, and it still serves as a last resort when nothing else is left."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from qualitykit import PRODUCT, eventually, fulu_scenario, running, two_fulu_config

from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from suppliers.fulu_codec import METHOD_CARD_ADD, METHOD_STOCK_CHECK, METHOD_USER_INFO
from suppliers.sim.server import running_sim

ORDERS = 8


async def test_empty_stock_is_skipped_and_a_low_balance_demotes(tmp_path: Path, cipher: CardCipher) -> None:
    db_url = f"sqlite:///{tmp_path / 'fulfil.db'}"
    # "main" says it has none when asked, though it would sell: any skip must come from the stock check.
    empty = [{"kind": "out_of_stock", "on": ["stock"]}]
    low = {**fulu_scenario(2), "balance": "1000.00"}
    async with running_sim(fulu_scenario(1, empty)) as main, running_sim(low) as backup:
        config = two_fulu_config(
            db_url,
            {"main": main, "backup": backup},
            priorities={"main": 0, "backup": 1},
            scoring={"balance_interval": "1h"},
        )
        config = config.model_copy(
            update={
                "suppliers": tuple(
                    s.model_copy(update={"balance_floor": Decimal("2000")}) if s.name == "backup" else s
                    for s in config.suppliers
                )
            }
        )
        async with running(db_url, cipher, config) as run:
            await run.quality.periodic(datetime.now(UTC))  # first poll: backup is under its floor
            assert run.quality.demoted("backup")
            await run.add(ORDERS)
            await eventually(run.settled, within=30.0)
            await run.quality.periodic(datetime.now(UTC))
            views = await run.store.list_orders()
            cooling = await run.store.cooldown_list(datetime.now(UTC))
            events = [e.name for e in await run.store.events(limit=100) if e.supplier == "backup"]
            health = {row.supplier: row for row in await run.store.supplier_health()}

    assert Counter(v.order.status for v in views) == {OrderStatus.DELIVERED: ORDERS}
    # No attempt at main: the check answered "empty" once (then cached) and the offer cooled down.
    assert {a.supplier for v in views for a in v.attempts} == {"backup"}
    asked = Counter(e["op"] for e in main.requests.entries)
    assert asked[METHOD_STOCK_CHECK] == 1 and asked[METHOD_CARD_ADD] == 0
    assert [(c.supplier, c.product_id, c.reason) for c in cooling] == [("main", PRODUCT, "stock check: empty")]
    # backup: polled once within the interval, alerted once, demoted, yet used as the only offer left.
    assert Counter(e["op"] for e in backup.requests.entries)[METHOD_USER_INFO] == 1
    assert events.count("supplier.balance_low") == 1 and events.count("supplier.demoted") == 1
    assert health["backup"].demoted and health["backup"].balance is not None
    assert health["backup"].balance < 2000
