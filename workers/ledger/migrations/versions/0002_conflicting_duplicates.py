"""Conflicting duplicates: the accepted payload's digest, and a count of other events under its id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add a NOT NULL column without it on older versions.
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("payload_digest", sa.String(64)))
        batch.add_column(sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("conflict_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("conflict_digest", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("conflict_digest")
        batch.drop_column("conflict_at")
        batch.drop_column("conflicts")
        batch.drop_column("payload_digest")
