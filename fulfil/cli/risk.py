"""`fulfil risk block | unblock | blocks | credit | buyer | explain | report`: buyers and risk.

Buyer identities are named `KIND:VALUE` (`contact:b@example.com`, `account:10001`, `user:42`, `ip:203.0.113.9`,
`device:abc`) and shown masked in every output. Every change is an event with `--operator`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import ipaddress
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fulfil import render
from fulfil.cli.context import BadInput, operator_option, run_with_store, utcnow
from fulfil.config import CREDIT_KINDS, IDENTITY_KINDS
from fulfil.durations import parse_duration
from fulfil.risk.identity import IdentityError, mask_identity, parse_identity
from suppliers import values

if TYPE_CHECKING:
    from fulfil.storage import Store
    from fulfil.storage.store_blocks import BlockEntry
    from fulfil.storage.store_credit import BuyerView
    from fulfil.storage.store_risk import Explanation

logger = logging.getLogger(__name__)
MAX_VALUE = 256
MAX_REASON = 500


@click.group()
def risk() -> None:
    """Buyers and risk: blocklist, credit scores, why an order was held or refused."""


# --- parsing what the operator typed -----------------------------------------------------------------------


def parse_until(text: str | None, now: datetime) -> datetime | None:
    """An expiry: a date (the end of that day, UTC), an ISO date-time, or a duration from now (`7d`, `12h`)."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    until: datetime | None = None
    with contextlib.suppress(ValueError):  # not a duration: a date, then
        until = now + timedelta(seconds=parse_duration(raw))
    if until is None:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise BadInput(
                f"--until {raw[:40]!r}: expected a date (2027-01-31), a date-time or a duration (7d)"
            ) from None
        if len(raw) == 10:  # a bare date: blocked through that whole day
            parsed = datetime.combine(parsed.date(), time.max)
        until = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if until <= now:
        raise BadInput(f"--until {raw[:40]!r} is in the past")
    return until


def check_block_value(kind: str, value: str) -> str | None:
    """Why this value cannot be blocked, or None."""
    text = value.strip()
    if not text:
        return f"{kind}: the value is empty"
    if len(text) > MAX_VALUE or not text.isprintable():
        return f"{kind}: at most {MAX_VALUE} printable characters"
    if kind == "ip":
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f"ip: {text[:40]!r} is not an address or a network (CIDR)"
    return None


@dataclass(frozen=True)
class BlockLine:
    line: int
    kind: str
    value: str
    reason: str
    until: datetime | None


