"""Raw events onto the event exchange, each confirmed by the broker, over one connection per process."""

from __future__ import annotations

import threading
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer

from workers.broker import broker_settings
from workers.events import PROTOBUF_CONTENT_TYPE
from workers.settings import Settings


class ConfirmedPublisher:
    """Publishes protobuf bodies (status events) and returns once the broker has acknowledged each.

    Its own connection in confirm mode (py-amqp waits for the broker's ack of each publish), so
    the task publishes keep their speed. Made on first use: after a prefork fork, in the child.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._exchange = Exchange(settings.event_exchange, type="topic", durable=True)
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def __call__(self, body: bytes, routing_key: str) -> None:
        with self._lock:
            if self._connection is None or self._producer is None:
                conf = broker_settings(self._settings)
                options: dict[str, Any] = {
                    **conf.get("broker_transport_options", {}),
                    "confirm_publish": True,
                }
                self._connection = Connection(conf["broker_url"], transport_options=options)
                self._producer = Producer(self._connection.default_channel)
            publish = self._connection.ensure(self._producer, self._producer.publish, max_retries=3)
            publish(
                body,
                exchange=self._exchange,
                routing_key=routing_key,
                content_type=PROTOBUF_CONTENT_TYPE,
                content_encoding="binary",
                delivery_mode=2,
                declare=[self._exchange],
            )
