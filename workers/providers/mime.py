"""The RFC 5322 form of an EmailMessage, shared by every provider that speaks MIME or raw headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from email import policy as email_policy
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


def sender_domain(message: EmailMessage) -> str:
    """The domain of the sender's address: the Message-ID domain unless NOTIFY_MESSAGE_ID_DOMAIN says
    otherwise (RFC 5322 3.6.4 wants a domain we control; the sender's is one by definition)."""
    return message.from_address.rpartition("@")[2].lower()


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


def build_mime(
    message: EmailMessage, *, domain: str = "", eight_bit: bool = True, utf8: bool = False
) -> MimeMessage:
    """The RFC 5322 message for ``message``: multipart/alternative when both text and HTML exist.

    ``domain`` is the Message-ID's (empty: the sender's). ``eight_bit=False`` gives every body part a
    7-bit transfer encoding (quoted-printable or base64), for an SMTP server that does not offer
    8BITMIME (RFC 6152); ``utf8`` writes headers as UTF-8 for SMTPUTF8 (RFC 6532) instead of as
    encoded words. Raises ValueError when a header value cannot be encoded (it holds a line break).
    """
    mime = MimeMessage(policy=email_policy.default.clone(cte_type="8bit" if eight_bit else "7bit", utf8=utf8))
    mime["From"] = (
        formataddr((message.from_name, message.from_address)) if message.from_name else (message.from_address)
    )
    mime["To"] = message.to_address
    mime["Subject"] = message.subject
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id(message.notification_id, domain or sender_domain(message))
    mime["X-Notification-Id"] = message.notification_id
    headers: Mapping[str, str] = extra_headers(message)
    for name, value in headers.items():
        mime[name] = value
    text = message.text if message.text is not None else ""
    mime.set_content(text, subtype="plain", charset="utf-8")
    if message.html:
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    return mime