def _records(path: Path) -> list[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from exc
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        records: list[tuple[int, Any]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                try:
                    records.append((number, values.load_json(raw)))
                except values.JsonError as exc:
                    records.append((number, f"not valid JSON ({exc})"))
        return records
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "kind" not in header or "value" not in header or set(header) - {"kind", "value", "reason", "until"}:
        raise BadInput(f"{path}: expected a CSV header kind,value[,reason][,until], got {','.join(header)[:80]}")
    reader.fieldnames = header
    return [(reader.line_num, row) for row in reader]


def _block_line(number: int, record: Any, now: datetime) -> BlockLine:
    """One entry of a block file; BadInput naming what is wrong."""
    if not isinstance(record, dict):
        raise BadInput(record if isinstance(record, str) else "expected an object")
    kind = str(record.get("kind") or "").strip().lower()
    value = str(record.get("value") or "")
    reason = str(record.get("reason") or "imported").strip()[:MAX_REASON]
    if kind not in IDENTITY_KINDS:
        raise BadInput(f"kind {kind[:20]!r} is not one of {', '.join(IDENTITY_KINDS)}")
    problem = check_block_value(kind, value)
    if problem:
        raise BadInput(problem)
    until = parse_until(str(record["until"]) if record.get("until") else None, now)
    return BlockLine(number, kind, value.strip(), reason, until)


def read_block_file(path: Path, now: datetime) -> list[BlockLine]:
    """CSV with a header `kind,value[,reason][,until]` or JSON lines with those keys; every bad line is
    named, and then nothing is written."""
    lines: list[BlockLine] = []
    problems: list[str] = []
    for number, record in _records(path):
        try:
            lines.append(_block_line(number, record, now))
        except BadInput as exc:
            problems.append(f"line {number}: {exc.message.removeprefix('--')}")
    if problems:
        raise BadInput(f"{path}: nothing blocked:\n" + "\n".join(f"  {p}" for p in problems))
    if not lines:
        raise BadInput(f"{path}: no entries")
    return lines


def identity_argument(text: str, *, credit: bool = False) -> tuple[str, str]:
    try:
        kind, value = parse_identity(text)
    except IdentityError as exc:
        raise BadInput(str(exc)) from exc
    if credit and kind not in CREDIT_KINDS:
        raise BadInput(f"credit is kept per {', '.join(CREDIT_KINDS)}, not per {kind}")
    return kind, value


# --- blocklist ---------------------------------------------------------------------------------------------


@risk.command()
@click.option("--contact", help="An e-mail address or phone number.")
@click.option("--ip", help="An address or a network (CIDR, e.g. 203.0.113.0/24).")
@click.option("--account", help="A recharge account.")
@click.option("--user", help="The shop's account id of the buyer.")
@click.option("--device", help="A device id.")
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path),
    help="Entries to import (CSV kind,value,reason,until or JSON lines).",
)
@click.option("--reason", default="", help="Why (shown in `blocks`, and in the refused order's reason).")
@click.option("--until", help="Expiry: a date, a date-time or a duration (7d). Default: never.")
@operator_option
def block(
    contact: str | None,
    ip: str | None,
    account: str | None,
    user: str | None,
    device: str | None,
    file: Path | None,
    reason: str,
    until: str | None,
    operator: str,
) -> None:
    """Block a buyer: their paid orders are accepted at intake and then refused (failed, refundable)."""
    now = utcnow()
    given = [(k, v) for k, v in (("contact", contact), ("ip", ip), ("account", account), ("user", user),
                                 ("device", device)) if v is not None]  # fmt: skip
    if file is not None:
        if given or until:
            raise BadInput("--file takes its identities, reasons and expiries from the file")
        entries = [(b.kind, b.value, b.reason, b.until) for b in read_block_file(file, now)]
    else:
        if len(given) != 1:
            raise BadInput("give exactly one of --contact, --ip, --account, --user, --device (or --file)")
        kind, value = given[0]
        problem = check_block_value(kind, value)
        if problem:
            raise BadInput(problem)
        if not reason.strip():
            reason = "blocked by an operator"
        entries = [(kind, value.strip(), reason.strip()[:MAX_REASON], parse_until(until, now))]

    async def body(store: Store) -> list[tuple[BlockEntry, bool]]:
        return await store.risk_block_many(entries, operator, now)

    for entry, new in run_with_store(body):
        logger.info("risk.block", extra={"kind": entry.kind, "id": entry.id, "operator": operator, "new": new})
        until_text = entry.until.isoformat(timespec="seconds") if entry.until else "never"
        verb = "blocked" if new else "updated"
        click.echo(f"{verb} {entry.kind} {entry.shown} (#{entry.id}) until {until_text}: {entry.reason}")


@risk.command()
@click.argument("identity")
@operator_option
def unblock(identity: str, operator: str) -> None:
    """Remove a block: IDENTITY is KIND:VALUE (ip:203.0.113.0/24 for a network)."""
    kind, sep, value = identity.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in IDENTITY_KINDS or check_block_value(kind, value):
        raise BadInput(f"name the entry as KIND:VALUE with KIND one of {', '.join(IDENTITY_KINDS)}")

    async def body(store: Store) -> bool:
        return await store.risk_unblock(kind, value.strip(), operator, utcnow())

    if not run_with_store(body):
        raise BadInput(f"no block for {kind} {mask_identity(kind, value) if kind != 'ip' else value.strip()}")
    logger.info("risk.unblock", extra={"kind": kind, "operator": operator})
    click.echo(f"unblocked {kind}")


@risk.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--all", "expired", is_flag=True, help="Include expired entries.")
def blocks(as_json: bool, expired: bool) -> None:
    """Blocked buyers (values masked), with reason, expiry and who blocked them."""

    async def body(store: Store) -> list[BlockEntry]:
        return await store.risk_block_list(utcnow(), expired=expired)

    entries = run_with_store(body)
    if as_json:
        click.echo(render.to_json([e.as_dict() for e in entries]))
        return
    if not entries:
        click.echo("no blocks")
        return
    click.echo(f"{'id':>5}  {'kind':<8} {'value':<28} {'until':<20} {'by':<12} reason")
    for e in entries:
        until_text = e.until.isoformat(timespec="minutes") if e.until else "never"
        click.echo(f"{e.id:>5}  {e.kind:<8} {e.shown:<28} {until_text:<20} {e.operator[:12]:<12} {e.reason}")


# --- credit ------------------------------------------------------------------------------------------------


