"""`fulfil orders add | import | show | list`."""

from __future__ import annotations

import json
import logging
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fulfil import intake, render
from fulfil.cli.context import BadInput, default_operator, get_state, run_with_store, utcnow
from fulfil.domain import NewOrder, OrderStatus, OrderView

if TYPE_CHECKING:
    from fulfil.storage import Store
    from fulfil.storage.types import AddResult

logger = logging.getLogger(__name__)

IMPORT_BATCH = 500


class DecimalParam(click.ParamType[Decimal]):
    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not number.is_finite():
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


@click.group()
def orders() -> None:
    """Paid orders: add, import, show, list."""


@orders.command()
@click.option("--ref", required=True, help="The shop's order reference (unique).")
@click.option("--sku", required=True, help="Product key as in the config's `products`.")
@click.option("--qty", required=True, type=int, help="How many units.")
@click.option("--account", help="Recharge account (required for direct top-up products).")
@click.option("--amount", type=DecimalParam(), help="What the buyer paid.")
@click.option("--contact", help="The buyer's e-mail or phone, for notifications (stored encrypted, masked).")
@click.option("--ip", help="The buyer's IP address, for risk rules (hashed and encrypted, masked).")
@click.option("--user", help="The buyer's account id at the shop, for risk rules (hashed and encrypted, masked).")
@click.option("--device", help="The buyer's device id, for risk rules (hashed and encrypted, masked).")
def add(
    ref: str,
    sku: str,
    qty: int,
    account: str | None,
    amount: Decimal | None,
    contact: str | None,
    ip: str | None,
    user: str | None,
    device: str | None,
) -> None:
    """Add one paid order. Re-adding an identical order changes nothing."""
    state = get_state()
    order = NewOrder(
        ref=ref.strip(),
        sku=sku.strip(),
        qty=qty,
        account=(account or "").strip() or None,
        amount=amount,
        contact=(contact or "").strip() or None,
        ip=(ip or "").strip() or None,
        user=(user or "").strip() or None,
        device=(device or "").strip() or None,
    )
    reasons = intake.validate_order(order, state.config)
    if reasons:
        raise BadInput(f"order {order.ref} refused: " + "; ".join(reasons))

    async def body(store: Store) -> tuple[AddResult, OrderView | None]:
        result = await store.add_order(order, utcnow())
        existing = await store.get_order(order.ref) if result.status == "conflict" else None
        return result, existing

    result, existing = run_with_store(body, state=state)
    if result.status == "conflict":
        diff = ""
        if existing is not None:
            old = existing.order
            previous = NewOrder(old.ref, old.sku, old.qty, old.account, old.amount)
            diff = " (" + ", ".join(intake.differences(order, previous)) + ")"
        raise BadInput(f"order {order.ref} refused: ref already used by a different order{diff}")
    if result.status == "duplicate":
        click.echo(f"{order.ref}: duplicate (no change)")
        return
    logger.info(
        "order.added",
        extra={
            "ref": order.ref,
            "sku": order.sku,
            "qty": order.qty,
            "order_id": result.order_id,
            "operator": default_operator(),
        },
    )
    click.echo(f"{order.ref}: accepted (order id {result.order_id})")


def _summary_lines(accepted: int, duplicates: int, rejected: list[intake.Rejection]) -> list[str]:
    lines = [f"accepted:  {accepted}", f"duplicate: {duplicates}", f"rejected:  {len(rejected)}"]
    lines += [
        f"  line {r.line}: " + (f"{r.ref}: " if r.ref else "") + r.reason
        for r in sorted(rejected, key=lambda r: r.line)
    ]
    return lines


