"""The event-bus consumer inside the worker, and the publisher that puts raw VtEvents on the bus."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from celery import bootsteps
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, binding
from kombu.messaging import Consumer, Producer
from kombu.message import Message

from workers.dispatch import Dispatcher, Intake
from workers.settings import Settings

log = structlog.get_logger("workers.ingest")

# A message whose handling failed for a reason of ours (database down) goes back to the queue
# after this pause, so an outage is not a hot loop.
INFRA_BACKOFF = 1.0


def event_exchange(settings: Settings) -> Exchange:
    return Exchange(settings.event_exchange, type="topic", durable=True)


def event_queue(settings: Settings) -> Queue:
    exchange = event_exchange(settings)
    return Queue(
        settings.event_queue,
        exchange=exchange,
        bindings=[binding(exchange, routing_key=key) for key in settings.event_routing_keys],
        durable=True,
    )


class EventHandler:
    """Handles one bus message to the end: ack only after the ledger and the deliver task have it."""

    def __init__(self, dispatcher: Callable[[], Dispatcher], templates: Callable[[], frozenset[str]]) -> None:
        self._dispatcher = dispatcher
        self._templates = templates
        self.counts: dict[Intake, int] = dict.fromkeys(Intake, 0)

    def __call__(self, message: Message) -> None:
        # Celery kills the whole worker when a consumer callback raises, and the bad message
        # stays queued, so nothing may escape from here.
        try:
            outcome = self._dispatcher().receive(
                message.body if isinstance(message.body, bytes) else bytes(message.body, "utf-8"),
                message.content_type,
                message.delivery_info.get("routing_key"),
                templates=self._templates(),
            )
        except Exception:
            log.exception("ingest.failed", routing_key=message.delivery_info.get("routing_key"))
            time.sleep(INFRA_BACKOFF)
            try:
                message.requeue()
            except Exception:
                log.exception("ingest.requeue_failed")
            return
        self.counts[outcome] += 1
        message.ack()


class EventConsumerStep(bootsteps.ConsumerStep):
    """A Celery consumer bootstep: the bus queue rides on the worker's own broker connection."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        from workers import tasks  # the Celery edge owns the runtime

        self.settings: Settings = tasks.settings
        self.handler = EventHandler(
            lambda: tasks.runtime.get().dispatcher,
            lambda: tasks.runtime.get().templates.names(),
        )

    def get_consumers(self, channel: Any) -> list[Consumer]:
        return [
            Consumer(
                channel,
                queues=[event_queue(self.settings)],
                on_message=self.handler,
                accept=None,  # raw bytes: we decode by content type ourselves
                prefetch_count=16,
            )
        ]


def declare_bus(connection: Connection, settings: Settings) -> None:
    """Declare the exchange, our queue and its bindings (idempotent), so publishes never vanish."""
    event_queue(settings)(connection.default_channel).declare()


def publish_event(
    producer: Producer,
    settings: Settings,
    *,
    body: bytes,
    content_type: str,
    routing_key: str,
    message_id: str | None = None,
) -> None:
    """Publish one raw VtEvent as the platform does: topic exchange, type name as routing key."""
    producer.publish(
        body,
        exchange=event_exchange(settings),
        routing_key=routing_key,
        content_type=content_type,
        content_encoding="binary",
        delivery_mode=2,
        message_id=message_id,
        retry=True,
        retry_policy={"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5},
        declare=[event_exchange(settings)],
    )
