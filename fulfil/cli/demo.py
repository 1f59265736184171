"""`fulfil demo`: the daemon end to end on an embedded default (see fulfil/demo.py)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option(
    "--orders", default=300, show_default=True, type=click.IntRange(1, 100_000), help="Paid orders to fulfil."
)
def demo(orders: int) -> None:
    """Run the daemon on a temporary database against two simulated suppliers, and reconcile the books."""
    from fulfil.demo import main

    raise SystemExit(main(orders))
