"""Check a decoded payload against our rules and return its canonical, JSON-ready dict.

Every failure is an InvalidEvent naming the field (``data.to_address``) and the problem. Values
are echoed only for ids and enum-like fields; an address, number or text is never repeated in an
error, because errors end up in the ledger, in logs and on operators' screens.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import structlog
from google.protobuf.message import Message

from workers.errors import InvalidEvent
from workers.events.jsonmap import message_to_plain
from workers.events.mention_notification_pb2 import MentionEmailGenerated
from workers.events.notification_pb2 import BasicEmail, SMSNotification
from workers.events.syntax import is_e164, is_email_address, is_messaging_service_sid, is_web_url

log = structlog.get_logger(__name__)

MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit; longer subjects are a producer bug
MAX_NAME_CHARS = 256
MAX_BODY_CHARS = 5 * 1024 * 1024  # body and body_html each; providers cap whole messages near 10-25 MB
MAX_TEXT_CHARS = 64 * 1024  # any other string field
MAX_SNIPPET_CHARS = 100  # the schema's promise; longer snippets are cut, not rejected
MAX_MENTIONS = 1000
MAX_MENTION_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second a date formatter can show

MENTION_EVENT = "mention_email_generated"
MENTION_TYPE = "notification"
HANDLEBARS = "handlebars"
MAILCHIMP = "mailchimp"
# The schema document spells the languages "handlers" and "mandril"; producers copy it.
MERGE_LANGUAGES = {
    "": HANDLEBARS,
    HANDLEBARS: HANDLEBARS,
    "handlers": HANDLEBARS,
    MAILCHIMP: MAILCHIMP,
    "mandril": MAILCHIMP,
    "mandrill": MAILCHIMP,
}
_BODY_FIELDS = frozenset({"body", "body_html"})
# Horizontal whitespace only: a CR or LF around an address is refused, not silently trimmed.
_TRIM = " \t"


def _echo(value: str) -> str:
    """A safe, bounded quotation of a non-personal value (ids, enum-like fields)."""
    return repr(value[:64] + ("..." if len(value) > 64 else ""))


def _strings(message: Message, path: str) -> Iterator[tuple[str, str, str]]:
    """(path, field name, value) for every string in the message, nested ones included."""
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        sub = f"{path}.{field.name}"
        if field.message_type is not None:
            items = list(value) if field.is_repeated else [value]
            for index, item in enumerate(items):
                yield from _strings(item, f"{sub}[{index}]" if field.is_repeated else sub)
        elif isinstance(value, str):
            yield sub, field.name, value


def _check_all_strings(message: Message) -> None:
    for path, name, value in _strings(message, "data"):
        if "\x00" in value:  # PostgreSQL text and JSON cannot hold NUL; no header or body needs one
            raise InvalidEvent("contains a NUL character", field=path)
        limit = MAX_BODY_CHARS if name in _BODY_FIELDS else MAX_TEXT_CHARS
        if len(value) > limit:
            raise InvalidEvent(f"is {len(value)} characters; the limit is {limit}", field=path)


def _one_line(value: str, field: str) -> None:
    if "\r" in value or "\n" in value:
        raise InvalidEvent("contains a line break (CR or LF), which a header value cannot hold", field=field)


def _address(value: str, field: str, *, required: bool = True) -> str:
    """The address with spaces and tabs trimmed; refuses line breaks, bad syntax, or absence."""
    _one_line(value, field)
    value = value.strip(_TRIM)
    if not value:
        if required:
            raise InvalidEvent("is required", field=field)
        return value
    if not is_email_address(value):
        raise InvalidEvent("is not a valid email address", field=field)
    return value


def _required_text(value: str, field: str) -> None:
    if not value.strip():
        raise InvalidEvent("is required", field=field)


def _link(value: str, field: str) -> None:
    if value and not is_web_url(value):
        raise InvalidEvent("is not an absolute http(s) URL", field=field)


def validate_basic_email(message: BasicEmail) -> BasicEmail:
    """BasicEmail: both addresses valid, a one-line subject, and body or body_html."""
    result = BasicEmail()
    result.CopyFrom(message)
    result.from_address = _address(message.from_address, "data.from_address")
    result.to_address = _address(message.to_address, "data.to_address")
    result.reply_to = _address(message.reply_to, "data.reply_to", required=False)
    _one_line(message.subject, "data.subject")
    _required_text(message.subject, "data.subject")
    if len(message.subject) > MAX_SUBJECT_CHARS:
        raise InvalidEvent(
            f"is {len(message.subject)} characters; the limit is {MAX_SUBJECT_CHARS}", field="data.subject"
        )
    if not message.body.strip() and not message.body_html.strip():
        raise InvalidEvent(
            "is required when body_html is empty (send body, body_html or both)", field="data.body"
        )
    return result


def validate_sms(message: SMSNotification) -> SMSNotification:
    """SMSNotification: E.164 numbers (or a Messaging Service SID as sender) and a message."""
    result = SMSNotification()
    result.CopyFrom(message)
    result.from_number = message.from_number.strip(_TRIM)
    result.to_number = message.to_number.strip(_TRIM)
    _required_text(result.from_number, "data.from_number")
    if not (is_e164(result.from_number) or is_messaging_service_sid(result.from_number)):
        raise InvalidEvent(
            "is neither an E.164 number (+ then 8 to 15 digits) nor a Messaging Service SID (MG + 32 hex)",
            field="data.from_number",
        )
    _required_text(result.to_number, "data.to_number")
    if not is_e164(result.to_number):
        raise InvalidEvent(
            "is not an E.164 number (+ then 8 to 15 digits, the first not 0)", field="data.to_number"
        )
    # Length is the provider's business (Twilio takes up to 1600 characters, in segments).
    _required_text(message.message, "data.message")
    return result


def _merge_language(value: str) -> str:
    canonical = MERGE_LANGUAGES.get(value.strip().lower())
    if canonical is None:
        raise InvalidEvent(
            f"{_echo(value)} is not a merge language (handlebars or mailchimp; aliases handlers, mandril)",
            field="data.merge_language",
        )
    return canonical


def validate_mention(
    message: MentionEmailGenerated, templates: Collection[str], *, notification_id: str = ""
) -> MentionEmailGenerated:
    """MentionEmailGenerated: fixed event/type, a template we have, valid addresses, 1+ mentions."""
    result = MentionEmailGenerated()
    result.CopyFrom(message)
    if message.event != MENTION_EVENT:
        raise InvalidEvent(f"must be {MENTION_EVENT!r}, got {_echo(message.event)}", field="data.event")
    if message.type != MENTION_TYPE:
        raise InvalidEvent(f"must be {MENTION_TYPE!r}, got {_echo(message.type)}", field="data.type")
    result.to_email = _address(message.to_email, "data.to_email")
    result.from_email = _address(message.from_email, "data.from_email")
    _one_line(message.from_name, "data.from_name")
    if len(message.from_name) > MAX_NAME_CHARS:
        raise InvalidEvent(
            f"is {len(message.from_name)} characters; the limit is {MAX_NAME_CHARS}", field="data.from_name"
        )
    result.template = message.template.strip()
    _required_text(result.template, "data.template")
    if result.template not in templates:
        have = ", ".join(sorted(templates)) or "no templates are installed"
        raise InvalidEvent(
            f"{_echo(result.template)} is not a template we have ({have})", field="data.template"
        )
    result.merge_language = _merge_language(message.merge_language)

    holders = result.place_holders
    # The watchlist name is what a subject line is made of.
    _one_line(holders.tracking_unit_name, "data.place_holders.tracking_unit_name")
    _link(holders.logouri, "data.place_holders.logouri")
    if not holders.mentions:
        raise InvalidEvent("must hold at least one mention", field="data.place_holders.mentions")
    if len(holders.mentions) > MAX_MENTIONS:
        raise InvalidEvent(
            f"holds {len(holders.mentions)} mentions; the limit is {MAX_MENTIONS}",
            field="data.place_holders.mentions",
        )
    for index, mention in enumerate(holders.mentions):
        path = f"data.place_holders.mentions[{index}]"
        if not 0 <= mention.mention_date <= MAX_MENTION_DATE:
            raise InvalidEvent(
                f"{mention.mention_date} is not unix seconds between 0 and {MAX_MENTION_DATE}",
                field=f"{path}.mention_date",
            )
        for name in ("program_image", "invite_link", "logouri", "unsubscribe_link"):
            _link(getattr(mention, name), f"{path}.{name}")
        if len(mention.snippets) > MAX_SNIPPET_CHARS:
            # The schema promises 100 characters; one long snippet should not cost the whole email.
            mention.snippets = mention.snippets[: MAX_SNIPPET_CHARS - 1] + "\u2026"
            log.warning(
                "event.snippet_truncated",
                notification_id=notification_id,
                field=f"{path}.snippets",
                limit=MAX_SNIPPET_CHARS,
            )
    return result


def validate_payload(
    message: Message, templates: Collection[str], *, notification_id: str = ""
) -> dict[str, Any]:
    """The canonical dict of a valid payload; InvalidEvent when it breaks a rule."""
    _check_all_strings(message)
    canonical: Message
    if isinstance(message, BasicEmail):
        canonical = validate_basic_email(message)
    elif isinstance(message, SMSNotification):
        canonical = validate_sms(message)
    elif isinstance(message, MentionEmailGenerated):
        canonical = validate_mention(message, templates, notification_id=notification_id)
    else:
        raise TypeError(f"{message.DESCRIPTOR.full_name} is not one of our payload types")
    return message_to_plain(canonical)
