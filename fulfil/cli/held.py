"""`fulfil held list | release`: keys a supplier charged for that were not delivered, kept for a person.

Keys are masked unless `--reveal`, which is recorded as an event with the operator. Releasing a key to stock is
one transaction with its event; a claim that covered the key asks for less (see `fulfil claims list`). To
deliver held keys to their order in review: `fulfil review resolve REF --from-held [IDS...]`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from fulfil import render
from fulfil.cli.context import BadInput, operator_option, run_with_store, utcnow

if TYPE_CHECKING:
    from fulfil.storage import ClaimRecovery, HeldCard, HeldRelease, Store

logger = logging.getLogger(__name__)

REASONS = ("invalid_key", "partial_invalid_batch", "surplus", "late_keys")


@click.group()
def held() -> None:
    """Keys charged for and not delivered: list them, release them to stock."""


@held.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of held keys.")
@click.option("--reason", type=click.Choice(REASONS), help="Only keys held for this reason.")
@click.option("--order", "order_ref", metavar="REF", help="Only keys bought for this order.")
@click.option("--reveal", is_flag=True, help="Show the keys in plaintext (recorded as an event).")
@operator_option
def list_(as_json: bool, reason: str | None, order_ref: str | None, reveal: bool, operator: str) -> None:
    """Held keys not yet released, oldest first: order, purchase, supplier, reason, claims, the key masked."""

    async def body(store: Store) -> list[HeldCard]:
        found = await store.held_cards(reason=reason, order_ref=order_ref)
        if reveal and found:
            now = utcnow()
            for order_id, ids in _ids_by_order(found).items():
                # Who looked at plaintext keys, and when: card keys are cash. Written before they are shown.
                await store.record_event(
                    "held.revealed", now, order_id=order_id, operator=operator, data={"ids": ids, "count": len(ids)}
                )
            logger.info("held.revealed", extra={"count": len(found), "operator": operator})
        return found

    found = run_with_store(body)
    if as_json:
        click.echo(render.to_json([render.held_to_dict(h, reveal=reveal) for h in found]))
    elif found:
        click.echo(render.held_table(found, reveal=reveal))
        if not reveal:
            click.echo(f"\n{len(found)} held key(s), masked: --reveal to show")
    else:
        click.echo("no held keys" + _filters(reason, order_ref))


@held.command()
@click.argument("ids", nargs=-1, required=True, type=click.IntRange(min=1))
@click.option("--to-stock", is_flag=True, help="Put the keys into stock for their order's sku.")
@operator_option
def release(ids: tuple[int, ...], to_stock: bool, operator: str) -> None:
    """Release held keys (by ID, from `fulfil held list`) to stock, all or none.

    A key already in stock or delivered, or released before, is refused by its ID and nothing is written.
    A claim that covered a released key asks for the attempt's unit cost less per key.
    """
    if not to_stock:
        raise BadInput(
            "say where the keys go: --to-stock (to deliver them to their order in review: "
            "`fulfil review resolve REF --from-held IDS`)"
        )

    async def body(store: Store) -> HeldRelease:
        return await store.release_held_to_stock(list(ids), operator, utcnow())

    result = run_with_store(body)
    logger.info(
        "held.released",
        extra={"ids": list(result.ids), "to": result.released_to, "operator": operator},
    )
    click.echo(f"released {len(result.ids)} held key(s) to {result.released_to}: {_joined(result.ids)}")
    for line in recovery_lines(result.recoveries):
        click.echo(line)


def recovery_lines(recoveries: tuple[ClaimRecovery, ...]) -> list[str]:
    """One line per claim that asks for less now."""
    lines = []
    for r in recoveries:
        if r.recovered_amount is None:
            lines.append(f"claim {r.claim_no} ({r.reason}): {r.units} key(s) recovered; no unit cost, amount kept")
        else:
            lines.append(
                f"claim {r.claim_no} ({r.reason}): {r.amount_before} -> {r.amount_after} "
                f"({r.units} key(s) recovered, {r.recovered_amount})"
            )
    return lines


def _ids_by_order(found: list[HeldCard]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for h in found:
        grouped.setdefault(h.order_id, []).append(h.id)
    return grouped


def _joined(ids: tuple[int, ...]) -> str:
    return ", ".join(map(str, ids))


def _filters(reason: str | None, order_ref: str | None) -> str:
    parts = [f"reason {reason}"] * bool(reason) + [f"order {order_ref}"] * bool(order_ref)
    return f" ({', '.join(parts)})" if parts else ""
