"""`fulfil claims list | export | set-status`: what suppliers owe, for reconciliation."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from fulfil import render
from fulfil.cli.context import CommandFailed, operator_option, run_with_store, utcnow
from fulfil.domain import CLAIM_TRANSITIONS, ClaimRecord, ClaimStatus

if TYPE_CHECKING:
    from fulfil.storage import Store

logger = logging.getLogger(__name__)

STATUSES = [s.value for s in ClaimStatus]


class SinceParam(click.ParamType[datetime]):
    """A date (`2026-11-01`, midnight UTC) or an ISO 8601 time; without an offset it is UTC."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                self.fail(f"{text!r} is not a date (YYYY-MM-DD) or ISO 8601 time", param, ctx)
            parsed = datetime(day.year, day.month, day.day)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fetch(supplier: str | None, status: str | None, since: datetime | None) -> list[ClaimRecord]:
    async def body(store: Store) -> list[ClaimRecord]:
        return await store.list_claims(
            supplier=supplier, status=ClaimStatus(status) if status else None, since=since
        )

    return run_with_store(body)


@click.group()
def claims() -> None:
    """Claims against suppliers: list, export, move along.

    A claim is a loss a supplier owes for: an invalid key, a charge with nothing delivered, a possible
    double purchase, a top-up that failed after the charge.
    """


@claims.command("list")
@click.option("--supplier", help="Only this supplier's claims.")
@click.option("--status", type=click.Choice(STATUSES), help="Only claims in this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of claims.")
def list_(supplier: str | None, status: str | None, as_json: bool) -> None:
    """List claims."""
    found = _fetch(supplier, status, None)
    if as_json:
        click.echo(render.to_json([render.claim_to_dict(c) for c in found]))
    elif found:
        click.echo(render.claims_table(found))
    else:
        click.echo("no claims")


@claims.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), required=True)
@click.option("--since", type=SinceParam(), help="Only claims created at or after this date/time (UTC).")
@click.option("--supplier", help="Only this supplier's claims.")
@click.option("--status", type=click.Choice(STATUSES), help="Only claims in this status.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
@click.option(
    "--evidence/--no-evidence",
    default=True,
    show_default=True,
    help="Include the (redacted) evidence of each claim.",
)
def export(
    fmt: str,
    since: datetime | None,
    supplier: str | None,
    status: str | None,
    output: Path | None,
    evidence: bool,
) -> None:
    """Export claims for reconciliation with suppliers (CSV or a JSON array)."""
    found = _fetch(supplier, status, since)
    try:
        if output is None:
            _write(found, fmt, sys.stdout, evidence)
        else:
            with output.open("w", encoding="utf-8", newline="") as stream:
                _write(found, fmt, stream, evidence)
    except OSError as exc:
        raise CommandFailed(f"cannot write {output}: {exc.strerror}") from exc
    if output is not None:
        click.echo(f"{len(found)} claim(s) written to {output}", err=True)


def _write(found: list[ClaimRecord], fmt: str, stream: TextIO, evidence: bool) -> None:
    if fmt == "csv":
        render.write_claims_csv(found, stream, evidence=evidence)
    else:
        json.dump(
            [render.claim_to_dict(c, evidence=evidence) for c in found],
            stream,
            indent=2,
            ensure_ascii=False,
            default=str,
        )
        stream.write("\n")


@claims.command("set-status")
@click.argument("claim_no")
@click.argument("status", type=click.Choice(STATUSES))
@click.option("--note", help="Why, for the record (e.g. the supplier's ticket number).")
@operator_option
def set_status(claim_no: str, status: str, note: str | None, operator: str) -> None:
    """Move a claim along: open -> submitted -> accepted | rejected -> settled."""

    async def body(store: Store) -> ClaimRecord:
        return await store.set_claim_status(claim_no, ClaimStatus(status), note, operator, utcnow())

    claim = run_with_store(body)
    logger.info("claim.status_changed", extra={"claim_no": claim_no, "status": status, "operator": operator})
    allowed = ", ".join(CLAIM_TRANSITIONS[claim.status]) or "none (final)"
    click.echo(f"{claim_no}: {claim.status} (next: {allowed})")
