"""Provider-neutral values: the messages we send, the receipts we get back, and the status model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Status(StrEnum):
    """Where a notification is in its life; ``ledger/states.py`` rules the moves (docs/architecture.md)."""

    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    DEAD = "dead"
    UNKNOWN = "unknown"
    DISCARDED = "discarded"
    # After `sent`, from the provider's delivery receipts (issue 15).
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


# Terminal for the worker: nothing more to send. Receipts may still move a `sent` row on.
TERMINAL = frozenset(
    {
        Status.SENT,
        Status.REJECTED,
        Status.FAILED,
        Status.DEAD,
        Status.UNKNOWN,
        Status.DISCARDED,
        Status.DELIVERED,
        Status.BOUNCED,
        Status.COMPLAINED,
    }
)

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    """A template kept on the provider's side (Mandrill ``messages/send-template``)."""

    name: str
    merge_language: str  # "handlebars" or "mailchimp"
    global_merge_vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """One email to one recipient, already rendered; ``html`` wins in clients, ``text`` always rides along."""

    notification_id: str
    from_address: str
    to_address: str
    subject: str
    text: str | None = None
    html: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    # A factory, not a default: Python 3.11 refuses an unhashable mappingproxy as a dataclass default.
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # extra headers, e.g. List-Unsubscribe
    tags: tuple[str, ...] = ()
    # Set when the provider should render its own stored copy of the template instead.
    template: StoredTemplate | None = None


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One SMS; ``from_number`` is an E.164 number or a Twilio Messaging Service SID (``MG...``)."""

    notification_id: str
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """A provider's acceptance of a message."""

    provider: str
    provider_message_id: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)  # non-personal facts, e.g. segments


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A notification reached a status worth announcing (``NOTIFY_STATUS_EVENTS``): ids and statuses only.

    ``meta`` is the row's envelope facts (``core``, ``trace_context``) as the ledger keeps them;
    never an address, a number or a body.
    """

    notification_id: str
    old: Status | None
    new: Status
    at: datetime
    channel: str | None = None
    event_type: str | None = None
    provider: str | None = None
    reason: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
