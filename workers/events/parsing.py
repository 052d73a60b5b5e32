"""Decode, identify and validate one event into a ParsedEvent, or say why it is not one.

Outcomes: a ParsedEvent; NotOurEvent for a well-formed event of another type that the routing
key does not claim for us; InvalidEvent otherwise, carrying a notification id (``core.id``, a
derived id, or a ``raw-`` digest of undecodable bytes) so the caller can record the rejection and
a redelivery of the same message collapses onto the same row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import structlog
from google.protobuf.message import Message

from workers.errors import InvalidEvent, NotOurEvent
from workers.event_types import BASIC_EMAIL, MENTION_EMAIL_GENERATED, SMS_NOTIFICATION
from workers.events.schema import DEFAULT_TEMPLATES, KINDS, OUR_EVENT_TYPES
from workers.events.validation import validate_payload
from workers.events.wire import (
    Envelope,
    Payload,
    as_bytes,
    decode_envelope,
    decode_envelope_dict,
    decode_payload,
    payload_message,
)
from workers.ids import id_problem, is_usable_id
from workers.messages import Channel

log = structlog.get_logger(__name__)

CORE_FIELDS = (
    "id",
    "name",
    "timestamp",
    "type",
    "service_name",
    "application_id",
    "event_id",
    "organization_id",
    "user_id",
    "token_id",
)
MAX_ENVELOPE_VALUE_CHARS = 8 * 1024  # per core field, baggage or trace entry
_RECIPIENT_FIELDS = {
    BASIC_EMAIL: "to_address",
    SMS_NOTIFICATION: "to_number",
    MENTION_EMAIL_GENERATED: "to_email",
}
_DIGEST_CHARS = 32


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One valid event of ours, ready for the ledger. The mappings are plain dicts: do not mutate."""

    notification_id: str
    event_type: str
    channel: Channel
    payload: Mapping[str, Any]
    core: Mapping[str, str]
    baggage: Mapping[str, str]
    trace_context: Mapping[str, str]
    occurred_at: datetime | None
    recipient: str
    template: str | None


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        # Length-prefixed, so (b"ab", b"c") and (b"a", b"bc") hash differently.
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:_DIGEST_CHARS]


def raw_id(body: bytes) -> str:
    """The id of a message whose bytes do not decode: the same bytes always give the same id."""
    return "raw-" + hashlib.sha256(body).hexdigest()[:_DIGEST_CHARS]


def derived_id(type_name: str, payload: Message | bytes | Mapping[str, Any]) -> str:
    """The id of an event without ``core.id``: a digest of its type and canonical payload.

    The payload is serialized deterministically with unknown fields dropped, so the same payload
    sent as JSON or as binary, or redelivered, gets the same id. Two distinct sends of identical
    content also collapse: without a producer id nothing can tell them apart.
    """
    if isinstance(payload, Message):
        copy = type(payload)()
        copy.CopyFrom(payload)
        copy.DiscardUnknownFields()
        canonical = copy.SerializeToString(deterministic=True)
    elif isinstance(payload, bytes):
        canonical = payload
    else:
        canonical = _json_digest_input(payload)
    return "derived-" + _digest(type_name.encode("utf-8", "surrogatepass"), canonical)


def _json_digest_input(value: object) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError, RecursionError):  # non-string keys, cycles, absurd nesting
        return repr(value).encode("utf-8", "surrogatepass")


def parse_timestamp(value: str) -> datetime | None:
    """``core.timestamp`` (RFC 1123Z, or RFC 3339) as an aware UTC datetime; None if absent or bad.

    A timestamp without a zone (or with RFC 2822's -0000, "zone unknown") is taken as UTC.
    """
    value = value.strip()
    if not value:
        return None
    parsed: datetime | None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 pushed out of range by the offset
        return None


def _reject(exc: InvalidEvent, notification_id: str, event_type: str | None) -> InvalidEvent:
    return InvalidEvent(exc.reason, field=exc.field, notification_id=notification_id, event_type=event_type)


def _identify(envelope: Envelope, type_name: str, payload: Payload | None) -> str:
    """``core.id``, or a derived id (logged) when it is missing; InvalidEvent when it is unusable."""
    core_id = envelope.event.core.id
    if is_usable_id(core_id):  # the usual case; the derived id is worked out only when needed
        return core_id
    # Without a decodable payload, the payload as received; without any, the whole envelope, so
    # that two different broken events do not collapse onto one row.
    source: Message | bytes | Mapping[str, Any]
    if payload is not None:
        source = payload_message(envelope, payload, KINDS[type_name].message_class)
    elif envelope.payload is not None:
        source = envelope.payload
    else:
        source = envelope.event
    fallback = derived_id(type_name, source)
    if not core_id:
        log.warning("event.core_id_missing", event_type=type_name, notification_id=fallback)
        return fallback
    # The rejection is keyed by the derived id: a hostile id never becomes a name anywhere.
    raise InvalidEvent(
        f"is not a usable id: it {id_problem(core_id)}",
        field="core.id",
        notification_id=fallback,
        event_type=type_name or None,
    )


