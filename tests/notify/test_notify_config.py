"""`notify:` in the config: the issue's shape loads; every mistake is named by its path, secrets never shown."""

from __future__ import annotations

import base64

import pytest

from fulfil.config import DEFAULT_RETRY_SCHEDULE, ConfigError, config_from_data

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
PRODUCTS = {"steam-100": {"offers": [{"supplier": "shelf"}]}}
SUPPLIERS = [{"name": "shelf", "type": "stock"}]


def _load(notify: dict[str, object], env: dict[str, str] | None = None) -> object:
    data = {"suppliers": SUPPLIERS, "products": PRODUCTS, "notify": notify}
    return config_from_data(data, env or {})


def test_the_issue_shape_loads_with_its_defaults() -> None:
    config = _load(
        {
            "webhooks": [
                {
                    "name": "shop",
                    "url": "https://shop.example/fulfil-hook",
                    "secret": "${SHOP_WEBHOOK_SECRET}",
                    "events": ["order.*", "aftersales.*"],
                    "include_keys": False,
                }
            ],
            "email": {
                "host": "smtp.example.com",
                "port": 587,
                "starttls": True,
                "user": "${SMTP_USER}",
                "password": "${SMTP_PASSWORD}",
                "from": "shop@example.com",
                "events": ["order.delivered", "order.delayed"],
                "include_keys": False,
            },
            "alerts": [
                {
                    "name": "oncall",
                    "type": "telegram",
                    "url": "http://127.0.0.1:9",
                    "secret": "bot-token",
                    "chat_id": "-100",
                },
                {"name": "ops", "type": "wecom", "secret": "robot-key"},
                {"name": "pager", "type": "webhook", "url": "http://localhost:8080/hook", "secret": SECRET},
            ],
        },
        {"SHOP_WEBHOOK_SECRET": SECRET, "SMTP_USER": "u", "SMTP_PASSWORD": "p"},
    )
    hook = config.notify.webhooks[0]  # type: ignore[attr-defined]
    assert (hook.timeout, hook.concurrency, hook.retry_schedule) == (15.0, 4, DEFAULT_RETRY_SCHEDULE)
    assert config.notify.email.password == "p"  # type: ignore[attr-defined]


def test_every_mistake_is_named_by_its_path_and_no_secret_is_shown() -> None:
    bad_secret = "whsec_not*base64"
    with pytest.raises(ConfigError) as caught:
        _load(
            {
                "webhooks": [
                    {"name": "shop", "url": "ftp://shop.example/x", "secret": bad_secret, "events": ["orders.*"]},
                    {
                        "name": "shop",
                        "url": "https://user:pw@shop.example/x",
                        "secret": SECRET,
                        "events": ["order.*"],
                        "retry_schedule": [],
                    },
                ],
                "email": {"host": "smtp.example.com", "from": "shop@example.com", "tls": True},
                "alerts": [{"name": "tg", "type": "telegram", "secret": "t"}, {"name": "w", "type": "pager"}],
                "delay": {"products": {"nope": {"enabled": False}}},
            }
        )
    errors = caught.value.errors
    text = "\n".join(errors)
    for expected in (
        "notify.webhooks[0].url: expected an http:// or https:// URL",
        "notify.webhooks[0].secret: secret 1 is not whsec_<base64>",
        "notify.webhooks[0].events: 'orders.*' matches no event type",
        "notify.webhooks[1].name: duplicate channel name 'shop'",
        "notify.webhooks[1].url: credentials in the URL are refused",
        "notify.webhooks[1].retry_schedule: ",
        "notify.email.tls: implicit TLS and starttls exclude each other",
        "notify.alerts[0].chat_id: required for a telegram alert channel",
        "notify.alerts[1].type: ",
        "notify.delay.products.nope: unknown product 'nope'",
    ):
        assert any(e.startswith(expected) for e in errors), (expected, errors)
    assert bad_secret not in text and "pw@" not in text


def test_a_missing_secret_variable_names_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        _load({"webhooks": [{"name": "s", "url": "http://127.0.0.1:1/", "secret": "${NOPE}", "events": ["order.*"]}]})
    assert "notify.webhooks[0].secret: environment variable NOPE is not set" in caught.value.errors
