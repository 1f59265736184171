"""`fulfil webhooks list | deliveries | replay | enable`, and intake commands writing `order.accepted` rows."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.cli.conftest import Env

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOTIFY = """
notify:
  webhooks:
    - {name: shop, url: "https://shop.example/hook?token=HIDDEN", secret: "${SHOP_SECRET}", events: ["order.*"]}
  alerts:
    - {name: ops, type: wecom, secret: "${ROBOT_KEY}"}
"""


@pytest.fixture
def hooked(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("SHOP_SECRET", SECRET)
    monkeypatch.setenv("ROBOT_KEY", "ROBOTKEY")
    env.config_path.write_text(env.config_path.read_text() + NOTIFY, encoding="utf-8")
    return env


def test_intake_writes_accepted_events_and_the_commands_show_them(hooked: Env) -> None:
    result = hooked.cli("orders", "add", "--ref", "W1", "--sku", "steam-100", "--qty", "1", "--contact", "b@x.io")
    assert result.exit_code == 0, result.output
    path = hooked.write("o.csv", "ref,sku,qty,contact\nW2,steam-100,1,138000\nW3,steam-100,2,\n")
    assert hooked.cli("orders", "import", str(path)).exit_code == 0
    listed = hooked.json("webhooks", "list", "--json")
    shop = next(c for c in listed if c["channel"] == "webhook:shop")
    assert shop["url"] == "https://shop.example/hook?…" and shop["deliveries"] == {"pending": 3}
    assert shop["state"] == "active" and shop["include_keys"] is False
    text = hooked.cli("webhooks", "list").output
    assert "HIDDEN" not in text and SECRET not in text and "ROBOTKEY" not in text
    rows = hooked.json("webhooks", "deliveries", "--channel", "shop", "--json")
    assert sorted(r["type"] for r in rows) == ["order.accepted"] * 3
    assert all("data" not in r for r in rows)  # payloads (contacts, keys) are never printed


def test_replay_dead_deliveries_and_enable_a_disabled_endpoint(hooked: Env) -> None:
    assert hooked.cli("orders", "add", "--ref", "W4", "--sku", "steam-100", "--qty", "1").exit_code == 0

    async def kill(store: Any) -> tuple[int, str]:
        (row,) = await store.claim_outbox("webhook:shop", "d", 10, 60)
        now = datetime.now(UTC)
        await store.finish_outbox(row.id, "d", "dead", counts=True, delay=0, status=500, error="HTTP 500", now=now)
        await store.disable_endpoint("shop", "410 Gone", now)
        return row.id, row.event_id

    row_id, event_id = hooked.store(kill)
    failed = hooked.json("webhooks", "deliveries", "--failed", "--json")
    assert [(r["id"], r["state"], r["last_status"]) for r in failed] == [(row_id, "dead", 500)]
    assert "disabled: 410 Gone" in hooked.cli("webhooks", "list").output
    assert hooked.cli("webhooks", "replay").exit_code != 0
    assert "1 deliveries queued again" in hooked.cli("webhooks", "replay", "--channel", "shop").output
    (again,) = hooked.json("webhooks", "deliveries", "--event", event_id, "--json")
    assert (again["state"], again["attempts"]) == ("pending", 0)
    assert "shop: enabled" in hooked.cli("webhooks", "enable", "shop").output
    assert "was not disabled" in hooked.cli("webhooks", "enable", "shop").output
    assert json.loads(hooked.cli("webhooks", "list", "--json").stdout)[0]["state"] == "active"
