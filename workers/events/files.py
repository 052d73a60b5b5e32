"""Read one event file (.json or .pb) with the content type and routing key to publish it under."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workers.errors import InvalidEvent
from workers.events.wire import JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, peek_type_name

CONTENT_TYPES = {".json": JSON_CONTENT_TYPE, ".pb": PROTOBUF_CONTENT_TYPE}


@dataclass(frozen=True, slots=True)
class EventFile:
    """An event as it goes on the bus. ``routing_key`` is "" when the payload type cannot be read."""

    body: bytes
    content_type: str
    routing_key: str


def load_event_file(path: Path) -> EventFile:
    """Read ``path``; the suffix picks the encoding, the payload's type name is the routing key.

    The contents are not validated: an invalid event is still published, so that the worker records
    it as rejected (the demo does exactly that). InvalidEvent when the file cannot be read or its
    suffix is neither .json nor .pb.
    """
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise InvalidEvent(f"{path}: unsupported suffix {path.suffix!r}; event files end in .json or .pb")
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise InvalidEvent(f"{path}: cannot read the event file ({exc.strerror or exc})") from None
    return EventFile(body=body, content_type=content_type, routing_key=peek_type_name(body, content_type))
