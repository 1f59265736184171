"""Supplier quality: calls per minute, the daemon's health snapshot, and indexes for the quality windows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    money = sa.Text() if sqlite else sa.Numeric()  # as in 0001: exact text on SQLite
    ts = sa.DateTime(timezone=True)

    op.create_index("ix_attempts_started", "attempts", ["started_at"])
    op.create_index("ix_claims_created", "claims", ["created_at"])

    op.create_table(
        "supplier_calls",
        sa.Column("supplier", sa.String(128), primary_key=True),
        sa.Column("minute", ts, primary_key=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=False),
    )
    op.create_table(
        "supplier_health",
        sa.Column("supplier", sa.String(128), primary_key=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("components", sa.Text(), nullable=False),
        sa.Column("breaker", sa.String(16), nullable=False),
        sa.Column("opened_until", ts),
        sa.Column("ejections", sa.Integer(), nullable=False),
        sa.Column("demoted", sa.Boolean(), nullable=False),
        sa.Column("balance", money),
        sa.Column("balance_at", ts),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at", ts, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("supplier_health")
    op.drop_table("supplier_calls")
    op.drop_index("ix_claims_created", table_name="claims")
    op.drop_index("ix_attempts_started", table_name="attempts")
