"""The recipient's keyed hash on each notification, so the claim reads the suppression list with it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and never backfilled: the key is not the database's to know, and the dispatcher
    # checks a row without one separately, as it checked every row before.
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("recipient_key", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("recipient_key")
