"""Runs a real `notify worker` process for integration tests, and waits on the ledger it writes.

The isolated environment, its settings and broker connection come from ``bench.services``, which
the benchmarks share; they are re-exported here for the tests that import them from the harness.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu import Producer

from bench.services import connection, settings_for
from bench.services import isolated_env as isolated_env
from workers.ledger import make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import NotificationView, get_notification
from workers.settings import Settings


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
