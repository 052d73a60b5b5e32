"""Delivery receipts and suppression changes as plain values, and the keyed hash that names a recipient.

A provider tells us what happened to a message after it accepted it (Mandrill webhooks, Twilio status
callbacks). The webhook receiver turns each report into a ``DeliveryReceipt`` or a
``SuppressionChange``; the ``notifications.receipt`` task carries them, as the dicts of
``to_task``, to the ledger. Nothing here holds an address, a number or a body: a recipient travels
only as ``recipient_key``, an HMAC keyed by ``NOTIFY_SUPPRESSION_KEY``, so the task arguments,
Flower and the suppression list never see personal data.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import idna

from workers.messages import Channel


class ReceiptEffect(StrEnum):
    """What a receipt asks of the notification's status; the ledger's rule table decides if it moves."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    # Soft bounces, deferrals, opens, clicks, Twilio's queued/sent: recorded, the status stays.
    NONE = "none"


class SuppressionReason(StrEnum):
    """Why a recipient is on the suppression list; shown as ``failed: suppressed: <reason>``."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    REJECT = "reject"  # Mandrill refused it at send time: hard-bounce, spam or unsub on its own list
    BLACKLIST = "blacklist"  # Mandrill's rejection-list sync events
    STOP = "stop"  # Twilio 21610: the recipient texted STOP
    MANUAL = "manual"  # an operator's `notify suppressions add`


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected an ISO 8601 time")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{field}: the time has no zone")
    return parsed


def _text(data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: expected a non-empty string")
    return value


def _optional_text(data: Mapping[str, Any], field: str) -> str | None:
    return None if data.get(field) is None else _text(data, field)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """One provider event about one message it accepted (delivered, bounced, deferred, ...)."""

    provider: str  # "mandrill" | "twilio"
    provider_event_id: str  # unique per provider event: the same id again is a replay, a no-op
    provider_message_id: str  # Mandrill ``_id``, Twilio ``MessageSid``: how the ledger finds the row
    channel: Channel
    raw_status: str  # the provider's own word ("hard_bounce", "undelivered"), never its body
    effect: ReceiptEffect
    occurred_at: datetime  # aware; when the provider says it happened
    error_code: str | None = None  # Twilio ``ErrorCode``, Mandrill bounce ``diag`` class, ...
    suppress: SuppressionReason | None = None  # set when this receipt puts the recipient on the list
    recipient_key: str | None = None  # ``recipient_key()`` of the recipient, set together with suppress

    def to_task(self) -> dict[str, Any]:
        """JSON-safe form for the task arguments: ids, statuses and the recipient's hash only."""
        return {
            "provider": self.provider,
            "provider_event_id": self.provider_event_id,
            "provider_message_id": self.provider_message_id,
            "channel": self.channel.value,
            "raw_status": self.raw_status,
            "effect": self.effect.value,
            "occurred_at": self.occurred_at.isoformat(),
            "error_code": self.error_code,
            "suppress": self.suppress.value if self.suppress else None,
            "recipient_key": self.recipient_key,
        }

    @classmethod
    def from_task(cls, data: Mapping[str, Any]) -> DeliveryReceipt:
        suppress = data.get("suppress")
        return cls(
            provider=_text(data, "provider"),
            provider_event_id=_text(data, "provider_event_id"),
            provider_message_id=_text(data, "provider_message_id"),
            channel=Channel(_text(data, "channel")),
            raw_status=_text(data, "raw_status"),
            effect=ReceiptEffect(_text(data, "effect")),
            occurred_at=_time(data.get("occurred_at"), "occurred_at"),
            error_code=_optional_text(data, "error_code"),
            suppress=SuppressionReason(suppress) if suppress is not None else None,
            recipient_key=_optional_text(data, "recipient_key"),
        )


@dataclass(frozen=True, slots=True)
class SuppressionChange:
    """A change to the list that comes from the provider's own list (Mandrill blacklist/whitelist sync)."""

    provider: str
    provider_event_id: str
    channel: Channel
    recipient_key: str
    reason: SuppressionReason
    add: bool  # False: the provider took the recipient off its list, so we do too
    occurred_at: datetime

    def to_task(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "provider_event_id": self.provider_event_id,
            "channel": self.channel.value,
            "recipient_key": self.recipient_key,
            "reason": self.reason.value,
            "add": self.add,
            "occurred_at": self.occurred_at.isoformat(),
        }

    @classmethod
    def from_task(cls, data: Mapping[str, Any]) -> SuppressionChange:
        add = data.get("add")
        if not isinstance(add, bool):
            raise ValueError("add: expected true or false")
        return cls(
            provider=_text(data, "provider"),
            provider_event_id=_text(data, "provider_event_id"),
            channel=Channel(_text(data, "channel")),
            recipient_key=_text(data, "recipient_key"),
            reason=SuppressionReason(_text(data, "reason")),
            add=add,
            occurred_at=_time(data.get("occurred_at"), "occurred_at"),
        )


def normalise_recipient(channel: Channel, recipient: str) -> str:
    """The one spelling of a recipient that the hash is taken over.

    Email: trimmed, lower-cased, the domain as IDNA 2008 punycode (so ``Ana@Straße.de`` and
    ``ana@xn--strae-oqa.de`` are one entry). SMS: ``+`` and the digits of the E.164 number.
    """
    value = recipient.strip()
    if channel is Channel.SMS:
        digits = "".join(ch for ch in value if ch.isdigit())
        if not digits:
            raise ValueError("is not a phone number")
        return "+" + digits
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("is not an email address")
    try:
        ascii_domain = ".".join(
            idna.encode(label, uts46=True).decode("ascii") if not label.isascii() else label
            for label in domain.split(".")
        )
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError("has a domain that is not a valid internationalised name") from exc
    return f"{local}@{ascii_domain}".lower()


def recipient_key(channel: Channel, recipient: str, key: bytes) -> str:
    """HMAC-SHA256 of the normalised recipient, keyed: the suppression list's only form of a recipient."""
    message = f"{channel.value}:{normalise_recipient(channel, recipient)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class RecipientKeys:
    """Recipients' keyed hashes under the suppression key, which is fetched on first use.

    One instance serves the ledger (which keys each row at intake) and the suppression list's
    check, so both hash with the same key; fetching it late means a process that never hashes
    never touches the state folder (``ledger/keys.py`` may create the key's file).
    """

    def __init__(self, key_source: Callable[[], bytes]) -> None:
        self._key_source = key_source
        self._key: bytes | None = None

    def __repr__(self) -> str:
        return "RecipientKeys(key=<hidden>)"

    def key_of(self, channel: Channel, recipient: str) -> str:
        """The recipient's hash; ``ValueError`` when it is no address or number."""
        if self._key is None:
            self._key = self._key_source()
        return recipient_key(channel, recipient, self._key)
