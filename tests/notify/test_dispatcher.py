"""The dispatcher against real loopback receivers (aiohttp) and a real database (SQLite, PostgreSQL).

Every request is verified with the `standardwebhooks` package, as a storefront would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from notifykit import SECRET, Receiver, serve_receiver
from standardwebhooks import Webhook

from fulfil.config import Config, config_from_data
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder, OrderStatus
from fulfil.notify import Dispatcher, build_routes
from fulfil.storage import Store
from suppliers.taxonomy import Card


def _config(hooks: list[dict[str, Any]], **notify: Any) -> Config:
    return Config.model_validate({"notify": {"webhooks": hooks, **notify}})


def _hook(url: str, name: str = "shop", **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "secret": SECRET,
        "events": ["order.*"],
        "retry_schedule": [0, 0.1, 0.1, 0.1],
        "timeout": 2,
        **changes,
    }


@contextlib.asynccontextmanager
async def _dispatching(store: Store, config: Config) -> AsyncIterator[Dispatcher]:
    store.notify_routes = build_routes(config.notify)
    dispatcher = Dispatcher(store, lambda: config, owner="t1", poll_interval=0.05, grace=1.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(dispatcher.serve(stopping))
    try:
        yield dispatcher
    finally:
        stopping.set()
        await task


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _now() -> datetime:
    return datetime.now(UTC)


async def _deliver(store: Store, ref: str, keys: list[str], contact: str | None = "buyer@example.com") -> None:
    added = await store.add_order(NewOrder(ref, "steam-100", len(keys), amount=Decimal("9.5"), contact=contact), _now())
    await store.claim_orders("w1", 100, 60, _now())
    attempt = await store.open_attempt(added.order_id, "w1", "fulu", 0, len(keys), None, _now(), sent=True)
    await store.deliver(added.order_id, "w1", attempt.id, [Card(password=k) for k in keys], _now())


def _verified(receiver: Receiver) -> list[dict[str, Any]]:
    return [
        {"id": r["headers"]["webhook-id"], **Webhook(SECRET).verify(r["body"], r["headers"])} for r in receiver.requests
    ]


async def test_events_arrive_signed_and_a_failed_try_is_repeated_with_the_same_id_and_body(
    store: Store, receiver: Receiver
) -> None:
    failures = {"left": 2}

    def answer(request: web.Request, body: bytes) -> web.Response | None:
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=500)
        return None

    receiver.answer = answer
    async with _dispatching(store, _config([_hook(receiver.url)])):
        await _deliver(store, "R1", ["KEY-R1-AAAA"])
        await _until(lambda: len(receiver.requests) >= 4)
    events = _verified(receiver)
    by_id: dict[str, set[bytes]] = {}
    for request in receiver.requests:
        by_id.setdefault(request["headers"]["webhook-id"], set()).add(request["body"])
    assert all(len(bodies) == 1 for bodies in by_id.values())  # a retry is the same bytes
    assert {e["type"] for e in events} == {"order.accepted", "order.delivered"}
    delivered = next(e for e in events if e["type"] == "order.delivered")
    assert delivered["data"] == {
        "ref": "R1",
        "sku": "steam-100",
        "qty": 1,
        "status": "delivered",
        "reason": None,
        "contact": "b***@example.com",
        "amount": "9.5",
    }
    assert b"KEY-R1" not in b"".join(receiver.bodies())
    rows = await store.outbox_rows()
    assert {r.state for r in rows} == {"delivered"} and sum(r.attempts for r in rows) == 4


async def test_keys_and_contact_only_for_an_endpoint_configured_to_see_them(store: Store, receiver: Receiver) -> None:
    hooks = [
        _hook(receiver.url + "/open", "open", include_keys=True, include_contact=True),
        _hook(receiver.url + "/plain", "plain"),
    ]
    async with _dispatching(store, _config(hooks)):
        await _deliver(store, "R2", ["KEY-R2-AAAA", "KEY-R2-BBBB"])
        await _until(lambda: len(receiver.requests) >= 4)
    for request in receiver.requests:
        data = Webhook(SECRET).verify(request["body"], request["headers"])["data"]
        if request["path"] == "/open":
            assert data["contact"] == "buyer@example.com"
            if data["status"] == "delivered":
                assert [c["password"] for c in data["cards"]] == ["KEY-R2-AAAA", "KEY-R2-BBBB"]
            else:
                assert "cards" not in data
        else:
            assert "cards" not in data and data["contact"] == "b***@example.com"


async def test_410_disables_the_endpoint_alerts_the_operator_and_keeps_its_events(
    store: Store, receiver: Receiver
) -> None:
    async with serve_receiver() as robot:
        robot.answer = lambda request, body: web.json_response({"errcode": 0, "errmsg": "ok"})
        receiver.answer = lambda request, body: web.Response(status=410)
        alerts = [{"name": "ops", "type": "wecom", "url": robot.url + "/cgi-bin/webhook/send", "secret": "ROBOTKEY"}]
        config = _config([_hook(receiver.url)], alerts=alerts)
        async with _dispatching(store, config):
            await store.add_order(NewOrder("R3", "steam-100", 1), _now())
            await _until(lambda: len(robot.requests) >= 1)
            await asyncio.sleep(0.3)
        assert len(receiver.requests) == 1  # disabled after the 410: not tried again
        message = json.loads(robot.requests[0]["body"])
        assert message["msgtype"] == "text" and "system.webhook_disabled shop" in message["text"]["content"]
        assert robot.requests[0]["path"].endswith("?key=ROBOTKEY")
        assert "shop" in await store.disabled_endpoints()
        (row,) = await store.outbox_rows(channel="webhook:shop")
        assert (row.state, row.attempts) == ("pending", 0)
        # Re-enabled by the operator: the waiting event goes out.
        receiver.answer = None
        assert await store.enable_endpoint("shop", _now())
        async with _dispatching(store, config):
            await _until(lambda: len(receiver.requests) >= 2)
        (row,) = await store.outbox_rows(channel="webhook:shop")
        assert row.state == "delivered"


async def test_429_with_retry_after_slows_the_endpoint_down(store: Store, receiver: Receiver) -> None:
    receiver.answer = lambda request, body: (
        web.Response(status=429, headers={"Retry-After": "1"}) if len(receiver.requests) == 1 else None
    )
    async with _dispatching(store, _config([_hook(receiver.url)])):
        await store.add_orders([NewOrder("R4", "steam-100", 1), NewOrder("R5", "steam-100", 1)], _now())
        started = time.monotonic()
        await _until(lambda: len(receiver.requests) >= 3)
    assert time.monotonic() - started >= 0.9


async def test_redirects_are_not_followed_and_timeouts_retry(store: Store, receiver: Receiver) -> None:
    async def answer(request: web.Request, body: bytes) -> web.StreamResponse | None:
        if request.path == "/moved":
            raise web.HTTPFound("/elsewhere")
        if request.path == "/slow" and len(receiver.requests) < 3:
            await asyncio.sleep(1.5)
        return None

    receiver.answer = answer
    hooks = [_hook(receiver.url + "/moved", "moved"), _hook(receiver.url + "/slow", "slow", timeout="500ms")]
    async with _dispatching(store, _config(hooks)):
        await store.add_order(NewOrder("R6", "steam-100", 1), _now())
        await _until(lambda: sum(1 for r in receiver.requests if r["path"] == "/moved") >= 4, timeout=15)
        await asyncio.sleep(1.0)
    paths = [r["path"] for r in receiver.requests]
    assert "/elsewhere" not in paths
    moved = await store.outbox_rows(channel="webhook:moved")
    assert moved[0].state == "dead" and moved[0].last_status == 302
    slow = await store.outbox_rows(channel="webhook:slow")
    assert slow[0].state == "delivered" and slow[0].attempts >= 2


async def test_a_hanging_endpoint_holds_only_its_own_slots(store: Store, receiver: Receiver) -> None:
    async def answer(request: web.Request, body: bytes) -> None:
        if request.path == "/hang":
            await asyncio.sleep(5)

    receiver.answer = answer
    hooks = [_hook(receiver.url + "/hang", "hang", timeout="3s", concurrency=1), _hook(receiver.url + "/ok", "ok")]
    async with _dispatching(store, _config(hooks)):
        await store.add_orders([NewOrder(f"S{i}", "steam-100", 1) for i in range(20)], _now())
        started = time.monotonic()
        await _until(lambda: sum(1 for r in receiver.requests if r["path"] == "/ok") >= 20, timeout=2.5)
        took = time.monotonic() - started
    assert took < 2.5
    assert sum(1 for r in receiver.requests if r["path"] == "/hang") == 1  # one slot, still hanging


async def test_telegram_and_the_review_queue_alert(store: Store, receiver: Receiver) -> None:
    receiver.answer = lambda request, body: web.json_response({"ok": True})
    alerts = [{"name": "tg", "type": "telegram", "url": receiver.url, "secret": "123:TOKEN", "chat_id": "-1001"}]
    config = Config.model_validate(
        {"notify": {"alerts": alerts, "alert_rules": {"review_age": "1ms", "interval": "50ms", "quiet": "1h"}}}
    )
    added = await store.add_order(NewOrder("R7", "steam-100", 1), _now())
    await store.claim_orders("w1", 10, 60, _now())
    await store.finish_order(added.order_id, "w1", OrderStatus.REVIEW, "our_bug: x", _now())
    async with _dispatching(store, config):
        await _until(lambda: len(receiver.requests) >= 1)
        await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1  # quiet period: once
    request = receiver.requests[0]
    assert request["path"] == "/bot123:TOKEN/sendMessage"
    sent = json.loads(request["body"])
    assert sent["chat_id"] == "-1001" and "system.review_backlog review" in sent["text"] and "orders=1" in sent["text"]


async def test_a_row_whose_lease_ran_short_while_it_waited_goes_back_untried(store: Store, receiver: Receiver) -> None:
    from fulfil.notify.channels import Message
    from fulfil.notify.dispatcher import _ChannelState

    config = _config([_hook(receiver.url)])
    store.notify_routes = build_routes(config.notify)
    await store.add_order(NewOrder("L1", "steam-100", 1), _now())
    dispatcher = Dispatcher(store, lambda: config, owner="t1", poll_interval=0.05)
    dispatcher._refresh_channels()
    state: _ChannelState = dispatcher._channels["webhook:shop"]
    (row,) = await store.claim_outbox("webhook:shop", "t1", 10, 60)
    await dispatcher._deliver(state, Message(row), start_by=time.monotonic())  # no time left for a send
    await dispatcher._flush()
    assert receiver.requests == []
    (back,) = await store.outbox_rows()
    assert (back.state, back.attempts, back.event_id) == ("pending", 0, row.event_id)
    await state.channel.aclose()


async def test_a_reload_that_adds_the_first_channel_starts_sending(
    store: Store, cipher: CardCipher, receiver: Receiver
) -> None:
    """A daemon started with no `notify:` section, then reloaded (SIGHUP) with a webhook: the new endpoint
    gets the events of orders delivered after the reload, signed."""
    from fulfil.app import daemon

    data: dict[str, Any] = {
        "daemon": {"poll_interval": "50ms"},
        "suppliers": [{"name": "shelf", "type": "stock"}],
        "products": {"steam-100": {"kind": "card", "offers": [{"supplier": "shelf"}]}},
    }
    bare = config_from_data(data, environ={})
    hook = _hook(receiver.url, retry_schedule=["0s", "100ms"], timeout="2s")
    hooked = config_from_data({**data, "notify": {"webhooks": [hook]}}, environ={})
    await store.import_stock("steam-100", [Card(password="RELOAD-KEY-1"), Card(password="RELOAD-KEY-2")], _now())
    async with daemon(bare, store, cipher, serve_http=False) as running:
        assert running.notify is not None, "no dispatcher: a later SIGHUP could never add a channel"
        worker = asyncio.create_task(running.worker.run())
        try:
            await store.add_order(NewOrder("before-1", "steam-100", 1), _now())
            for _ in range(200):
                view = await store.get_order("before-1")
                if view is not None and view.order.status is OrderStatus.DELIVERED:
                    break
                await asyncio.sleep(0.02)
            running.worker.reload(hooked)
            await store.add_order(NewOrder("after-1", "steam-100", 1), _now())
            delivered = ("after-1", "order.delivered")
            await _until(lambda: any((e["data"].get("ref"), e["type"]) == delivered for e in _verified(receiver)))
        finally:
            running.worker.stop()
            await worker
    refs = {e["data"].get("ref") for e in _verified(receiver)}
    assert "before-1" not in refs, "an order delivered with no channel configured wrote an event anyway"
