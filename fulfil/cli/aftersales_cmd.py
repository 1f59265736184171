"""`fulfil aftersales open|list|show|act|stats`, `fulfil reissues` and `fulfil evidence`: the support desk.

Every action is an event with `--operator`; buyer contacts are masked and keys never printed here.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import click

from fulfil import render
from fulfil.aftersales import credit_book
from fulfil.aftersales.model import Action, Case, Level, Problem, Report, case_dict
from fulfil.cli.claims import SinceParam
from fulfil.cli.context import BadInput, get_state, note_option, operator_option, run_with_store, utcnow
from fulfil.clock import SystemClock

if TYPE_CHECKING:
    from fulfil.aftersales.desk import Desk
    from fulfil.storage import Store


def _desk(store: Store, suppliers: dict[str, Any] | None = None) -> Desk:
    from fulfil.aftersales.desk import Desk

    config = get_state().config
    return Desk(store, lambda: config, credit_book(store), suppliers=suppliers, clock=SystemClock())


def _case_text(case: Case) -> str:
    rows = [(k, v) for k, v in case_dict(case).items() if v not in (None, [], "")]
    return render.table(("FIELD", "VALUE"), rows)


@click.group()
def aftersales() -> None:
    """After-sales cases: buyers' reports, L1 decisions, the L2/L3 queues and their actions."""


@aftersales.command("open")
@click.option("--ref", required=True, help="The order's ref.")
@click.option("--problem", required=True, type=click.Choice([p.value for p in Problem]))
@click.option("--key", "keys", multiple=True, help="key_invalid: a key that does not work (repeat for several).")
@click.option("--text", help="What the buyer says (required for `other`).")
@click.option("--attachment", "attachments", multiple=True, help="A reference to an attachment (URL, upload id).")
@click.option("--json", "as_json", is_flag=True)
@operator_option
def open_case(
    ref: str,
    problem: str,
    keys: tuple[str, ...],
    text: str | None,
    attachments: tuple[str, ...],
    as_json: bool,
    operator: str,
) -> None:
    """Open a case on the buyer's behalf (a chat, a phone call): L1 decides as for a report over HTTP."""
    if problem == Problem.KEY_INVALID and not keys:
        raise BadInput("--problem key_invalid needs --key (the keys that do not work)")
    if problem == Problem.OTHER and not text:
        raise BadInput("--problem other needs --text")
    report = Report(Problem(problem), keys, text, attachments)

    async def body(store: Store) -> Case:
        from fulfil.app import build_suppliers

        found = await store.order_for_proof(ref)
        if found is None:
            raise BadInput(f"no order '{ref}'")
        suppliers = build_suppliers(get_state().config, store) if problem == Problem.TOPUP_NOT_ARRIVED else {}
        try:
            opened = await _desk(store, suppliers).report(found[0], found[1], report, reporter=operator)
        finally:
            for supplier in suppliers.values():
                await supplier.aclose()
        return opened.case

    case = run_with_store(body)
    click.echo(render.to_json(case_dict(case)) if as_json else _case_text(case))


@aftersales.command("list")
@click.option("--level", type=click.Choice([level.value for level in Level]), help="One level's queue.")
@click.option("--all", "show_all", is_flag=True, help="Closed cases too (default: open ones).")
@click.option("--json", "as_json", is_flag=True)
def list_cases(level: str | None, show_all: bool, as_json: bool) -> None:
    """The open cases, oldest first: the queue a person works down (with --level, one level's)."""
    from fulfil.aftersales.model import CaseStatus

    async def body(store: Store) -> list[Case]:
        status = None if show_all else CaseStatus.OPEN
        return await store.list_cases(level=Level(level) if level else None, status=status)

    cases = run_with_store(body)
    if as_json:
        click.echo(render.to_json([case_dict(c) for c in cases]))
        return
    rows = [
        (c.case_no, c.order_ref, c.problem, c.status, c.level, c.outcome, c.due_at, (c.reason or "")[:60])
        for c in cases
    ]
    click.echo(render.table(("CASE", "REF", "PROBLEM", "STATUS", "LEVEL", "OUTCOME", "DUE (UTC)", "REASON"), rows))


@aftersales.command("show")
@click.argument("case_no")
@click.option("--json", "as_json", is_flag=True)
def show_case(case_no: str, as_json: bool) -> None:
    """One case with its reissues and claims."""

    async def body(store: Store) -> Case | None:
        return await store.get_case(case_no)

    case = run_with_store(body)
    if case is None:
        raise BadInput(f"no case '{case_no}'")
    click.echo(render.to_json(case_dict(case)) if as_json else _case_text(case))


