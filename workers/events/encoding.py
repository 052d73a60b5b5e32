"""Build VtEvents and encode them as protobuf binary or proto3 JSON (producers, examples, tests)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from workers.errors import InvalidEvent
from workers.events import core_pb2
from workers.events.schema import TYPE_URL_PREFIX
from workers.events.wire import Encoding, as_bytes, encoding_for, looks_like_json


def format_rfc1123z(moment: datetime) -> str:
    """``Mon, 02 Jan 2006 15:04:05 -0700``, the form the messaging library writes in core.timestamp."""
    return format_datetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def build_event(
    payload: Message,
    *,
    core: Mapping[str, str] | None = None,
    baggage: Mapping[str, str] | None = None,
    trace_context: Mapping[str, str] | None = None,
    trace_tags: Mapping[str, str] | None = None,
    trace_service_name: str = "",
) -> core_pb2.VtEvent:
    """A VtEvent carrying ``payload`` in ``data``.

    Like the platform's messaging library, it fills ``core.id`` (a uuid4) and ``core.timestamp``
    (now, RFC 1123Z) unless ``core`` gives them; pass ``"id": ""`` to leave the id out.
    """
    fields = {"id": str(uuid.uuid4()), "timestamp": format_rfc1123z(datetime.now(UTC)), **(core or {})}
    event = core_pb2.VtEvent(core=core_pb2.Core(**fields), baggage=dict(baggage or {}))
    if trace_context or trace_tags or trace_service_name:
        event.trace.CopyFrom(
            core_pb2.Trace(
                trace_context=dict(trace_context or {}),
                trace_tags=dict(trace_tags or {}),
                service_name=trace_service_name,
            )
        )
    event.data.Pack(payload, type_url_prefix=TYPE_URL_PREFIX, deterministic=True)
    return event


def to_binary(event: core_pb2.VtEvent) -> bytes:
    """Protobuf binary (``application/x-protobuf``), deterministic so files are reproducible."""
    return event.SerializeToString(deterministic=True)


def to_json_bytes(event: core_pb2.VtEvent, *, camel_case: bool = False, indent: int | None = 2) -> bytes:
    """Canonical proto3 JSON (``application/json``), UTF-8, newline-terminated.

    ``camel_case`` writes lowerCamelCase names (what protobuf emits by default); otherwise the
    proto field names. Readers accept both. int64 values are written as strings, as the mapping says.
    """
    text = json_format.MessageToJson(
        event, preserving_proto_field_name=not camel_case, indent=indent, ensure_ascii=False
    )
    return text.encode("utf-8") + b"\n"


def event_to_dict(
    event: core_pb2.VtEvent | bytes | str,
    content_type: str | None = None,
    *,
    camel_case: bool = False,
) -> dict[str, Any]:
    """A VtEvent as a proto3-JSON dict (the argument of ``notifications.accept``).

    Bytes are decoded per ``content_type`` (sniffed when absent). JSON is passed through as
    parsed, without validation, so an invalid event stays invalid for the receiver to reject.
    Binary must decode, and its payload type must be known to this process.
    """
    if isinstance(event, core_pb2.VtEvent):
        message = event
    else:
        body = as_bytes(event)
        encoding = encoding_for(content_type)
        if encoding is Encoding.JSON or (encoding is None and looks_like_json(body)):
            try:
                loaded = json.loads(body.decode("utf-8").removeprefix("\ufeff"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise InvalidEvent("event is not valid UTF-8 JSON") from None
            if not isinstance(loaded, dict):
                raise InvalidEvent("event must be a JSON object")
            return loaded
        message = core_pb2.VtEvent()
        try:
            message.ParseFromString(body)
        except Exception:  # DecodeError and friends; the bytes are the producer's problem
            raise InvalidEvent("event is not a valid protobuf VtEvent") from None
    try:
        # Through text rather than MessageToDict, which hands the Any back as an OrderedDict.
        result: dict[str, Any] = json.loads(
            json_format.MessageToJson(message, preserving_proto_field_name=not camel_case)
        )
    except (TypeError, KeyError, json_format.Error):  # an Any whose type this process does not know
        raise InvalidEvent("data holds a type this process cannot convert to JSON", field="data") from None
    return result
