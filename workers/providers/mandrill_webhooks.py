"""Mandrill webhooks in: the ``X-Mandrill-Signature`` check and a ``mandrill_events`` batch as receipt values.

Mandrill POSTs ``application/x-www-form-urlencoded`` with one field, ``mandrill_events``: a JSON
array of up to 1,000 events. Message events (``event``: send, deferral, hard_bounce, soft_bounce,
delivered, open, click, spam, unsub, reject) carry the message as ``msg`` (``msg._id`` is the id
``messages/send`` answered, ``msg.email`` the recipient); sync events (``type``: blacklist,
whitelist, with ``action`` add/remove/change) carry the list entry as ``reject`` or ``entry``.
Sources: Mandrill's "Webhook Format", "Message Event Webhook Format" and "Authenticating Webhook
Requests" articles, and the ``reject_reason`` values of ``messages/send``.

Event ids. Mandrill gives no id per event, only the message's ``_id``, so a message event is named
``<_id>:<event>:<ts>`` (the event's own ``_id``, else ``msg._id``). A replayed batch yields the same
names, so the ledger's unique key makes the replay a no-op. The cost: two events of one kind for
one message in the same second (two clicks) are one; only opens and clicks can repeat like that,
and they move nothing. A sync event has no ``_id`` at all: it is named
``<type>:<action>:<ts>:<first 32 hex of the recipient key>``.

Every recipient address becomes ``recipient_key`` here and goes no further. An event whose shape
is wrong is skipped and counted (a batch is never refused for one bad element: Mandrill would
retry the whole batch, good events included); a body that is not such a batch at all is an
``InvalidWebhook``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workers.errors import InvalidWebhook
from workers.messages import Channel
from workers.receipts import (
    DeliveryReceipt,
    ReceiptEffect,
    SuppressionChange,
    SuppressionReason,
    recipient_key,
)

PROVIDER = "mandrill"
EVENTS_FIELD = "mandrill_events"
SIGNATURE_HEADER = "X-Mandrill-Signature"
MAX_EVENTS = 1000  # Mandrill's documented batch limit

# Mandrill ids are 32 hex digits; allow a little more, never anything that breaks a log line or a key.
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[a-z0-9_-]{1,64}")  # bounce_description, reject reasons
_MAX_ADDRESS = 254
# A unix time from 2000 to 2100: anything else is not a time Mandrill sends.
_TS_MIN, _TS_MAX = 946_684_800, 4_102_444_800

# Mandrill's message events and what each asks of the notification's status.
_EFFECTS = {
    # Mandrill's `send` is its message state `sent`: the recipient's server accepted the message
    # (its activity log shows it as "Delivered"); there is no later delivery event from Mandrill
    # itself, so `send` is our `delivered`. A later hard_bounce or spam still moves the row on.
    "send": ReceiptEffect.DELIVERED,
    "deferral": ReceiptEffect.NONE,
    "soft_bounce": ReceiptEffect.NONE,
    "open": ReceiptEffect.NONE,
    "click": ReceiptEffect.NONE,
    "delivered": ReceiptEffect.DELIVERED,  # the word some Mandrill-compatible senders use
    "hard_bounce": ReceiptEffect.BOUNCED,
    "spam": ReceiptEffect.COMPLAINED,
    "unsub": ReceiptEffect.NONE,  # the message arrived; the recipient only wants no more
    "reject": ReceiptEffect.BOUNCED,  # the ledger moves only a row that reached `sent`
}
_SUPPRESS = {
    "hard_bounce": SuppressionReason.HARD_BOUNCE,
    "spam": SuppressionReason.COMPLAINT,
    "unsub": SuppressionReason.UNSUBSCRIBE,
}
# messages/send ``reject_reason`` values that say the recipient cannot or will not receive mail; the
# others (soft-bounce, custom, invalid-sender, invalid, test-mode-limit, unsigned, rule) are about
# the sender, the account or a passing state.
REJECT_REASONS_SUPPRESSED = frozenset({"hard-bounce", "spam", "unsub"})


@dataclass(frozen=True, slots=True)
class MandrillBatch:
    """What one POST said: receipts, list changes, and the count of events skipped, by reason."""

    receipts: tuple[DeliveryReceipt, ...]
    changes: tuple[SuppressionChange, ...]
    skipped: Mapping[str, int] = field(default_factory=dict)


def signature(key: bytes, url: str, params: Iterable[tuple[str, str]]) -> str:
    """base64(HMAC-SHA1(key, url + each key and value, keys sorted)): what Mandrill sends."""
    signed = url + "".join(name + value for name, value in sorted(params, key=lambda item: item[0]))
    return base64.b64encode(hmac.new(key, signed.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def signature_valid(key: bytes, url: str, params: Iterable[tuple[str, str]], given: str | None) -> bool:
    """Whether ``given`` is Mandrill's signature of this request; compared in constant time."""
    if not key or not given:
        return False
    return hmac.compare_digest(signature(key, url, params).encode("ascii"), given.strip().encode("utf-8"))


