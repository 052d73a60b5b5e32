"""Initial ledger: notifications and their attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(8)),
        sa.Column("event_type", sa.String(80)),
        sa.Column("template", sa.String(80)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(40)),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("recipient", sa.String(320)),
        sa.Column("payload", sa.JSON),
        sa.Column("raw", sa.LargeBinary),
        sa.Column("meta", sa.JSON),
        sa.Column("claim_token", sa.String(64)),
        sa.Column("cycle_started_at", TS, nullable=False),
        sa.Column("cycle_attempts_base", sa.Integer, nullable=False),
        sa.Column("occurred_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("sent_at", TS),
        sa.Column("purged_at", TS),
    )
    op.create_index("ix_notifications_created_id", "notifications", ["created_at", "id"])
    op.create_index("ix_notifications_status_updated", "notifications", ["status", "updated_at"])
    op.create_index("ix_notifications_recipient", "notifications", ["recipient"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "notification_id",
            sa.String(128),
            sa.ForeignKey("notifications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("claim_token", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(40)),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("outcome", sa.String(16)),
        sa.Column("error_class", sa.String(80)),
        sa.Column("error_message", sa.Text),
    )
    op.create_index("ix_attempts_notification_id", "attempts", ["notification_id"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("notifications")
