"""Senders, one per configured channel: Standard Webhooks, WeCom group robot, Telegram bot, SMTP e-mail.

Each turns one outbox row (with its order's facts) into one try and a `SendResult`; nothing here decides
what a result means (`retry.decide` does) or touches the database. Third-party errors are converted here.
Each HTTP channel has its own aiohttp session and connection limit, so a slow endpoint holds only its own
connections. Redirects are never followed. Nothing here logs a URL's query, a secret, a key or a contact.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import jinja2

from fulfil.config import AlertChannelConfig, EmailConfig, WebhookConfig
from fulfil.notify import signing
from fulfil.notify.events import (
    EMAIL_CHANNEL,
    Audience,
    CardText,
    OrderFacts,
    alert_channel,
    body,
    event_data,
    is_email,
    mask_url,
    webhook_channel,
)
from fulfil.notify.retry import SendResult, parse_retry_after
from fulfil.storage.store_notify import OrderNotice, OutboxRow

PACKAGED_TEMPLATES = Path(__file__).parent / "templates"
_READ_LIMIT = 64 * 1024  # of an answer we only need the status of


@dataclass(frozen=True)
class Message:
    """What one try sends: the row and, for an order event, its order's facts and keys by then."""

    row: OutboxRow
    notice: OrderNotice | None = field(default=None, repr=False)

    def facts(self) -> OrderFacts | None:
        n = self.notice
        if n is None:
            return None
        return OrderFacts(ref=n.ref, sku=n.sku, qty=n.qty, contact=n.contact, amount=n.amount, account=n.account)

    def cards(self) -> list[CardText]:
        if self.notice is None:
            return []
        return [CardText(number, password, expires) for _, number, password, expires in self.notice.cards]

    def data(self, audience: Audience) -> dict[str, Any]:
        return event_data(self.row.type, self.row.data, self.facts(), self.cards(), audience)

    def payload(self, audience: Audience) -> bytes:
        """The JSON body: the same bytes on every try (same row, same facts, same settings)."""
        document = body(self.row.type, self.row.created_at, self.data(audience))
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class Channel(Protocol):
    name: str  # the outbox channel: webhook:NAME, alert:NAME, email
    kind: str
    shown_url: str  # printable (no query values, no credentials)
    schedule: tuple[float, ...]
    concurrency: int
    timeout: float
    needs_cards: bool  # its messages may carry keys (include_keys): read and decrypt them

    async def send(self, message: Message, now: datetime) -> SendResult: ...

    async def aclose(self) -> None: ...


class _Http:
    """An aiohttp session of the channel's own: its connection limit, its timeout, no redirects."""

    def __init__(self, timeout: float, concurrency: int) -> None:
        self.timeout = timeout
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"user-agent": "fulfil-notify/1"},
            )
        return self._session

    async def post(
        self, url: str, data: bytes, headers: Mapping[str, str], now: datetime, params: Mapping[str, str] | None = None
    ) -> SendResult:
        try:
            post = self.session().post(url, data=data, headers=dict(headers), params=params, allow_redirects=False)
            async with post as resp:
                text = (await resp.content.read(_READ_LIMIT)).decode("utf-8", "replace")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
                status = resp.status
        except TimeoutError:
            return SendResult(None, f"timeout after {self.timeout:g}s")
        except aiohttp.ClientError as exc:
            return SendResult(None, f"{type(exc).__name__}: {_short(exc)}")
        if 300 <= status < 400:
            return SendResult(status, f"redirect {status} not followed", retry_after)
        if not 200 <= status < 300:
            return SendResult(status, f"HTTP {status}", retry_after)
        return SendResult(status, None, retry_after, body=text)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _short(exc: BaseException) -> str:
    # aiohttp puts the URL in some messages: keep the host, drop the rest.
    return str(exc).split("?", 1)[0][:200]


