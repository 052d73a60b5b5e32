"""Runs a real `notify worker` process for integration tests, and waits on the ledger it writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu import Connection, Producer

from tests.conftest import ROOT
from workers.ledger import make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import NotificationView, get_notification
from workers.settings import Settings, load_settings


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
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class WorkerProcess:
    """A `notify worker` child process; its log goes to a file the test can read."""

    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ("--concurrency", "4")
    process: subprocess.Popen[bytes] | None = None
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = settings_for(self.env)
        engine = make_engine(self.settings.resolved_database_url)
        upgrade(engine)
        engine.dispose()

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            # A node name of its own: two workers sharing the default name on one RabbitMQ fight
            # over the remote-control queue and one dies with RESOURCE_LOCKED.
            [sys.executable, "-m", "workers", "worker", *self.args, *self._node_name()],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            start_new_session=True,
        )
        return self

    def _node_name(self) -> list[str]:
        if "-n" in self.args or any(arg.startswith(("--hostname", "-n=")) for arg in self.args):
            return []
        return ["-n", f"test-{uuid.uuid4().hex[:8]}@%h"]

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and any pool children."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connection(settings: Settings) -> Connection:
    from workers.broker import broker_settings

    conf = broker_settings(settings)
    return Connection(conf["broker_url"], transport_options=conf.get("broker_transport_options", {}))


def publish_raw(settings: Settings, messages: Iterable[tuple[bytes, str, str]]) -> int:
    """Publish (body, content_type, routing_key) with plain kombu, as a foreign producer would."""
    from workers.ingest import declare_bus, event_exchange

    count = 0
    with connection(settings) as conn:
        declare_bus(conn, settings)
        producer = Producer(conn.default_channel)
        for body, content_type, routing_key in messages:
            producer.publish(
                body,
                exchange=event_exchange(settings),
                routing_key=routing_key,
                content_type=content_type,
                content_encoding="binary",
                delivery_mode=2,
            )
            count += 1
    return count


def wait_for(
    settings: Settings,
    ids: Iterable[str],
    *,
    timeout: float = 60.0,
    worker: WorkerProcess | None = None,
    done: Any = None,
) -> dict[str, NotificationView | None]:
    """Poll the ledger until every id is terminal (or ``done(view)`` holds), or the timeout passes."""
    wanted = list(ids)
    engine = make_engine(settings.resolved_database_url)
    check = done or (lambda view: view is not None and view.status.terminal)
    deadline = time.monotonic() + timeout
    rows: dict[str, NotificationView | None] = {}
    try:
        while True:
            rows = {i: get_notification(engine, i) for i in wanted}
            if all(check(view) for view in rows.values()):
                return rows
            if worker is not None and not worker.alive():
                raise AssertionError(f"worker exited early:\n{worker.log()[-4000:]}")
            if time.monotonic() > deadline:
                return rows
            time.sleep(0.2)
    finally:
        engine.dispose()
