"""The receiver app on an in-memory sink, driven in process through httpx's ASGI transport (no socket)."""

from __future__ import annotations

import pytest

from tests.webhooks.helpers import AsgiClient, receiver_config
from workers.webhooks import MemorySink, ReceiverConfig, create_app


@pytest.fixture
def config() -> ReceiverConfig:
    return receiver_config()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def client(config: ReceiverConfig, sink: MemorySink) -> AsgiClient:
    return AsgiClient(create_app(config, sink))
