"""Where the local services are, and an environment that gives one worker process its own names on them.

Shared by the benchmarks and the test suite (``tests/`` imports it; ``bench/`` imports nothing from
``tests``): the RabbitMQ, Redis and PostgreSQL addresses (``NOTIFY_TEST_*_URL`` to change them), an
environment with its own queues, exchange, outbox and state folder, the settings such an environment
gives, and a broker connection for them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from kombu import Connection

from workers.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

POSTGRES_ADMIN_URL = os.environ.get(
    "NOTIFY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("NOTIFY_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("NOTIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def isolated_env(
    tmp_path: Path, *, broker_url: str = "", database_url: str = "", **extra: str
) -> dict[str, str]:
    """Environment for one worker: its own queues, exchange, outbox and state folder."""
    tag = uuid.uuid4().hex[:8]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NOTIFY_", "MANDRILL_", "SMTP_", "TWILIO_"))
    }
    env.update(
        {
            "NOTIFY_BROKER_URL": broker_url,
            "NOTIFY_DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'ledger.db'}",
            "NOTIFY_STATE_DIR": str(tmp_path / "state"),
            "NOTIFY_OUTBOX_DIR": str(tmp_path / "outbox"),
            "NOTIFY_TASK_QUEUE": f"notify-test-{tag}",
            "NOTIFY_EVENT_EXCHANGE": f"events-test-{tag}",
            "NOTIFY_EVENT_QUEUE": f"notify-events-test-{tag}",
            "NOTIFY_LOG_FORMAT": "json",
            "NOTIFY_SWEEP_INTERVAL": "2",
            "NOTIFY_STUCK_AFTER": "5",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def settings_for(env: Mapping[str, str]) -> Settings:
    """The settings a process started with ``env`` reads (this process's environment is restored)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def connection(settings: Settings) -> Connection:
    """A kombu connection to the broker ``settings`` name, with the worker's transport options."""
    from workers.broker import broker_settings

    conf = broker_settings(settings)
    return Connection(conf["broker_url"], transport_options=conf.get("broker_transport_options", {}))