def _check_envelope_strings(
    core: Mapping[str, str], baggage: Mapping[str, str], trace_context: Mapping[str, str]
) -> None:
    """The envelope values we store (core, baggage, trace context) must fit a database text column."""
    for name, value in core.items():
        if "\x00" in value or len(value) > MAX_ENVELOPE_VALUE_CHARS:
            _refuse_envelope_value(value, f"core.{name}")
    for field, mapping in (("baggage", baggage), ("trace.trace_context", trace_context)):
        for value in (*mapping, *mapping.values()):
            if "\x00" in value or len(value) > MAX_ENVELOPE_VALUE_CHARS:
                _refuse_envelope_value(value, field)


def _refuse_envelope_value(value: str, field: str) -> NoReturn:
    if "\x00" in value:  # PostgreSQL text and JSON cannot hold NUL
        raise InvalidEvent("contains a NUL character", field=field)
    raise InvalidEvent(
        f"holds a value of {len(value)} characters; the limit is {MAX_ENVELOPE_VALUE_CHARS}", field=field
    )


def _parse(envelope: Envelope, routing_key: str | None, templates: Collection[str]) -> ParsedEvent:
    claimed = routing_key if routing_key in OUR_EVENT_TYPES else None
    type_name = envelope.type_name
    if claimed is not None and type_name != claimed:
        problem = envelope.data_problem or (
            f"holds {type_name[:80]!r}, not the {claimed} its routing key names"
        )
        exc = InvalidEvent(problem, field="data")
        raise _reject(exc, _identify(envelope, claimed, None), claimed)
    if not type_name:
        exc = InvalidEvent(envelope.data_problem, field="data")
        raise _reject(exc, _identify(envelope, "", None), None)
    if type_name not in OUR_EVENT_TYPES:
        raise NotOurEvent(type_name)

    kind = KINDS[type_name]
    try:
        payload = decode_payload(envelope, kind.message_class)
    except InvalidEvent as exc:
        raise _reject(exc, _identify(envelope, type_name, None), type_name) from None
    notification_id = _identify(envelope, type_name, payload)
    event = envelope.event
    core = {name: getattr(event.core, name) for name in CORE_FIELDS}
    baggage = dict(event.baggage)
    trace_context = dict(event.trace.trace_context)
    try:
        _check_envelope_strings(core, baggage, trace_context)
        canonical = validate_payload(type_name, payload.plain, templates, notification_id=notification_id)
    except InvalidEvent as exc:
        raise _reject(exc, notification_id, type_name) from None

    is_mention = type_name == MENTION_EMAIL_GENERATED
    recipient_field = _RECIPIENT_FIELDS[type_name]
    return ParsedEvent(
        notification_id=notification_id,
        event_type=type_name,
        channel=kind.channel,
        payload=canonical,
        core=core,
        baggage=baggage,
        trace_context=trace_context,
        occurred_at=parse_timestamp(core["timestamp"]),
        recipient=canonical[recipient_field],
        template=canonical["template"] if is_mention else None,
    )


def parse_event(
    body: bytes | bytearray | memoryview | str,
    content_type: str | None,
    *,
    routing_key: str | None = None,
    templates: Collection[str] = DEFAULT_TEMPLATES,
) -> ParsedEvent:
    """Decode and validate one event as it came off the bus (protobuf binary or proto3 JSON).

    ``content_type`` may carry parameters; when absent the bytes are sniffed. ``routing_key`` is
    the bus routing key: when it names one of our types, anything but a valid event of exactly
    that type is an InvalidEvent (to be recorded as rejected), never NotOurEvent.
    """
    data = as_bytes(body)
    claimed = routing_key if routing_key in OUR_EVENT_TYPES else None
    try:
        envelope = decode_envelope(data, content_type)
    except InvalidEvent as exc:
        raise _reject(exc, raw_id(data), claimed) from None
    return _parse(envelope, routing_key, templates)


def parse_event_dict(
    event: Mapping[str, Any], *, templates: Collection[str] = DEFAULT_TEMPLATES
) -> ParsedEvent:
    """Validate one VtEvent given as a proto3-JSON dict (what ``notifications.accept`` receives)."""
    try:
        envelope = decode_envelope_dict(event)
    except InvalidEvent as exc:
        raise _reject(exc, raw_id(_json_digest_input(event)), None) from None
    return _parse(envelope, None, templates)