@orders.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_(file: Path, as_json: bool) -> None:
    """Import orders from JSON lines or CSV (header ref,sku,qty,account,amount).

    Every line is read and checked before anything is written; bad lines are reported with their line
    numbers and never stop the good ones. Importing the same file again changes nothing. Exit 0 when the
    file was processed (even with rejected lines), 2 when it cannot be read at all.
    """
    state = get_state()
    config = state.config
    try:
        parsed = intake.read_import_file(file)
    except intake.ImportFileError as exc:
        raise BadInput(str(exc)) from exc
    plan = intake.plan_import(parsed.lines, config)
    rejected = list(plan.rejected)
    lines_by_ref = {order.ref: line for line, order in plan.to_write}

    async def body(store: Store) -> tuple[int, int]:
        accepted = duplicates = 0
        now = utcnow()
        with click.progressbar(
            length=len(plan.to_write),
            label="importing orders",
            file=sys.stderr,
            show_pos=True,
        ) as bar:
            for start in range(0, len(plan.to_write), IMPORT_BATCH):
                batch = [order for _, order in plan.to_write[start : start + IMPORT_BATCH]]
                for result in await store.add_orders(batch, now):
                    if result.status == "accepted":
                        accepted += 1
                    elif result.status == "duplicate":
                        duplicates += 1
                    else:
                        rejected.append(
                            intake.Rejection(
                                lines_by_ref[result.ref], "ref already used by a different order", result.ref
                            )
                        )
                bar.update(len(batch))
        return accepted, duplicates

    accepted, duplicates = run_with_store(body, state=state) if plan.to_write else (0, 0)
    duplicates += len(plan.repeated)
    logger.info(
        "orders.imported",
        extra={
            "file": str(file),
            "format": parsed.format,
            "accepted": accepted,
            "duplicate": duplicates,
            "rejected": len(rejected),
        },
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(file),
                    "format": parsed.format,
                    "accepted": accepted,
                    "duplicate": duplicates,
                    "rejected": [
                        {"line": r.line, "ref": r.ref, "reason": r.reason}
                        for r in sorted(rejected, key=lambda r: r.line)
                    ],
                },
                indent=2,
            )
        )
        return
    click.echo(f"{file} ({parsed.format}, {len(parsed.lines)} records)")
    click.echo("\n".join(_summary_lines(accepted, duplicates, rejected)))


@orders.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the order as JSON.")
@click.option("--reveal", is_flag=True, help="Show card keys in plaintext (recorded as an event).")
def show(ref: str, as_json: bool, reveal: bool) -> None:
    """Everything about one order: cards (masked), attempts, claims."""

    async def body(store: Store) -> OrderView | None:
        view = await store.get_order(ref)
        if view is not None and reveal and view.cards:
            await _record_reveal(store, [view])
        return view

    view = run_with_store(body)
    if view is None:
        raise BadInput(f"no order with ref {ref}")
    if as_json:
        click.echo(render.to_json(render.order_to_dict(view, reveal=reveal)))
    else:
        click.echo(render.order_text(view, reveal=reveal))


@orders.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in OrderStatus]), help="Only orders in this status."
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many (oldest first); 0 for all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of orders.")
@click.option("--reveal", is_flag=True, help="Show card keys in plaintext (with --json; recorded as events).")
def list_(status: str | None, limit: int, as_json: bool, reveal: bool) -> None:
    """List orders."""

    async def body(store: Store) -> list[OrderView]:
        views = await store.list_orders(OrderStatus(status) if status else None, limit or None)
        if reveal and as_json:
            await _record_reveal(store, [v for v in views if v.cards])
        return views

    views = run_with_store(body)
    if as_json:
        click.echo(render.to_json([render.order_to_dict(v, reveal=reveal) for v in views]))
    elif views:
        click.echo(render.orders_table(views))
    else:
        click.echo("no orders" + (f" in status {status}" if status else ""))


async def _record_reveal(store: Store, views: list[OrderView]) -> None:
    """Who looked at plaintext keys, and when: card keys are cash."""
    operator = default_operator()
    now = utcnow()
    for view in views:
        await store.record_event(
            "cards.revealed",
            now,
            order_id=view.order.id,
            operator=operator,
            data={"ref": view.order.ref, "count": len(view.cards)},
        )
        logger.info(
            "cards.revealed", extra={"ref": view.order.ref, "count": len(view.cards), "operator": operator}
        )
