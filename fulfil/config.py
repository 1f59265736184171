"""The YAML configuration, validated once into frozen typed objects.

`load_config` either returns a `Config` or raises `ConfigError` listing *every* problem with the path of
the bad field (`products.steam-100.offers[1].supplier: unknown supplier 'x'`), so an operator fixes a file
in one round instead of one error per restart.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fulfil.durations import parse_duration

DEFAULT_PATH = Path("config/fulfil.yaml")
# Column sizes (fulfil/storage/schema.py) of names the config gives: longer ones could never be stored.
MAX_SKU_LENGTH = 128
MAX_NAME_LENGTH = 128  # supplier names, offers' product ids
BUILTIN_SUPPLIER_TYPES = ("stock", "fulu", "acg_faka")
BUILTIN_SOURCE_TYPES = ("dujiaoka", "acg_faka_shop")
MAX_SOURCE_NAME_LENGTH = 64
# Schemes a built-in shop source takes: both shops run on MySQL or MariaDB (driver: asyncmy).
SHOP_URL_SCHEMES = ("mysql", "mysql+asyncmy", "mariadb", "mariadb+asyncmy")

_FROM_FILE = "from_file"


# The shortest duration a file may give where zero would make a loop spin (poll, query, retry, cool-down).
MIN_DURATION = 0.001


def _from_file(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(_FROM_FILE))


def _duration(value: object, info: ValidationInfo) -> float:
    return parse_duration(value, bare_numbers=not _from_file(info))


def _not_zero(seconds: float, info: ValidationInfo) -> float:
    # Files only: code (tests, the demo) builds configs with 0 to make waits immediate.
    if _from_file(info) and seconds < MIN_DURATION:
        raise ValueError(f"must be at least 1ms, got {seconds:g}s (zero would make the daemon spin)")
    return seconds


# Every duration is a Duration (at least 1ms in a file) unless it says otherwise: an interval, lease, budget,
# backoff, cool-down, window or timeout of zero turns a wait into a busy loop or an immediate expiry.
Duration = Annotated[float, BeforeValidator(_duration), AfterValidator(_not_zero)]
# Zero is a real choice here (e.g. shutdown_timeout 0: release in-flight leases at once); nothing loops on it.
DurationOrZero = Annotated[float, BeforeValidator(_duration)]


class ConfigError(Exception):
    """The configuration is invalid."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseConfig(_Frozen):
    # Four slashes: the absolute /var/lib/fulfil (the systemd unit's StateDirectory). A relative SQLite path
    # in a file is taken relative to that file's folder (`load_config`), never the working directory.
    url: str = "sqlite:////var/lib/fulfil/fulfil.db"


class SecurityConfig(_Frozen):
    # The card key itself never lives in the YAML: a file path here, or FULFIL_CARD_KEY in the environment.
    card_key_file: str | None = None


class DaemonConfig(_Frozen):
    poll_interval: Duration = 0.5
    batch_size: int = Field(100, ge=1, le=10_000)
    concurrency: int = Field(64, ge=1, le=10_000)
    lease: Duration = 60.0
    shutdown_timeout: DurationOrZero = 40.0


class HttpConfig(_Frozen):
    listen: str = "127.0.0.1:8089"
    enabled: bool = True
    # Bearer token for the admin endpoints comes from this environment variable, never the YAML.
    token_env: str = "FULFIL_ADMIN_TOKEN"


class ConsoleConfig(_Frozen):
    # How long a console login lasts; an operator logs in again after it.
    session_ttl: Duration = 12 * 3600.0
    # Failed logins allowed per client address (and per account name) in `login_window` before refusing.
    login_attempts: int = Field(5, ge=1, le=1000)
    login_window: Duration = 300.0


class FiguresConfig(_Frozen):
    # Fewer orders than this in the window: `enough_data: false` instead of a misleading number.
    min_orders: int = Field(20, ge=1)


class RetryConfig(_Frozen):
    budget: Duration = 30.0
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 5.0


class AmbiguityConfig(_Frozen):
    query_interval: Duration = 2.0
    give_up_after: Duration = 7200.0
    policy: Literal["wait", "failover"] = "wait"
    # Keys that turn up on an attempt we already failed over from: back to stock, or held on the claim.
    late_keys: Literal["stock", "claim"] = "stock"


class CooldownConfig(_Frozen):
    product_unavailable: Duration = 300.0
    stock_empty: Duration = 30.0  # an offer whose stock check said empty is skipped this long
    stock_check: Duration = 30.0  # a stock check's answer is reused this long per (supplier, product)
    # An offer whose answers are not keys (a shop's text, empty, the wrong pattern) this many times in a row is
    # cooled down for `non_keys`, with an alert: a manual-delivery item must not be bought for a whole burst.
    non_keys_streak: int = Field(2, ge=1)
    non_keys: Duration = 300.0


