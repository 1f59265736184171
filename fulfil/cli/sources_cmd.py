"""`fulfil sources [--json]`, `sources test NAME`, `sources retry REF`, `sources settle REF`: the shops fulfil sits
beside (fulfil/sources).

`fulfil sources` shows, per configured source: whether the shop's database answers now, the daemon's last poll,
what fulfil took and how it ended (delivered / failed written back, waiting for the write-back, still being
fulfilled, with a person, refused), and the paid orders waiting at the shop for goods that are not mapped.
`sources test NAME` connects, checks the tables and columns, and prints what the next poll would take; it changes
nothing, anywhere. Buyer contacts are never printed; recharge accounts are masked.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from fulfil import render
from fulfil.cli.context import (
    CliState,
    CommandFailed,
    get_state,
    operator_option,
    run_async,
    run_with_store,
    utcnow,
)
from fulfil.config import Config, SourceConfig
from fulfil.crypto import mask

if TYPE_CHECKING:
    from fulfil.storage import SourceRecord, SourceSummary, Store

LISTED = 20  # rows of a kind shown in text output


def _entry(config: Config, name: str) -> SourceConfig:
    try:
        return config.source(name)
    except KeyError:
        names = ", ".join(s.name for s in config.sources) or "none configured"
        raise click.BadParameter(f"no source '{name}' (sources: {names})", param_hint="NAME") from None


@click.group("sources", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def sources(ctx: click.Context, as_json: bool) -> None:
    """Shop sources: reachable, last poll, taken / delivered / failed / waiting write-back, unmapped goods."""
    if ctx.invoked_subcommand is not None:
        return
    state = get_state()
    config = state.config
    rows = run_with_store(lambda store: _gather(store, config), state=state)
    if as_json:
        click.echo(render.to_json({"generated_at": utcnow().isoformat(), "sources": rows}))
    else:
        click.echo(_text(rows) if rows else "no sources configured (sources: in the YAML)")


async def _gather(store: Store, config: Config) -> list[dict[str, Any]]:
    names = [entry.name for entry in config.sources]
    summaries = await store.source_summaries(names)
    review = await store.source_orders_in(None, [_state("review")], limit=10_000)
    refused = await store.source_orders_in(None, [_state("refused")], limit=10_000)
    shops = await asyncio.gather(*(_look_at_shop(entry) for entry in config.sources))
    return [
        _source_dict(entry, summaries[entry.name], shop, [r for r in review if r.source == entry.name],
                     [r for r in refused if r.source == entry.name])  # fmt: skip
        for entry, shop in zip(config.sources, shops, strict=True)
    ]


def _state(value: str) -> Any:
    from fulfil.storage import SourceState

    return SourceState(value)


async def _look_at_shop(entry: SourceConfig) -> dict[str, Any]:
    """Reachable now, and the unmapped goods waiting (one query); never raises."""
    from fulfil.sources import SourceError, build_source

    try:
        source = build_source(entry)
    except SourceError as exc:
        return {"reachable": False, "error": str(exc), "unmapped": {}}
    try:
        return {"reachable": True, "error": None, "unmapped": await source.unmapped()}
    except SourceError as exc:
        return {"reachable": False, "error": str(exc), "unmapped": {}}
    finally:
        await source.aclose()


def _source_dict(
    entry: SourceConfig,
    summary: SourceSummary,
    shop: dict[str, Any],
    review: list[SourceRecord],
    refused: list[SourceRecord],
) -> dict[str, Any]:
    states = summary.states
    taken = states["taken"] + states["written"] + sum(1 for r in review if r.order_id is not None)
    return {
        "name": entry.name,
        "type": entry.type,
        "enabled": entry.enabled,
        "reachable": shop["reachable"],
        "error": shop["error"],
        "last_poll": {
            "at": _iso(summary.polled_at),
            "ok_at": _iso(summary.ok_at),
            "error": summary.error,
        },
        "taken": taken,
        "delivered": summary.written.get("delivered", 0),
        "failed": summary.written.get("failed", 0),
        "settled_by_hand": summary.written.get("by_hand", 0),
        "waiting_write_back": summary.waiting_write_back,
        "in_progress": summary.in_progress,
        "in_fulfil_review": summary.in_review,
        "taking": states["taking"],
        "review": [_record_dict(r) for r in review],
        "refused": [_record_dict(r) for r in refused],
        "unmapped": shop["unmapped"],
        "goods": dict(entry.goods),
    }


def _record_dict(record: SourceRecord) -> dict[str, Any]:
    return {
        "ref": record.ref,
        "goods": record.goods_id,
        "sku": record.sku or None,
        "qty": record.qty,
        "state": record.state.value,
        "order_status": record.order_status,
        "reason": record.reason,
        "since": record.updated_at.isoformat(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _text(rows: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for row in rows:
        reach = "yes" if row["reachable"] else f"NO ({row['error']})"
        poll = row["last_poll"]
        if poll["at"] is None:
            last = "never (no daemon has polled it)"
        else:
            last = f"{poll['at']}" + (f" FAILED: {poll['error']}" if poll["error"] else " ok")
        disabled = "" if row["enabled"] else " (disabled)"
        lines.append(f"{row['name']} ({row['type']}){disabled}")
        lines.append(f"  reachable: {reach}")
        lines.append(f"  last poll: {last}")
        lines.append(
            f"  taken {row['taken']}: delivered {row['delivered']}, failed {row['failed']}, "
            f"waiting write-back {row['waiting_write_back']}, in progress {row['in_progress']} "
            f"(in fulfil's review {row['in_fulfil_review']}), with a person {len(row['review'])}, "
            f"settled by hand {row['settled_by_hand']}; "
            f"refused {len(row['refused'])}, being taken {row['taking']}"
        )
        unmapped = ", ".join(f"goods {g}: {n}" for g, n in sorted(row["unmapped"].items(), key=lambda kv: kv[0]))
        lines.append(f"  unmapped goods waiting at the shop: {unmapped or 'none'}")
        for title, key in (("with a person (fulfil sources retry|settle REF)", "review"), ("refused", "refused")):
            if row[key]:
                lines.append(f"  {title}:")
                for record in row[key][:LISTED]:
                    lines.append(f"    {record['ref']} goods {record['goods']}: {record['reason']}")
                if len(row[key]) > LISTED:
                    lines.append(f"    … and {len(row[key]) - LISTED} more (--json lists all)")
    return "\n".join(lines)


# --- sources test NAME ------------------------------------------------------------------------------------


@sources.command("test")
@click.argument("name")
def test_source(name: str) -> None:
    """Connect to the shop, check its tables and columns, print what the next poll would take. Changes nothing."""
    state = get_state()
    config = state.config
    entry = _entry(config, name)
    ok = run_async(_test(entry, config, state))
    if not ok:
        raise CommandFailed(f"source {name}: the checks above failed")


async def _open_store(state: CliState) -> Store | None:
    """fulfil's database, to tell orders it already knows; the test goes on without it."""
    try:
        return await state.open_store()
    except click.ClickException as exc:
        click.echo(f"note: fulfil's database is not open ({exc.format_message()}): known orders are not told apart")
        return None


