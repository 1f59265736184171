"""Receipts (the supplier's answer written ahead), resolver scheduling, and held keys an operator released.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    id_type = sa.Integer() if sqlite else sa.BigInteger()
    money = sa.Text() if sqlite else sa.Numeric()
    ts = sa.DateTime(timezone=True)

    op.create_table(
        "receipts",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("attempt_id", id_type, sa.ForeignKey("attempts.id", name="fk_receipts_attempt_id"), nullable=False),
        sa.Column("order_id", id_type, sa.ForeignKey("orders.id", name="fk_receipts_order_id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("supplier_order_id", sa.String(128)),
        sa.Column("cost", money),
        sa.Column("cards", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("applied_at", ts),
        sa.UniqueConstraint("attempt_id", name="uq_receipts_attempt_id"),
    )
    op.create_index("ix_receipts_open", "receipts", ["applied_at", "id"])
    op.create_table(
        "receipt_cards",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column(
            "receipt_id", id_type, sa.ForeignKey("receipts.id", name="fk_receipt_cards_receipt_id"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("password_enc", sa.LargeBinary(), nullable=False),
        sa.Column("expires", sa.String(64)),
        sa.UniqueConstraint("receipt_id", "position", name="uq_receipt_cards_receipt_id"),
    )

    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("supplier_cost", money))
        batch.add_column(sa.Column("last_sent_at", ts))
        batch.add_column(sa.Column("next_check_at", ts))
        batch.add_column(sa.Column("checks", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_attempts_next_check", "attempts", ["state", "next_check_at"])
    op.execute("UPDATE attempts SET last_sent_at = sent_at")

    with op.batch_alter_table("held_cards") as batch:
        batch.add_column(sa.Column("released_at", ts))
        batch.add_column(sa.Column("released_to", sa.String(160)))
    op.create_index("ix_held_cards_released", "held_cards", ["released_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_held_cards_released", table_name="held_cards")
    with op.batch_alter_table("held_cards") as batch:
        batch.drop_column("released_to")
        batch.drop_column("released_at")
    op.drop_index("ix_attempts_next_check", table_name="attempts")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("checks")
        batch.drop_column("next_check_at")
        batch.drop_column("last_sent_at")
        batch.drop_column("supplier_cost")
    op.drop_table("receipt_cards")
    op.drop_index("ix_receipts_open", table_name="receipts")
    op.drop_table("receipts")