def parse_events(raw: str, key: bytes) -> MandrillBatch:
    """The ``mandrill_events`` field as receipts and list changes; recipients hashed with ``key``."""
    try:
        events = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidWebhook(EVENTS_FIELD, "is not JSON") from None
    if not isinstance(events, list):
        raise InvalidWebhook(EVENTS_FIELD, "is not a JSON array")
    if len(events) > MAX_EVENTS:
        raise InvalidWebhook(EVENTS_FIELD, f"holds {len(events)} events; Mandrill sends at most {MAX_EVENTS}")
    receipts: list[DeliveryReceipt] = []
    changes: list[SuppressionChange] = []
    skipped: Counter[str] = Counter()
    for event in events:
        try:
            item = _parse_one(event, key)
        except _Skip as skip:
            skipped[skip.reason] += 1
            continue
        if isinstance(item, DeliveryReceipt):
            receipts.append(item)
        else:
            changes.append(item)
    return MandrillBatch(tuple(receipts), tuple(changes), dict(skipped))


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _parse_one(event: Any, key: bytes) -> DeliveryReceipt | SuppressionChange:
    if not isinstance(event, dict):
        raise _Skip("not an object")
    occurred_at = _time(event.get("ts"))
    kind = event.get("event")
    if kind is None and isinstance(event.get("type"), str):
        return _sync_event(event, occurred_at, key)
    if not isinstance(kind, str):
        raise _Skip("no event name")
    if kind not in _EFFECTS:
        raise _Skip("inbound" if kind == "inbound" else "unknown event")
    msg = event.get("msg")
    if not isinstance(msg, dict):
        raise _Skip("no msg")
    message_id = msg.get("_id")
    if not isinstance(message_id, str) or not _ID.fullmatch(message_id):
        raise _Skip("bad message id")
    event_id = event.get("_id", message_id)
    if not isinstance(event_id, str) or not _ID.fullmatch(event_id):
        raise _Skip("bad event id")
    error_code: str | None = None
    suppress = _SUPPRESS.get(kind)
    if kind == "reject":
        error_code = _reject_reason(msg)
        if error_code in REJECT_REASONS_SUPPRESSED:
            suppress = SuppressionReason.REJECT
    elif kind in ("hard_bounce", "soft_bounce"):
        error_code = _token(msg.get("bounce_description"))
    key_of_recipient = _recipient_key(msg.get("email"), key) if suppress is not None else None
    if key_of_recipient is None:
        # No usable address: the receipt still counts for the message, without a list entry.
        suppress = None
    return DeliveryReceipt(
        provider=PROVIDER,
        provider_event_id=f"{event_id}:{kind}:{int(occurred_at.timestamp())}",
        provider_message_id=message_id,
        channel=Channel.EMAIL,
        raw_status=kind,
        effect=_EFFECTS[kind],
        occurred_at=occurred_at,
        error_code=error_code,
        suppress=suppress,
        recipient_key=key_of_recipient,
    )


def _sync_event(event: Mapping[str, Any], occurred_at: datetime, key: bytes) -> SuppressionChange:
    kind, action = event.get("type"), event.get("action")
    if kind == "whitelist":
        # Mandrill's allow-list keeps bounces from blocking an address there; our list has no such
        # notion, and an allow entry is no reason to lift a suppression the recipient asked for.
        raise _Skip("whitelist")
    if kind != "blacklist":
        raise _Skip("unknown sync event")
    if action not in ("add", "remove"):
        # "change" updates an entry's details (expiry, reason) that stays on the list either way.
        raise _Skip("blacklist change")
    entry = event.get("reject")
    if not isinstance(entry, dict):
        raise _Skip("no reject entry")
    key_of_recipient = _recipient_key(entry.get("email"), key)
    if key_of_recipient is None:
        raise _Skip("bad address")
    return SuppressionChange(
        provider=PROVIDER,
        provider_event_id=f"{kind}:{action}:{int(occurred_at.timestamp())}:{key_of_recipient[:32]}",
        channel=Channel.EMAIL,
        recipient_key=key_of_recipient,
        reason=SuppressionReason.BLACKLIST,
        add=action == "add",
        occurred_at=occurred_at,
    )


def _time(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not _TS_MIN <= value <= _TS_MAX:
        raise _Skip("bad ts")
    return datetime.fromtimestamp(int(value), UTC)


def _token(value: Any) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _reject_reason(msg: Mapping[str, Any]) -> str | None:
    reject = msg.get("reject")
    if isinstance(reject, dict):
        return _token(reject.get("reason"))
    # The messages/send answer's spelling, should a reject event carry it flat.
    return _token(msg.get("reject_reason"))


def _recipient_key(address: Any, key: bytes) -> str | None:
    if not isinstance(address, str) or not address or len(address) > _MAX_ADDRESS:
        return None
    try:
        return recipient_key(Channel.EMAIL, address, key)
    except ValueError:
        return None