class RoutingConfig(_Frozen):
    strategy: Literal["priority", "score", "cost"] = "priority"
    min_score: float = Field(20.0, ge=0, le=100)
    probe_share: float = Field(0.02, ge=0, le=1)
    # An order whose offers left are blocked by an open breaker, or failed transient (never executed), waits
    # and tries them again for this long from intake (or a person's retry or release), then review; 0: at once.
    blocked_wait: DurationOrZero = 900.0


class BreakerConfig(_Frozen):
    consecutive_failures: int = Field(5, ge=1)
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_volume: int = Field(20, ge=1)
    window: Duration = 60.0
    base_ejection: Duration = 30.0
    max_ejection: Duration = 300.0
    probes: int = Field(3, ge=1)


class ScoringConfig(_Frozen):
    prior_weight: float = Field(10.0, ge=0)
    prior: float = Field(0.9, ge=0, le=1)
    weight_call_success: float = Field(0.35, ge=0)
    weight_key_validity: float = Field(0.35, ge=0)
    weight_latency: float = Field(0.2, ge=0)
    weight_claims: float = Field(0.1, ge=0)
    weight_fulfilment: float = Field(0.25, ge=0)  # attempts that delivered, of those that ended
    interval: Duration = 60.0
    window: Duration = 86400.0  # the rolling window the score is computed over
    balance_interval: Duration = 120.0  # how often a supplier's balance is polled, at most


class RetentionConfig(_Frozen):
    """How long the event log keeps what the engine no longer reads. None keeps it for ever.

    Only events are ever pruned: receipts, claims, attempts and deliveries are the books and stay. An event
    of an order that is not delivered or failed, or that still has an open attempt, is kept whatever its age
    (the engine counts an open order's `order.crashed` and `review.retry` events, the resolver an open
    attempt's `order.reopened`)."""

    events: Duration | None = 90 * 86400.0
    interval: Duration = 3600.0  # how often the worker prunes
    batch_size: int = Field(1000, ge=1, le=100_000)  # rows deleted per transaction (short write locks)
    max_batches: int = Field(100, ge=1)  # per prune, so one tick never runs for long; the next goes on


# --- notifications (fulfil/notify) -----------------------------------------------------------------------

# Event types fulfil publishes (`events:` of an endpoint matches them, `*` as a wildcard: "order.*").
EVENT_TYPES = (
    "order.accepted",
    "order.delivered",
    "order.delayed",
    "order.failed",
    "order.review",
    "order.held",
    "aftersales.opened",
    "aftersales.escalated",
    "aftersales.resolved",
    "supplier.alert",
    "system.alert",
)
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
MAX_CHANNEL_NAME = 64


def _http_url(value: str) -> str:
    """An http(s) URL with a host and no credentials in it (they would be printed with it); loopback is fine."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got scheme {parts.scheme or '(none)'!r}")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are refused (use `secret:` from the environment)")
    return value


def _event_patterns(value: tuple[str, ...]) -> tuple[str, ...]:
    import fnmatch

    for pattern in value:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in EVENT_TYPES):
            raise ValueError(f"{pattern!r} matches no event type (known: {', '.join(EVENT_TYPES)})")
    return value


def _schedule(value: tuple[float, ...]) -> tuple[float, ...]:
    if not value:
        raise ValueError("at least one delay (the first try's, usually 0s)")
    return value


def _whsec(value: str) -> str:
    """whsec_<base64>, several space-separated during a rotation; the value is never repeated in an error."""
    import base64
    import binascii

    for i, part in enumerate(value.split()):
        body = part.removeprefix("whsec_")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"secret {i + 1} is not whsec_<base64> (value not shown)") from None
        if len(raw) < 16:
            raise ValueError(f"secret {i + 1} is shorter than 16 bytes once decoded (value not shown)")
    if not value.split():
        raise ValueError("empty")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
WebhookSecret = Annotated[str, AfterValidator(_whsec)]
Schedule = Annotated[tuple[DurationOrZero, ...], AfterValidator(_schedule), Field(max_length=50)]
EventPatterns = Annotated[tuple[str, ...], AfterValidator(_event_patterns)]
ChannelName = Annotated[str, Field(min_length=1, max_length=MAX_CHANNEL_NAME, pattern=r"^[A-Za-z0-9_.-]+$")]


class WebhookConfig(_Frozen):
    """One Standard Webhooks endpoint. `secret`: whsec_<base64> (or several, space-separated, in rotation)."""

    name: ChannelName
    url: HttpUrl
    secret: WebhookSecret
    events: EventPatterns = Field(min_length=1)
    # Card keys in `order.delivered` events: off unless the operator says so (README: "include_keys").
    include_keys: bool = False
    # The buyer's contact in full; masked (b***@example.com) otherwise.
    include_contact: bool = False
    timeout: Duration = 15.0
    concurrency: int = Field(4, ge=1, le=256)
    retry_schedule: Schedule = DEFAULT_RETRY_SCHEDULE
    enabled: bool = True


class EmailConfig(_Frozen):
    """The buyer's e-mail through SMTP: templates per event type in `templates` (beside the config file)."""

    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465); not with starttls
    user: str | None = None
    password: str | None = None
    from_: str = Field(alias="from", min_length=3)
    events: EventPatterns = ("order.delivered", "order.delayed")
    include_keys: bool = False
    lang: str = Field("en", pattern=r"^[a-z]{2}(-[A-Za-z]{2})?$")
    templates: str | None = None  # a folder of <lang>/<event type>.{subject,txt,html}; packaged ones otherwise
    timeout: Duration = 30.0
    concurrency: int = Field(2, ge=1, le=64)
    retry_schedule: Schedule = DEFAULT_RETRY_SCHEDULE
    enabled: bool = True

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class AlertChannelConfig(_Frozen):
    """An operator channel: a signed webhook, a WeCom group robot or a Telegram bot."""

    name: ChannelName
    type: Literal["webhook", "wecom", "telegram"]
    url: HttpUrl | None = None  # webhook: the endpoint; wecom/telegram: the API base (tests: loopback)
    secret: str | None = None  # webhook: whsec_…; wecom: the robot's key; telegram: the bot token
    chat_id: str | None = None  # telegram
    events: EventPatterns = ("supplier.alert", "system.alert")
    timeout: Duration = 15.0
    concurrency: int = Field(2, ge=1, le=64)
    retry_schedule: Schedule = DEFAULT_RETRY_SCHEDULE
    enabled: bool = True


