"""The benchmark's event mix: BasicEmail, SMS and mention emails (1 to 50 mentions), encoded for the bus.

Every event carries the publish moment (epoch milliseconds) in its baggage under ``PUBLISHED_AT``, and
every SMS body ends with ``ref <id>`` so the local Twilio server can tell which notification it got.
For the same-shape ceiling (``bench/noop_app.py``, on when ``NOOP_SHAPE_VARIABLE`` is ``bus``), the
last event of a run carries ``MARK_HEADER`` naming the file its worker touches once it got there.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from workers.events import JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, to_binary
from workers.events.core_pb2 import VtEvent
from workers.samples import basic_email, mention, sms

PUBLISHED_AT = "bench-published-at-ms"
MARK_HEADER = "bench-mark"
NOOP_SHAPE_VARIABLE = "BENCH_NOOP_SHAPE"
ROUTING_KEYS = {
    "BasicEmail": "events.BasicEmail",
    "SMSNotification": "events.SMSNotification",
    "MentionEmailGenerated": "events.MentionEmailGenerated",
}


@dataclass(frozen=True, slots=True)
class Planned:
    """One event of the mix, not yet encoded (so a publish time can still be stamped into it)."""

    notification_id: str
    kind: str  # BasicEmail, SMSNotification or MentionEmailGenerated
    content_type: str
    event: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return ROUTING_KEYS[self.kind]

    def encode(self, published_at: float | None = None) -> bytes:
        """The bytes on the bus; ``published_at`` (epoch seconds) goes into the baggage."""
        event = self.event
        if published_at is not None:
            event = {**event, "baggage": {PUBLISHED_AT: str(int(published_at * 1000))}}
        if self.content_type == JSON_CONTENT_TYPE:
            return json.dumps(event).encode()
        return to_binary(json_format.ParseDict(event, VtEvent()))


def plan(count: int, *, seed: int = 8) -> list[Planned]:
    """``count`` events: 4 in 10 BasicEmail, 3 SMS, 3 mention emails; half JSON, half protobuf.

    Mentions: 1 to 50 per email (uniform), both mention templates, one in four in the Mailchimp
    merge language. Seeded, so two runs publish the same mix.
    """
    rng = random.Random(seed)
    planned = []
    for index in range(count):
        slot = index % 10
        content_type = JSON_CONTENT_TYPE if rng.random() < 0.5 else PROTOBUF_CONTENT_TYPE
        event: dict[str, Any]
        if slot < 4:
            kind = "BasicEmail"
            event = basic_email(subject=f"Benchmark message {index}")
        elif slot < 7:
            kind = "SMSNotification"
            event = sms()
            event["data"]["message"] = f"Your code is {rng.randint(1000, 9999)} ref {event['core']['id']}"
        else:
            kind = "MentionEmailGenerated"
            event = mention(
                mentions=rng.randint(1, 50),
                template=rng.choice(("mention-notification", "mention-notification-bulk")),
                mergeLanguage="mailchimp" if rng.random() < 0.25 else "handlebars",
            )
        planned.append(Planned(event["core"]["id"], kind, content_type, event))
    return planned


def encoded(planned: list[Planned]) -> list[tuple[bytes, str, str]]:
    """(body, content type, routing key) for each event, stamped with the time of encoding."""
    now = time.time()
    return [(item.encode(now), item.content_type, item.routing_key) for item in planned]
