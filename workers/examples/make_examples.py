"""Write the sample events under examples/ (valid ones here, invalid ones in invalid/).

Run from the repository root:  .venv/bin/python examples/make_examples.py

Everything is fixed (ids, timestamps, content), so the .pb files come out byte-for-byte the same
on every run; a change shows up in git as a real change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent  # workers/examples (the top-level examples/ links here)
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from workers.events import build_event, to_binary, to_json_bytes  # noqa: E402  # after the sys.path line above
from workers.events.core_pb2 import VtEvent  # noqa: E402  # after the sys.path line above
from workers.events.mention_notification_pb2 import MentionEmailGenerated  # noqa: E402  # after the sys.path line above
from workers.events.notification_pb2 import BasicEmail, SMSNotification  # noqa: E402  # after the sys.path line above

Mention = MentionEmailGenerated.Mention
PlaceHolders = MentionEmailGenerated.PlaceHolders


def _core(event_id: str, name: str, timestamp: str, user_id: str) -> dict[str, str]:
    return {
        "id": event_id,
        "name": name,
        "timestamp": timestamp,
        "type": "notification",
        "service_name": "notification-producer-7c9d",
        "application_id": "system",
        "event_id": "evt-notification",
        "organization_id": "7682",
        "user_id": user_id,
        "token_id": "",
    }


_TRACE = {"uber-trace-id": "5a0e1c7f3b2d4e61:5a0e1c7f3b2d4e61:0:1"}


def basic_email_json() -> VtEvent:
    return build_event(
        BasicEmail(
            from_address="no-reply@example.com",
            to_address="ana.lima@example.org",
            subject="Your export is ready",
            body="Hi Ana,\n\nThe export you requested is ready to download for the next 7 days.\n\n- Example",
            reply_to="support@example.com",
            body_html=(
                "<p>Hi Ana,</p><p>The export you requested is "
                '<a href="https://app.example.com/exports/91">ready to download</a> for the next 7 days.</p>'
                "<p>- Example</p>"
            ),
        ),
        core=_core(
            "3f1c2b8e-4d5a-4e6f-9a7b-1c2d3e4f5a61", "BasicEmail", "Tue, 25 Nov 2025 09:30:00 +0000", "u-1001"
        ),
        baggage={"tenant": "acme"},
        trace_context=_TRACE,
        trace_service_name="notification-producer",
    )


def basic_email_pb() -> VtEvent:
    return build_event(
        BasicEmail(
            from_address="billing@example.com",
            to_address="kenji.sato@example.net",
            subject="Invoice INV-2025-0117",
            body="Hello Kenji,\n\nInvoice INV-2025-0117 for November is attached to your account page.\n",
        ),
        core=_core(
            "8b6e0f52-1a3c-4f7d-b2e9-6c0d4a8f3e72", "BasicEmail", "Tue, 25 Nov 2025 09:31:12 +0000", "u-1002"
        ),
        baggage={"tenant": "acme"},
    )


def sms_json() -> VtEvent:
    return build_event(
        SMSNotification(
            from_number="+15017122661",
            to_number="+14155550123",
            message="Your verification code is 482913. It expires in 10 minutes.",
        ),
        core=_core(
            "c4a7d9e1-6b2f-4c83-8e5a-0f9b1d2c3e84",
            "SMSNotification",
            "Tue, 25 Nov 2025 09:32:40 +0000",
            "u-1003",
        ),
        trace_context=_TRACE,
    )


def sms_pb() -> VtEvent:
    return build_event(
        SMSNotification(
            # A Twilio Messaging Service SID as the sender, which Twilio accepts in place of a number.
            from_number="MG9752274e9e519418a7406176694466fa",
            to_number="+447700900123",
            message="Reminder: your appointment is tomorrow at 10:00. Reply STOP to opt out.",
        ),
        core=_core(
            "e2f8a1b3-7c4d-4a9e-8f1b-2d3c4e5f6a95",
            "SMSNotification",
            "Tue, 25 Nov 2025 09:33:05 +0000",
            "u-1004",
        ),
    )


def _mention(program: str, date: int, snippet: str, n: int) -> Mention:
    return Mention(
        tracking_unit_name="Acme Brand Watch",
        program_name=program,
        program_image=f"https://images.example.com/programs/{n}.jpg",
        mention_date=date,
        snippets=snippet,
        invite_link=f"https://app.example.com/mentions/{4400 + n}?invite=1",
        via="Broadcast",
        logouri="https://cdn.example.com/brand/logo.png",
        creator_email="analyst@example.com",
        unsubscribe_hash="a3f9c2e17b",
        unsubscribe_link="https://app.example.com/unsubscribe/a3f9c2e17b",
    )


def _mention_event(
    to_email: str, template: str, mentions: list[Mention], merge_language: str
) -> MentionEmailGenerated:
    return MentionEmailGenerated(
        event="mention_email_generated",
        type="notification",
        service_name="mention-generator-2",
        to_email=to_email,
        from_email="alerts@example.com",
        from_name="Example Alerts",
        template=template,
        place_holders=PlaceHolders(
            tracking_unit_name="Acme Brand Watch",
            via="Broadcast",
            logouri="https://cdn.example.com/brand/logo.png",
            mentions=mentions,
        ),
        merge_language=merge_language,
    )


def mention_json() -> VtEvent:
    core = _core(
        "5d9e3c1a-2b4f-4e8d-a7c6-3b1e0f9d8c27",
        "MentionEmailGenerated",
        "Tue, 25 Nov 2025 09:40:00 +0000",
        "u-1005",
    )
    mentions = [
        _mention(
            "Morning Business Report", 1764062400, "...and Acme said its new plant opens in spring...", 1
        ),
        _mention("City Radio Drive Time", 1764069600, "...listeners asked about Acme's recall notice...", 2),
    ]
    # "handlers" is the schema document's spelling; it is stored as "handlebars".
    return build_event(
        _mention_event("maria.garcia@example.org", "mention-notification", mentions, "handlers"),
        core=core,
        baggage={"tenant": "acme"},
        trace_context=_TRACE,
    )


def mention_bulk_pb() -> VtEvent:
    core = _core(
        "9a4b7c2d-8e1f-4a3b-9c5d-6e7f8a9b0c13",
        "MentionEmailGenerated",
        "Tue, 25 Nov 2025 09:45:30 +0000",
        "u-1006",
    )
    mentions = [
        _mention("Evening News", 1764090000, "...Acme shares rose four percent after the results...", 3),
        _mention("Tech Today Podcast", 1764093600, "...a long look at the Acme robot vacuum line...", 4),
        _mention("Sports Talk Live", 1764097200, "...the Acme Arena hosts the final on Sunday...", 5),
    ]
    return build_event(
        _mention_event("team-lead@example.org", "mention-notification-bulk", mentions, "handlebars"),
        core=core,
    )


def invalid_sms_number() -> VtEvent:
    return build_event(
        # "+12" is no E.164 number: the worker records this event as rejected, naming data.to_number.
        SMSNotification(from_number="+15017122661", to_number="+12", message="This one is rejected."),
        core=_core(
            "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d46",
            "SMSNotification",
            "Tue, 25 Nov 2025 09:50:00 +0000",
            "u-1007",
        ),
    )


# name -> (builder, encoding); "camel" JSON shows the lowerCamelCase names producers may send.
EXAMPLES: dict[str, tuple[Callable[[], VtEvent], str]] = {
    "basic_email.json": (basic_email_json, "json"),
    "basic_email.pb": (basic_email_pb, "pb"),
    "sms_notification.json": (sms_json, "camel"),
    "sms_notification.pb": (sms_pb, "pb"),
    "mention_email.json": (mention_json, "json"),
    "mention_email_bulk.pb": (mention_bulk_pb, "pb"),
    "invalid/sms_bad_number.json": (invalid_sms_number, "json"),
}


def render(name: str) -> bytes:
    """The bytes of one example file."""
    builder, encoding = EXAMPLES[name]
    event = builder()
    if encoding == "pb":
        return to_binary(event)
    return to_json_bytes(event, camel_case=encoding == "camel")


def main(out: Path = HERE) -> None:
    for name in EXAMPLES:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(render(name))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