class DelayProductConfig(_Frozen):
    enabled: bool = True
    floor: Duration | None = None  # default: notify.delay.floor x the product's promise
    ceiling: Duration | None = None  # default: notify.delay.ceiling x the product's promise


class DelayConfig(_Frozen):
    """`order.delayed`: an order processing longer than its product's recent typical time (the `percentile`
    of payment-to-delivery over `window`), bounded by fractions of the product's `promise`."""

    window: Duration = 86400.0
    percentile: float = Field(75.0, gt=0, le=100)
    min_samples: int = Field(10, ge=1)  # fewer: the ceiling (a cold start waits for the promise)
    floor: float = Field(0.25, ge=0, le=100)  # x promise
    ceiling: float = Field(1.0, ge=0, le=100)  # x promise
    interval: Duration = 10.0  # how often open orders are looked at
    products: dict[str, DelayProductConfig] = Field(default_factory=dict)


class AlertRulesConfig(_Frozen):
    quiet: Duration = 900.0  # the same alert (kind, subject) is sent once per quiet period
    review_age: Duration | None = 3600.0  # an order waiting in review longer than this
    invalid_keys: int = Field(5, ge=1)  # invalid-key claims of one supplier within `invalid_window`
    invalid_window: Duration = 3600.0
    interval: Duration = 60.0  # how often review age and invalid keys are looked at


class NotifyConfig(_Frozen):
    webhooks: tuple[WebhookConfig, ...] = ()
    email: EmailConfig | None = None
    alerts: tuple[AlertChannelConfig, ...] = ()
    delay: DelayConfig = DelayConfig()
    alert_rules: AlertRulesConfig = AlertRulesConfig()
    retention: Duration | None = 30 * 86400.0  # delivered, dead and skipped outbox rows are pruned after this
    lease: Duration = 120.0  # a row being sent is another daemon's again after timeout + this


# --- after-sales (fulfil/aftersales) ---------------------------------------------------------------------

PROBLEMS = ("key_invalid", "not_received", "topup_not_arrived", "other")
Problem = Literal["key_invalid", "not_received", "topup_not_arrived", "other"]


class AftersalesL1Config(_Frozen):
    """L1: automatic decisions, on by default. Below `min_credit` (0-100) a buyer's report goes to a person."""

    enabled: bool = True
    min_credit: int = Field(60, ge=0, le=100)
    # A top-up the supplier says failed after the report: buy it again, or tell the shop to refund.
    topup_failed: Literal["reissue", "refund"] = "reissue"
    reject_penalty: int = Field(20, ge=0, le=100)  # credit taken from a buyer whose report was rejected as abusive


class LevelConfig(_Frozen):
    time_limit: Duration
    problems: dict[Problem, Duration] = Field(default_factory=dict)  # a per-problem limit instead

    def limit_for(self, problem: str) -> float:
        limit: float = self.problems.get(problem, self.time_limit)  # type: ignore[call-overload]
        return limit


class LevelsConfig(_Frozen):
    L2: LevelConfig = LevelConfig(time_limit=7200.0)  # noqa: N815 - the levels' names, as the issue spells them
    L3: LevelConfig = LevelConfig(time_limit=86400.0)  # noqa: N815


class AftersalesProductConfig(_Frozen):
    window: Duration | None = None  # the product's after-sales window (default: aftersales.window)


