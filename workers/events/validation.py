"""Check a decoded payload against our rules and return its canonical, JSON-ready dict.

Every failure is an InvalidEvent naming the field (``data.to_address``) and the problem. Values
are echoed only for ids and enum-like fields; an address, number or text is never repeated in an
error, because errors end up in the ledger, in logs and on operators' screens.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import structlog

from workers.errors import InvalidEvent
from workers.event_types import BASIC_EMAIL, MENTION_EMAIL_GENERATED, SMS_NOTIFICATION
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


def _string_problem(plain: dict[str, Any]) -> tuple[str, str] | None:
    """(path below ``plain``, reason) of the first string, nested ones included, that we cannot store.

    ``plain`` is ``message_to_plain``'s form, whose keys follow the schema's field order, so the
    first offending field is the one a walk over the schema finds first. Paths are only built for
    the offender: this runs over every string of every event.
    """
    for name, value in plain.items():
        if type(value) is str:
            if "\x00" in value:  # PostgreSQL text and JSON cannot hold NUL; no header or body needs one
                return f".{name}", "contains a NUL character"
            if len(value) > MAX_TEXT_CHARS:  # the lower limit; only then does the field's own matter
                limit = MAX_BODY_CHARS if name in _BODY_FIELDS else MAX_TEXT_CHARS
                if len(value) > limit:
                    return f".{name}", f"is {len(value)} characters; the limit is {limit}"
        elif type(value) is dict:
            problem = _string_problem(value)
            if problem is not None:
                return f".{name}{problem[0]}", problem[1]
        elif type(value) is list:
            # Nested messages only: repeated scalars were never walked (our payloads have none).
            for index, item in enumerate(value):
                if type(item) is dict:
                    problem = _string_problem(item)
                    if problem is not None:
                        return f".{name}[{index}]{problem[0]}", problem[1]
    return None


# Everything str.splitlines() breaks on (CR, LF, VT, FF, FS, GS, RS, NEL, LS, PS): the email package
# and mail clients treat each as a line end, so in a header it ends the header or kills the send. The
# other control characters (tab aside) have no place in a header either.
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_HEADER_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


# RFC 2047 encoded-word syntax. Python's email package decodes such a word even where it was meant
# as plain text (a subject, a display name) and writes the decoded characters back out raw: an
# encoded CR LF becomes a real header break (an added Bcc), an encoded <address> a second From
# mailbox. Nobody sends encoded words in an event's JSON or protobuf string on purpose.
ENCODED_WORD = re.compile(r"=\?.*\?=")


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot go into a header (a line break, a control character, an encoded word)."""
    found = _HEADER_FORBIDDEN.search(value)
    if found is not None:
        char = found.group()
        kind = "a line break" if char in LINE_BREAKS else "a control character"
        return f"contains {kind} (U+{ord(char):04X}), which a header value cannot hold"
    if "=?" in value and ENCODED_WORD.search(value) is not None:
        return "contains MIME encoded-word syntax (=?...?=), which mail software would decode"
    return None


def _one_line(value: str, field: str) -> None:
    """Refuse a header value that ``header_problem`` finds fault with, naming the field."""
    problem = header_problem(value)
    if problem is not None:
        raise InvalidEvent(problem, field=field)


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
        raise InvalidEvent(
            "is not an absolute http(s) URL (no spaces, quotes, angle brackets or backslashes)", field=field
        )


def validate_basic_email(payload: dict[str, Any]) -> None:
    """BasicEmail: both addresses valid, a one-line subject, and body or body_html."""
    payload["from_address"] = _address(payload["from_address"], "data.from_address")
    payload["to_address"] = _address(payload["to_address"], "data.to_address")
    payload["reply_to"] = _address(payload["reply_to"], "data.reply_to", required=False)
    subject: str = payload["subject"]
    _one_line(subject, "data.subject")
    _required_text(subject, "data.subject")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidEvent(
            f"is {len(subject)} characters; the limit is {MAX_SUBJECT_CHARS}", field="data.subject"
        )
    if not payload["body"].strip() and not payload["body_html"].strip():
        raise InvalidEvent(
            "is required when body_html is empty (send body, body_html or both)", field="data.body"
        )


def validate_sms(payload: dict[str, Any]) -> None:
    """SMSNotification: E.164 numbers (or a Messaging Service SID as sender) and a message."""
    from_number = payload["from_number"] = payload["from_number"].strip(_TRIM)
    to_number = payload["to_number"] = payload["to_number"].strip(_TRIM)
    _required_text(from_number, "data.from_number")
    if not (is_e164(from_number) or is_messaging_service_sid(from_number)):
        raise InvalidEvent(
            "is neither an E.164 number (+ then 8 to 15 digits) nor a Messaging Service SID (MG + 32 hex)",
            field="data.from_number",
        )
    _required_text(to_number, "data.to_number")
    if not is_e164(to_number):
        raise InvalidEvent(
            "is not an E.164 number (+ then 8 to 15 digits, the first not 0)", field="data.to_number"
        )
    # Length is the provider's business (Twilio takes up to 1600 characters, in segments).
    _required_text(payload["message"], "data.message")


