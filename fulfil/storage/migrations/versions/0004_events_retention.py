"""The event log's retention: an index on `events.at`, so pruning the oldest events reads only those.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

Self-contained on purpose (no imports from fulfil), like 0001.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_at", "events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_events_at", table_name="events")
