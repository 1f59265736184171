"""PostgreSQL: attempt ids stay below 10^10, so the supplier-facing number (the install's prefix and the id in ten
digits) can never be a cut-off one.

On PostgreSQL the write-ahead attempt is one INSERT with no transaction around it (fulfil/storage/statements.py,
`insert_attempt`): nothing runs between the INSERT and its commit, so the check that the number is the id's
must be the database's own. SQLite writes the attempt inside BEGIN IMMEDIATE and checks the number before its
COMMIT, as before (and cannot add a CHECK to a table without rebuilding it).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Self-contained on purpose (plain SQLAlchemy, no imports from fulfil), like 0001.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME = "ck_attempts_id_ten_digits"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Added NOT VALID (a moment's lock, no scan), then validated in a transaction of its own, which scans the
        # table without keeping writers out: a large attempts table does not stop running daemons meanwhile.
        op.create_check_constraint(NAME, "attempts", "id < 10000000000", postgresql_not_valid=True)
        with op.get_context().autocommit_block():
            op.execute(f"ALTER TABLE attempts VALIDATE CONSTRAINT {NAME}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(NAME, "attempts", type_="check")
