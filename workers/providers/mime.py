"""The RFC 5322 form of an EmailMessage, shared by every provider that speaks MIME or raw headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.message import EmailMessage as MimeMessage
from email.utils import formataddr, formatdate

from workers.messages import EmailMessage

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"

_URI = re.compile(r"<([^>]*)>")


def message_id(notification_id: str, domain: str) -> str:
    """A Message-ID derived only from the notification id, so a resent copy carries the same one."""
    return f"<{notification_id}@{domain}>"


def _unsubscribe_value(value: str) -> str:
    # RFC 2369 wants each URI in angle brackets; the dispatcher may hand us a bare URL.
    value = value.strip()
    return value if "<" in value else f"<{value}>"


def extra_headers(message: EmailMessage) -> dict[str, str]:
    """``message.headers`` plus the RFC 8058 one-click header when List-Unsubscribe has an https URI.

    Reply-To is not included: each provider carries it in its own way.
    """
    headers: dict[str, str] = {}
    for name, value in message.headers.items():
        if name.lower() == LIST_UNSUBSCRIBE.lower():
            headers[LIST_UNSUBSCRIBE] = _unsubscribe_value(value)
        elif name.lower() != LIST_UNSUBSCRIBE_POST.lower():
            headers[name] = value
    unsubscribe = headers.get(LIST_UNSUBSCRIBE)
    # RFC 8058: one-click only makes sense for an https URI the mailbox provider can POST to.
    if unsubscribe and any(uri.strip().lower().startswith("https://") for uri in _URI.findall(unsubscribe)):
        headers[LIST_UNSUBSCRIBE_POST] = ONE_CLICK
    return headers


def build_mime(message: EmailMessage, *, domain: str = "notify.local") -> MimeMessage:
    """The RFC 5322 message for ``message``: multipart/alternative when both text and HTML exist.

    Raises ValueError when a header value cannot be encoded (for instance it holds a line break).
    """
    mime = MimeMessage()
    mime["From"] = (
        formataddr((message.from_name, message.from_address)) if message.from_name else (message.from_address)
    )
    mime["To"] = message.to_address
    mime["Subject"] = message.subject
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id(message.notification_id, domain)
    mime["X-Notification-Id"] = message.notification_id
    headers: Mapping[str, str] = extra_headers(message)
    for name, value in headers.items():
        mime[name] = value
    text = message.text if message.text is not None else ""
    mime.set_content(text, subtype="plain", charset="utf-8")
    if message.html:
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    return mime
