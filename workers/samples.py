"""Sample VtEvents as proto3-JSON dicts (fresh ids each call), for tests, benchmarks and experiments.

The fixed sample files the demo publishes are in ``workers/examples`` (written by its
``make_examples.py``); these builders make any number of varied ones, every field overridable.
"""

from __future__ import annotations

import uuid
from typing import Any

TYPE = "type.googleapis.com/events."


def core(event_id: str | None = None, name: str = "test") -> dict[str, str]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "name": name,
        "timestamp": "Wed, 25 Nov 2026 10:00:00 +0000",
        "type": "notification",
        "serviceName": "tests",
        "applicationId": "system",
        "eventId": "evt-1",
    }


def basic_email(event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    data = {
        "@type": TYPE + "BasicEmail",
        "fromAddress": "sender@example.com",
        "toAddress": "person@example.org",
        "subject": "Hello there",
        "body": "Plain body",
        "bodyHtml": "<p>HTML body</p>",
        "replyTo": "replies@example.com",
    }
    data.update(fields)
    return {"core": core(event_id), "data": data}


def sms(event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    data = {
        "@type": TYPE + "SMSNotification",
        "fromNumber": "+14155550100",
        "toNumber": "+14155550199",
        "message": "Your code is 1234",
    }
    data.update(fields)
    return {"core": core(event_id), "data": data}


def mention_item(n: int = 1) -> dict[str, Any]:
    return {
        "trackingUnitName": "Watchlist A",
        "programName": f"Program {n}",
        "programImage": f"https://img.example.com/{n}.png",
        "mentionDate": str(1764064800 + n * 60),
        "snippets": f"snippet number {n} mentions the brand",
        "inviteLink": f"https://app.example.com/invite/{n}",
        "via": "Veritone",
        "logouri": "https://img.example.com/logo.png",
        "creatorEmail": "creator@example.com",
        "unsubscribeHash": f"hash{n}",
        "unsubscribeLink": f"https://app.example.com/unsub/hash{n}",
    }


def mention(
    event_id: str | None = None, *, mentions: int = 2, template: str = "mention-notification", **fields: Any
) -> dict[str, Any]:
    data = {
        "@type": TYPE + "MentionEmailGenerated",
        "event": "mention_email_generated",
        "type": "notification",
        "serviceName": "mention-service",
        "toEmail": "watcher@example.org",
        "fromEmail": "alerts@example.com",
        "fromName": "Alerts",
        "template": template,
        "placeHolders": {
            "trackingUnitName": "Watchlist A",
            "via": "Veritone",
            "logouri": "https://img.example.com/logo.png",
            "mentions": [mention_item(i + 1) for i in range(mentions)],
        },
        "mergeLanguage": "handlebars",
    }
    data.update(fields)
    return {"core": core(event_id), "data": data}
