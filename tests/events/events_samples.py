"""Valid sample payloads and events for the events tests, built with the package's own helpers."""

from __future__ import annotations

from typing import Any

from workers.events import build_event
from workers.events.core_pb2 import VtEvent
from workers.events.mention_notification_pb2 import MentionEmailGenerated
from workers.events.notification_pb2 import BasicEmail, SMSNotification

EVENT_ID = "6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
TIMESTAMP = "Tue, 25 Nov 2025 09:30:00 +0000"


def basic_email(**fields: Any) -> BasicEmail:
    values: dict[str, Any] = {
        "from_address": "sender@example.com",
        "to_address": "person@example.org",
        "subject": "Hello",
        "body": "Plain body",
        "reply_to": "replies@example.com",
        "body_html": "<p>HTML body</p>",
    }
    values.update(fields)
    return BasicEmail(**values)


def sms(**fields: Any) -> SMSNotification:
    values: dict[str, Any] = {
        "from_number": "+14155550100",
        "to_number": "+14155550199",
        "message": "Your code is 1234",
    }
    values.update(fields)
    return SMSNotification(**values)


def mention_item(**fields: Any) -> MentionEmailGenerated.Mention:
    values: dict[str, Any] = {
        "tracking_unit_name": "Watchlist A",
        "program_name": "Morning Show",
        "program_image": "https://img.example.com/1.png",
        "mention_date": 1764064800,
        "snippets": "the brand was mentioned",
        "invite_link": "https://app.example.com/invite/1",
        "via": "Broadcast",
        "logouri": "https://img.example.com/logo.png",
        "creator_email": "creator@example.com",
        "unsubscribe_hash": "abc123",
        "unsubscribe_link": "https://app.example.com/unsubscribe/abc123",
    }
    values.update(fields)
    return MentionEmailGenerated.Mention(**values)


def mention(mentions: int = 2, **fields: Any) -> MentionEmailGenerated:
    values: dict[str, Any] = {
        "event": "mention_email_generated",
        "type": "notification",
        "service_name": "mention-generator",
        "to_email": "reader@example.org",
        "from_email": "alerts@example.com",
        "from_name": "Alerts",
        "template": "mention-notification-bulk",
        "place_holders": MentionEmailGenerated.PlaceHolders(
            tracking_unit_name="Watchlist A",
            via="Broadcast",
            logouri="https://img.example.com/logo.png",
            mentions=[mention_item(program_name=f"Show {n}") for n in range(mentions)],
        ),
        "merge_language": "handlebars",
    }
    values.update(fields)
    return MentionEmailGenerated(**values)


def event(payload: Any, event_id: str = EVENT_ID, **core: str) -> VtEvent:
    return build_event(
        payload,
        core={"id": event_id, "timestamp": TIMESTAMP, "name": "test", **core},
        baggage={"tenant": "acme", "request-id": "r-1"},
        trace_context={"uber-trace-id": "1:2:0:1"},
        trace_tags={"component": "tests"},
        trace_service_name="tests",
    )
