"""One HTTP client per supplier, and what a transport failure means for money.

The line that matters: a failure *before* the request left us (connection refused, DNS, connect timeout,
no free connection in the pool) is TRANSIENT, the supplier cannot have acted on it; anything after the first
byte may have gone out (read/write timeout, reset, the server hanging up, a 5xx) is AMBIGUOUS, the purchase
may exist and must be queried before anything else.

Two transports sit behind the same `httpx.AsyncClient`: httpx's own (httpcore) and aiohttp's, through
httpx-aiohttp's `AiohttpTransport`. httpx-aiohttp translates aiohttp errors coarsely: every
`aiohttp.ClientConnectionError` becomes `httpx.ConnectTimeout`, `ServerDisconnectedError` and a reset while
reading included, though both happen *after* sending. So for that transport we classify by the original
aiohttp exception (kept as `__cause__`), never by the translated httpx class.

Testing note: respx's default mocker patches httpcore, which the aiohttp transport never calls, so an unmocked
request would reach the network. Use `respx.mock(using="httpx")`, which patches `AsyncClient` itself and
intercepts whichever transport the client was built with.
"""

from __future__ import annotations

import codecs
import email.message
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Final, Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from fulfil.durations import parse_duration
from suppliers.taxonomy import ErrorClass, SupplierError

TransportName = Literal["httpx", "aiohttp"]
TRANSPORTS: Final = ("httpx", "aiohttp")
USER_AGENT: Final = "fulfil/0.1"
# The most of an answer we read: far above any real answer (a few KiB), far below what hurts the daemon.
MAX_RESPONSE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """The part of a supplier's settings that shapes its HTTP client."""

    timeout: float = 10.0
    connect_timeout: float = 3.0
    max_concurrency: int = 20
    proxy: str | None = None
    transport: TransportName = "aiohttp"
    max_response_bytes: int = MAX_RESPONSE_BYTES

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | object) -> HttpSettings:
        """From `SupplierConfig.model_dump()` (or the model itself); absent keys take the defaults."""
        if not isinstance(settings, Mapping):
            dump = getattr(settings, "model_dump", None)
            settings = dump() if callable(dump) else vars(settings)
        assert isinstance(settings, Mapping)
        defaults = cls()
        transport = settings.get("transport") or defaults.transport
        if transport not in TRANSPORTS:
            raise SupplierError(f"transport: expected one of {', '.join(TRANSPORTS)}, got {transport!r}")
        concurrency = _positive_int(settings, "max_concurrency", defaults.max_concurrency)
        return cls(
            timeout=_seconds(settings.get("timeout"), defaults.timeout, "timeout"),
            connect_timeout=_seconds(settings.get("connect_timeout"), defaults.connect_timeout, "connect_timeout"),
            max_concurrency=concurrency,
            proxy=settings.get("proxy") or None,
            transport=transport,
            max_response_bytes=_positive_int(settings, "max_response_bytes", defaults.max_response_bytes),
        )

    def timeout_for(self, cap: float | None = None) -> httpx.Timeout:
        """Per-call timeouts, each phase capped at `cap` seconds (what is left of the engine's budget)."""
        total = self.timeout if cap is None else max(0.001, min(self.timeout, cap))
        return httpx.Timeout(total, connect=min(self.connect_timeout, total))


def _positive_int(settings: Mapping[str, Any], field: str, default: int) -> int:
    value = settings.get(field) or default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SupplierError(f"{field}: expected a positive integer, got {value!r}")
    return value


def _seconds(value: object, default: float, field: str) -> float:
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)  # already parsed by the config (model_dump gives seconds)
    else:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise SupplierError(f"{field}: {exc}") from exc
    if seconds <= 0:
        raise SupplierError(f"{field}: must be positive, got {value!r}")
    return seconds


