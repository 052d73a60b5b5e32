"""Read-only operator queries: filtered newest-first listing with signed page tokens, and one row's story."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, literal, select, tuple_

from workers.errors import NotifyError
from workers.ledger import states
from workers.ledger.models import Attempt, Notification
from workers.ledger.tokens import BadPageToken, Cursor, PageTokens
from workers.messages import Status

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000


class BadQuery(NotifyError, ValueError):
    """Fix the query: a bad page token or page size; ``argument`` names which one (``page_token``)."""

    def __init__(self, message: str, *, argument: str) -> None:
        self.argument = argument
        super().__init__(message)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mask_recipient(value: str | None) -> str | None:
    """Enough to recognise a recipient on screen, not enough to harvest it."""
    if not value:
        return value
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return value[:3] + "*" * max(0, len(value) - 5) + value[-2:]


@dataclass(frozen=True, slots=True)
class ListFilter:
    statuses: tuple[Status, ...] = ()
    channel: str | None = None
    event_type: str | None = None
    recipient: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def fingerprint(self) -> str:
        blob = json.dumps(
            [
                sorted(s.value for s in self.statuses),
                self.channel,
                self.event_type,
                self.recipient,
                self.since.astimezone(UTC).isoformat() if self.since else None,
                self.until.astimezone(UTC).isoformat() if self.until else None,
            ]
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AttemptView:
    number: int
    provider: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error_class: str | None
    error_message: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "provider": self.provider,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "outcome": self.outcome,
            "error_class": self.error_class,
            "error": self.error_message,
        }


@dataclass(frozen=True, slots=True)
class NotificationView:
    id: str
    channel: str | None
    event_type: str | None
    template: str | None
    status: Status
    provider: str | None
    provider_message_id: str | None
    attempts: int
    error: str | None
    recipient: str | None
    created_at: datetime
    updated_at: datetime
    occurred_at: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    purged_at: datetime | None
    payload_digest: str | None
    conflicts: int
    conflict_at: datetime | None
    conflict_digest: str | None
    history: tuple[AttemptView, ...] = field(default=())

    def as_json(self, *, reveal_recipient: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "channel": self.channel,
            "event_type": self.event_type,
            "template": self.template,
            "status": self.status.value,
            "provider": self.provider,
            "provider_message_id": self.provider_message_id,
            "attempts": self.attempts,
            "error": self.error,
            "recipient": self.recipient if reveal_recipient else mask_recipient(self.recipient),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "occurred_at": iso(self.occurred_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "sent_at": iso(self.sent_at),
            "purged_at": iso(self.purged_at),
            # Other events that came under this id and were dropped; digests, never payloads.
            "conflicting_duplicates": {
                "count": self.conflicts,
                "last_at": iso(self.conflict_at),
                "last_digest": self.conflict_digest,
                "accepted_digest": self.payload_digest,
            }
            if self.conflicts
            else None,
        }
        if self.history:
            data["history"] = [attempt.as_json() for attempt in self.history]
        return data


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[NotificationView, ...]
    next_page_token: str | None


_COLUMNS = (
    Notification.id,
    Notification.channel,
    Notification.event_type,
    Notification.template,
    Notification.status,
    Notification.provider,
    Notification.provider_message_id,
    Notification.attempts,
    Notification.error,
    Notification.recipient,
    Notification.created_at,
    Notification.updated_at,
    Notification.occurred_at,
    Notification.next_attempt_at,
    Notification.sent_at,
    Notification.purged_at,
    Notification.payload_digest,
    Notification.conflicts,
    Notification.conflict_at,
    Notification.conflict_digest,
)


def _view(row: Any, history: Sequence[AttemptView] = ()) -> NotificationView:
    values = row._asdict()
    values["status"] = Status(values["status"])
    return NotificationView(**values, history=tuple(history))


def list_notifications(
    engine: Engine,
    query: ListFilter,
    *,
    tokens: PageTokens,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: str | None = None,
) -> Page:
    """Newest first, in the total order (created_at, id): ids are unique, so no two rows tie.

    The next page holds the rows strictly after the last one shown in that order; the cursor keeps
    its exact timestamp (microseconds), so rows sharing a timestamp are never skipped or repeated
    across a page boundary, and rows added while paging never shift the pages still to come.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadQuery(f"page size must be between 1 and {MAX_PAGE_SIZE}", argument="page_size")
    n = Notification
    conditions: list[Any] = []
    if query.statuses:
        conditions.append(n.status.in_([s.value for s in query.statuses]))
    if query.channel:
        conditions.append(n.channel == query.channel)
    if query.event_type:
        wanted = query.event_type if "." in query.event_type else f"events.{query.event_type}"
        conditions.append(n.event_type == wanted)
    if query.recipient:
        conditions.append(n.recipient == query.recipient)
    if query.since:
        conditions.append(n.created_at >= query.since)
    if query.until:
        conditions.append(n.created_at < query.until)
    fingerprint = query.fingerprint()
    if page_token is not None:
        try:
            cursor = tokens.read(page_token, fingerprint)
        except BadPageToken as exc:
            raise BadQuery(str(exc), argument="page_token") from None
        # Bound with the columns' own types, so the cursor's timestamp is stored-format exact
        # (naive UTC text on SQLite, timestamptz on PostgreSQL) like the column it is compared with.
        after = tuple_(
            literal(cursor.created_at, type_=n.created_at.type),
            literal(cursor.notification_id, type_=n.id.type),
        )
        conditions.append(tuple_(n.created_at, n.id) < after)
    stmt = (
        select(*_COLUMNS).where(*conditions).order_by(n.created_at.desc(), n.id.desc()).limit(page_size + 1)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    items = tuple(_view(row) for row in rows[:page_size])
    token = None
    if len(rows) > page_size:
        last = items[-1]
        token = tokens.issue(Cursor(last.created_at, last.id), fingerprint)
    return Page(items, token)


def get_notification(engine: Engine, notification_id: str) -> NotificationView | None:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(Notification.id == notification_id)).one_or_none()
        if row is None:
            return None
        attempts = conn.execute(
            select(
                Attempt.number,
                Attempt.provider,
                Attempt.started_at,
                Attempt.finished_at,
                Attempt.outcome,
                Attempt.error_class,
                Attempt.error_message,
            )
            .where(Attempt.notification_id == notification_id)
            .order_by(Attempt.id)
        ).all()
    return _view(row, [AttemptView(**a._asdict()) for a in attempts])


def count_by_status(engine: Engine) -> dict[str, int]:
    from sqlalchemy import func

    with engine.connect() as conn:
        rows = conn.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    return {status: int(count) for status, count in rows}


# The error a parked row keeps starts with the class name the dispatcher records for it.
PARKED_ERROR_PREFIX = "ProviderMisconfigured"


@dataclass(frozen=True, slots=True)
class ParkedProvider:
    """A provider whose refusal of our key or account holds notifications until it is fixed."""

    provider: str | None
    count: int
    error: str | None  # the latest such error, as the ledger keeps it (already without secrets)


def parked_providers(engine: Engine) -> list[ParkedProvider]:
    """Per provider, the rows parked by a misconfiguration (see ``Dispatcher._park``), by name."""
    n = Notification
    with engine.connect() as conn:
        rows = conn.execute(
            select(n.provider, func.count(), func.max(n.error))
            .where(
                n.status.in_(sorted(s.value for s in states.PARKED)),
                n.error.like(f"{PARKED_ERROR_PREFIX}%"),
            )
            .group_by(n.provider)
            .order_by(n.provider)
        ).all()
    return [ParkedProvider(provider, int(count), error) for provider, count, error in rows]
