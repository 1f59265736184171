"""Initial schema: orders, attempts, deliveries, stock, held cards, claims, events, cool-downs, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil): a migration must keep meaning
what it meant when it shipped, whatever later happens to fulfil.storage.schema.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _types() -> tuple[Any, Any, Any]:
    sqlite = op.get_bind().dialect.name == "sqlite"
    id_type = sa.Integer() if sqlite else sa.BigInteger()
    # SQLite's NUMERIC affinity would store 0.10 as a float: money is exact text there.
    money = sa.Text() if sqlite else sa.Numeric()
    return id_type, money, sa.DateTime(timezone=True)


def _card_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("password_enc", sa.LargeBinary(), nullable=False),
        sa.Column("expires", sa.String(64)),
    ]


def upgrade() -> None:
    Id, Money, Ts = _types()

    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    install_id = "".join(secrets.choice(_BASE36) for _ in range(8))
    op.execute(sa.text("INSERT INTO meta (key, value) VALUES ('install_id', :v)").bindparams(v=install_id))

    op.create_table(
        "orders",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("sku", sa.String(128), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(256)),
        sa.Column("amount", Money),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires", Ts),
        sa.Column("not_before", Ts),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.Column("delivered_at", Ts),
        sa.UniqueConstraint("ref", name="uq_orders_ref"),
    )
    op.create_index("ix_orders_claim", "orders", ["status", "lease_expires"])

    op.create_table(
        "attempts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("order_id", Id, sa.ForeignKey("orders.id", name="fk_attempts_order_id"), nullable=False),
        sa.Column("number", sa.String(32)),
        sa.Column("supplier", sa.String(128), nullable=False),
        sa.Column("offer_index", sa.Integer(), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("cost", Money),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(32)),
        sa.Column("supplier_order_id", sa.String(128)),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("started_at", Ts, nullable=False),
        sa.Column("sent_at", Ts),
        sa.Column("finished_at", Ts),
        sa.UniqueConstraint("number", name="uq_attempts_number"),
    )
    op.create_index("ix_attempts_order_id", "attempts", ["order_id"])
    op.create_index("ix_attempts_state", "attempts", ["state"])

    op.create_table(
        "deliveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("order_id", Id, sa.ForeignKey("orders.id", name="fk_deliveries_order_id"), nullable=False),
        sa.Column("attempt_id", Id, sa.ForeignKey("attempts.id", name="fk_deliveries_attempt_id"), nullable=False),
        *_card_columns(),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.UniqueConstraint("fingerprint", name="uq_deliveries_fingerprint"),
    )
    op.create_index("ix_deliveries_order_id", "deliveries", ["order_id"])

    op.create_table(
        "stock",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(128), nullable=False),
        *_card_columns(),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("imported_at", Ts, nullable=False),
        sa.Column("source_attempt", Id, sa.ForeignKey("attempts.id", name="fk_stock_source_attempt")),
        sa.Column("used_by_attempt", Id, sa.ForeignKey("attempts.id", name="fk_stock_used_by_attempt")),
        sa.Column("used_at", Ts),
        sa.UniqueConstraint("fingerprint", name="uq_stock_fingerprint"),
    )
    unused = sa.text("used_by_attempt IS NULL")
    op.create_index("ix_stock_available", "stock", ["sku", "id"], sqlite_where=unused, postgresql_where=unused)

    op.create_table(
        "held_cards",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("attempt_id", Id, sa.ForeignKey("attempts.id", name="fk_held_cards_attempt_id"), nullable=False),
        *_card_columns(),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.UniqueConstraint("attempt_id", "fingerprint", name="uq_held_cards_attempt_fingerprint"),
    )
    op.create_index("ix_held_cards_fingerprint", "held_cards", ["fingerprint"])

    op.create_table(
        "claims",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("claim_no", sa.String(32)),
        sa.Column("attempt_id", Id, sa.ForeignKey("attempts.id", name="fk_claims_attempt_id"), nullable=False),
        sa.Column("order_id", Id, sa.ForeignKey("orders.id", name="fk_claims_order_id"), nullable=False),
        sa.Column("supplier", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("amount", Money),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.UniqueConstraint("claim_no", name="uq_claims_claim_no"),
        sa.UniqueConstraint("attempt_id", "reason", name="uq_claims_attempt_reason"),
    )
    op.create_index("ix_claims_supplier_status", "claims", ["supplier", "status"])

    op.create_table(
        "events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", Ts, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("order_id", Id),
        sa.Column("supplier", sa.String(128)),
        sa.Column("operator", sa.String(128)),
        sa.Column("data", sa.Text(), nullable=False),
    )
    op.create_index("ix_events_name", "events", ["name", "id"])
    op.create_index("ix_events_order", "events", ["order_id", "id"])

    op.create_table(
        "cooldowns",
        sa.Column("supplier", sa.String(128), primary_key=True),
        sa.Column("product_id", sa.String(128), primary_key=True),
        sa.Column("until", Ts, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "cooldowns",
        "events",
        "claims",
        "held_cards",
        "stock",
        "deliveries",
        "attempts",
        "orders",
        "meta",
    ):
        op.drop_table(table)
