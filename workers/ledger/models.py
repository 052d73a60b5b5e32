"""SQLAlchemy table definitions: notifications, their delivery attempts, receipts and suppressions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and returned as aware UTC, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class Notification(Base):
    """One row per notification, keyed by the event's ``core.id``."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str | None] = mapped_column(String(8))
    event_type: Mapped[str | None] = mapped_column(String(80))
    template: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(40))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    # Personal data lives only in these three columns; retention purges them.
    recipient: Mapped[str | None] = mapped_column(String(320))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    meta: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True)
    )  # core ids, baggage, trace context
    claim_token: Mapped[str | None] = mapped_column(String(64))
    # The retry budget counts from the start of the current cycle; an operator's resend starts one.
    cycle_started_at: Mapped[datetime] = mapped_column()
    cycle_attempts_base: Mapped[int] = mapped_column(Integer, default=0)
    occurred_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    purged_at: Mapped[datetime | None] = mapped_column()
    # sha256 of the accepted event's type, template and payload: a later event under the same id
    # with another digest is a conflicting duplicate, dropped (the id is the dedup key) but counted.
    payload_digest: Mapped[str | None] = mapped_column(String(64))
    conflicts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    conflict_at: Mapped[datetime | None] = mapped_column()
    conflict_digest: Mapped[str | None] = mapped_column(String(64))
    # The recipient's keyed hash (``receipts.recipient_key``), taken at intake so the claim reads
    # the suppression list in its own statement. Empty for rows from before it was kept, a
    # recipient the hash cannot spell, or a ledger built without the key: those are checked apart.
    # A pseudonym of the recipient, so retention purges it with the three columns above.
    recipient_key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # Newest-first keyset pagination, optionally within one status.
        Index("ix_notifications_created_id", "created_at", "id"),
        Index("ix_notifications_status_updated", "status", "updated_at"),
        Index("ix_notifications_recipient", "recipient"),
        # Delivery receipts find their row by the provider's message id.
        Index("ix_notifications_provider_message_id", "provider_message_id"),
    )


class Attempt(Base):
    """One delivery attempt: which provider, when, and how it ended."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    claim_token: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(16))
    error_class: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)


class ReceiptRecord(Base):
    """One provider report about a message it accepted; append-only, never a body or an address.

    ``notification_id`` stays empty while the message id is not yet in the ledger (a receipt can
    beat the send's answer); the sweeper drops such rows after ``NOTIFY_RECEIPT_WAIT``.
    """

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(40))
    # Unique per provider: the same report again (a provider's retry, a replay) is a no-op.
    provider_event_id: Mapped[str] = mapped_column(String(255))
    # Empty for the provider's own list changes (Mandrill blacklist sync), which name no message.
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    notification_id: Mapped[str | None] = mapped_column(
        String(128), ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(8))
    raw_status: Mapped[str] = mapped_column(String(40))
    effect: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_receipts_provider_event"),
        Index("ix_receipts_provider_message", "provider", "provider_message_id"),
    )


class Suppression(Base):
    """A recipient not to be sent to, known only by its keyed hash (``receipts.recipient_key``)."""

    __tablename__ = "suppressions"

    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    recipient_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(255))  # the provider's event id, or "operator"
    created_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        # Newest-first keyset pagination of `notify suppressions list`.
        Index("ix_suppressions_created", "created_at", "channel", "recipient_key"),
    )
