"""Notifications: the outbox (one row per event and channel, written in the change's transaction), endpoint
state (disabled by a 410), alert de-duplication, the buyer's contact (encrypted) and an index for delay
statistics.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    id_type = sa.Integer() if sqlite else sa.BigInteger()
    ts = sa.DateTime(timezone=True)

    op.create_table(
        "outbox",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(48), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(80), nullable=False),
        sa.Column("key", sa.String(200)),
        sa.Column("order_id", id_type),
        sa.Column("subject", sa.String(160)),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", ts, nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", ts),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_at", ts),
        sa.Column("done_at", ts),
        sa.UniqueConstraint("channel", "key", name="uq_outbox_channel"),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_at", "channel"])
    op.create_index("ix_outbox_event", "outbox", ["event_id"])
    op.create_index("ix_outbox_done", "outbox", ["done_at"])
    op.create_table(
        "notify_endpoints",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("disabled_at", ts),
        sa.Column("reason", sa.Text()),
        sa.Column("updated_at", ts, nullable=False),
    )
    op.create_table(
        "alert_state",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("last_at", ts, nullable=False),
    )
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("contact_enc", sa.LargeBinary()))
    op.create_index("ix_orders_delivered_at", "orders", ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_delivered_at", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("contact_enc")
    op.drop_table("alert_state")
    op.drop_table("notify_endpoints")
    op.drop_index("ix_outbox_done", table_name="outbox")
    op.drop_index("ix_outbox_event", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
