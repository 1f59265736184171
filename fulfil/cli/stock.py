"""`fulfil stock import | list`: the operator's own card keys."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fulfil import render
from fulfil.cli.context import BadInput, default_operator, get_state, run_with_store, utcnow
from fulfil.config import Config
from fulfil.stockfile import StockFileError, read_stock_file

if TYPE_CHECKING:
    from fulfil.storage import Store
    from fulfil.storage.types import StockCount, StockImport

logger = logging.getLogger(__name__)


def _stock_suppliers(config: Config) -> set[str]:
    return {s.name for s in config.suppliers if s.type == "stock"}


@click.group()
def stock() -> None:
    """Your own card keys: import them, count them.

    Keys are stored encrypted and delivered by suppliers of type `stock`.
    """


@stock.command("import")
@click.argument("sku")
@click.argument("file", type=click.Path(path_type=Path))
def import_(sku: str, file: Path) -> None:
    """Import card keys for SKU: one per line, `number,password` or `password`.

    Blank lines and `#` comments are skipped. Lines that fail the product's card_pattern, and keys already
    in the file or in stock, are refused and listed by line number; the rest go in as one transaction.
    """
    state = get_state()
    config = state.config
    product = config.products.get(sku)
    if product is None:
        known = ", ".join(sorted(config.products)) or "none configured"
        raise BadInput(f"unknown sku '{sku}' (known: {known})")
    if product.kind == "direct":
        raise BadInput(f"'{sku}' is a direct top-up product: it has no card stock")
    try:
        parsed = read_stock_file(file, product.card_pattern, product.number_pattern)
    except StockFileError as exc:
        raise BadInput(str(exc)) from exc
    if not any(offer.supplier in _stock_suppliers(config) for offer in product.offers):
        click.echo(
            f"warning: no offer of '{sku}' is at a stock supplier; these keys are not used until one is",
            err=True,
        )

    async def body(store: Store) -> StockImport:
        return await store.import_stock(sku, parsed.cards, utcnow())

    if parsed.cards:
        result = run_with_store(body, state=state)
        added, in_file, existing = result.added, result.duplicate_in_file, result.duplicate_existing
    else:
        added, in_file, existing = 0, [], []
    logger.info(
        "stock.imported",
        extra={
            "sku": sku,
            "file": str(file),
            "added": added,
            "duplicate_in_file": len(in_file),
            "duplicate_existing": len(existing),
            "invalid": len(parsed.invalid),
            "operator": default_operator(),
        },
    )
    click.echo(f"{sku}: {file}")
    click.echo(f"added:              {added}")
    click.echo(f"duplicate in file:  {len(in_file)}" + _lines(parsed.line_of(i) for i in in_file))
    click.echo(f"already in stock:   {len(existing)}" + _lines(parsed.line_of(i) for i in existing))
    click.echo(f"invalid:            {len(parsed.invalid)}")
    for line, reason in parsed.invalid:
        click.echo(f"  line {line}: {reason}")


def _lines(numbers: Iterable[int]) -> str:
    shown = sorted(numbers)
    return f"  (line{'s' if len(shown) > 1 else ''} {', '.join(map(str, shown))})" if shown else ""


@stock.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print {sku: {available, used}} as JSON.")
def list_(as_json: bool) -> None:
    """Keys per SKU: available and used. Never shows a key."""
    state = get_state()
    config = state.config

    async def body(store: Store) -> dict[str, StockCount]:
        return await store.stock_counts()

    counts = {sku: (c.available, c.used) for sku, c in run_with_store(body, state=state).items()}
    # Products served from stock show even with nothing imported yet: an empty shelf is worth seeing.
    shelves = _stock_suppliers(config)
    for sku, product in config.products.items():
        if any(offer.supplier in shelves for offer in product.offers):
            counts.setdefault(sku, (0, 0))
    if as_json:
        click.echo(
            json.dumps({sku: {"available": a, "used": u} for sku, (a, u) in sorted(counts.items())}, indent=2)
        )
    elif counts:
        click.echo(render.stock_table(counts))
    else:
        click.echo("no stock")
