"""The event schema's public face: decode, validate, build and encode VtEvents.

Other packages import from here only; the submodules are the implementation.
"""

from workers.event_types import BASIC_EMAIL, MENTION_EMAIL_GENERATED, SMS_NOTIFICATION
from workers.events.encoding import build_event, event_to_dict, format_rfc1123z, to_binary, to_json_bytes
from workers.events.files import EventFile, load_event_file
from workers.events.parsing import (
    ParsedEvent,
    derived_id,
    parse_event,
    parse_event_dict,
    parse_timestamp,
    raw_id,
)
from workers.events.schema import DEFAULT_TEMPLATES, OUR_EVENT_TYPES, TYPE_URL_PREFIX
from workers.events.wire import JSON_CONTENT_TYPE, MAX_EVENT_BYTES, PROTOBUF_CONTENT_TYPE

__all__ = [
    "BASIC_EMAIL",
    "DEFAULT_TEMPLATES",
    "JSON_CONTENT_TYPE",
    "MAX_EVENT_BYTES",
    "MENTION_EMAIL_GENERATED",
    "OUR_EVENT_TYPES",
    "PROTOBUF_CONTENT_TYPE",
    "SMS_NOTIFICATION",
    "TYPE_URL_PREFIX",
    "EventFile",
    "ParsedEvent",
    "build_event",
    "derived_id",
    "event_to_dict",
    "format_rfc1123z",
    "load_event_file",
    "parse_event",
    "parse_event_dict",
    "parse_timestamp",
    "raw_id",
    "to_binary",
    "to_json_bytes",
]
