"""Operator console: named operator accounts, console sessions, and the indexes the console's searches and figures
read through (an order is found by its buyer's contact through 0007's `contact_hash`, without decrypting any).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_index("ix_orders_account", "orders", ["account"])
    op.create_index("ix_orders_created", "orders", ["created_at"])
    op.create_index("ix_orders_sku_delivered", "orders", ["sku", "delivered_at"])
    op.create_index("ix_orders_status_updated", "orders", ["status", "updated_at"])
    op.create_index("ix_orders_status_created", "orders", ["status", "created_at"])
    op.create_index("ix_attempts_supplier_order_id", "attempts", ["supplier_order_id"])
    op.create_index("ix_outbox_order", "outbox", ["order_id"])
    op.create_index(
        "ix_events_operator",
        "events",
        ["order_id"],
        sqlite_where=sa.text("operator IS NOT NULL"),
        postgresql_where=sa.text("operator IS NOT NULL"),
    )
    op.create_table(
        "operators",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("disabled_at", ts),
        sa.Column("last_login_at", ts),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("operator", sa.String(64), sa.ForeignKey("operators.name"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("expires_at", ts, nullable=False),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("operators")
    op.drop_index("ix_events_operator", table_name="events")
    op.drop_index("ix_outbox_order", table_name="outbox")
    op.drop_index("ix_attempts_supplier_order_id", table_name="attempts")
    names = ("ix_orders_status_created", "ix_orders_status_updated", "ix_orders_sku_delivered", "ix_orders_created")
    for name in (*names, "ix_orders_account"):
        op.drop_index(name, table_name="orders")
