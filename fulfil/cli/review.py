"""`fulfil review list | retry | refund | resolve | release | refuse | hold`: the queue of orders that need a person.

`hold` takes a pending order into the queue (nothing more is bought for it until a person decides).

`release` and `refuse` are for orders held by risk (their reason starts with `risk:`).

`resolve` delivers keys found by hand (--cards) or keys held for the order (--from-held).

Every action is recorded as an event with the operator and the time (the Store writes it), and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fulfil import render
from fulfil.cli.context import BadInput, get_state, note_option, operator_option, run_with_store, utcnow
from fulfil.cli.held import recovery_lines
from fulfil.domain import Order, OrderStatus, OrderView
from fulfil.stockfile import StockFileError, read_stock_file, repeated_lines

if TYPE_CHECKING:
    from fulfil.storage import HeldRelease, Store

logger = logging.getLogger(__name__)


@click.group()
def review() -> None:
    """Orders waiting for a person: list, retry, refund, resolve."""


@review.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of orders.")
def list_(as_json: bool) -> None:
    """Orders in review, oldest first, with the reason each is there."""

    async def body(store: Store) -> list[OrderView]:
        return await store.list_orders(OrderStatus.REVIEW, None)

    views = sorted(run_with_store(body), key=lambda v: v.order.created_at)
    if as_json:
        click.echo(render.to_json([render.order_to_dict(v) for v in views]))
    elif views:
        click.echo(render.review_table(views))
    else:
        click.echo("the review queue is empty")


def _act(ref: str, operator: str, event: str, action: Callable[[Store], Coroutine[Any, Any, Order]]) -> Order:
    """One operator action on one order, logged as `event` with who did it (the Store records the event)."""
    order = run_with_store(action)
    extra: dict[str, Any] = {"ref": ref, "order_id": order.id, "operator": operator}
    if event == "review.refund":
        extra["reason"] = order.reason
    logger.info(event, extra=extra)
    return order


@review.command()
@click.argument("ref")
@operator_option
def retry(ref: str, operator: str) -> None:
    """Put the order back to pending: a worker picks it up again."""
    order = _act(ref, operator, "review.retry", lambda store: store.review_retry(ref, operator, utcnow()))
    click.echo(f"{ref}: back to {order.status}; a worker will pick it up")


@review.command()
@click.argument("ref")
@note_option("Why (kept in the order's reason and the event): a buyer's request, a ticket number.")
@operator_option
def hold(ref: str, note: str | None, operator: str) -> None:
    """Take a pending order into review: no worker buys for it until a person retries, refunds or resolves it
    (an order waiting out a supplier outage, a buyer who asked to cancel). Refused for an order a worker holds
    right now (try again in a few seconds), one with a purchase still open at a supplier (it settles without
    you) and an after-sales reissue (act on its case)."""
    order = _act(ref, operator, "review.hold", lambda store: store.review_hold(ref, operator, utcnow(), note))
    click.echo(f"{ref}: {order.status}; reason: {order.reason}")


@review.command()
@click.argument("ref")
@operator_option
def refund(ref: str, operator: str) -> None:
    """Give up on the order: it becomes failed (refundable to the buyer), its reason kept."""
    order = _act(ref, operator, "review.refund", lambda store: store.review_refund(ref, operator, utcnow()))
    click.echo(f"{ref}: {order.status} (refund the buyer); reason: {order.reason or '-'}")


@review.command()
@click.argument("ref")
@operator_option
def release(ref: str, operator: str) -> None:
    """Let an order held by risk through: back to pending, fulfilled normally, not evaluated again."""
    order = _act(ref, operator, "review.release", lambda store: store.review_release(ref, operator, utcnow()))
    click.echo(f"{ref}: released, back to {order.status}; a worker will fulfil it")


@review.command()
@click.argument("ref")
@operator_option
def refuse(ref: str, operator: str) -> None:
    """Refuse an order held by risk: failed (refund the buyer), its risk reason kept; the buyer loses credit."""
    order = _act(ref, operator, "review.refuse", lambda store: store.review_refuse(ref, operator, utcnow()))
    click.echo(f"{ref}: {order.status} (refund the buyer); reason: {order.reason or '-'}")


@review.command()
@click.argument("ref")
@click.argument("held_ids", metavar="[IDS]...", nargs=-1, type=click.IntRange(min=1))
@click.option(
    "--cards",
    "cards_file",
    type=click.Path(path_type=Path),
    help="Keys to deliver, one per line: `number,password` or `password`.",
)
@click.option(
    "--from-held",
    is_flag=True,
    help="Deliver keys held for this order (`fulfil held list --order REF`): by default its oldest usable ones, "
    "or the held IDS given.",
)
@operator_option
def resolve(ref: str, held_ids: tuple[int, ...], cards_file: Path | None, from_held: bool, operator: str) -> None:
    """Deliver the order by hand: the keys in --cards, or keys held for it (--from-held), exactly qty of them.

    With --from-held the keys are delivered under the purchase that bought them (supplier, its order number
    and cost kept); keys held as invalid_key only when named by id. A claim that covered a delivered key asks
    for less.
    """
    if from_held == (cards_file is not None):
        raise BadInput("give one of --cards FILE or --from-held [IDS...]")
    if held_ids and not from_held:
        raise BadInput("held key IDS go with --from-held")
    if from_held:
        _resolve_from_held(ref, list(held_ids) or None, operator)
        return
    assert cards_file is not None
    state = get_state()
    cipher = state.cipher()

    async def body(store: Store) -> Order:
        view = await store.get_order(ref)
        if view is None:
            raise BadInput(f"no order with ref {ref}")
        order = view.order
        if order.status != OrderStatus.REVIEW:
            raise BadInput(f"{ref} is {order.status}, not in review")
        product = state.config.products.get(order.sku)
        try:
            patterns = (product.card_pattern, product.number_pattern) if product else (None, None)
            parsed = read_stock_file(cards_file, *patterns)
        except StockFileError as exc:
            raise BadInput(str(exc)) from exc
        problems = [f"line {line}: {reason}" for line, reason in parsed.invalid]
        problems += [f"line {line}: same key as line {first}" for line, first in repeated_lines(parsed)]
        if not problems and len(parsed.cards) != order.qty:
            problems.append(f"the order is for {order.qty} key(s), the file has {len(parsed.cards)}")
        if not problems:
            prints = [cipher.fingerprint(card) for card in parsed.cards]
            seen = await store.delivered_fingerprints(prints)
            problems += [
                f"line {line}: this key was already delivered to an order"
                for line, fp in zip(parsed.lines, prints, strict=True)
                if fp in seen
            ]
        if problems:
            raise BadInput(f"{ref} not resolved, nothing written:\n" + "\n".join(f"  {p}" for p in problems))
        return await store.review_resolve(ref, parsed.cards, operator, utcnow())

    order = run_with_store(body, state=state, cipher=cipher)
    logger.info(
        "review.resolve", extra={"ref": ref, "order_id": order.id, "operator": operator, "qty": order.qty}
    )
    click.echo(f"{ref}: {order.status} by hand ({order.qty} key(s))")


def _resolve_from_held(ref: str, ids: list[int] | None, operator: str) -> None:
    async def body(store: Store) -> HeldRelease:
        return await store.review_resolve_from_held(ref, ids, operator, utcnow())

    result = run_with_store(body)
    order = result.order
    assert order is not None
    logger.info(
        "review.resolve",
        extra={"ref": ref, "order_id": order.id, "operator": operator, "qty": order.qty, "held": list(result.ids)},
    )
    click.echo(f"{ref}: {order.status} from held keys {', '.join(map(str, result.ids))}")
    for line in recovery_lines(result.recoveries):
        click.echo(line)
