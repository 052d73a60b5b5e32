"""The event-bus consumer inside the worker, and the publisher that puts raw VtEvents on the bus."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from celery import bootsteps
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, binding
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from workers.dispatch import BusMessage, Dispatcher, Intake
from workers.runtime import LazyRuntime
from workers.settings import Settings

log = structlog.get_logger("workers.ingest")


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


Schedule = Callable[[float, Callable[[], None]], None]  # run the callable after so many seconds


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a message whose handling failed for a reason of ours (database down) waits.

    Doubles with each failure in a row, so an outage is neither a hot loop nor a wall of logs,
    and falls back to ``base`` after the next success.
    """

    base: float = 0.5
    cap: float = 10.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, failures - 1))


def _raw_body(message: Message) -> bytes:
    body = message.body
    if isinstance(body, bytes):
        return body
    # py-amqp decodes a body whose message names a content encoding (pika and most producers
    # send "utf-8" with JSON); encoding it back with the same codec gives the exact bytes sent.
    try:
        return bytes(body, message.content_encoding or "utf-8")
    except (LookupError, UnicodeError):
        return bytes(body, "utf-8", "surrogatepass")


Defer = Callable[[Callable[[], None]], None]  # run the callable soon, on the consumer's loop

# How long a first message waits for neighbours to share its ledger write. Short against the
# latency budget, long enough for a busy bus to fill a batch.
BATCH_WINDOW_SECONDS = 0.005


class EventHandler:
    """Handles bus messages to the end: ack only after the ledger and the deliver task have them.

    Messages are settled in small batches: the first one of a batch waits at most
    ``BATCH_WINDOW_SECONDS`` (``defer``) for others, and all of them share one ledger write.
    Without ``defer`` (a loop without timers) each message is settled as it comes.

    A failure of ours (database or broker down) leaves the batch unacknowledged and hands it
    back to the queue after a backoff. The wait is scheduled, never slept: the handler runs on
    the worker's consumer loop, which also fetches task messages and sends broker heartbeats.
    """

    def __init__(
        self,
        dispatcher: Callable[[], Dispatcher],
        templates: Callable[[], frozenset[str]],
        *,
        schedule: Schedule,
        backoff: Backoff = Backoff(),
        defer: Defer | None = None,
        max_batch: int = 1,
    ) -> None:
        self._dispatcher = dispatcher
        self._templates = templates
        self._schedule = schedule
        self._backoff = backoff
        self._defer = defer
        self._max_batch = max(1, max_batch)
        self._pending: list[Message] = []
        self._failures = 0  # in a row
        self._generation = 0  # bumped whenever the channel the messages came on goes away
        self.counts: dict[Intake, int] = dict.fromkeys(Intake, 0)

    def __call__(self, message: Message) -> None:
        # Celery kills the whole worker when a consumer callback raises, and the bad message
        # stays queued, so nothing may escape from here.
        self._pending.append(message)
        if self._defer is None or len(self._pending) >= self._max_batch:
            self.flush()
        elif len(self._pending) == 1:
            try:
                self._defer(self.flush)
            except Exception:
                log.exception("ingest.defer_failed")
                self.flush()

    def flush(self) -> None:
        """Settle every message waiting in the current batch."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            outcomes = self._dispatcher().receive_many(
                [BusMessage(_raw_body(m), m.content_type, m.delivery_info.get("routing_key")) for m in batch],
                templates=self._templates(),
            )
        except Exception:
            self._failures += 1
            delay = self._backoff.delay(self._failures)
            log.exception("ingest.failed", messages=len(batch), requeue_in=delay, failures=self._failures)
            requeue = self._requeue_later(batch)
            try:
                self._schedule(delay, requeue)
            except Exception:
                log.exception("ingest.schedule_failed")
                requeue()  # better a fast retry than messages held until the channel closes
            return
        self._failures = 0
        for message, outcome in zip(batch, outcomes, strict=True):
            self.counts[outcome] += 1
            try:
                message.ack()
            except Exception:
                # The channel died under us: the broker hands the message out again, and the
                # ledger makes the second intake a no-op.
                log.exception("ingest.ack_failed", routing_key=message.delivery_info.get("routing_key"))

    def _requeue_later(self, batch: list[Message]) -> Callable[[], None]:
        generation = self._generation

        def requeue() -> None:
            if generation != self._generation:
                return  # their channel closed meanwhile, and closing already returned them
            for message in batch:
                if message.acknowledged:
                    continue
                try:
                    message.requeue()
                except Exception:
                    log.exception("ingest.requeue_failed")

        return requeue

    def channel_closed(self) -> None:
        """Forget pending work: delivery tags mean nothing on a new channel, and the broker hands
        the unacknowledged messages out again."""
        self._generation += 1
        self._pending = []


class RuntimeHolder(Protocol):
    """What the consumer step needs of the worker's app (``workers.celery_app.NotifyCelery``)."""

    settings: Settings
    runtime: LazyRuntime


class EventConsumerStep(bootsteps.ConsumerStep):
    """A Celery consumer bootstep: the bus queue rides on the worker's own broker connection."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        # The app carries the runtime; reaching it through the consumer keeps this module free
        # of the tasks module and of the module that builds the app.
        app: RuntimeHolder = parent.app
        runtime = app.runtime
        self.settings: Settings = app.settings
        # Batches need the event loop's timer to close them; the blocking loop (the filesystem
        # broker) settles each message as it comes.
        batching = getattr(parent, "hub", None) is not None and self.settings.ingest_batch > 1
        self.handler = EventHandler(
            lambda: runtime.get().dispatcher,
            lambda: runtime.get().templates.names(),
            schedule=lambda delay, fun: _on_consumer_loop(parent, delay, fun),
            defer=(lambda fun: _on_consumer_loop(parent, BATCH_WINDOW_SECONDS, fun)) if batching else None,
            max_batch=self.settings.ingest_batch,
        )

    def get_consumers(self, channel: Any) -> list[Consumer]:
        self.handler.channel_closed()  # a new channel: requeues meant for the old one are void
        return [
            Consumer(
                channel,
                queues=[event_queue(self.settings)],
                on_message=self.handler,
                accept=None,  # raw bytes: we decode by content type ourselves
                # Room for two batches: one being settled while the next one fills.
                prefetch_count=max(16, 2 * self.settings.ingest_batch),
            )
        ]

    def stop(self, c: Any) -> None:
        self.handler.channel_closed()
        super().stop(c)

    def shutdown(self, c: Any) -> None:
        self.handler.channel_closed()
        super().shutdown(c)


def _on_consumer_loop(consumer: Any, delay: float, fun: Callable[[], None]) -> None:
    """Run ``fun`` on the consumer's own loop after ``delay`` seconds.

    With an event loop (RabbitMQ, Redis) the worker's timer fires on that loop already; the
    blocking loop (the filesystem broker) has a timer thread instead, and ``call_soon`` moves the
    call back onto the loop, because a channel is not safe to use from two threads.
    """
    consumer.timer.call_after(delay, lambda: consumer.call_soon(fun))


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
