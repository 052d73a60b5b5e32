"""Outcome events: a final status as a VtEvent carrying ``events.NotificationStatusChanged``, published.

``NOTIFY_STATUS_EVENTS=1`` turns them on. The envelope is new (its own ``core.id``); the payload
names the original event by its ``core.id`` and carries its trace context. Ids, statuses and codes
only: never an address, a number or a body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from workers.event_types import NOTIFICATION_STATUS_CHANGED
from workers.events.encoding import build_event, to_binary
from workers.events.status_pb2 import NotificationStatusChanged
from workers.messages import StatusChange

STATUS_CHANGED = NOTIFICATION_STATUS_CHANGED  # its full name is also its routing key
SERVICE_NAME = "notify-workers"
MAX_FIELD_CHARS = 512  # the reason and envelope values copied from the row are capped

Publish = Callable[[bytes, str], None]  # (protobuf bytes, routing key); raises when not confirmed

log = structlog.get_logger("workers.events.status")


def _text(value: Any) -> str:
    return str(value)[:MAX_FIELD_CHARS] if value is not None else ""


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {_text(k): _text(v) for k, v in value.items()}


def status_changed(change: StatusChange) -> NotificationStatusChanged:
    """The payload for one change; ``meta`` is the row's envelope facts as the ledger keeps them."""
    found = change.meta.get("core")
    core: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    changed_at = Timestamp()
    changed_at.FromDatetime(change.at)
    return NotificationStatusChanged(
        notification_id=change.notification_id,
        event_id=_text(core.get("id") or change.notification_id),
        event_core_type=_text(core.get("type")),
        event_type=_text(change.event_type),
        trace_context=_strings(change.meta.get("trace_context")),
        channel=_text(change.channel),
        old_status=change.old.value if change.old is not None else "",
        new_status=change.new.value,
        reason=_text(change.reason),
        provider=_text(change.provider),
        changed_at=changed_at,
    )


def status_event_bytes(change: StatusChange) -> bytes:
    """The whole VtEvent, protobuf binary, as published on the bus."""
    payload = status_changed(change)
    event = build_event(
        payload,
        core={"name": "NotificationStatusChanged", "service_name": SERVICE_NAME},
        trace_context=dict(payload.trace_context),
        trace_service_name=SERVICE_NAME,
    )
    return to_binary(event)


class BusAnnouncer:
    """The dispatcher's announcer: one event per final status, published through ``publish``.

    Called after the ledger committed; a broker that refuses or does not confirm is logged with
    the ids and counted as lost for this change. It never raises into the delivery it follows.
    """

    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    def announce(self, change: StatusChange) -> None:
        try:
            self._publish(status_event_bytes(change), STATUS_CHANGED)
        except Exception as exc:  # a broker blip must not fail a delivery that already happened
            log.warning(
                "status_event.unpublished",
                notification_id=change.notification_id,
                status=change.new.value,
                error_class=type(exc).__name__,
            )
