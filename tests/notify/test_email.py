"""Buyer e-mail through a real SMTP server on loopback (aiosmtpd): plain-text and HTML parts from the
templates; keys only when the operator opted in; nothing sent (skipped) for an order without an address."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from fulfil.config import Config
from fulfil.domain import NewOrder
from fulfil.notify import Dispatcher, build_routes
from fulfil.storage import Store
from suppliers.taxonomy import Card
from tests.smtpkit import Inbox


def _config(port: int, **email_changes: Any) -> Config:
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "from": "shop@example.com",
        "events": ["order.delivered", "order.delayed"],
        "retry_schedule": [0, 0.1],
        **email_changes,
    }
    return Config.model_validate({"notify": {"email": settings}})


async def _run(
    store: Store, config: Config, orders: list[tuple[str, str | None, list[str]]], expect: int, inbox: Inbox
) -> None:
    store.notify_routes = build_routes(config.notify)
    dispatcher = Dispatcher(store, lambda: config, owner="t", poll_interval=0.05, config_dir=None)
    stopping = asyncio.Event()
    task = asyncio.create_task(dispatcher.serve(stopping))
    now = datetime.now(UTC)
    for ref, contact, keys in orders:
        added = await store.add_order(NewOrder(ref, "steam-100", len(keys), contact=contact), now)
        await store.claim_orders("w", 10, 60, now)
        attempt = await store.open_attempt(added.order_id, "w", "fulu", 0, len(keys), None, now, sent=True)
        await store.deliver(added.order_id, "w", attempt.id, [Card(password=k) for k in keys], now)
    deadline = time.monotonic() + 10
    while len(inbox.received) < expect or await _open_rows(store):
        assert time.monotonic() < deadline, (inbox.received, await store.outbox_rows())
        await asyncio.sleep(0.05)
    stopping.set()
    await task


async def _open_rows(store: Store) -> list[Any]:
    return [r for r in await store.outbox_rows() if r.state in ("pending", "sending")]


def _subject(message: Message) -> str:
    from email.header import decode_header, make_header

    return str(make_header(decode_header(str(message["Subject"]))))


def _parts(message: Message) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() in ("text/plain", "text/html")
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_delivered_email_carries_no_key_without_opt_in(store: Store, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    await _run(
        store, _config(port), [("M1", "buyer@example.com", ["KEYM1AAAABBBBCCCC"]), ("M2", None, ["KEYM2X"])], 1, inbox
    )
    ((to, message),) = inbox.received
    assert to == ["buyer@example.com"] and message["Subject"] == "Order M1: delivered"
    parts = _parts(message)
    assert set(parts) == {"text/plain", "text/html"}
    assert "M1" in parts["text/plain"] and "<b>M1</b>" in parts["text/html"]
    assert "KEYM1" not in message.as_string()
    skipped = [r for r in await store.outbox_rows() if r.state == "skipped"]
    assert [r.last_error for r in skipped] == ["no e-mail address for this order"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_with_opt_in_the_keys_are_in_both_parts_in_the_shops_language(
    store: Store, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp
    await _run(
        store, _config(port, include_keys=True, lang="zh"), [("M3", "b@example.com", ["KEYM3<&>AAAA"])], 1, inbox
    )
    ((_, message),) = inbox.received
    parts = _parts(message)
    assert "KEYM3<&>AAAA" in parts["text/plain"] and "KEYM3&lt;&amp;&gt;AAAA" in parts["text/html"]  # escaped
    assert "已发货" in parts["text/plain"] and _subject(message).startswith("订单 M3")