class HotspotConfig(_Frozen):
    """After-sales rate (reports per delivered order) over `window` against `baseline` before it: a jump
    (at least `min_cases` reports, a rate of at least `min_rate`, and `factor` times the baseline's rate)
    raises an alert and pauses the offer (`pause: offer`), every offer of the product (`product`) or nothing."""

    enabled: bool = True
    window: Duration = 86400.0
    baseline: Duration = 7 * 86400.0
    min_cases: int = Field(3, ge=1)
    min_rate: float = Field(0.05, ge=0, le=1)
    factor: float = Field(3.0, ge=1)
    pause: Literal["offer", "product", "none"] = "offer"
    pause_for: Duration = 86400.0
    interval: Duration = 300.0  # how often the rates are computed (two aggregate reads over window + baseline)


class RateLimitConfig(_Frozen):
    """Wrong proofs per caller address and per order ref within `per`; one more is refused (429)."""

    tries: int = Field(10, ge=1)
    per: Duration = 60.0
    # A storefront proxying the endpoints: from these addresses the caller is the last X-Forwarded-For entry,
    # so one buyer's wrong guesses do not lock out the whole shop.
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: '{address}'") from None
        return value


class AftersalesConfig(_Frozen):
    l1: AftersalesL1Config = AftersalesL1Config()
    window: Duration = 7 * 86400.0
    products: dict[str, AftersalesProductConfig] = Field(default_factory=dict)
    levels: LevelsConfig = LevelsConfig()
    hotspots: HotspotConfig = HotspotConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    interval: Duration = 30.0  # how often time limits and hotspots are looked at

    def window_for(self, sku: str) -> float:
        product = self.products.get(sku)
        return product.window if product is not None and product.window is not None else self.window


class SupplierConfig(_Frozen):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    enabled: bool = True
    base_url: str | None = None
    app_key: str | None = None
    app_id: str | None = None
    secret: str | None = None
    timeout: Duration = 10.0
    connect_timeout: Duration = 3.0
    max_concurrency: int = Field(20, ge=1, le=10_000)
    proxy: str | None = None
    transport: Literal["httpx", "aiohttp"] = "aiohttp"
    # The most of one answer read (bytes); a larger one is not read and counts as ambiguous.
    max_response_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    balance_floor: Decimal | None = None
    poll_interval: Duration = 1.0  # how often an accepted asynchronous order is queried
    # How soon an accepted asynchronous order is first asked about: at once by default (a card supplier often
    # has the keys before its answer arrives); then every poll_interval, growing.
    first_query: DurationOrZero = 0.0
    options: dict[str, Any] = Field(default_factory=dict)  # for third-party adapters


class OfferConfig(_Frozen):
    supplier: str
    product_id: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    cost: Decimal | None = Field(None, ge=0)
    priority: int = 0


class ProductConfig(_Frozen):
    kind: Literal["card", "direct"] = "card"
    max_qty: int = Field(10, ge=1)
    card_pattern: str | None = None
    # Card numbers in their own format (e.g. 12 digits beside an 8-character password); default: card_pattern.
    number_pattern: str | None = None
    promise: Duration = 120.0
    offers: tuple[OfferConfig, ...] = Field(min_length=1)
    # Face values of one card (steam-50, steam-100 ...) share a family: risk's `denominations` rule counts
    # the distinct skus of one family a buyer tried within a window.
    family: str | None = Field(None, min_length=1, max_length=64)


def _goods_keys(value: object) -> object:
    """YAML gives `{12: sku}` as an integer key: the shop's goods id is its text either way."""
    if isinstance(value, dict):
        return {str(key) if isinstance(key, int) and not isinstance(key, bool) else key: v for key, v in value.items()}
    return value