@risk.command()
@click.argument("identity")
@click.option("--set", "score", type=click.IntRange(0, 1000), help="Set the score to this.")
@click.option("--reason", help="Why (required with --set).")
@operator_option
def credit(identity: str, score: int | None, reason: str | None, operator: str) -> None:
    """Show a buyer's credit score, or set it (--set N --reason R)."""
    kind, value = identity_argument(identity, credit=True)
    if score is None and reason is not None:
        raise BadInput("--reason goes with --set")
    if score is not None and not (reason or "").strip():
        raise BadInput("--set needs --reason (it is recorded with the change)")

    async def body(store: Store) -> int:
        if score is None:
            return (await store.buyer(kind, value, limit=1)).score
        return await store.set_credit(kind, value, score, (reason or "").strip()[:MAX_REASON], operator, utcnow())

    result = run_with_store(body)
    if score is not None:
        logger.info("risk.credit_set", extra={"kind": kind, "score": result, "operator": operator})
    click.echo(f"{kind} {mask_identity(kind, value)}: credit {result}")


@risk.command()
@click.argument("identity")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def buyer(identity: str, as_json: bool) -> None:
    """A buyer: credit score, its history with reasons, and their latest orders."""
    kind, value = identity_argument(identity)

    async def body(store: Store) -> BuyerView:
        return await store.buyer(kind, value)

    view = run_with_store(body)
    data = {
        "kind": view.kind,
        "identity": view.shown,
        "credit": view.score if kind in CREDIT_KINDS else None,
        "history": [
            {
                "at": c.at.isoformat(),
                "delta": c.delta,
                "score": c.score,
                "reason": c.reason,
                "operator": c.operator,
                "order": c.order_ref,
            }  # fmt: skip
            for c in view.changes
        ],
        "orders": [
            {
                "ref": o.ref,
                "sku": o.sku,
                "qty": o.qty,
                "amount": o.amount,
                "status": o.status.value,
                "reason": o.reason,
                "created_at": o.created_at.isoformat(),
            }  # fmt: skip
            for o in view.orders
        ],
    }
    if as_json:
        click.echo(render.to_json(data))
        return
    shown_credit = view.score if kind in CREDIT_KINDS else "n/a (no score per " + kind + ")"
    click.echo(f"{kind} {view.shown}: credit {shown_credit}")
    click.echo(f"history ({len(view.changes)}):" if view.changes else "history: none")
    for c in view.changes:
        who = f" by {c.operator}" if c.operator else ""
        on = f" (order {c.order_ref})" if c.order_ref else ""
        click.echo(f"  {c.at.isoformat(timespec='seconds')}  {c.delta:+d} -> {c.score}  {c.reason}{who}{on}")
    click.echo(f"orders ({len(view.orders)}, newest first):" if view.orders else "orders: none")
    for o in view.orders:
        click.echo(f"  {o.ref}  {o.sku} x{o.qty}  {o.status.value}  {o.reason or ''}".rstrip())


@risk.command()
@click.argument("ref")
@click.option("--reason", required=True, help="What the shop reported, e.g. chargeback.")
@operator_option
def report(ref: str, reason: str, operator: str) -> None:
    """The shop refunded a delivered order (e.g. a chargeback): its buyer's credit drops."""
    if not reason.strip():
        raise BadInput("--reason is empty")

    async def body(store: Store) -> dict[str, int]:
        return await store.risk_report(ref, reason.strip()[:MAX_REASON], operator, utcnow())

    changed = run_with_store(body)
    logger.info("risk.report", extra={"ref": ref, "operator": operator, "reason": reason[:100]})
    if not changed:
        click.echo(f"{ref}: reported; the order has no account, contact or user to lower")
    for kind, score in changed.items():
        click.echo(f"{ref}: {kind} credit now {score}")


@risk.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain(ref: str, as_json: bool) -> None:
    """Why an order was let through, held or refused: each rule evaluated, with its figures."""

    async def body(store: Store) -> Explanation:
        return await store.risk_explain(ref)

    found = run_with_store(body)
    record = found.record
    if as_json:
        click.echo(render.to_json({"ref": ref, "status": found.order.status.value, "reason": found.order.reason,
                                   "buyer": found.identities, "decision": record or None}))  # fmt: skip
        return
    buyer_text = ", ".join(f"{k} {v}" for k, v in found.identities.items()) or "no buyer fields"
    click.echo(f"{ref}: {found.order.status.value}; buyer: {buyer_text}")
    if not record:
        click.echo("no risk decision recorded (no rule applied when it was taken, or it predates risk)")
        return
    click.echo(f"decision: {record.get('action')} (credit {record.get('credit')}, penalty {record.get('penalty')})")
    if record.get("reason"):
        click.echo(f"reason: {record['reason']}")
    for line in record.get("lines", []):
        mark = "HIT " if line.get("hit") else "ok  "
        click.echo(f"  {mark}{line.get('rule')} ({line.get('kind')}, {line.get('action')}): {line.get('detail')}")