class WebhookChannel:
    """Standard Webhooks: webhook-id (the event id), webhook-timestamp, webhook-signature (v1,…)."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        audience: Audience,
        schedule: tuple[float, ...],
        timeout: float,
        concurrency: int,
    ) -> None:
        self.name = name
        self.url = url
        self.shown_url = mask_url(url)
        self.audience = audience
        self.needs_cards = audience.include_keys
        self.schedule = schedule
        self.timeout = timeout
        self.concurrency = concurrency
        self._keys = signing.secret_keys(secret)
        self._http = _Http(timeout, concurrency)

    async def send(self, message: Message, now: datetime) -> SendResult:
        payload = message.payload(self.audience)
        headers = signing.headers(self._keys, message.row.event_id, int(now.timestamp()), payload)
        return await self._http.post(self.url, payload, headers, now)

    async def aclose(self) -> None:
        await self._http.aclose()


def alert_text(message: Message) -> str:
    """One line or a few for people in a chat: what happened, to what, the key facts."""
    row = message.row
    data = message.data(Audience())
    if row.type.endswith(".alert"):
        kind = str(data.get("kind", row.type))
        facts = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("kind", "subject") and v is not None)
        return f"[fulfil] {kind} {data.get('subject', '')}" + (f": {facts}" if facts else "")
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return f"[fulfil] {row.type} {data.get('ref')} {data.get('sku')} x{data.get('qty')}: {data.get('status')}{reason}"


class WeComChannel:
    """A WeCom (企业微信) group robot: POST {"msgtype": "text", "text": {"content": …}} to send?key=…"""

    kind = "wecom"
    needs_cards = False

    def __init__(
        self, name: str, url: str, key: str, timeout: float, concurrency: int, schedule: tuple[float, ...]
    ) -> None:
        self.name = name
        self._url = url
        self._key = key
        self.shown_url = mask_url(url)
        self.schedule = schedule
        self.timeout = timeout
        self.concurrency = concurrency
        self._http = _Http(timeout, concurrency)

    async def send(self, message: Message, now: datetime) -> SendResult:
        content = {"msgtype": "text", "text": {"content": alert_text(message)}}
        data = json.dumps(content, ensure_ascii=False).encode()
        result = await self._http.post(
            self._url, data, {"content-type": "application/json"}, now, params={"key": self._key}
        )
        return _json_errcode(result, "errcode", 0)

    async def aclose(self) -> None:
        await self._http.aclose()


class TelegramChannel:
    """A Telegram bot: POST {base}/bot{token}/sendMessage {"chat_id", "text"}."""

    kind = "telegram"
    needs_cards = False

    def __init__(
        self,
        name: str,
        base: str,
        token: str,
        chat_id: str,
        timeout: float,
        concurrency: int,
        schedule: tuple[float, ...],
    ) -> None:
        self.name = name
        self._url = f"{base.rstrip('/')}/bot{token}/sendMessage"
        self.shown_url = f"{mask_url(base).rstrip('/')}/bot…/sendMessage"
        self._chat_id = chat_id
        self.schedule = schedule
        self.timeout = timeout
        self.concurrency = concurrency
        self._http = _Http(timeout, concurrency)

    async def send(self, message: Message, now: datetime) -> SendResult:
        data = json.dumps({"chat_id": self._chat_id, "text": alert_text(message)}, ensure_ascii=False).encode()
        result = await self._http.post(self._url, data, {"content-type": "application/json"}, now)
        if result.status is None or result.status >= 300:
            # The bot token is part of the URL: never let an error text carry it.
            return SendResult(
                result.status, (result.error or "").replace(self._url, self.shown_url), result.retry_after
            )
        return _json_errcode(result, "ok", True)

    async def aclose(self) -> None:
        await self._http.aclose()


def _json_errcode(result: SendResult, field_name: str, good: object) -> SendResult:
    """WeCom and Telegram answer 200 with {"errcode": 93000} / {"ok": false}: a failure all the same."""
    if result.status is None or not 200 <= result.status < 300:
        return result
    try:
        answer = json.loads(result.body or "{}")
    except ValueError:
        return SendResult(result.status, "answer is not JSON")
    if isinstance(answer, dict) and answer.get(field_name, good) != good:
        said = str(answer.get("errmsg") or answer.get("description") or "")[:200]
        return SendResult(599, f"{field_name}={answer.get(field_name)!r}: {said}")
    return result


class EmailChannel:
    """The buyer's e-mail through SMTP: plain text and HTML from Jinja2 templates per event type and language.

    Templates: `<dir>/<lang>/<event type>.subject`, `.txt`, `.html` in `notify.email.templates` (beside the config
    file), falling back to the packaged ones. Keys appear only with `include_keys: true`."""

    kind = "email"
    name = EMAIL_CHANNEL

    def __init__(self, config: EmailConfig, config_dir: Path | None = None) -> None:
        self.config = config
        self.shown_url = f"smtp://{config.host}:{config.port}"
        self.schedule = config.retry_schedule
        self.timeout = config.timeout
        self.concurrency = config.concurrency
        self.audience = Audience(include_keys=config.include_keys, include_contact=True)
        self.needs_cards = config.include_keys
        folders = []
        if config.templates:
            own = Path(config.templates)
            if not own.is_absolute() and config_dir is not None:
                own = config_dir / own
            folders.append(own / config.lang)
        folders.append(PACKAGED_TEMPLATES / config.lang)
        folders.append(PACKAGED_TEMPLATES / "en")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in folders]),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, message: Message) -> EmailMessage | str:
        """The e-mail, or why there is none (no address, no template)."""
        facts = message.facts()
        if facts is None or not is_email(facts.contact):
            return "no e-mail address for this order"
        data = message.data(self.audience)
        context = {"event": message.row.type, "order": data, "cards": data.get("cards", []), "shop": self.config.from_}
        try:
            subject = self._env.get_template(f"{message.row.type}.subject").render(context).strip()
            text = self._env.get_template(f"{message.row.type}.txt").render(context)
            html = self._env.get_template(f"{message.row.type}.html").render(context)
        except jinja2.TemplateNotFound as exc:
            return f"no template {exc.name}"
        mail = EmailMessage()
        mail["Subject"] = subject
        mail["From"] = self.config.from_
        mail["To"] = (facts.contact or "").strip()
        mail["Date"] = formatdate(localtime=False)
        # The same Message-ID on every try: a receiving server may drop the repeat of a send that was cut off.
        mail["Message-ID"] = make_msgid(idstring=message.row.event_id, domain=self.config.from_.rpartition("@")[2])
        mail["X-Fulfil-Event"] = message.row.event_id
        mail.set_content(text)
        mail.add_alternative(html, subtype="html")
        return mail

    async def send(self, message: Message, now: datetime) -> SendResult:
        mail = self.render(message)
        if isinstance(mail, str):
            return SendResult(None, mail, skipped=True)
        try:
            await asyncio.to_thread(self._send_sync, mail)
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            return SendResult(None, f"SMTP {exc.smtp_code}", permanent=permanent)
        except smtplib.SMTPRecipientsRefused:
            return SendResult(None, "SMTP recipient refused", permanent=True)
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(None, f"{type(exc).__name__}: {str(exc)[:200]}")
        return SendResult(250)

    def _send_sync(self, mail: EmailMessage) -> None:
        cfg = self.config
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if cfg.tls:
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with smtp:
            if cfg.starttls and not cfg.tls:
                smtp.starttls(context=context)
            if cfg.user:
                smtp.login(cfg.user, cfg.password or "")
            smtp.send_message(mail)

    async def aclose(self) -> None:
        return None


def build_channels(
    webhooks: tuple[WebhookConfig, ...],
    email: EmailConfig | None,
    alerts: tuple[AlertChannelConfig, ...],
    config_dir: Path | None = None,
) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    for hook in webhooks:
        if hook.enabled:
            audience = Audience(include_keys=hook.include_keys, include_contact=hook.include_contact)
            out[webhook_channel(hook.name)] = WebhookChannel(
                webhook_channel(hook.name),
                hook.url,
                hook.secret,
                audience,
                hook.retry_schedule,
                hook.timeout,
                hook.concurrency,
            )
    if email is not None and email.enabled:
        out[EMAIL_CHANNEL] = EmailChannel(email, config_dir)
    for alert in alerts:
        if not alert.enabled:
            continue
        name = alert_channel(alert.name)
        secret = alert.secret or ""
        if alert.type == "webhook":
            out[name] = WebhookChannel(
                name, alert.url or "", secret, Audience(), alert.retry_schedule, alert.timeout, alert.concurrency
            )
        elif alert.type == "wecom":
            url = alert.url or "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
            out[name] = WeComChannel(name, url, secret, alert.timeout, alert.concurrency, alert.retry_schedule)
        else:
            base = alert.url or "https://api.telegram.org"
            out[name] = TelegramChannel(
                name, base, secret, alert.chat_id or "", alert.timeout, alert.concurrency, alert.retry_schedule
            )
    return out
