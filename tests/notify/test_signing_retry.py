"""Pure parts of notifications: Standard Webhooks signatures (verified by the reference `standardwebhooks`
package), the retry decision, Retry-After, masking, delay thresholds."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from fulfil.config import DelayConfig, DelayProductConfig, OfferConfig, ProductConfig
from fulfil.notify import delay, signing
from fulfil.notify.events import Audience, CardText, OrderFacts, body, event_data, mask_contact, mask_url
from fulfil.notify.retry import SendResult, decide, jittered, parse_retry_after

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"an older secret, still accepted").decode()
SCHEDULE = (0.0, 5.0, 300.0, 1800.0)


def _signed(secret: str, payload: bytes, msg_id: str = "evt_1", at: datetime | None = None) -> dict[str, str]:
    stamp = int((at or datetime.now(UTC)).timestamp())
    return signing.headers(signing.secret_keys(secret), msg_id, stamp, payload)


def test_standardwebhooks_accepts_what_fulfil_signs() -> None:
    payload = json.dumps(body("order.delivered", NOW, {"ref": "R1", "sku": "s", "qty": 1})).encode()
    headers = _signed(SECRET, payload)
    assert headers["webhook-signature"].startswith("v1,")
    verified = Webhook(SECRET).verify(payload, headers)
    assert verified["type"] == "order.delivered" and verified["data"]["ref"] == "R1"


def test_a_changed_body_id_or_secret_is_refused_by_the_receiver() -> None:
    payload = b'{"type":"order.accepted","timestamp":"2026-12-02T12:00:00Z","data":{}}'
    headers = _signed(SECRET, payload)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(payload.replace(b"accepted", b"delivered"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(payload, {**headers, "webhook-id": "evt_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(payload, headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    payload = b'{"type":"order.accepted","timestamp":"2026-12-02T12:00:00Z","data":{}}'
    headers = _signed(f"{SECRET} {OLD_SECRET}", payload)
    assert len(headers["webhook-signature"].split()) == 2
    Webhook(SECRET).verify(payload, headers)
    Webhook(OLD_SECRET).verify(payload, headers)


def test_an_old_timestamp_is_refused_so_each_try_is_signed_anew() -> None:
    payload = b"{}"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(payload, _signed(SECRET, payload, at=datetime.now(UTC) - timedelta(minutes=10)))


def test_2xx_delivers_and_other_answers_retry_on_the_schedule() -> None:
    rng = random.Random(1)
    assert decide(SendResult(204), 0, SCHEDULE, rng).state == "delivered"
    for status in (500, 400, 301, None):
        d = decide(SendResult(status), 0, SCHEDULE, rng)
        assert d.state == "pending" and 4.0 <= d.delay <= 6.0 and d.counts and not d.disable, status
    assert 240 <= decide(SendResult(500), 1, SCHEDULE, rng).delay <= 360
    assert decide(SendResult(500), 3, SCHEDULE, rng).state == "dead"  # the fourth try was the last


def test_410_disables_without_using_up_the_schedule() -> None:
    d = decide(SendResult(410), 2, SCHEDULE, random.Random(1))
    assert (d.state, d.disable, d.counts) == ("pending", True, False)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_slow_down_statuses_pause_the_endpoint_for_retry_after(status: int) -> None:
    d = decide(SendResult(status, retry_after=120.0), 0, SCHEDULE, random.Random(1))
    assert d.state == "pending" and d.pause == 120.0 and d.delay >= 120.0
    bare = decide(SendResult(status), 0, SCHEDULE, random.Random(1))
    assert bare.pause == 5.0  # no Retry-After: the schedule's next delay


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("30", NOW) == 30.0
    assert parse_retry_after("Wed, 02 Dec 2026 12:01:00 GMT", NOW) == 60.0
    assert parse_retry_after("9999999", NOW) == 86400.0
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None


def test_jitter_spreads_within_twenty_percent() -> None:
    rng = random.Random(7)
    draws = [jittered(100.0, rng) for _ in range(200)]
    assert min(draws) >= 80 and max(draws) <= 120 and len(set(draws)) > 100
    assert jittered(0.0, rng) == 0.0


def test_contacts_and_urls_are_masked() -> None:
    assert mask_contact("buyer@example.com") == "b***@example.com"
    assert mask_contact("13812345678") == "138****5678"
    assert mask_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET") == (
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?…"
    )


def test_order_data_has_no_keys_unless_the_audience_may_see_them() -> None:
    facts = OrderFacts("R1", "steam-100", 1, contact="buyer@example.com")
    cards = [CardText("", "KEY1", None)]
    data = {"status": "delivered", "reason": None}
    plain = event_data("order.delivered", data, facts, cards, Audience())
    assert "cards" not in plain and plain["contact"] == "b***@example.com"
    assert set(plain) >= {"ref", "sku", "qty", "status", "reason", "contact"}
    full = event_data("order.delivered", data, facts, cards, Audience(include_keys=True, include_contact=True))
    assert full["cards"] == [{"number": None, "password": "KEY1", "expires": None}]
    assert full["contact"] == "buyer@example.com"
    none = event_data("order.accepted", {"status": "pending"}, OrderFacts("R2", "s", 2), [], Audience())
    assert none["contact"] is None


def _product(promise: float) -> ProductConfig:
    return ProductConfig(promise=promise, offers=(OfferConfig(supplier="x"),))


def test_delay_threshold_is_the_percentile_between_floor_and_ceiling() -> None:
    config = DelayConfig(min_samples=4)
    products = {"fast": _product(120.0), "cold": _product(60.0), "slow": _product(100.0), "off": _product(10.0)}
    durations = {"fast": [1.0, 2.0, 3.0, 4.0], "slow": [500.0] * 10}
    config = config.model_copy(update={"products": {"off": DelayProductConfig(enabled=False)}})
    limits = delay.thresholds(durations, products, config)
    assert limits == {"fast": 30.0, "cold": 60.0, "slow": 100.0}  # floor 0.25 x promise; cold start: ceiling
    assert delay.percentile([1, 2, 3, 4], 75) == 3
    opened = NOW - timedelta(seconds=45)
    late = delay.delayed([(1, "fast", opened), (2, "cold", opened), (3, "off", opened)], limits, NOW)
    assert list(late) == [1] and late[1]["waited_seconds"] == 45.0
