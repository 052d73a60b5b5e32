"""Delivery receipts and suppressions: the append-only receipts table, the suppression list, and
the index that matches a receipt to its notification by the provider's message id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index("ix_notifications_provider_message_id", "notifications", ["provider_message_id"])
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("provider_event_id", sa.String(255), nullable=False),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column(
            "notification_id",
            sa.String(128),
            sa.ForeignKey("notifications.id", ondelete="CASCADE"),
        ),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("raw_status", sa.String(40), nullable=False),
        sa.Column("effect", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(40)),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_receipts_provider_event"),
    )
    op.create_index("ix_receipts_notification_id", "receipts", ["notification_id"])
    op.create_index("ix_receipts_provider_message", "receipts", ["provider", "provider_message_id"])
    op.create_table(
        "suppressions",
        sa.Column("channel", sa.String(8), primary_key=True),
        sa.Column("recipient_key", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_suppressions_created", "suppressions", ["created_at", "channel", "recipient_key"])


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("receipts")
    op.drop_index("ix_notifications_provider_message_id", table_name="notifications")