class _CookielessAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport, its aiohttp session built without a cookie jar.

    aiohttp keeps every cookie a server sets and sends it back; a supplier API call must carry none (an
    acg-faka shop's `acg_lang` cookie would translate the messages the adapter reads).
    """

    def get_client(self) -> aiohttp.ClientSession:
        if self.client is not None:
            return super().get_client()
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 100,  # aiohttp's own default when none is set
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _no_cookies() -> CookieJar:
    """A cookie jar that accepts none: supplier calls are stateless, and a kept cookie could change them.

    Given to httpx as the jar itself (httpx would copy an `httpx.Cookies` into a jar with the default policy).
    """
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def make_client(settings: Mapping[str, Any] | object) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with this supplier's limits, timeouts, proxy and transport.

    `trust_env=False`: a stray HTTP(S)_PROXY in the daemon's environment must not reroute purchases; the
    proxy is the one in the supplier's configuration or none. No cookie is kept, by httpx or by aiohttp.
    """
    http = settings if isinstance(settings, HttpSettings) else HttpSettings.from_settings(settings)
    # A caller waiting for a free connection waits at most `timeout` (pool), then fails as not sent.
    limits = httpx.Limits(max_connections=http.max_concurrency, max_keepalive_connections=http.max_concurrency)
    common: dict[str, Any] = {
        "timeout": http.timeout_for(),
        "headers": {"User-Agent": USER_AGENT},
        "cookies": _no_cookies(),
        "trust_env": False,
        "follow_redirects": False,
    }
    if http.transport == "aiohttp":
        proxy = httpx.Proxy(http.proxy) if http.proxy else None
        transport = _CookielessAiohttpTransport(limits=limits, proxy=proxy, trust_env=False)
        client = httpx.AsyncClient(transport=transport, **common)
    else:
        client = httpx.AsyncClient(limits=limits, proxy=http.proxy, **common)
    # Set past httpx's `cookies` setter, which would copy it into a plain `Cookies`.
    client._cookies = _Cookieless(common["cookies"])  # noqa: SLF001
    return client


class _Cookieless(httpx.Cookies):
    """The client's cookies: its jar refuses every cookie, and httpx is not asked to offer it any.

    httpx offers each answer's cookies to the jar by building urllib request and response stand-ins for it, on
    every response: about a tenth of a supplier call's CPU (benchmarks/PROFILE.md), for a jar that keeps none.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


# --- reading an answer, at most so much of it -----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A supplier's HTTP answer, read to at most the cap. `over_cap` is that cap when there was more than it
    (`body` is then the start, or nothing when the declared length was already over)."""

    status_code: int
    body: bytes
    encoding: str
    over_cap: int | None = None

    @property
    def over_cap_note(self) -> str:
        return f"answer over the {self.over_cap}-byte cap, not read past it"

    @property
    def text(self) -> str:
        """The body as text, undecodable bytes replaced (as `httpx.Response.text`)."""
        return self.body.decode(self.encoding, errors="replace")


def parsed_url(url: str) -> httpx.URL | str:
    """The URL parsed once, for every call to it (httpx parses a string URL on each request); left a string
    when it does not parse, so the call fails as a call does (`classify_exception`), not the set-up."""
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return url


async def post(client: httpx.AsyncClient, url: httpx.URL | str, *, max_bytes: int, **kwargs: Any) -> Answer:
    """POST and read the answer streaming, stopping at `max_bytes` (of the decoded body).

    A declared Content-Length over the cap is not read at all. Raises what `client.send` and reading
    raise (judged by `classify_exception`): a failure while reading the body is after sending.
    """
    request = client.build_request("POST", url, **kwargs)
    response = await client.send(request, stream=True)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return Answer(response.status_code, b"", _encoding(response), over_cap=max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                return Answer(response.status_code, b"".join(chunks)[:max_bytes], _encoding(response), max_bytes)
        return Answer(response.status_code, b"".join(chunks), _encoding(response))
    finally:
        await response.aclose()


def _encoding(response: httpx.Response) -> str:
    return _charset_of(response.headers.get("Content-Type"))


@functools.lru_cache(maxsize=64)
def _charset_of(content_type: str | None) -> str:
    """The answer's text encoding from its Content-Type, utf-8 when it names none we know. Cached: a supplier
    sends the same header on every answer, and parsing it was ~5 % of a call's CPU."""
    if content_type is None:
        return "utf-8"
    message = email.message.Message()
    message["content-type"] = content_type
    charset = message.get_content_charset()
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            return "utf-8"
        return charset
    return "utf-8"


# --- what a failure means -----------------------------------------------------------------------------

# Checked in order, first match wins: more specific classes first.
_AIOHTTP_CLASSES: Final[tuple[tuple[type[BaseException], ErrorClass], ...]] = (
    # Raised while connecting (refused, DNS, TLS handshake, proxy CONNECT refused): nothing was sent.
    (aiohttp.ClientConnectorError, ErrorClass.TRANSIENT),
    (aiohttp.ClientHttpProxyError, ErrorClass.TRANSIENT),
    (aiohttp.ServerFingerprintMismatch, ErrorClass.TRANSIENT),
    # sock_connect, or waiting for a pooled connection (`connect` timeout): nothing was sent.
    (aiohttp.ConnectionTimeoutError, ErrorClass.TRANSIENT),
    # A bad base_url: never sent, and retrying cannot help; this supplier's settings are unusable.
    (aiohttp.InvalidURL, ErrorClass.SUPPLIER_ACCOUNT),
    (aiohttp.NonHttpUrlClientError, ErrorClass.SUPPLIER_ACCOUNT),
    # Everything else (SocketTimeoutError on read, ServerDisconnectedError, ClientOSError/reset, payload
    # errors) happened with the request possibly out.
    (aiohttp.ClientError, ErrorClass.AMBIGUOUS),
)

_HTTPX_CLASSES: Final[tuple[tuple[type[BaseException], ErrorClass], ...]] = (
    (httpx.ConnectError, ErrorClass.TRANSIENT),  # refused, DNS, TLS handshake
    (httpx.ConnectTimeout, ErrorClass.TRANSIENT),
    (httpx.PoolTimeout, ErrorClass.TRANSIENT),  # no connection became free: never sent
    (httpx.ProxyError, ErrorClass.TRANSIENT),  # the proxy refused to open the tunnel
    (httpx.UnsupportedProtocol, ErrorClass.SUPPLIER_ACCOUNT),
    (httpx.InvalidURL, ErrorClass.SUPPLIER_ACCOUNT),
    # Write errors/timeouts count as ambiguous: the whole body may already sit in the kernel's send buffer
    # or have reached the server when the failure surfaces. ReadTimeout, ReadError, RemoteProtocolError and
    # the rest are after sending.
)


def _aiohttp_cause(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, aiohttp.ClientError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def classify_exception(exc: BaseException) -> ErrorClass:
    """What a failed HTTP call means: TRANSIENT only when the request certainly never left; else AMBIGUOUS."""
    original = _aiohttp_cause(exc)
    if original is not None:
        return next(cls for kind, cls in _AIOHTTP_CLASSES if isinstance(original, kind))
    for kind, cls in _HTTPX_CLASSES:
        if isinstance(exc, kind):
            return cls
    return ErrorClass.AMBIGUOUS


def classify_status(status: int) -> ErrorClass | None:
    """None for 2xx (read the body); 429 is an explicit "not accepted"; any other status may have executed."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return ErrorClass.TRANSIENT
    return ErrorClass.AMBIGUOUS


def describe_exception(exc: BaseException) -> str:
    """A short, secret-free description for evidence: the exception types and message."""
    original = _aiohttp_cause(exc)
    name = f"{type(exc).__module__.split('.')[0]}.{type(exc).__name__}"
    if original is not None and original is not exc:
        name += f" (aiohttp.{type(original).__name__})"
    message = str(exc) or str(original or "")
    return f"{name}: {message}"[:500] if message else name
