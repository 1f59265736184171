"""`fulfil suppliers [--json]`: score and components, breaker, balance, cool-downs and windows, read by a
separate process (the CLI) from what the daemon wrote and from the database's record."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from qualitykit import attempt, invalid_keys

from fulfil.crypto import CardCipher, generate_key, load_card_key
from fulfil.logs import OWN_LOGGERS
from fulfil.storage import Store
from fulfil.storage.store_quality import SupplierHealth

CONFIG = """\
database: {{url: "sqlite:///{db}"}}
suppliers:
  - {{name: shelf, type: stock}}
  - {{name: fulu-main, type: fulu, base_url: "http://127.0.0.1:9/api", app_key: k, secret: s, balance_floor: 500}}
  - {{name: fulu-backup, type: fulu, base_url: "http://127.0.0.1:9/api", app_key: k, secret: s}}
products:
  steam-100:
    offers:
      - {{supplier: shelf}}
      - {{supplier: fulu-main, product_id: "10001", priority: 1}}
      - {{supplier: fulu-backup, product_id: "10001", priority: 2}}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in own.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, CardCipher]:
    db_path = tmp_path / "fulfil.db"
    config = tmp_path / "fulfil.yaml"
    config.write_text(CONFIG.format(db=db_path), encoding="utf-8")
    key = generate_key()
    monkeypatch.setenv("FULFIL_CARD_KEY", key)
    monkeypatch.setenv("FULFIL_CONFIG", str(config))
    url = f"sqlite:///{db_path}"
    Store.upgrade(url)
    return url, CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": key}))


def fill(url: str, cipher: CardCipher, now: datetime) -> None:
    """What a daemon would have left: a record, a snapshot for one supplier, a cool-down."""

    async def body() -> None:
        store = await Store.open(url, cipher)
        try:
            for seconds in (2, 4, 6, 8):
                await attempt(store, "fulu-main", now - timedelta(minutes=30), seconds=seconds, offer_index=1)
            await invalid_keys(store, "fulu-main", now - timedelta(hours=5), amount="95.00", offer_index=1)
            await attempt(store, "fulu-backup", now - timedelta(days=2), seconds=1, offer_index=2)
            await store.save_supplier_health(
                [
                    SupplierHealth(
                        supplier="fulu-main",
                        score=41.5,
                        components={"score": 41.5, "components": {"fulfilment": 0.8}, "samples": {"fulfilment": 5}},
                        breaker="open",
                        opened_until=now + timedelta(minutes=1),
                        ejections=2,
                        demoted=True,
                        balance=Decimal("120.00"),
                        balance_at=now,
                        detail={"breaker_reason": "5 consecutive failures", "balance_low": True, "weight": 4.15},
                        updated_at=now,
                    )
                ]
            )
            await store.set_cooldown("fulu-backup", "10001", now + timedelta(minutes=5), "stock check: empty", now)
        finally:
            await store.close()

    asyncio.run(body())


def run(*args: str) -> str:
    from fulfil.cli import main

    result = CliRunner().invoke(main, ["--log-format", "text", "suppliers", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_shows_the_daemon_report_and_live_windows(db: tuple[str, CardCipher]) -> None:
    now = datetime.now(UTC)
    fill(*db, now)
    data = json.loads(run("--json"))
    by_name = {s["name"]: s for s in data["suppliers"]}
    assert list(by_name) == ["shelf", "fulu-main", "fulu-backup"]
    main = by_name["fulu-main"]
    assert (main["score"], main["score_source"], main["demoted"]) == (41.5, "daemon", True)
    assert main["components"] == {"fulfilment": 0.8}
    assert main["breaker"]["state"] == "open" and main["breaker"]["ejections"] == 2
    assert main["breaker"]["reason"] == "5 consecutive failures"
    assert main["balance"] == {"amount": "120.00", "at": now.isoformat(), "floor": "500", "low": True}
    hour, day, week = (main["windows"][w] for w in ("1h", "24h", "7d"))
    assert (hour["attempts"], hour["fulfilment_rate"], hour["latency_p50"], hour["latency_p95"]) == (4, 1.0, 4.0, 8.0)
    assert (day["attempts"], day["claims"], day["claims_amount"], day["key_validity_rate"]) == (5, 1, "95.00", 0.8)
    assert week["attempts"] == 5
    assert main["offers"][0]["sku"] == "steam-100" and main["offers"][0]["windows"]["24h"]["attempts"] == 5

    backup = by_name["fulu-backup"]
    assert backup["score_source"] == "computed"  # no daemon report: computed from the record here
    assert backup["score"] == pytest.approx(90.0)  # nothing within the 24 h scoring window: the prior
    assert backup["breaker"]["state"] is None
    assert backup["windows"]["24h"]["attempts"] == 0 and backup["windows"]["7d"]["attempts"] == 1
    assert [c["reason"] for c in backup["cooldowns"]] == ["stock check: empty"]


def test_a_breaker_whose_cooldown_is_over_reads_half_open(db: tuple[str, CardCipher]) -> None:
    fill(*db, datetime.now(UTC) - timedelta(minutes=2))  # opened_until is a minute ago
    data = json.loads(run("--json"))
    main = next(s for s in data["suppliers"] if s["name"] == "fulu-main")
    assert main["breaker"]["state"] == "half_open" and main["breaker"]["opened_until"] is None


def test_text_output(db: tuple[str, CardCipher]) -> None:
    fill(*db, datetime.now(UTC))
    out = run("--offers")
    lines = out.splitlines()
    main = next(line for line in lines if line.startswith("fulu-main "))
    assert "41.5" in main and "daemon" in main and "open" in main and "yes" in main and "120.00" in main
    assert any(line.startswith("fulu-main") and "24h" in line and "80.0%" in line for line in lines)
    assert "Offers:" in out and "fulu-main steam-100#1" in out
    assert "stock check: empty" in out