def _merge_language(value: str) -> str:
    canonical = MERGE_LANGUAGES.get(value.strip().lower())
    if canonical is None:
        raise InvalidEvent(
            f"{_echo(value)} is not a merge language (handlebars or mailchimp; aliases handlers, mandril)",
            field="data.merge_language",
        )
    return canonical


_MENTION_LINKS = ("program_image", "invite_link", "logouri", "unsubscribe_link")
_MENTION_SUBJECT_FIELDS = ("tracking_unit_name", "program_name")


def validate_mention(
    payload: dict[str, Any], templates: Collection[str], *, notification_id: str = ""
) -> None:
    """MentionEmailGenerated: fixed event/type, a template we have, valid addresses, 1+ mentions."""
    if payload["event"] != MENTION_EVENT:
        raise InvalidEvent(f"must be {MENTION_EVENT!r}, got {_echo(payload['event'])}", field="data.event")
    if payload["type"] != MENTION_TYPE:
        raise InvalidEvent(f"must be {MENTION_TYPE!r}, got {_echo(payload['type'])}", field="data.type")
    payload["to_email"] = _address(payload["to_email"], "data.to_email")
    payload["from_email"] = _address(payload["from_email"], "data.from_email")
    from_name: str = payload["from_name"]
    _one_line(from_name, "data.from_name")
    if len(from_name) > MAX_NAME_CHARS:
        raise InvalidEvent(
            f"is {len(from_name)} characters; the limit is {MAX_NAME_CHARS}", field="data.from_name"
        )
    template = payload["template"] = payload["template"].strip()
    _required_text(template, "data.template")
    if template not in templates:
        have = ", ".join(sorted(templates)) or "no templates are installed"
        raise InvalidEvent(f"{_echo(template)} is not a template we have ({have})", field="data.template")
    payload["merge_language"] = _merge_language(payload["merge_language"])

    holders = payload["place_holders"]
    # The watchlist name is what a subject line is made of.
    _one_line(holders["tracking_unit_name"], "data.place_holders.tracking_unit_name")
    _link(holders["logouri"], "data.place_holders.logouri")
    mentions: list[dict[str, Any]] = holders["mentions"]
    if not mentions:
        raise InvalidEvent("must hold at least one mention", field="data.place_holders.mentions")
    if len(mentions) > MAX_MENTIONS:
        raise InvalidEvent(
            f"holds {len(mentions)} mentions; the limit is {MAX_MENTIONS}",
            field="data.place_holders.mentions",
        )
    for index, mention in enumerate(mentions):
        mention_date: int = mention["mention_date"]
        if not 0 <= mention_date <= MAX_MENTION_DATE:
            path = f"data.place_holders.mentions[{index}]"
            raise InvalidEvent(
                f"{mention_date} is not unix seconds between 0 and {MAX_MENTION_DATE}",
                field=f"{path}.mention_date",
            )
        for name in _MENTION_LINKS:
            link = mention[name]
            if link and not is_web_url(link):  # the field's path is built for a bad link only
                _link(link, f"data.place_holders.mentions[{index}].{name}")
        # Subject templates print these (``... was mentioned on {{mention.program_name}}``).
        for name in _MENTION_SUBJECT_FIELDS:
            if header_problem(mention[name]) is not None:
                _one_line(mention[name], f"data.place_holders.mentions[{index}].{name}")
        snippets: str = mention["snippets"]
        if len(snippets) > MAX_SNIPPET_CHARS:
            # The schema promises 100 characters; one long snippet should not cost the whole email.
            mention["snippets"] = snippets[: MAX_SNIPPET_CHARS - 1] + "\u2026"
            log.warning(
                "event.snippet_truncated",
                notification_id=notification_id,
                field=f"data.place_holders.mentions[{index}].snippets",
                limit=MAX_SNIPPET_CHARS,
            )


_VALIDATORS = {
    BASIC_EMAIL: validate_basic_email,
    SMS_NOTIFICATION: validate_sms,
}


def validate_payload(
    type_name: str, payload: dict[str, Any], templates: Collection[str], *, notification_id: str = ""
) -> dict[str, Any]:
    """The canonical dict of a valid payload; InvalidEvent when it breaks a rule.

    ``payload`` is the decoded payload in ``message_to_plain``'s form; it is checked and
    canonicalized in place (trimmed addresses and numbers, the merge language's canonical name, cut
    snippets) and returned.
    """
    problem = _string_problem(payload)
    if problem is not None:
        raise InvalidEvent(problem[1], field=f"data{problem[0]}")
    if type_name == MENTION_EMAIL_GENERATED:
        validate_mention(payload, templates, notification_id=notification_id)
    elif type_name in _VALIDATORS:
        _VALIDATORS[type_name](payload)
    else:
        raise TypeError(f"{type_name} is not one of our payload types")
    return payload
