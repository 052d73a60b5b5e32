"""The bytes of one event (protobuf binary or proto3 JSON) into an envelope and an undecoded payload.

The payload stays undecoded here because whether a failure to decode it is a rejection or none of
our business depends on its type and the routing key, which ``parsing`` weighs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf.message import DecodeError, Message

from workers.errors import InvalidEvent
from workers.events import core_pb2
from workers.events.jsonmap import fields_from_json, message_to_plain, parse_message, plain_from_json
from workers.events.schema import type_name_from_url

# A sanity cap well above any real notification (bodies are capped at 5 MiB each in validation).
MAX_EVENT_BYTES = 16 * 1024 * 1024

JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
_PROTOBUF_TYPES = frozenset(
    {
        PROTOBUF_CONTENT_TYPE,
        "application/protobuf",
        "application/x-google-protobuf",
        "application/vnd.google.protobuf",
    }
)
_JSON_TYPES = frozenset({JSON_CONTENT_TYPE, "text/json"})
# No content type, or one that says nothing about the encoding: look at the bytes.
_SNIFF_TYPES = frozenset({"", "application/octet-stream"})
_JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_JSON_LEAD_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload as a plain dict (``message_to_plain``'s form), and the message when at hand.

    ``message`` is None when the JSON fast path made the dict without one; ``payload_message``
    builds it when it is needed after all (a derived id).
    """

    plain: dict[str, Any]
    message: Message | None