def _goods_ids(value: object) -> object:
    if isinstance(value, list | tuple):
        return [str(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value]
    return value


class PushConfig(_Frozen):
    """Pushes from the shop (dujiaoka's goods `api_hook`): only a wake-up for the poller, never a record.

    A push is accepted from an address in `allow` (addresses or networks) or with `?secret=` equal to `secret`."""

    allow: tuple[str, ...] = ()
    secret: str | None = Field(None, min_length=16)


class SourceConfig(_Frozen):
    """A shop whose paid orders fulfil takes, fulfils and writes back (fulfil/sources)."""

    name: str = Field(min_length=1, max_length=MAX_SOURCE_NAME_LENGTH, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    enabled: bool = True
    url: str = Field(min_length=1)
    poll_interval: Duration = 2.0
    # The shop's goods id -> a fulfil sku. Orders of goods not in the map are left alone (and counted).
    goods: Annotated[dict[str, str], BeforeValidator(_goods_keys)] = Field(default_factory=dict)
    # dujiaoka: the label of the info line holding the recharge account; acg_faka_shop: the widget's name.
    account_field: str | None = Field(None, min_length=1, max_length=200)
    # dujiaoka only: also take automatic goods' orders left abnormal (status 6: the shop ran out of keys).
    rescue_abnormal: Annotated[tuple[str, ...], BeforeValidator(_goods_ids)] = ()
    # Table name prefix: dujiaoka default "" (Laravel's DB_PREFIX), acg_faka_shop default "acg_".
    table_prefix: str | None = Field(None, max_length=32, pattern=r"^[A-Za-z0-9_]*$")
    batch_size: int = Field(200, ge=1, le=5000)  # shop rows read per page, and orders taken per poll at most
    timeout: Duration = 10.0  # each statement at the shop; longer counts as the shop being unavailable
    # A write-back the shop cannot take (its database down) is retried with backoff ...
    retry_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    # ... and after failing this long goes to a person (`fulfil sources`), the keys safe in fulfil.
    give_up_after: Duration = 3600.0
    topup_text: str = Field("充值成功", min_length=1, max_length=200)  # what a delivered top-up writes back
    # acg_faka_shop: what a failed (refundable) order writes into `secret`; null leaves it as it is.
    failure_text: str | None = Field("自动发货失败，请联系客服处理退款", max_length=500)
    push: PushConfig | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # for third-party source plug-ins


# --- risk (fulfil/risk) ----------------------------------------------------------------------------------

IDENTITY_KINDS = ("account", "contact", "ip", "user", "device")
CREDIT_KINDS = ("account", "contact", "user")  # the identities that carry a credit score
IdentityKind = Literal["account", "contact", "ip", "user", "device"]
RULE_KINDS = ("velocity", "product_limit", "denominations", "first_order", "credit")
_ACTION = re.compile(r"^(hold|refuse|score\s*-\s*([1-9][0-9]{0,3}))$")


class RiskRule(_Frozen):
    """One rule of `risk.rules`; which fields it needs depends on its kind (checked below)."""

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["velocity", "product_limit", "denominations", "first_order", "credit"]
    per: IdentityKind | None = None
    window: Duration | None = None
    max_orders: int | None = Field(None, ge=1)
    max_units: int | None = Field(None, ge=1)
    max_amount: Decimal | None = Field(None, gt=0)
    max_skus: int | None = Field(None, ge=1)
    min_amount: Decimal | None = Field(None, ge=0)
    below: int | None = Field(None, ge=1, le=1000)
    skus: tuple[str, ...] = ()  # product_limit: these skus together (default: the order's own sku)
    action: str = "hold"

    @model_validator(mode="after")
    def _fields_of_kind(self) -> RiskRule:
        if _ACTION.match(self.action.strip()) is None:
            raise ValueError(f"action {self.action[:40]!r} is not hold, refuse or 'score -N' (N 1-9999)")
        problems: list[str] = []
        limits = (self.max_orders, self.max_units, self.max_amount)
        if self.kind in ("velocity", "product_limit", "denominations") and self.per is None:
            problems.append(f"a {self.kind} rule needs per: (one of {', '.join(IDENTITY_KINDS)})")
        if self.kind in ("velocity", "denominations") and self.window is None:
            problems.append(f"a {self.kind} rule needs a window (e.g. 60s, 1d)")
        if self.kind in ("velocity", "product_limit") and all(v is None for v in limits):
            problems.append(f"a {self.kind} rule needs max_orders, max_units or max_amount")
        if self.kind == "denominations" and self.max_skus is None:
            problems.append("a denominations rule needs max_skus")
        if self.kind == "first_order" and self.min_amount is None:
            problems.append("a first_order rule needs min_amount")
        if self.kind == "credit" and self.below is None:
            problems.append("a credit rule needs below: (a score)")
        if self.kind == "credit" and self.per is not None and self.per not in CREDIT_KINDS:
            problems.append(f"credit is kept per {', '.join(CREDIT_KINDS)}, not per {self.per}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def verb(self) -> str:
        """hold | refuse | score"""
        return self.action.strip().split()[0].split("-")[0].strip()

    @property
    def penalty(self) -> int:
        """The N of `score -N`; 0 for hold and refuse."""
        match = _ACTION.match(self.action.strip())
        return int(match.group(2)) if match and match.group(2) else 0

    @property
    def seconds(self) -> float:
        """The window; a product limit without one counts one day."""
        return self.window if self.window is not None else 86400.0


class CreditConfig(_Frozen):
    start: int = Field(100, ge=1, le=1000)
    hold_below: int = Field(60, ge=0, le=1000)
    refuse_below: int = Field(30, ge=0, le=1000)
    hold_penalty: int = Field(5, ge=0, le=1000)  # taken from each credit identity of an order a rule held
    refuse_penalty: int = Field(20, ge=0, le=1000)  # ... refused (a rule, a block, an operator's refusal)
    chargeback_penalty: int = Field(30, ge=0, le=1000)  # `fulfil risk report REF --reason chargeback`
    recover_per_order: int = Field(1, ge=0, le=1000)  # given back per delivered order, up to start

    @model_validator(mode="after")
    def _ordered(self) -> CreditConfig:
        if not self.refuse_below <= self.hold_below <= self.start:
            raise ValueError(
                f"expected refuse_below <= hold_below <= start, got {self.refuse_below}, {self.hold_below}, "
                f"{self.start}"
            )
        return self


class RiskConfig(_Frozen):
    """Decided after payment, before the first supplier call (fulfil/risk, the engine)."""

    on_error: Literal["hold", "allow"] = "hold"
    credit: CreditConfig = CreditConfig()
    rules: tuple[RiskRule, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> RiskConfig:
        names = [rule.name for rule in self.rules]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)}")
        return self


class Config(_Frozen):
    database: DatabaseConfig = DatabaseConfig()
    security: SecurityConfig = SecurityConfig()
    daemon: DaemonConfig = DaemonConfig()
    http: HttpConfig = HttpConfig()
    console: ConsoleConfig = ConsoleConfig()
    figures: FiguresConfig = FiguresConfig()
    retry: RetryConfig = RetryConfig()
    ambiguity: AmbiguityConfig = AmbiguityConfig()
    cooldown: CooldownConfig = CooldownConfig()
    routing: RoutingConfig = RoutingConfig()
    breaker: BreakerConfig = BreakerConfig()
    scoring: ScoringConfig = ScoringConfig()
    retention: RetentionConfig = RetentionConfig()
    suppliers: tuple[SupplierConfig, ...] = ()
    products: dict[str, ProductConfig] = Field(default_factory=dict)
    notify: NotifyConfig = NotifyConfig()
    sources: tuple[SourceConfig, ...] = ()
    aftersales: AftersalesConfig = AftersalesConfig()
    risk: RiskConfig = RiskConfig()

    def supplier(self, name: str) -> SupplierConfig:
        for entry in self.suppliers:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def source(self, name: str) -> SourceConfig:
        for entry in self.sources:
            if entry.name == name:
                return entry
        raise KeyError(name)


# --- loading --------------------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _substitute(
    node: Any,
    environ: Mapping[str, str],
    loc: tuple[int | str, ...],
    errors: list[str],
    inside: frozenset[int] = frozenset(),
) -> Any:
    if isinstance(node, dict | list):
        if id(node) in inside:  # `a: &x [*x]`: YAML aliases can build a structure that contains itself
            errors.append(f"{_path(loc)}: a YAML alias that contains itself")
            return None
        inside = inside | {id(node)}
    if isinstance(node, dict):
        return {key: _substitute(value, environ, (*loc, str(key)), errors, inside) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, environ, (*loc, i), errors, inside) for i, value in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            errors.append(f"{_path(loc)}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(replace, node)
    return node


def known_supplier_types() -> set[str]:
    from importlib.metadata import entry_points

    return set(BUILTIN_SUPPLIER_TYPES) | {ep.name for ep in entry_points(group="fulfil.suppliers")}


_REQUIRED_SETTINGS = {
    "fulu": ("base_url", "app_key", "secret"),
    "acg_faka": ("base_url", "app_id", "app_key"),
}


def _check_suppliers(raw: Any, errors: list[str]) -> dict[str, str]:
    """Checks that span fields; works on the raw data so it reports even when pydantic also complained."""
    types: dict[str, str] = {}
    if not isinstance(raw, list):
        return types
    known = known_supplier_types()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        name, kind = entry.get("name"), entry.get("type")
        if isinstance(name, str):
            if name in types:
                errors.append(f"suppliers[{i}].name: duplicate supplier name '{name}'")
            types[name] = str(kind)
        if isinstance(kind, str) and kind not in known:
            errors.append(
                f"suppliers[{i}].type: unknown supplier type '{kind}' (known: {', '.join(sorted(known))})"
            )
        for field in _REQUIRED_SETTINGS.get(str(kind), ()):
            path = f"suppliers[{i}].{field}"
            reported = any(e.startswith(path + ":") for e in errors)  # e.g. its ${VAR} is not set
            if not entry.get(field) and not reported:
                errors.append(f"{path}: required for a {kind} supplier")
    return types


def _check_products(raw: Any, suppliers: dict[str, str], errors: list[str]) -> None:
    if not isinstance(raw, dict):
        return
    for sku, product in raw.items():
        if len(str(sku)) > MAX_SKU_LENGTH:
            errors.append(f"products.{str(sku)[:40]}…: a sku is at most {MAX_SKU_LENGTH} characters")
        if not isinstance(product, dict):
            continue
        for key in ("card_pattern", "number_pattern"):
            pattern = product.get(key)
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    errors.append(f"products.{sku}.{key}: not a valid regular expression ({exc})")
        offers = product.get("offers")
        for j, offer in enumerate(offers if isinstance(offers, list) else []):
            if isinstance(offer, dict):
                _check_offer(offer, f"products.{sku}.offers[{j}]", product.get("kind"), suppliers, errors)


def _check_offer(
    offer: dict[str, Any], where: str, product_kind: object, suppliers: dict[str, str], errors: list[str]
) -> None:
    name = offer.get("supplier")
    if isinstance(name, str) and name not in suppliers:
        errors.append(f"{where}.supplier: unknown supplier '{name}'")
    kind = suppliers.get(str(name))
    if kind not in (None, "stock") and not offer.get("product_id"):
        errors.append(f"{where}.product_id: required for an offer at a {kind} supplier")
    if kind == "stock" and product_kind == "direct":
        errors.append(f"{where}.supplier: local stock cannot serve a direct top-up product")


_GOODS_ID = re.compile(r"^[0-9]{1,18}$")


def known_source_types() -> set[str]:
    from importlib.metadata import entry_points

    return set(BUILTIN_SOURCE_TYPES) | {ep.name for ep in entry_points(group="fulfil.sources")}


def _check_sources(raw: Any, products: Any, errors: list[str]) -> None:
    """Checks across fields of `sources:` (names, types, the goods map against the products, URLs)."""
    if not isinstance(raw, list):
        return
    known = known_source_types()
    names: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        where = f"sources[{i}]"
        name, kind = entry.get("name"), entry.get("type")
        if isinstance(name, str):
            if name in names:
                errors.append(f"{where}.name: duplicate source name '{name}'")
            names.add(name)
        if isinstance(kind, str) and kind not in known:
            errors.append(f"{where}.type: unknown source type '{kind}' (known: {', '.join(sorted(known))})")
        builtin = kind in BUILTIN_SOURCE_TYPES
        url = entry.get("url")
        if builtin and isinstance(url, str) and url and url.split("://", 1)[0] not in SHOP_URL_SCHEMES:
            errors.append(
                f"{where}.url: a {kind} shop is on MySQL or MariaDB: expected mysql+asyncmy://user:password@host/db, "
                f"got '{url.split(':', 1)[0]}:…'"
            )
        _check_source_goods(entry, where, kind, products if isinstance(products, dict) else {}, errors)
        push = entry.get("push")
        if isinstance(push, dict) and not push.get("allow") and not push.get("secret"):
            errors.append(f"{where}.push: give allow (addresses the shop pushes from) or secret, or leave push out")
        allow = push.get("allow") if isinstance(push, dict) else None
        for j, address in enumerate(allow if isinstance(allow, list) else []):
            try:
                ipaddress.ip_network(str(address), strict=False)
            except ValueError:
                errors.append(f"{where}.push.allow[{j}]: not an IP address or network: '{address}'")


def _check_source_goods(
    entry: dict[str, Any], where: str, kind: object, products: dict[str, Any], errors: list[str]
) -> None:
    goods = entry.get("goods")
    goods = {str(k): v for k, v in goods.items()} if isinstance(goods, dict) else {}
    direct = []
    for goods_id, sku in goods.items():
        if not _GOODS_ID.match(goods_id):
            errors.append(f"{where}.goods.{goods_id[:40]}: a goods id is the shop's numeric id, got '{goods_id[:40]}'")
        if isinstance(sku, str) and sku not in products:
            errors.append(f"{where}.goods.{goods_id}: unknown sku '{sku}' (not under products:)")
        product = products.get(sku) if isinstance(sku, str) else None
        if isinstance(product, dict) and product.get("kind") == "direct":
            direct.append(f"{goods_id} -> {sku}")
    if direct and not entry.get("account_field"):
        errors.append(
            f"{where}.account_field: required: goods {', '.join(direct)} are direct top-ups and need the buyer's "
            "recharge account (dujiaoka: the info label; acg_faka_shop: the widget's name)"
        )
    rescue = entry.get("rescue_abnormal")
    if rescue and kind == "acg_faka_shop":
        errors.append(f"{where}.rescue_abnormal: only for dujiaoka (acg-faka has no abnormal orders to rescue)")
    for j, goods_id in enumerate(rescue if isinstance(rescue, list) else []):
        if str(goods_id) not in goods:
            errors.append(f"{where}.rescue_abnormal[{j}]: goods '{goods_id}' is not in the goods map")


def _check_database(raw: Any, errors: list[str]) -> None:
    url = raw.get("url") if isinstance(raw, dict) else None
    if isinstance(url, str) and not url.startswith(("sqlite:", "sqlite+", "postgresql:", "postgresql+")):
        errors.append(
            f"database.url: unsupported database '{url.split(':', 1)[0]}' (use sqlite or postgresql)"
        )


def _check_listen(raw: Any, errors: list[str]) -> None:
    listen = raw.get("listen") if isinstance(raw, dict) else None
    if isinstance(listen, str):
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            errors.append(f"http.listen: expected HOST:PORT, got '{listen}'")


def _check_notify(raw: Any, products: Any, errors: list[str]) -> None:
    """Checks across notify's entries: unique channel names, what each alert type needs."""
    if not isinstance(raw, dict):
        return
    names: set[str] = set()
    for section in ("webhooks", "alerts"):
        entries = raw.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            name = entry.get("name")
            if isinstance(name, str):
                if name in names:
                    errors.append(f"notify.{section}[{i}].name: duplicate channel name '{name}'")
                names.add(name)
            if section == "alerts":
                _check_alert(entry, f"notify.alerts[{i}]", errors)
    email = raw.get("email")
    if isinstance(email, dict) and email.get("tls") and email.get("starttls", True):
        errors.append("notify.email.tls: implicit TLS and starttls exclude each other (set starttls: false)")
    delay = raw.get("delay")
    configured = products if isinstance(products, dict) else {}
    if isinstance(delay, dict) and isinstance(delay.get("products"), dict):
        for sku in delay["products"]:
            if sku not in configured:
                errors.append(f"notify.delay.products.{sku}: unknown product '{sku}'")


def _check_aftersales(raw: Any, products: Any, errors: list[str]) -> None:
    configured = products if isinstance(products, dict) else {}
    entries = raw.get("products") if isinstance(raw, dict) else None
    for sku in entries if isinstance(entries, dict) else {}:
        if sku not in configured:
            errors.append(f"aftersales.products.{sku}: unknown product '{sku}'")


def _check_alert(entry: dict[str, Any], where: str, errors: list[str]) -> None:
    kind = entry.get("type")
    needs = {"webhook": ("url", "secret"), "wecom": ("secret",), "telegram": ("secret", "chat_id")}
    for field in needs.get(str(kind), ()):
        path = f"{where}.{field}"
        reported = any(e.startswith(path + ":") for e in errors)
        if not entry.get(field) and not reported:
            errors.append(f"{path}: required for a {kind} alert channel")
    if kind == "webhook" and isinstance(entry.get("secret"), str):
        try:
            _whsec(entry["secret"])
        except ValueError as exc:
            errors.append(f"{where}.secret: {exc}")


def _check_risk(raw: Any, products: Any, errors: list[str]) -> None:
    """`risk.rules[i].skus` must name configured products."""
    rules = raw.get("rules") if isinstance(raw, dict) else None
    known = products if isinstance(products, dict) else {}
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        skus = rule.get("skus") if isinstance(rule, dict) else None
        for sku in skus if isinstance(skus, list) else []:
            if isinstance(sku, str) and sku not in known:
                errors.append(f"risk.rules[{i}].skus: unknown sku '{sku[:40]}' (not under products:)")


def config_from_data(data: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; raises ConfigError with every problem found."""
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping of sections"])
    data = _substitute(data, environ, (), errors)
    suppliers = _check_suppliers(data.get("suppliers"), errors)
    _check_products(data.get("products"), suppliers, errors)
    _check_sources(data.get("sources"), data.get("products"), errors)
    _check_database(data.get("database"), errors)
    _check_listen(data.get("http"), errors)
    _check_notify(data.get("notify"), data.get("products"), errors)
    _check_aftersales(data.get("aftersales"), data.get("products"), errors)
    _check_risk(data.get("risk"), data.get("products"), errors)
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={_FROM_FILE: True})
    except ValidationError as exc:
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            errors.append(f"{_path(tuple(err['loc']))}: {message}")
    if errors or config is None:
        raise ConfigError(sorted(set(errors), key=errors.index))
    return config


def resolve_sqlite_url(url: str, folder: Path) -> str:
    """`url` with a relative SQLite database path made absolute against `folder`; any other URL as it is.

    `sqlite:///fulfil.db` next to /etc/fulfil/fulfil.yaml is `sqlite:////etc/fulfil/fulfil.db`, whichever
    directory the daemon (or an operator's `fulfil db upgrade`) was started from.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite" or not rest.startswith("/"):
        return url
    database, query_sep, query = rest[1:].partition("?")
    if not database or database == ":memory:" or database.startswith(("file:", "/")):
        return url
    absolute = os.path.normpath(folder / database)
    return f"{scheme}:///{absolute}{query_sep}{query}"


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate, and resolve a relative SQLite path against the file's own folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from exc
    try:
        data = yaml.safe_load(text)
        config = config_from_data(data, environ)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from exc
    except RecursionError:  # PyYAML's composer recurses once per level: some hundreds of brackets
        raise ConfigError([f"{path}: nested too deeply"]) from None
    url = resolve_sqlite_url(config.database.url, path.resolve().parent)
    if url == config.database.url:
        return config
    return config.model_copy(update={"database": config.database.model_copy(update={"url": url})})


def resolve_config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """`--config PATH`, else `FULFIL_CONFIG`, else `config/fulfil.yaml`."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("FULFIL_CONFIG"):
        return Path(environ["FULFIL_CONFIG"])
    return DEFAULT_PATH
