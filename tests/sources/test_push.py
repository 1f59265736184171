"""dujiaoka's goods `api_hook` pushed to the daemon: only from allowed addresses or with the secret, de-duplicated
by order number, and only a wake-up for the poller (nothing is taken from the push itself)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from fulfil.admin import AdminServer
from fulfil.app import build_sources
from fulfil.config import Config
from fulfil.storage import Store
from tests.sources.conftest import dujiaoka_entry, shop_config

SECRET = "push-secret-0123456789"
# What dujiaoka's ApiHook job posts (unsigned): the buyer's e-mail among it, which fulfil never logs.
HOOK = {"title": "Steam 100", "order_sn": "ABCD1234EFGH5678", "email": "buyer@example.com", "actual_price": "95.00",
        "order_info": "充值账号:user-1", "good_id": 12, "gd_name": "Steam 100"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config(push: dict[str, Any] | None) -> Config:
    entry = dujiaoka_entry("mysql+asyncmy://root@127.0.0.1:9/unused")
    if push is not None:
        entry["push"] = push
    return shop_config("sqlite:///x.db", [entry, {**dujiaoka_entry("mysql://u@h/d"), "name": "quiet"}])


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[AdminServer] = []

    async def start(cfg: Config) -> tuple[httpx.AsyncClient, list[str]]:
        runner = build_sources(cfg, cast(Store, None))  # no round runs: the store is never used
        assert runner is not None
        woken: list[str] = []
        runner.wake = woken.append  # type: ignore[method-assign,assignment]
        server = AdminServer(cast(Any, None), cast(Any, None), lambda: cfg, environ={}, sources=runner)
        port = free_port()
        await server.start(f"127.0.0.1:{port}")
        servers.append(server)
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}"), woken

    yield start
    for server in servers:
        await server.stop()


async def test_a_push_from_an_allowed_address_wakes_the_poller_once(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, woken = await serve(config({"allow": ["127.0.0.0/8"]}))
    async with client:
        first = await client.post("/sources/shop/push", json=HOOK)
        again = await client.post("/sources/shop/push", json=HOOK)  # dujiaoka retries after its 30 s timeout
        other = await client.post("/sources/shop/push", json={**HOOK, "order_sn": "OTHER"})
    assert (first.status_code, first.json()) == (200, {"result": "accepted"})
    assert (again.status_code, again.json()) == (200, {"result": "duplicate"})
    assert other.json() == {"result": "accepted"}
    assert woken == ["shop", "shop"]
    assert "buyer@example.com" not in caplog.text


async def test_a_push_needs_the_address_or_the_secret(serve: Any) -> None:
    client, woken = await serve(config({"allow": ["10.9.8.0/24"], "secret": SECRET}))
    async with client:
        refused = await client.post("/sources/shop/push", json=HOOK)
        wrong = await client.post("/sources/shop/push", params={"secret": "x" * 22}, json=HOOK)
        right = await client.post("/sources/shop/push", params={"secret": SECRET}, json=HOOK)
    assert (refused.status_code, wrong.status_code, right.status_code) == (403, 403, 200)
    assert woken == ["shop"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/sources/nope/push", HOOK, 404),
        ("/sources/quiet/push", HOOK, 404),  # a source without `push:` takes none
        ("/sources/shop/push", {"title": "x"}, 400),
        ("/sources/shop/push", {"order_sn": ""}, 400),
        ("/sources/shop/push", {"order_sn": "x" * 151}, 400),
        ("/sources/shop/push", [1, 2], 400),
    ],
)
async def test_bad_pushes(serve: Any, path: str, body: Any, status: int) -> None:
    client, woken = await serve(config({"allow": ["127.0.0.1"]}))
    async with client:
        response = await client.post(path, json=body)
        garbage = await client.post("/sources/shop/push", content=b"{not json")
    assert response.status_code == status and "error" in response.json()
    assert garbage.status_code == 400
    assert woken == []


async def test_pushes_are_forgotten_after_a_while(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fulfil import admin

    monkeypatch.setattr(admin, "PUSH_DEDUP_SECONDS", 0.05)
    client, woken = await serve(config({"allow": ["127.0.0.1"]}))
    async with client:
        await client.post("/sources/shop/push", json=HOOK)
        await asyncio.sleep(0.1)
        await client.post("/sources/shop/push", json=HOOK)
    assert woken == ["shop", "shop"]
