"""After-sales: buyer reports (cases with levels and time limits), the keys they name, the reissue decisions,
and on orders the link of a reissue to the order it makes good.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Self-contained on purpose (plain SQLAlchemy types, no imports from fulfil), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{target}.id", name=f"fk_{table}_{column}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    id_type = sa.Integer() if sqlite else sa.BigInteger()
    ts = sa.DateTime(timezone=True)

    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("reissue_of", id_type))
        batch.add_column(sa.Column("avoid_supplier", sa.String(128)))
    op.create_index("ix_orders_reissue_of", "orders", ["reissue_of"])

    t = "aftersales_cases"
    op.create_table(
        t,
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("case_no", sa.String(32)),
        sa.Column("order_id", id_type, _fk(t, "order_id", "orders"), nullable=False),
        sa.Column("problem", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("level", sa.String(4), nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("reason", sa.Text()),
        sa.Column("text", sa.Text()),
        sa.Column("attachments", sa.Text(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("supplier", sa.String(128)),
        sa.Column("attempt_id", id_type, _fk(t, "attempt_id", "attempts")),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("reports", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("open_key", sa.String(64)),
        sa.Column("due_at", ts),
        sa.Column("alerted_at", ts),
        sa.Column("opened_at", ts, nullable=False),
        sa.Column("level_at", ts, nullable=False),
        sa.Column("closed_at", ts),
        sa.Column("updated_at", ts, nullable=False),
        sa.UniqueConstraint("case_no", name="uq_aftersales_cases_case_no"),
        sa.UniqueConstraint("open_key", name="uq_aftersales_cases_open_key"),
    )
    op.create_index("ix_aftersales_cases_order_id", t, ["order_id"])
    op.create_index("ix_aftersales_cases_queue", t, ["status", "level", "due_at"])
    op.create_index("ix_aftersales_cases_opened", t, ["opened_at"])

    t = "aftersales_keys"
    op.create_table(
        t,
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("case_id", id_type, _fk(t, "case_id", "aftersales_cases"), nullable=False),
        sa.Column("delivery_id", id_type, _fk(t, "delivery_id", "deliveries"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", ts, nullable=False),
    )
    op.create_index("ix_aftersales_keys_case_id", t, ["case_id"])
    op.create_index("ix_aftersales_keys_delivery_id", t, ["delivery_id"])
    op.create_index("ix_aftersales_keys_fingerprint", t, ["fingerprint"])

    t = "reissues"
    op.create_table(
        t,
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("case_id", id_type, _fk(t, "case_id", "aftersales_cases"), nullable=False),
        sa.Column("order_id", id_type, _fk(t, "order_id", "orders"), nullable=False),
        sa.Column("reissue_order_id", id_type, _fk(t, "reissue_order_id", "orders"), nullable=False),
        sa.Column("original_attempt_id", id_type, _fk(t, "original_attempt_id", "attempts")),
        sa.Column("claim_id", id_type, _fk(t, "claim_id", "claims")),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.UniqueConstraint("reissue_order_id", name="uq_reissues_reissue_order_id"),
    )
    op.create_index("ix_reissues_case_id", t, ["case_id"])
    op.create_index("ix_reissues_order_id", t, ["order_id"])
    op.create_index("ix_reissues_created", t, ["created_at"])


def downgrade() -> None:
    for index, table in (
        ("ix_reissues_created", "reissues"),
        ("ix_reissues_order_id", "reissues"),
        ("ix_reissues_case_id", "reissues"),
    ):
        op.drop_index(index, table_name=table)
    op.drop_table("reissues")
    for index in ("ix_aftersales_keys_fingerprint", "ix_aftersales_keys_delivery_id", "ix_aftersales_keys_case_id"):
        op.drop_index(index, table_name="aftersales_keys")
    op.drop_table("aftersales_keys")
    for index in ("ix_aftersales_cases_opened", "ix_aftersales_cases_queue", "ix_aftersales_cases_order_id"):
        op.drop_index(index, table_name="aftersales_cases")
    op.drop_table("aftersales_cases")
    op.drop_index("ix_orders_reissue_of", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("avoid_supplier")
        batch.drop_column("reissue_of")
