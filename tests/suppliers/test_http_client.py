"""The per-supplier HTTP client and the transient/ambiguous line, for both transports.

Real failures come from tiny servers on loopback (refused, hung, reset, cut short, a full accept queue), since
what matters is what each transport really raises; respx covers interception of both transports.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import aiohttp
import httpx
import pytest
import respx
from aiohttp import web
from aiohttp.test_utils import TestServer
from httpx_aiohttp import AiohttpTransport
from respx.models import AllMockedAssertionError

from suppliers.http import (
    HttpSettings,
    classify_exception,
    classify_status,
    describe_exception,
    make_client,
)
from suppliers.taxonomy import ErrorClass, SupplierError

TRANSPORTS = ["httpx", "aiohttp"]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A loopback server running `handler` per connection; every handler task is finished on exit."""
    release = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
            await release.wait()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/getway"
    finally:
        release.set()
        server.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()  # read the request, answer nothing


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    writer.close()


async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    return None  # `serve` keeps the connection open without answering until teardown


async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"code":0')
    await writer.drain()
    writer.close()


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/getway"


@contextmanager
def full_accept_queue() -> Iterator[str]:
    """A listener whose accept queue is full: further SYNs are dropped, so connecting times out."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}/api/getway"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def failure(transport: str, url: str, **settings: Any) -> BaseException:
    client = make_client({"transport": transport, "timeout": 0.3, "connect_timeout": 0.3, **settings})
    try:
        response = await client.post(url, json={})
        await response.aread()
    except Exception as exc:  # the point: whatever this transport raises
        return exc
    finally:
        await client.aclose()
    raise AssertionError(f"no failure: HTTP {response.status_code}")


# --- real failures, both transports ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connection_refused_is_transient(transport: str) -> None:
    exc = await failure(transport, refused_url())
    assert classify_exception(exc) is ErrorClass.TRANSIENT


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full accept queue")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connect_timeout_is_transient(transport: str) -> None:
    with full_accept_queue() as url:
        exc = await failure(transport, url)
    assert classify_exception(exc) is ErrorClass.TRANSIENT
    assert "Timeout" in describe_exception(exc)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("behaviour", [hang_up, reset, stall, cut_short], ids=lambda b: b.__name__)
async def test_failures_after_sending_are_ambiguous(transport: str, behaviour: Handler) -> None:
    async with serve(behaviour) as url:
        exc = await failure(transport, url)
    assert classify_exception(exc) is ErrorClass.AMBIGUOUS


async def test_aiohttp_disconnect_arrives_disguised_as_connect_timeout() -> None:
    # httpx-aiohttp maps every aiohttp.ClientConnectionError to httpx.ConnectTimeout; the cause decides.
    async with serve(hang_up) as url:
        exc = await failure("aiohttp", url)
    assert isinstance(exc, httpx.ConnectTimeout)
    assert isinstance(exc.__cause__, aiohttp.ServerDisconnectedError)
    assert classify_exception(exc) is ErrorClass.AMBIGUOUS
    assert "ServerDisconnectedError" in describe_exception(exc)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_waiting_for_a_free_connection_is_transient(transport: str) -> None:
    client = make_client({"transport": transport, "timeout": 0.4, "connect_timeout": 0.3, "max_concurrency": 1})
    try:
        async with serve(stall) as url:
            first, second = await asyncio.gather(
                client.post(url, json={}), client.post(url, json={}), return_exceptions=True
            )
    finally:
        await client.aclose()
    assert isinstance(first, Exception) and isinstance(second, Exception)
    # one request went out and stalled (ambiguous); the other never got a connection (transient)
    assert sorted([classify_exception(first), classify_exception(second)]) == sorted(
        [ErrorClass.AMBIGUOUS, ErrorClass.TRANSIENT]
    )


# --- classification, pure -------------------------------------------------------------------------------


def _request() -> httpx.Request:
    return httpx.Request("POST", "http://upstream.test/")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), ErrorClass.TRANSIENT),
        (httpx.ConnectTimeout("slow connect"), ErrorClass.TRANSIENT),
        (httpx.PoolTimeout("no connection"), ErrorClass.TRANSIENT),
        (httpx.ProxyError("tunnel refused"), ErrorClass.TRANSIENT),
        (httpx.UnsupportedProtocol("ftp"), ErrorClass.SUPPLIER_ACCOUNT),
        (httpx.ReadTimeout("slow answer"), ErrorClass.AMBIGUOUS),
        (httpx.WriteTimeout("slow send"), ErrorClass.AMBIGUOUS),
        (httpx.WriteError("broken pipe"), ErrorClass.AMBIGUOUS),
        (httpx.ReadError("reset"), ErrorClass.AMBIGUOUS),
        (httpx.RemoteProtocolError("disconnected"), ErrorClass.AMBIGUOUS),
        (httpx.LocalProtocolError("bad header"), ErrorClass.AMBIGUOUS),
        (httpx.DecodingError("gzip"), ErrorClass.AMBIGUOUS),
        (TimeoutError(), ErrorClass.AMBIGUOUS),
        (OSError("anything else"), ErrorClass.AMBIGUOUS),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_httpx_exceptions(exc: BaseException, expected: ErrorClass) -> None:
    assert classify_exception(exc) is expected


def _translated(original: BaseException, as_: type[httpx.HTTPError]) -> httpx.HTTPError:
    try:
        raise as_("translated") from original
    except httpx.HTTPError as exc:
        return exc


class _Key:
    """Just enough of aiohttp's ConnectionKey for its connector errors' messages."""

    host, port, ssl = "upstream.test", 80, False


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (aiohttp.ClientConnectorError(_Key(), ConnectionRefusedError(111, "refused")), ErrorClass.TRANSIENT),  # type: ignore[arg-type]
        (aiohttp.ClientConnectorDNSError(_Key(), OSError(-2, "no such host")), ErrorClass.TRANSIENT),  # type: ignore[arg-type]
        (aiohttp.ConnectionTimeoutError("connect"), ErrorClass.TRANSIENT),
        (aiohttp.SocketTimeoutError("read"), ErrorClass.AMBIGUOUS),
        (aiohttp.ServerTimeoutError("read"), ErrorClass.AMBIGUOUS),
        (aiohttp.ServerDisconnectedError(), ErrorClass.AMBIGUOUS),
        (aiohttp.ClientOSError(104, "reset"), ErrorClass.AMBIGUOUS),
        (aiohttp.ClientPayloadError("cut"), ErrorClass.AMBIGUOUS),
        (aiohttp.InvalidURL("nope"), ErrorClass.SUPPLIER_ACCOUNT),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_aiohttp_causes_decide_whatever_httpx_class_wraps_them(original: BaseException, expected: ErrorClass) -> None:
    assert classify_exception(original) is expected
    for wrapper in (httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ReadError, httpx.ConnectError):
        assert classify_exception(_translated(original, wrapper)) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, None), (204, None), (429, ErrorClass.TRANSIENT), (404, ErrorClass.AMBIGUOUS)]
    + [(s, ErrorClass.AMBIGUOUS) for s in (500, 502, 503, 504)],
)
def test_status_classes(status: int, expected: ErrorClass | None) -> None:
    assert classify_status(status) is expected


# --- the client -----------------------------------------------------------------------------------------


async def test_aiohttp_client_carries_the_supplier_limits() -> None:
    client = make_client({"transport": "aiohttp", "max_concurrency": 7, "timeout": 9.0, "connect_timeout": 2.0})
    try:
        transport = client._transport
        assert isinstance(transport, AiohttpTransport)
        assert transport.limits.max_connections == 7
        assert transport.proxy is None
        assert (client.timeout.connect, client.timeout.read, client.timeout.pool) == (2.0, 9.0, 9.0)
    finally:
        await client.aclose()


async def test_httpx_client_carries_the_supplier_limits() -> None:
    client = make_client({"transport": "httpx", "max_concurrency": 7, "timeout": 9.0, "connect_timeout": 2.0})
    try:
        transport = client._transport
        assert isinstance(transport, httpx.AsyncHTTPTransport)
        assert transport._pool._max_connections == 7
        assert (client.timeout.connect, client.timeout.read, client.timeout.write) == (2.0, 9.0, 9.0)
    finally:
        await client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_configured_proxy_is_used(transport: str) -> None:
    client = make_client({"transport": transport, "proxy": "http://proxy.internal:3128"})
    try:
        if transport == "aiohttp":
            assert isinstance(client._transport, AiohttpTransport)
            assert client._transport.proxy is not None
            assert str(client._transport.proxy.url) == "http://proxy.internal:3128"
        else:
            mounted = [t for t in client._mounts.values() if t is not None]
            assert mounted and isinstance(mounted[0], httpx.AsyncHTTPTransport)
            assert type(mounted[0]._pool).__name__ == "AsyncHTTPProxy"
    finally:
        await client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_environment_proxy_is_ignored(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://stray.proxy:8080")
    monkeypatch.setenv("HTTPS_PROXY", "http://stray.proxy:8080")
    client = make_client({"transport": transport})
    try:
        assert client._mounts == {}
        if isinstance(client._transport, AiohttpTransport):
            assert client._transport.proxy is None
    finally:
        await client.aclose()


def test_settings_from_a_config_dump_and_defaults() -> None:
    assert HttpSettings.from_settings({}) == HttpSettings()
    parsed = HttpSettings.from_settings(
        {"timeout": "2500ms", "connect_timeout": 1.5, "max_concurrency": 3, "transport": "httpx", "proxy": ""}
    )
    assert parsed == HttpSettings(timeout=2.5, connect_timeout=1.5, max_concurrency=3, transport="httpx")


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"transport": "curl"}, "transport"),
        ({"timeout": "ten"}, "timeout"),
        ({"connect_timeout": -1.0}, "connect_timeout"),
        ({"max_concurrency": "many"}, "max_concurrency"),
    ],
)
def test_bad_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(SupplierError, match=field):
        HttpSettings.from_settings(settings)


def test_per_call_timeout_is_capped() -> None:
    http = HttpSettings(timeout=10.0, connect_timeout=3.0)
    assert http.timeout_for(None) == httpx.Timeout(10.0, connect=3.0)
    assert http.timeout_for(2.0) == httpx.Timeout(2.0, connect=2.0)
    assert http.timeout_for(60.0) == httpx.Timeout(10.0, connect=3.0)


# --- respx and the two transports -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_respx_using_httpx_intercepts_either_transport(transport: str) -> None:
    client = make_client({"transport": transport})
    try:
        with respx.mock(using="httpx") as router:
            route = router.post("http://upstream.test/api/getway").respond(200, json={"code": 0})
            response = await client.post("http://upstream.test/api/getway", json={})
            with pytest.raises(AllMockedAssertionError):
                await client.post("http://other.test/", json={})  # unmocked requests are refused
    finally:
        await client.aclose()
    assert route.call_count == 1
    assert response.json() == {"code": 0}


async def test_respx_default_mocker_misses_the_aiohttp_transport() -> None:
    # Why every test here says using="httpx": respx's default patches httpcore, which aiohttp never calls,
    # so the request goes out for real (here: to a refused loopback port) and the route is never hit.
    url = refused_url()
    client = make_client({"transport": "aiohttp", "timeout": 0.5, "connect_timeout": 0.5})
    try:
        with respx.mock(assert_all_called=False) as router:
            route = router.post(url).respond(200, json={"code": 0})
            with pytest.raises(httpx.HTTPError) as caught:
                await client.post(url, json={})
    finally:
        await client.aclose()
    assert not route.called
    assert classify_exception(caught.value) is ErrorClass.TRANSIENT


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_cookie_is_kept_between_calls(transport: str) -> None:
    """A supplier call carries no cookie: aiohttp's session and httpx's client would both keep and resend one
    (an acg-faka shop's `acg_lang` cookie would translate the messages the adapter reads)."""
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"code": 0, "msg": "库存不足"})
        response.set_cookie("acg_lang", "en")
        return response

    app = web.Application()
    app.router.add_post("/shared/commodity/trade", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        client = make_client({"transport": transport})
        # A host name, not the address: aiohttp's jar ignores cookies from IP addresses.
        url = f"http://localhost:{server.port}/shared/commodity/trade"
        try:
            for _ in range(2):
                answer = await client.post(url, data={"a": "1"})
                assert answer.headers.get("set-cookie", "").startswith("acg_lang=en")
        finally:
            await client.aclose()

    assert seen == [None, None]
