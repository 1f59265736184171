"""Buyers and risk: buyer identities on orders (keyed hashes to match on, encrypted values), the risk
decision on the order, blocklist entries, credit scores and their history; a shop order's buyer on its record.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_HASHES = ("contact", "ip", "user", "device", "account")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    id_type = sa.Integer() if sqlite else sa.BigInteger()
    ts = sa.DateTime(timezone=True)

    with op.batch_alter_table("orders") as batch:
        for kind in _HASHES:
            batch.add_column(sa.Column(f"{kind}_hash", sa.String(64)))
        for kind in ("ip", "user", "device"):
            batch.add_column(sa.Column(f"{kind}_enc", sa.LargeBinary()))
        batch.add_column(sa.Column("risk_passed_at", ts))
        batch.add_column(sa.Column("risk", sa.Text()))
    op.create_index("ix_orders_contact_hash", "orders", ["contact_hash"])
    with op.batch_alter_table("source_orders") as batch:
        batch.add_column(sa.Column("contact_enc", sa.LargeBinary()))
        batch.add_column(sa.Column("ip_enc", sa.LargeBinary()))
    for kind in _HASHES:
        op.create_index(f"ix_orders_{kind}_risk", "orders", [f"{kind}_hash", "risk_passed_at"])

    op.create_table(
        "risk_blocks",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("network", sa.String(64)),
        sa.Column("value_enc", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", ts),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.UniqueConstraint("kind", "hash", name="uq_risk_blocks_kind_hash"),
    )
    op.create_index("ix_risk_blocks_hash", "risk_blocks", ["hash"])
    op.create_table(
        "risk_credit",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("recovered_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
    )
    op.create_table(
        "risk_credit_changes",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", ts, nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("operator", sa.String(128)),
        sa.Column("order_id", id_type),
    )
    op.create_index("ix_risk_credit_changes_hash", "risk_credit_changes", ["hash", "id"])


def downgrade() -> None:
    op.drop_index("ix_risk_credit_changes_hash", table_name="risk_credit_changes")
    op.drop_table("risk_credit_changes")
    op.drop_table("risk_credit")
    op.drop_index("ix_risk_blocks_hash", table_name="risk_blocks")
    op.drop_table("risk_blocks")
    for kind in _HASHES:
        op.drop_index(f"ix_orders_{kind}_risk", table_name="orders")
    with op.batch_alter_table("source_orders") as batch:
        batch.drop_column("ip_enc")
        batch.drop_column("contact_enc")
    op.drop_index("ix_orders_contact_hash", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        for column in ("risk", "risk_passed_at", "device_enc", "user_enc", "ip_enc"):
            batch.drop_column(column)
        for kind in reversed(_HASHES):
            batch.drop_column(f"{kind}_hash")
