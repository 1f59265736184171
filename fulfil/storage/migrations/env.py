"""Alembic environment, run programmatically by `fulfil.storage.database` (no alembic.ini at runtime).

The caller hands over an open connection in `config.attributes["connection"]`, already set up the way the
store's own connections are (SQLite: BEGIN IMMEDIATE, so a migration is one atomic transaction).
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `fulfil db upgrade` (fulfil.storage.Store.upgrade)")

context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