class Encoding(StrEnum):
    JSON = "json"
    PROTOBUF = "protobuf"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded VtEvent without its payload: ``event.data`` is cleared, the payload kept aside.

    ``payload`` is the Any's value bytes (binary) or the JSON object without ``@type``; ``type_name``
    is the payload's full name, empty when ``data`` is absent or has no type (``data_problem`` says
    which).
    """

    event: core_pb2.VtEvent
    type_name: str
    payload: bytes | Mapping[str, Any] | None
    data_problem: str = ""


def encoding_for(content_type: str | None) -> Encoding | None:
    """The encoding a content type names; None means "sniff the bytes". Parameters are allowed.

    Raises InvalidEvent for a content type that is neither JSON nor protobuf, or JSON in a charset
    other than UTF-8 (proto3 JSON is UTF-8).
    """
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type in _SNIFF_TYPES:
        return None
    if media_type in _PROTOBUF_TYPES:
        return Encoding.PROTOBUF
    if media_type in _JSON_TYPES or media_type.endswith("+json"):
        for param in params.split(";"):
            name, _, value = param.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in _JSON_CHARSETS:
                raise InvalidEvent(
                    f"content type charset {charset[:40]!r} is not supported; JSON must be UTF-8"
                )
        return Encoding.JSON
    raise InvalidEvent(
        f"content type {media_type[:80]!r} is not supported; "
        f"use {JSON_CONTENT_TYPE} or {PROTOBUF_CONTENT_TYPE}"
    )


def looks_like_json(body: bytes) -> bool:
    """Whether the bytes start, after an optional BOM and whitespace, with ``{``."""
    return body.removeprefix(_UTF8_BOM).lstrip(_JSON_LEAD_WHITESPACE).startswith(b"{")


def as_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    """The body as bytes; a str (some brokers hand JSON over decoded) is re-encoded as UTF-8."""
    if isinstance(body, str):
        # surrogatepass keeps a lone surrogate as invalid UTF-8, to be refused by the decoder.
        return body.encode("utf-8", "surrogatepass")
    return bytes(body)


def _load_json(body: bytes) -> object:
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise InvalidEvent("event is not valid UTF-8 JSON") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidEvent("event is not valid JSON") from None


def _decode_binary(body: bytes) -> Envelope:
    event = core_pb2.VtEvent()
    try:
        event.ParseFromString(body)
    except (DecodeError, RecursionError):
        raise InvalidEvent("event is not a valid protobuf VtEvent") from None
    if not event.HasField("data"):
        return Envelope(event, "", None, "is missing")
    type_url, payload = event.data.type_url, bytes(event.data.value)
    event.ClearField("data")
    if not type_url:
        return Envelope(event, "", None, "has no type URL")
    return Envelope(event, type_name_from_url(type_url), payload)


def decode_envelope_dict(event: object) -> Envelope:
    """A VtEvent in proto3 JSON form (already parsed into Python objects) into an Envelope."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("event must be a JSON object")
    envelope = {key: value for key, value in event.items() if key != "data"}
    data = event.get("data")
    fields = fields_from_json(envelope, core_pb2.VtEvent)
    message = (
        core_pb2.VtEvent(**fields) if fields is not None else parse_message(envelope, core_pb2.VtEvent, "")
    )
    if data is None:
        return Envelope(message, "", None, "is missing")
    if not isinstance(data, Mapping):
        raise InvalidEvent("must be a JSON object", field="data")
    type_url = data.get("@type")
    if type_url is None or type_url == "":
        return Envelope(message, "", None, "has no @type")
    if not isinstance(type_url, str):
        raise InvalidEvent("must be a string", field="data.@type")
    payload = {key: value for key, value in data.items() if key != "@type"}
    return Envelope(message, type_name_from_url(type_url), payload)


def decode_envelope(body: bytes | bytearray | memoryview | str, content_type: str | None) -> Envelope:
    """Decode the envelope of one event; InvalidEvent (without ids) when the bytes do not decode.

    With no content type (or application/octet-stream) the bytes are sniffed: JSON if they start
    with ``{`` after whitespace, else binary. A binary VtEvent can start with bytes that look like
    that (``0x0a 0x7b``: a 123-byte core), so a sniffed "JSON" that does not parse is tried as binary
    before giving up.
    """
    data = as_bytes(body)
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {len(data)} bytes; the limit is {MAX_EVENT_BYTES}")
    encoding = encoding_for(content_type)
    if encoding is Encoding.PROTOBUF:
        return _decode_binary(data)
    if encoding is Encoding.JSON:
        return decode_envelope_dict(_load_json(data))
    if not looks_like_json(data):
        return _decode_binary(data)
    try:
        loaded = _load_json(data)
    except InvalidEvent as json_error:
        try:
            return _decode_binary(data)
        except InvalidEvent:
            raise json_error from None
    return decode_envelope_dict(loaded)


def decode_payload(envelope: Envelope, message_class: type[Message]) -> Payload:
    """The envelope's payload as ``message_class``; InvalidEvent naming ``data...`` if it does not fit."""
    if isinstance(envelope.payload, bytes):
        message = message_class()
        try:
            message.ParseFromString(envelope.payload)
        except (DecodeError, RecursionError):
            raise InvalidEvent(
                f"does not decode as {message_class.DESCRIPTOR.full_name}", field="data"
            ) from None
        return Payload(message_to_plain(message), message)
    if envelope.payload is None:
        raise InvalidEvent("is missing", field="data")
    plain = plain_from_json(envelope.payload, message_class)
    if plain is not None:
        return Payload(plain, None)
    message = parse_message(envelope.payload, message_class, "data")
    return Payload(message_to_plain(message), message)


def payload_message(envelope: Envelope, payload: Payload, message_class: type[Message]) -> Message:
    """The payload as a message: the decoded one, or (JSON fast path) parsed again the canonical way."""
    if payload.message is not None:
        return payload.message
    return parse_message(envelope.payload, message_class, "data")


def peek_type_name(body: bytes, content_type: str | None) -> str:
    """The payload type an event claims (its Any type URL's name), or "" when that cannot be read.

    Looks only at ``data``'s type, so an event that is otherwise broken still gets routed to the
    worker that will record it as rejected.
    """
    try:
        encoding = encoding_for(content_type)
    except InvalidEvent:
        return ""
    if encoding is Encoding.JSON or (encoding is None and looks_like_json(body)):
        try:
            loaded = _load_json(body)
        except InvalidEvent:
            loaded = None
        if isinstance(loaded, dict):
            data = loaded.get("data")
            type_url = data.get("@type") if isinstance(data, dict) else None
            return type_name_from_url(type_url) if isinstance(type_url, str) else ""
        if encoding is Encoding.JSON:
            return ""
    try:
        return _decode_binary(body).type_name
    except InvalidEvent:
        return ""
