"""The ceilings: a tiny Celery app whose task does nothing, configured like the notify app.

Run as ``celery -A bench.noop_app worker`` with the same NOTIFY_* environment as the worker under
test: same broker, same task queue, and the reliability and event settings copied from
``workers.celery_app.create_app`` (late acks, prefetch 1, task events), so the ratio compares our
work with Celery's own cost under the same rules.

Two shapes. The 1-hop ceiling: the benchmark publishes ``bench.noop`` tasks itself. The same-shape
ceiling (``BENCH_NOOP_SHAPE=bus``): a consumer bootstep takes the raw VtEvents the benchmark puts on
a topic exchange of its own, reads ``core.id`` and sends one ``bench.noop`` task for it, which is
a notification's path through Celery (bus hop, then one task) with no work of ours in it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog
from celery import Celery, bootsteps
from kombu.message import Message
from kombu.messaging import Consumer

from bench.workload import MARK_HEADER, NOOP_SHAPE_VARIABLE
from workers.celery_app import create_app
from workers.events import JSON_CONTENT_TYPE
from workers.events.core_pb2 import VtEvent
from workers.ingest import event_queue
from workers.settings import get_settings

log = structlog.get_logger("bench.noop_app")

# The settings that change what a task costs Celery; copied so the ceiling runs under our rules.
SHARED = (
    "broker_url",
    "broker_transport_options",
    "task_serializer",
    "accept_content",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "task_acks_on_failure_or_timeout",
    "worker_prefetch_multiplier",
    "worker_send_task_events",
    "task_send_sent_event",
    "task_ignore_result",
    "broker_connection_retry_on_startup",
    "worker_hijack_root_logger",
    "worker_redirect_stdouts",
    "timezone",
)

settings = get_settings()
reference = create_app(settings)
app = Celery("bench-noop", set_as_current=True)
app.conf.update({key: reference.conf[key] for key in SHARED})
app.conf.update(task_default_queue=settings.task_queue)


@app.task(name="bench.noop", ignore_result=True)
def noop(_: int | str) -> None:
    """Nothing: what is measured is Celery fetching, running and acking it."""


@app.task(name="bench.mark", ignore_result=True)
def mark(path: str) -> None:
    """Touch ``path``: the publisher sends one after the no-ops and stops its clock when it appears."""
    Path(path).touch()


def core_id(body: bytes, content_type: str | None) -> str:
    """The event's ``core.id``: the least a consumer must read to name the task it sends."""
    if content_type == JSON_CONTENT_TYPE:
        return str(json.loads(body)["core"]["id"])
    return VtEvent.FromString(body).core.id


class BusNoopStep(bootsteps.ConsumerStep):
    """The bus hop of our shape with no work: read the id, send its no-op task, ack.

    Same queue, bindings and prefetch as ``workers.ingest.EventConsumerStep``; the handler catches
    everything, as ours must, because a consumer callback that raises kills the worker."""

    def get_consumers(self, channel: Any) -> list[Consumer]:
        return [
            Consumer(
                channel,
                queues=[event_queue(settings)],
                on_message=self.on_message,
                accept=None,
                prefetch_count=max(16, 2 * settings.ingest_batch),
            )
        ]

    def on_message(self, message: Message) -> None:
        try:
            body = message.body if isinstance(message.body, bytes) else message.body.encode()
            noop.apply_async((core_id(body, message.content_type),))
            marker = (message.headers or {}).get(MARK_HEADER)
            if marker:
                mark.apply_async((str(marker),))
            message.ack()
        except Exception:
            log.exception("bench.bus_noop_failed", routing_key=message.delivery_info.get("routing_key"))


if os.environ.get(NOOP_SHAPE_VARIABLE) == "bus":
    app.steps["consumer"].add(BusNoopStep)
