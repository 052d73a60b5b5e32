"""Our three event types: their full names, payload classes, channels and Any type URLs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from google.protobuf.message import Message

from workers.event_types import BASIC_EMAIL, MENTION_EMAIL_GENERATED, SMS_NOTIFICATION
from workers.events import mention_notification_pb2, notification_pb2
from workers.messages import Channel

# What protobuf's Any.Pack writes; on input any prefix is accepted, as protobuf itself does.
TYPE_URL_PREFIX = "type.googleapis.com/"

MENTION_TEMPLATE = "mention-notification"
MENTION_BULK_TEMPLATE = "mention-notification-bulk"
DEFAULT_TEMPLATES: frozenset[str] = frozenset({MENTION_TEMPLATE, MENTION_BULK_TEMPLATE})


@dataclass(frozen=True, slots=True)
class EventKind:
    """One payload type we deliver: its full protobuf name, generated class and channel."""

    type_name: str
    message_class: type[Message]
    channel: Channel


KINDS: Mapping[str, EventKind] = MappingProxyType(
    {
        BASIC_EMAIL: EventKind(BASIC_EMAIL, notification_pb2.BasicEmail, Channel.EMAIL),
        SMS_NOTIFICATION: EventKind(SMS_NOTIFICATION, notification_pb2.SMSNotification, Channel.SMS),
        MENTION_EMAIL_GENERATED: EventKind(
            MENTION_EMAIL_GENERATED, mention_notification_pb2.MentionEmailGenerated, Channel.EMAIL
        ),
    }
)

OUR_EVENT_TYPES: frozenset[str] = frozenset(KINDS)


def type_name_from_url(type_url: str) -> str:
    """The full message name in an Any type URL: everything after the last slash."""
    return type_url.rsplit("/", 1)[-1]
