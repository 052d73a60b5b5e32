"""The receiver app on an in-memory sink, driven in process through httpx's ASGI transport (no socket)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.webhooks.helpers import MANDRILL_KEY, PUBLIC_URL, SUPPRESSION_KEY, TWILIO_TOKEN, AsgiClient
from workers.webhooks import MemorySink, ReceiverConfig, create_app


@pytest.fixture
def config() -> ReceiverConfig:
    return ReceiverConfig(
        public_url=PUBLIC_URL,
        suppression_key=SUPPRESSION_KEY,
        mandrill_webhook_key=SecretStr(MANDRILL_KEY),
        twilio_auth_token=SecretStr(TWILIO_TOKEN),
    )


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def client(config: ReceiverConfig, sink: MemorySink) -> AsgiClient:
    return AsgiClient(create_app(config, sink))