@aftersales.command("act")
@click.argument("case_no")
@click.argument("action", type=click.Choice([a.value for a in Action]))
@note_option("Why (kept on the case and in the event).")
@click.option("--json", "as_json", is_flag=True)
@operator_option
def act(case_no: str, action: str, note: str | None, as_json: bool, operator: str) -> None:
    """reissue (buy the units again, never twice at once), refund, resolve, escalate, reject (abuse: credit down)."""

    async def body(store: Store) -> Case:
        return await _desk(store).act(case_no, Action(action), note, operator)

    case = run_with_store(body)
    click.echo(render.to_json(case_dict(case)) if as_json else _case_text(case))


@aftersales.command("stats")
@click.option("--since", type=SinceParam(), help="Cases opened since (default: 30 days ago).")
@click.option("--until", type=SinceParam(), help="Cases opened before (default: now).")
@click.option("--json", "as_json", is_flag=True)
def stats(since: datetime | None, until: datetime | None, as_json: bool) -> None:
    """Automation rate, handling time per level (p50/p95), supplier-caused share, reissue cost recovered."""
    from fulfil.aftersales.stats import figures

    now = utcnow()
    start, end = since or now - timedelta(days=30), until or now

    async def body(store: Store) -> dict[str, Any]:
        return figures(await store.case_figures(start, end))

    out = {"since": start.isoformat(), "until": end.isoformat(), **run_with_store(body)}
    if as_json:
        click.echo(render.to_json(out))
        return
    lines = [
        f"cases {out['cases']} (open {out['open']}, closed {out['closed']}) from {out['since']} to {out['until']}",
        f"automation rate (closed at L1): {_pct(out['automation_rate'])}",
        f"supplier-caused share: {_pct(out['supplier_caused_share'])}",
        f"reissue cost {out['reissue_cost']}, recovered by claims {out['recovered']} ({_pct(out['recovered_share'])})",
    ]
    for level, t in out["handling_seconds"].items():
        lines.append(f"handling time {level}: p50 {t['p50']}s, p95 {t['p95']}s over {t['count']} cases")
    click.echo("\n".join(lines))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _amount(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount") from None


@click.command()
@click.option("--ref", help="The original order's ref.")
@click.option("--contact", help="The buyer's contact (e-mail or phone), case-insensitive.")
@click.option("--account", help="The recharge account.")
@click.option("--supplier", help="The original or the new supplier.")
@click.option("--product", "sku", help="The product (sku).")
@click.option("--since", type=SinceParam(), help="Reissued at or after (date or ISO time, UTC).")
@click.option("--until", type=SinceParam(), help="Reissued before.")
@click.option("--min-amount", callback=_amount, help="The original order's amount paid, at least.")
@click.option("--max-amount", callback=_amount, help="The original order's amount paid, at most.")
@click.option("--json", "as_json", is_flag=True, help="JSON rows.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with the ledger's columns.")
def reissues(
    ref: str | None,
    contact: str | None,
    account: str | None,
    supplier: str | None,
    sku: str | None,
    since: datetime | None,
    until: datetime | None,
    min_amount: Decimal | None,
    max_amount: Decimal | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """The reissue ledger (补发台账): every reissue, automatic or by an operator, with its claim; filters combine."""
    from fulfil.aftersales.ledger import by_contact, entry_dict, write_csv
    from fulfil.storage.store_reissues import LedgerFilter

    if as_json and as_csv:
        raise BadInput("--json and --csv exclude each other")
    where = LedgerFilter(ref, since, until, supplier, sku, account, min_amount, max_amount)

    async def body(store: Store) -> list[Any]:
        return await store.reissue_ledger(where)

    entries = by_contact(run_with_store(body), contact)
    if as_csv:
        write_csv(entries, sys.stdout)
    elif as_json:
        click.echo(render.to_json([entry_dict(e) for e in entries]))
    else:
        rows = [
            (
                e.created_at,
                e.ref,
                e.case_no,
                e.original_supplier,
                e.new_supplier,
                e.units,
                e.cost,
                e.claim_no,
                e.decided_by,
            )
            for e in entries
        ]
        headers = ("WHEN (UTC)", "REF", "CASE", "FROM", "NEW SUPPLIER", "UNITS", "COST", "CLAIM", "DECIDED BY")
        click.echo(render.table(headers, rows))


@click.command()
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["json", "html"]), default="json", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write to this file (default: stdout).")
def evidence(ref: str, fmt: str, output: str | None) -> None:
    """The evidence file of an order or a case (REF: an order ref or AS-... case number): its full timeline,
    keys masked, requests redacted; JSON or a readable HTML page."""
    from fulfil.aftersales.evidence import build_evidence, render_html

    async def body(store: Store) -> dict[str, Any]:
        return await build_evidence(store, ref)

    document = run_with_store(body)
    text = render.to_json(document) if fmt == "json" else render_html(document)
    if output:
        with open(output, "w", encoding="utf-8") as stream:
            stream.write(text if text.endswith("\n") else text + "\n")
    else:
        click.echo(text)
