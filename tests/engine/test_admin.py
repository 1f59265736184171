"""The admin HTTP server over real loopback HTTP: authentication, intake, lookup, metrics, supplier callbacks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from fulfil.admin import MAX_BODY, AdminServer
from fulfil.app import build_engine, build_suppliers
from fulfil.config import Config, config_from_data
from fulfil.crypto import CardCipher
from fulfil.domain import OrderStatus
from fulfil.storage import Store
from suppliers.fulu_codec import sign
from suppliers.sim.server import running_sim
from suppliers.taxonomy import Card

TOKEN = "s3cret-admin-token"
SECRET = "0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config_for(base_url: str = "http://127.0.0.1:9/api/getway", **fulu: Any) -> Config:
    return config_from_data(
        {
            "retry": {"budget": "30s"},
            "ambiguity": {"query_interval": "30s"},
            "suppliers": [
                {"name": "shelf", "type": "stock"},
                {"name": "fulu-main", "type": "fulu", "base_url": base_url, "app_key": "app", "secret": SECRET, **fulu},
            ],
            "products": {
                "steam": {
                    "kind": "card",
                    "max_qty": 3,
                    "card_pattern": "^[A-Z0-9]{16}$",
                    "offers": [{"supplier": "shelf"}, {"supplier": "fulu-main", "product_id": "10001"}],
                },
                "qq": {"kind": "direct", "offers": [{"supplier": "fulu-main", "product_id": "10003"}]},
            },
        },
        environ={},
    )


@pytest.fixture
async def admin(store: Store, cipher: CardCipher) -> AsyncIterator[tuple[AdminServer, httpx.AsyncClient]]:
    config = config_for()
    suppliers = build_suppliers(config, store)
    server = AdminServer(
        store, build_engine(config, store, cipher, suppliers), lambda: config, environ={"FULFIL_ADMIN_TOKEN": TOKEN}
    )
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield server, client
    finally:
        await server.stop()
        for supplier in suppliers.values():
            await supplier.aclose()


async def test_everything_but_health_and_callbacks_needs_the_token(
    admin: tuple[AdminServer, httpx.AsyncClient],
) -> None:
    _, client = admin
    assert (await client.get("/healthz")).status_code == 200
    for method, path in (("GET", "/metrics"), ("POST", "/orders"), ("GET", "/orders/x")):
        assert (await client.request(method, path)).status_code == 401
        wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    assert (await client.get("/metrics", headers=AUTH)).status_code == 200


async def test_without_a_configured_token_the_admin_api_is_closed(store: Store, cipher: CardCipher) -> None:
    config = config_for()
    server = AdminServer(store, build_engine(config, store, cipher, {}), lambda: config, environ={})
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/metrics", headers={"Authorization": "Bearer x"})).status_code == 401
    finally:
        await server.stop()


async def test_intake_over_http(admin: tuple[AdminServer, httpx.AsyncClient], store: Store) -> None:
    _, client = admin
    good = {"ref": "web-1", "sku": "steam", "qty": 2, "amount": "200.00"}
    assert (await client.post("/orders", json=good, headers=AUTH)).status_code == 201
    again = await client.post("/orders", json=good, headers=AUTH)
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    reused = await client.post("/orders", json={**good, "qty": 3}, headers=AUTH)
    assert reused.status_code == 409 and "web-1" in reused.json()["error"]
    refused = {
        "unknown sku": {"ref": "w2", "sku": "nope", "qty": 1},
        "max_qty": {"ref": "w3", "sku": "steam", "qty": 9},
        "account": {"ref": "w4", "sku": "qq", "qty": 1},
    }
    for why, body in refused.items():
        answer = await client.post("/orders", json=body, headers=AUTH)
        assert answer.status_code == 422, why
    bad = await client.post("/orders", content=b"{not json", headers=AUTH)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    missing = await client.post("/orders", json={"sku": "steam", "qty": 1}, headers=AUTH)
    assert missing.status_code == 400 and "ref" in missing.json()["error"]
    assert {k: v for k, v in (await store.count_by_status()).items() if v} == {"pending": 1}


async def test_buyer_fields_over_http_are_kept_hashed_for_risk(
    admin: tuple[AdminServer, httpx.AsyncClient], store: Store, cipher: CardCipher
) -> None:
    _, client = admin
    body = {"ref": "web-b", "sku": "steam", "qty": 1, "contact": "B@example.com", "ip": "2001:DB8::1", "user": 42,
            "device": "dev-9"}  # fmt: skip
    assert (await client.post("/orders", json=body, headers=AUTH)).status_code == 201
    view = await store.get_order("web-b")
    assert view is not None
    assert dict(view.order.identities) == {
        "contact": cipher.identity_hash("contact", "b@example.com"),
        "ip": cipher.identity_hash("ip", "2001:db8::1"),  # the canonical form: one address, one buyer
        "user": cipher.identity_hash("user", "42"),
        "device": cipher.identity_hash("device", "dev-9"),
    }
    shown = (await client.get("/orders/web-b", headers=AUTH)).text
    assert "2001:db8" not in shown.lower() and "dev-9" not in shown and "B@example.com" not in shown


async def test_lookup_masks_keys_unless_asked(
    admin: tuple[AdminServer, httpx.AsyncClient], store: Store, cipher: CardCipher
) -> None:
    _, client = admin
    key = "ABCDEFGH12345678"
    await store.import_stock("steam", [Card(password=key)], datetime.now(UTC))
    assert (
        await client.post("/orders", json={"ref": "web-9", "sku": "steam", "qty": 1}, headers=AUTH)
    ).status_code == 201
    order = (await store.claim_orders("t", 1, 60, datetime.now(UTC)))[0]
    attempt = await store.open_attempt(order.id, "t", "shelf", 0, 1, None, datetime.now(UTC))
    await store.deliver_from_stock(order.id, "t", attempt.id, "steam", 1, datetime.now(UTC))
    shown = await client.get("/orders/web-9", headers=AUTH)
    assert shown.status_code == 200 and shown.json()["status"] == "delivered"
    assert key not in shown.text
    revealed = await client.get("/orders/web-9", params={"reveal": "1"}, headers=AUTH)
    assert revealed.json()["cards"][0]["password"] == key
    assert (await client.get("/orders/nope", headers=AUTH)).status_code == 404
    metrics = (await client.get("/metrics", headers=AUTH)).text
    # The scrape reads what is waiting, not every order: nothing waits, the one key is gone, a delivery happened.
    assert 'fulfil_queue_depth{queue="pending"} 0.0' in metrics
    assert 'fulfil_stock_available{sku="steam"}' not in metrics
    assert "fulfil_last_delivery_age_seconds -1.0" not in metrics and "fulfil_last_delivery_age_seconds " in metrics


async def test_callbacks_are_checked_by_signature(admin: tuple[AdminServer, httpx.AsyncClient]) -> None:
    _, client = admin
    body: dict[str, Any] = {"order_id": "1", "customer_order_no": "F123", "order_status": "success"}
    forged = await client.post("/callbacks/fulu-main", json={**body, "sign": "0" * 32})
    assert forged.status_code == 400
    signed = await client.post("/callbacks/fulu-main", json={**body, "sign": sign(body, SECRET)})
    assert signed.status_code == 200 and signed.text == "success"
    assert (await client.post("/callbacks/nobody", json=body)).status_code == 404
    assert (await client.post("/callbacks/shelf", json=body)).status_code == 404


async def test_a_supplier_callback_completes_the_order_before_the_next_poll(store: Store, cipher: CardCipher) -> None:
    port = free_port()
    scenario = {
        "protocol": "fulu",
        "app_key": "app",
        "secret": SECRET,
        "processing_time": "1s",
        "callback_url": f"http://127.0.0.1:{port}/callbacks/fulu-main",
        "products": {"10001": {"name": "Steam", "kind": "card", "price": "95.00", "card_pattern": "[A-Z0-9]{16}"}},
    }
    async with running_sim(scenario) as sim:
        config = config_for(sim.gateway_url, poll_interval="30s")  # polling alone would take 30 s
        suppliers = build_suppliers(config, store)
        engine = build_engine(config, store, cipher, suppliers)
        server = AdminServer(store, engine, lambda: config, environ={})
        await server.start(f"127.0.0.1:{port}")
        try:
            from fulfil.domain import NewOrder

            await store.add_order(NewOrder("cb-1", "steam", 1), datetime.now(UTC))
            order = (await store.claim_orders("w", 1, 60, datetime.now(UTC)))[0]

            class Lease:
                owner = "w"

            started = time.monotonic()
            await asyncio.wait_for(engine.process(order, Lease()), timeout=15)
            took = time.monotonic() - started
        finally:
            await server.stop()
            for supplier in suppliers.values():
                await supplier.aclose()
    view = await store.get_order("cb-1")
    assert view is not None and view.order.status is OrderStatus.DELIVERED
    assert took < 10, f"the callback should have woken the order (took {took:.1f}s)"
    assert any(entry["op"] == "callback" for entry in sim.requests.since(0))


# --- bad input at the HTTP edge ---------------------------------------------------------------------------


async def test_order_amount_may_be_a_json_number(admin: tuple[AdminServer, httpx.AsyncClient], store: Store) -> None:
    _, client = admin
    for ref, amount in (("n-int", 10), ("n-float", 10.5), ("n-tenth", 0.1), ("n-text", "9.90")):
        body = {"ref": ref, "sku": "steam", "qty": 1, "amount": amount}
        answer = await client.post("/orders", json=body, headers=AUTH)
        assert answer.status_code == 201, (ref, answer.text)
    amounts = {}
    for ref in ("n-int", "n-float", "n-tenth", "n-text"):
        view = await store.get_order(ref)
        assert view is not None
        amounts[ref] = view.order.amount
    assert amounts == {
        "n-int": Decimal("10"),
        "n-float": Decimal("10.5"),
        "n-tenth": Decimal("0.1"),
        "n-text": Decimal("9.90"),
    }


@pytest.mark.parametrize(
    ("body", "field", "said"),
    [
        (b'{"ref":"a1","sku":"steam","qty":1,"amount":true}', "amount", "amount must be a number"),
        (b'{"ref":"a2","sku":"steam","qty":1,"amount":NaN}', "amount", "amount 'nan' is not a number"),
        (b'{"ref":"a3","sku":"steam","qty":1,"amount":Infinity}', "amount", "amount 'inf' is not a number"),
        (b'{"ref":"a4","sku":"steam","qty":1,"amount":-1}', None, "amount -1 is not a non-negative number"),
        (b'{"ref":"a5","sku":"steam","qty":1,"amount":1e300}', None, "amount 1E+300 is too large"),
        (b'{"ref":"a6","sku":"steam","qty":true}', "qty", "qty must be a whole number"),
        (b'{"ref":"' + b"r" * 129 + b'","sku":"steam","qty":1}', None, "ref is longer than 128 characters"),
        (b'{"ref":"a7","sku":"' + b"s" * 129 + b'","qty":1}', None, "sku is longer than 128 characters"),
        (b'{"ref":"a8","sku":"qq","qty":1,"account":"' + b"1" * 257 + b'"}', None, "account is longer than 256"),
        (b'{"ref":"a9","sku":"steam","qty":1,"ip":"10.0.0.300"}', None, "ip '10.0.0.300' is not an IPv4 or IPv6"),
        (b'{"ref":"b1","sku":"steam","qty":1,"device":{"id":1}}', "device", "device must be text"),
        (b'{"ref":"b2","sku":"steam","qty":1,"user":"' + b"u" * 257 + b'"}', None, "user is longer than 256"),
    ],
    ids=["bool", "nan", "infinity", "negative", "huge", "bool-qty", "long-ref", "long-sku", "long-account", "bad-ip",
         "device-object", "long-user"],  # fmt: skip
)
async def test_bad_order_values_are_422_naming_the_field(
    admin: tuple[AdminServer, httpx.AsyncClient], store: Store, body: bytes, field: str | None, said: str
) -> None:
    _, client = admin
    answer = await client.post("/orders", content=body, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert said in answer.json()["error"]
    assert answer.json().get("field") == field
    assert len(answer.json()["error"]) < 200  # a 10,000-character value is not echoed back
    assert sum((await store.count_by_status()).values()) == 0


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"ref":' + b"1" * 5000 + b"}", b'{"ref":"\\ud800","sku":"steam","qty":1}'],
    ids=["deep", "long-integer", "lone-surrogate"],
)
async def test_unreadable_json_is_400_not_500(admin: tuple[AdminServer, httpx.AsyncClient], body: bytes) -> None:
    _, client = admin
    answer = await client.post("/orders", content=body[: 60 * 1024], headers=AUTH)
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
    callback = await client.post("/callbacks/fulu-main", content=body[: 60 * 1024])
    assert callback.status_code == 400


async def test_bodies_over_the_cap_are_413(admin: tuple[AdminServer, httpx.AsyncClient]) -> None:
    _, client = admin
    huge = b'{"pad":"' + b"x" * MAX_BODY + b'"}'
    assert (await client.post("/callbacks/fulu-main", content=huge)).status_code == 413
    assert (await client.post("/orders", content=huge, headers=AUTH)).status_code == 413


async def test_an_order_taken_over_http_is_claimed_at_once_not_at_the_next_poll(
    store: Store, cipher: CardCipher
) -> None:
    from fulfil.app import daemon

    base = config_for()
    config = base.model_copy(
        update={
            "daemon": base.daemon.model_copy(update={"poll_interval": 60.0}),
            "http": base.http.model_copy(update={"listen": "127.0.0.1:0"}),
        }
    )
    key = "WAKE0000WAKE0000"
    await store.import_stock("steam", [Card(password=key)], datetime.now(UTC))
    async with daemon(config, store, cipher, serve_http=True) as running:
        assert running.admin is not None
        running.admin.token = TOKEN
        worker = asyncio.create_task(running.worker.run())
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.admin.port}") as client:
                # The first poll happens at start; wait until the worker sleeps on its 60 s poll interval.
                await asyncio.sleep(0.3)
                started = time.monotonic()
                body = {"ref": "wake-1", "sku": "steam", "qty": 1}
                answer = await client.post("/orders", json=body, headers=AUTH)
                assert answer.status_code == 201
                while (
                    view := await store.get_order("wake-1")
                ) is not None and view.order.status is not OrderStatus.DELIVERED:
                    assert time.monotonic() - started < 10, f"not delivered: {view.order.status}"
                    await asyncio.sleep(0.02)
                waited = time.monotonic() - started
        finally:
            running.worker.stop()
            await worker
    assert view is not None and [c.password for c in view.cards] == [key]
    assert waited < 5, f"took {waited:.2f}s: the intake did not wake the worker (poll interval 60s)"
