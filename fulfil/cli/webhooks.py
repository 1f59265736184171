"""`fulfil webhooks list | deliveries | replay | enable`: the notification channels and their outbox.

A channel is a webhook endpoint (`shop`), an alert channel (`alert:oncall`) or `email`. URLs are printed
without their query (a WeCom robot's key) and never with credentials; payloads (which may hold keys or a
buyer's contact) are never printed, only each delivery's state.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from fulfil import render
from fulfil.cli.context import BadInput, get_state, run_with_store, utcnow
from fulfil.notify.events import EMAIL_CHANNEL, alert_channel, mask_url, webhook_channel

if TYPE_CHECKING:
    from fulfil.storage import Store
    from fulfil.storage.store_notify import OutboxRow

STATES = ["pending", "sending", "delivered", "dead", "skipped"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _channel(name: str) -> str:
    """A name as the operator types it: `shop`, `alert:oncall`, `email`, or the full `webhook:shop`."""
    if name == EMAIL_CHANNEL or ":" in name:
        return name
    return webhook_channel(name)


def _configured() -> list[dict[str, Any]]:
    notify = get_state().config.notify
    out: list[dict[str, Any]] = []
    for hook in notify.webhooks:
        out.append(
            {
                "channel": webhook_channel(hook.name),
                "type": "webhook",
                "url": mask_url(hook.url),
                "events": list(hook.events),
                "include_keys": hook.include_keys,
                "include_contact": hook.include_contact,
                "enabled": hook.enabled,
            }
        )
    if notify.email is not None:
        email = notify.email
        out.append(
            {
                "channel": EMAIL_CHANNEL,
                "type": "email",
                "url": f"smtp://{email.host}:{email.port}",
                "events": list(email.events),
                "include_keys": email.include_keys,
                "include_contact": True,
                "enabled": email.enabled,
            }
        )
    for alert in notify.alerts:
        out.append(
            {
                "channel": alert_channel(alert.name),
                "type": alert.type,
                "url": mask_url(alert.url) if alert.url else "(default)",
                "events": list(alert.events),
                "include_keys": False,
                "include_contact": False,
                "enabled": alert.enabled,
            }
        )
    return out


@click.group()
def webhooks() -> None:
    """Notification channels (webhooks, e-mail, alerts): their state, failed deliveries, replays."""


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """Configured channels with their state and how many deliveries are in each state."""
    channels = _configured()

    async def body(store: Store) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
        return await store.outbox_counts(), await store.disabled_endpoints()

    counts, disabled = run_with_store(body)
    for entry in channels:
        name = entry["channel"].partition(":")[2] if entry["channel"] != EMAIL_CHANNEL else EMAIL_CHANNEL
        off = disabled.get(name)
        entry["state"] = "disabled" if not entry["enabled"] else (f"disabled: {off[1]}" if off else "active")
        if off:
            entry["disabled_at"] = _iso(off[0])
        entry["deliveries"] = counts.get(entry["channel"], {})
    if as_json:
        click.echo(render.to_json(channels))
        return
    if not channels:
        click.echo("no notification channels configured (notify: in the config)")
        return
    rows = [
        (
            e["channel"],
            e["url"],
            ",".join(e["events"]),
            "yes" if e["include_keys"] else "no",
            e["state"],
            " ".join(f"{k}={v}" for k, v in sorted(e["deliveries"].items())) or "-",
        )
        for e in channels
    ]
    click.echo(render.table(["channel", "url", "events", "keys", "state", "deliveries"], rows))


def _row_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "type": row.type,
        "channel": row.channel,
        "order_id": row.order_id,
        "subject": row.subject,
        "state": row.state,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "last_at": _iso(row.last_at),
        "next_at": _iso(row.next_at) if row.state == "pending" else None,
    }


@webhooks.command()
@click.option("--channel", "name", help="Only this channel (`shop`, `alert:oncall`, `email`).")
@click.option("--state", type=click.Choice(STATES), help="Only deliveries in this state.")
@click.option("--failed", is_flag=True, help="Only deliveries that failed at least once and are not delivered.")
@click.option("--event", "event_id", help="Only this event id (the webhook-id header).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries(
    name: str | None, state: str | None, failed: bool, event_id: str | None, limit: int, as_json: bool
) -> None:
    """Deliveries, newest first: state, tries, the last answer. Payloads are not shown."""

    async def body(store: Store) -> list[OutboxRow]:
        channel = _channel(name) if name else None
        return await store.outbox_rows(channel=channel, state=state, failed=failed, event_id=event_id, limit=limit)

    found = [_row_dict(row) for row in run_with_store(body)]
    if as_json:
        click.echo(render.to_json(found))
        return
    if not found:
        click.echo("no deliveries")
        return
    headers = ["id", "event_id", "type", "channel", "state", "tries", "last", "error", "created_at"]
    rows = [
        (
            r["id"],
            r["event_id"],
            r["type"],
            r["channel"],
            r["state"],
            r["attempts"],
            r["last_status"] or "-",
            (r["last_error"] or "-")[:60],
            r["created_at"],
        )
        for r in found
    ]
    click.echo(render.table(headers, rows))


@webhooks.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--channel", "name", help="Replay this channel's deliveries in --state (dead by default).")
@click.option(
    "--state", type=click.Choice(["dead", "skipped", "delivered", "pending"]), default="dead", show_default=True
)
def replay(ids: tuple[int, ...], name: str | None, state: str) -> None:
    """Send deliveries again (by id, or a channel's dead ones): the same event id and body, the retry schedule
    from the start. A receiver that de-duplicates by webhook-id sees a repeat as a repeat."""
    if not ids and not name:
        raise BadInput("name delivery ids, or --channel (with --state)")

    async def body(store: Store) -> int:
        now: datetime = utcnow()
        if ids:
            return await store.replay_outbox(now, ids=ids)
        return await store.replay_outbox(now, channel=_channel(name or ""), state=state)

    count = run_with_store(body)
    click.echo(f"{count} deliveries queued again")


@webhooks.command()
@click.argument("name")
def enable(name: str) -> None:
    """Enable a channel the dispatcher disabled (after a 410 Gone); its waiting deliveries go out."""

    async def body(store: Store) -> bool:
        return await store.enable_endpoint(name.partition(":")[2] or name, utcnow())

    if run_with_store(body):
        click.echo(f"{name}: enabled")
    else:
        click.echo(f"{name}: was not disabled")
