"""The RFC 5322 form of an EmailMessage, shared by every provider that speaks MIME or raw headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import formatdate
from urllib.parse import quote

from workers.events.validation import header_problem
from workers.ids import safe_name
from workers.messages import EmailMessage

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"

_URI = re.compile(r"<([^>]*)>")
# What may stay as it is inside the one <URI> of List-Unsubscribe: RFC 3986's unreserved and
# reserved characters except the comma, which separates URIs there (RFC 2369), and the apostrophe.
_URI_SAFE = "-._~:/?#[]@!$&()*+;=%"
# Headers that name mailboxes are built here from validated addresses, never taken from
# ``message.headers``: a stray one there could add a sender or a recipient.
ADDRESS_HEADERS = frozenset(
    {"from", "sender", "to", "cc", "bcc", "reply-to", "return-path", "resent-from", "resent-sender"}
)


def message_id(notification_id: str, domain: str) -> str:
    """A Message-ID derived only from the notification id, so a resent copy carries the same one."""
    return f"<{safe_name(notification_id)}@{domain}>"


def unsubscribe_header(link: str) -> str:
    """The List-Unsubscribe value: exactly one ``<URI>``, whatever the link holds.

    Intake refuses links with spaces, quotes or angle brackets; a comma is legal in a URL but
    separates URIs in this header, so it (and anything else outside RFC 3986) is percent-encoded.
    """
    link = link.strip()
    if link.startswith("<") and link.endswith(">"):  # the dispatcher may hand us <URI> or a bare URL
        link = link[1:-1]
    return f"<{quote(link, safe=_URI_SAFE)}>"


def extra_headers(message: EmailMessage) -> dict[str, str]:
    """``message.headers`` plus the RFC 8058 one-click header when List-Unsubscribe has an https URI.

    Reply-To is not included: each provider carries it in its own way. Address headers in
    ``message.headers`` are dropped (see ADDRESS_HEADERS).
    """
    headers: dict[str, str] = {}
    for name, value in message.headers.items():
        lowered = name.lower()
        if lowered == LIST_UNSUBSCRIBE.lower():
            headers[LIST_UNSUBSCRIBE] = unsubscribe_header(value)
        elif lowered != LIST_UNSUBSCRIBE_POST.lower() and lowered not in ADDRESS_HEADERS:
            headers[name] = value
    unsubscribe = headers.get(LIST_UNSUBSCRIBE)
    # RFC 8058: one-click only makes sense for an https URI the mailbox provider can POST to.
    if unsubscribe and any(uri.strip().lower().startswith("https://") for uri in _URI.findall(unsubscribe)):
        headers[LIST_UNSUBSCRIBE_POST] = ONE_CLICK
    return headers


def ascii_address(address: str) -> Address:
    """The mailbox with its domain in ASCII: an IDN domain goes as punycode, never as an encoded word."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(
                f"the domain of an address cannot be encoded ({exc.__class__.__name__})"
            ) from None
    return Address(username=local, domain=domain)


def build_mime(message: EmailMessage, *, domain: str = "notify.local") -> MimeMessage:
    """The RFC 5322 message for ``message``: multipart/alternative when both text and HTML exist.

    Raises ValueError when a header value cannot be encoded (for instance it holds a line break).
    """
    # Intake refuses these; a row stored before that rule must fail here, not reach a header
    # (the email package would decode an encoded word into a line break or a second mailbox).
    for what, value in (("subject", message.subject), ("sender name", message.from_name or "")):
        problem = header_problem(value)
        if problem is not None:
            raise ValueError(f"the {what} {problem}")
    mime = MimeMessage()
    # Address objects, never formatted strings: the header is serialized from the parts, so a
    # display name holding quotes, commas, <...> or encoded words stays one quoted (or encoded)
    # phrase and can never add a mailbox.
    sender = ascii_address(message.from_address)
    mime["From"] = Address(
        display_name=message.from_name or "", username=sender.username, domain=sender.domain
    )
    mime["To"] = ascii_address(message.to_address)
    mime["Subject"] = message.subject
    if message.reply_to:
        mime["Reply-To"] = ascii_address(message.reply_to)
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id(message.notification_id, domain)
    mime["X-Notification-Id"] = safe_name(message.notification_id)
    headers: Mapping[str, str] = extra_headers(message)
    for name, value in headers.items():
        mime[name] = value
    text = message.text if message.text is not None else ""
    mime.set_content(text, subtype="plain", charset="utf-8")
    if message.html:
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    return mime
