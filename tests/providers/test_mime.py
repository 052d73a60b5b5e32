"""build_mime's header classes: made once per kind of header, not once per header set."""

from __future__ import annotations

from workers.messages import EmailMessage
from workers.providers.mime import build_mime


def mail(notification_id: str) -> EmailMessage:
    return EmailMessage(
        notification_id=notification_id,
        from_address="alerts@notify.example.com",
        from_name="Alerts",
        to_address="reader@example.org",
        subject="Hello",
        text="plain",
        html="<p>html</p>",
    )


def test_two_messages_share_their_header_classes() -> None:
    first, second = build_mime(mail("a-1")), build_mime(mail("b-2"))
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert type(first.head[name]) is type(second.head[name]), name
    assert first.as_bytes() != second.as_bytes()  # two messages, not one cached
