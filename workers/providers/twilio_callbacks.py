"""Twilio status callbacks in: the ``X-Twilio-Signature`` check and one callback form as a receipt value.

Twilio POSTs ``application/x-www-form-urlencoded`` to a message's ``StatusCallback`` each time its
status changes: ``MessageSid``, ``MessageStatus`` (accepted, scheduled, canceled, queued, sending,
sent, failed, delivered, undelivered, receiving, received, read, partially_delivered), ``ErrorCode``
on failed/undelivered, ``To``, ``From``, ``AccountSid``, ``ApiVersion``, and sometimes more
(``RawDlrDoneDate``, the carrier's done time as ``YYMMDDhhmm``, on delivered/undelivered; new
parameters appear without notice). The signature covers every parameter, so all are kept for the
check; only the ones above are read. Source: Twilio's "Track the Message Status of Outbound
Messages" and "Webhooks security" pages; the signature is checked by the SDK's ``RequestValidator``
(HMAC-SHA1 keyed by the auth token, the account's default).

Event ids. Twilio sends no id per callback. A callback is named ``<MessageSid>:<MessageStatus>``
plus ``:<ErrorCode>`` when there is one: each status is reported once per message, and a retried
callback carries the same three values, so a replay is a no-op in the ledger. ``RawDlrDoneDate`` is
left out of the name because Twilio may add it to one report of a status and not another.

The recipient (``To``) becomes ``recipient_key`` here, and only when the callback suppresses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twilio.request_validator import RequestValidator

from workers.errors import InvalidWebhook
from workers.messages import Channel
from workers.receipts import DeliveryReceipt, ReceiptEffect, SuppressionReason, recipient_key

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"

_SID = re.compile(r"(SM|MM|RM)[0-9a-fA-F]{32}")
_STATUS = re.compile(r"[a-z_]{1,32}")
_CODE = re.compile(r"[0-9]{1,6}")
_MAX_NUMBER = 32

# A status word not in the list above is kept as a receipt that moves nothing: Twilio adds statuses.
FAILED_STATUSES = frozenset({"failed", "undelivered"})


@dataclass(frozen=True, slots=True)
class PermanentCode:
    """A Twilio error code on a failed/undelivered callback that no retry of the same message fixes."""

    meaning: str
    suppress: SuppressionReason | None = None


# Sources: https://www.twilio.com/docs/api/errors/<code>. Codes not here (30001 queue overflow,
# 30003 handset unreachable, 30008 unknown, 30002 account suspended, ...) are passing states or
# about our account: the receipt is kept, the status stays `sent`.
PERMANENT_CODES: Mapping[str, PermanentCode] = {
    "21211": PermanentCode("invalid 'To' phone number"),
    "21610": PermanentCode("recipient replied STOP (unsubscribed)", SuppressionReason.STOP),
    "21612": PermanentCode("'To' number not reachable through this route"),
    "21614": PermanentCode("'To' number is not a mobile number"),
    "21635": PermanentCode("'To' number is a landline"),
    "30005": PermanentCode("unknown destination handset (the number does not exist)"),
    "30006": PermanentCode("landline or unreachable carrier; Twilio: do not retry to that destination"),
}


def signature_valid(auth_token: str, url: str, params: Any, given: str | None) -> bool:
    """Whether ``given`` is Twilio's signature of a form POST to ``url`` with ``params``.

    ``params`` is the form as a mapping (a multi-dict's repeated values are all signed). The SDK
    also tries the URL with and without its default port, as Twilio's own signing varies there.
    """
    if not auth_token or not given:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, given))


def parse_callback(form: Mapping[str, str], key: bytes, received_at: datetime) -> DeliveryReceipt:
    """One status callback as a receipt; ``received_at`` stands in when the carrier gave no time."""
    sid = _field(form, "MessageSid")
    if not _SID.fullmatch(sid):
        raise InvalidWebhook("MessageSid", "is not a message SID")
    status = _field(form, "MessageStatus")
    if not _STATUS.fullmatch(status):
        raise InvalidWebhook("MessageStatus", "is not a status word")
    code = form.get("ErrorCode") or None
    if code is not None and not _CODE.fullmatch(code):
        raise InvalidWebhook("ErrorCode", "is not a number")
    effect = ReceiptEffect.NONE
    suppress: SuppressionReason | None = None
    if status in ("delivered", "read"):
        # "read" (WhatsApp, RCS) comes only after delivery.
        effect = ReceiptEffect.DELIVERED
    elif status in FAILED_STATUSES and (permanent := PERMANENT_CODES.get(code or "")) is not None:
        effect = ReceiptEffect.BOUNCED
        suppress = permanent.suppress
    key_of_recipient = _recipient_key(form.get("To"), key) if suppress is not None else None
    if key_of_recipient is None:
        suppress = None
    return DeliveryReceipt(
        provider=PROVIDER,
        provider_event_id=f"{sid}:{status}" + (f":{code}" if code else ""),
        provider_message_id=sid,
        channel=Channel.SMS,
        raw_status=status,
        effect=effect,
        occurred_at=_done_date(form.get("RawDlrDoneDate")) or received_at.astimezone(UTC),
        error_code=code,
        suppress=suppress,
        recipient_key=key_of_recipient,
    )


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidWebhook(name, "is missing")
    return value


def _done_date(value: str | None) -> datetime | None:
    """``RawDlrDoneDate`` (``YYMMDDhhmm``, UTC) as a time; None when absent or not that shape."""
    if not value or len(value) != 10 or not value.isdigit():
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def _recipient_key(number: str | None, key: bytes) -> str | None:
    if not number or len(number) > _MAX_NUMBER:
        return None
    try:
        return recipient_key(Channel.SMS, number, key)
    except ValueError:
        return None