async def _test(entry: SourceConfig, config: Config, state: CliState) -> bool:
    from fulfil.sources import SourceError, build_source
    from fulfil.sources.runner import judge

    try:
        source = build_source(entry)
    except SourceError as exc:
        click.echo(f"FAIL {exc}")
        return False
    store = await _open_store(state)
    try:
        try:
            checks = await source.check()
        except SourceError as exc:
            click.echo(f"FAIL cannot reach the shop's database: {exc}")
            return False
        for check in checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.what}")
        if not all(check.ok for check in checks):
            return False
        orders = await source.poll(0, entry.batch_size)
        known = await store.source_records(entry.name, [o.ref for o in orders]) if store is not None else {}
        click.echo(f"paid orders waiting for mapped goods (first {entry.batch_size} at most): {len(orders)}")
        for order in orders:
            record = known.get(order.ref)
            if record is not None and record.state.value != "refused":
                click.echo(f"  already fulfil's: {order.ref} ({record.state.value})")
                continue
            draft, reasons = judge(order, entry, config)
            account = f" account {mask(order.account)}" if order.account else ""
            what = f"{order.ref} goods {order.goods_id} -> {draft.sku or '?'} x{order.qty} ({order.kind}){account}"
            why = f": {'; '.join(reasons)}" if reasons else ""
            click.echo(f"  would {'refuse' if reasons else 'take'}: {what}{why}")
        unmapped = await source.unmapped()
        listed = ", ".join(f"goods {g}: {n}" for g, n in sorted(unmapped.items())) or "none"
        click.echo(f"unmapped goods waiting at the shop (left alone): {listed}")
        return True
    except SourceError as exc:
        click.echo(f"FAIL {exc}")
        return False
    finally:
        await source.aclose()
        if store is not None:
            await store.close()


# --- a person's moves -----------------------------------------------------------------------------------


@sources.command("retry")
@click.argument("ref")
@click.option("--source", "source_name", help="The source, when two have this order number.")
@operator_option
def retry(ref: str, source_name: str | None, operator: str) -> None:
    """Write back a shop order in the person's queue again (after putting its row right at the shop)."""
    run_with_store(lambda store: store.retry_source_order(ref, operator, utcnow(), source_name))
    click.echo(f"{ref}: the write-back will be tried again by the daemon")


@sources.command("settle")
@click.argument("ref")
@click.option("--note", required=True, help="What was done at the shop (kept with the record).")
@click.option("--source", "source_name", help="The source, when two have this order number.")
@operator_option
def settle(ref: str, note: str, source_name: str | None, operator: str) -> None:
    """Close a shop order in the person's queue: its row was put right at the shop by hand."""
    run_with_store(lambda store: store.settle_source_order(ref, note, operator, utcnow(), source_name))
    click.echo(f"{ref}: settled by hand")
