"""`fulfil db upgrade` and `fulfil db status`."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import click

from fulfil.cli.context import CommandFailed, get_state, run_with_store
from fulfil.crypto import CardCipher

if TYPE_CHECKING:
    from fulfil.storage import Store

logger = logging.getLogger(__name__)


def _redacted_url(url: str) -> str:
    """The database URL without a password (postgresql+psycopg://user:secret@host/db)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


@click.group()
def db() -> None:
    """Database schema: upgrade and status."""


@db.command()
def upgrade() -> None:
    """Bring the database schema up to date (creates the SQLite file if needed)."""
    from fulfil.storage import Store
    from fulfil.storage.errors import StoreError

    url = get_state().config.database.url
    try:
        Store.upgrade(url)
    except StoreError as exc:
        raise CommandFailed(f"upgrade failed: {exc}") from exc
    logger.info("db.upgraded", extra={"database": _redacted_url(url)})
    click.echo(f"database schema is up to date ({_redacted_url(url)})")


@db.command()
def status() -> None:
    """Schema state, orders by status and stock. Exit 1 when the schema needs `fulfil db upgrade`."""
    from fulfil.storage import schema_revision_status
    from fulfil.storage.errors import StoreError

    state = get_state()
    url = state.config.database.url
    try:
        schema = schema_revision_status(url)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from exc
    click.echo(f"database:   {_redacted_url(url)}")
    if not schema.up_to_date:
        click.echo(f"schema:     at {schema.current or 'nothing (never migrated)'}, needs {schema.head}")
        raise CommandFailed("the schema is out of date: run `fulfil db upgrade`")
    click.echo(f"schema:     up to date ({schema.head})")

    async def body(store: Store) -> tuple[str, dict[str, int], int]:
        counts = await store.count_by_status()
        stock = await store.stock_counts()
        return store.install_id, counts, sum(c.available for c in stock.values())

    # Status decrypts nothing, so a throwaway key lets it work for a user who cannot read the card key.
    install_id, counts, available = run_with_store(body, state=state, cipher=CardCipher(os.urandom(32)))
    click.echo(f"install id: {install_id}")
    click.echo("orders:     " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    click.echo(f"stock:      {available} key(s) available")
