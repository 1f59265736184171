"""Shop sources: fulfil's record of each shop order it saw, took and wrote back, and each source's last poll.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    id_type = sa.Integer() if sqlite else sa.BigInteger()
    money = sa.Text() if sqlite else sa.Numeric()
    ts = sa.DateTime(timezone=True)

    op.create_table(
        "source_orders",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(160), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("goods_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("seen_status", sa.Integer(), nullable=False),
        sa.Column("mark", sa.String(64)),
        sa.Column("sku", sa.String(128), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(256)),
        sa.Column("amount", money),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("order_id", id_type, sa.ForeignKey("orders.id", name="fk_source_orders_order_id")),
        sa.Column("outcome", sa.String(16)),
        sa.Column("reason", sa.Text()),
        sa.Column("tries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failing_since", ts),
        sa.Column("next_try_at", ts),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.UniqueConstraint("source", "ref", name="uq_source_orders_source_ref"),
        sa.UniqueConstraint("order_id", name="uq_source_orders_order_id"),
    )
    op.create_index("ix_source_orders_state", "source_orders", ["source", "state", "next_try_at"])
    op.create_table(
        "source_polls",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("polled_at", ts, nullable=False),
        sa.Column("ok_at", ts),
        sa.Column("error", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("source_polls")
    op.drop_index("ix_source_orders_state", table_name="source_orders")
    op.drop_table("source_orders")
