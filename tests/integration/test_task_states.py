"""What Flower sees, read from a real worker's Celery task events: a failed delivery is a failed task.

Flower builds its pages from these events (task-received, task-retried, task-succeeded,
task-failed). A notification that ends `failed` or `dead` must be a FAILURE carrying the ledger's
reason (ids and codes, no address), a `sent` one a SUCCESS, a failed task must not be redelivered
or retried by Celery, and a retried task keeps its readable description (``argsrepr``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.conftest import RABBITMQ_URL
from tests.factories import basic_email
from tests.fakes.http_base import Status as HttpStatus
from tests.fakes.mandrill_server import MandrillServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.messages import Status

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

KEY = "events-key"
BOUNCED = "bounced@example.org"


class TaskEvents:
    """Celery's task events from the broker, as Flower receives them, grouped by task id."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery(broker=broker_url, set_as_current=False)
        self.by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TaskEvents:
        self._thread.start()
        assert self._ready.wait(30), "the event receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def _run(self) -> None:
        with self.app.connection() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        if str(event.get("type", "")).startswith("task-"):
            with self._lock:
                self.by_task[event["uuid"]].append(event)

    def for_notification(self, notification_id: str) -> list[list[dict[str, Any]]]:
        """The event lists of every task whose received description names this notification."""
        with self._lock:
            return [
                list(events)
                for events in self.by_task.values()
                if any(
                    e["type"] == "task-received" and notification_id in str(e.get("args", "")) for e in events
                )
            ]


def _final(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in events if e["type"] in ("task-succeeded", "task-failed")), None)


def test_failed_and_dead_deliveries_are_failed_tasks_and_retries_keep_their_description(
    tmp_path: Path,
) -> None:
    with MandrillServer(api_keys={KEY}) as mandrill, TaskEvents(RABBITMQ_URL) as events:
        assert isinstance(mandrill, MandrillServer)
        mandrill.reject_address(BOUNCED, "hard-bounce")
        env = isolated_env(
            tmp_path,
            broker_url=RABBITMQ_URL,
            NOTIFY_EMAIL_PROVIDER="mandrill",
            MANDRILL_BASE_URL=mandrill.api_url,
            MANDRILL_API_KEY=KEY,
            NOTIFY_MAX_ATTEMPTS="2",
            NOTIFY_RETRY_BASE="0.2",
            NOTIFY_RETRY_CAP="0.5",
            NOTIFY_TASK_EVENTS="1",
        )
        dead, refused, sent = basic_email(), basic_email(toAddress=BOUNCED), basic_email()
        ids = {
            name: event["core"]["id"] for name, event in (("dead", dead), ("failed", refused), ("sent", sent))
        }
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            time.sleep(0.5)
            mandrill.fail_next(HttpStatus(500), HttpStatus(500))
            publish_raw(
                worker.settings, [(json.dumps(dead).encode(), "application/json", "events.BasicEmail")]
            )
            rows = wait_for(worker.settings, [ids["dead"]], worker=worker, timeout=60)
            assert rows[ids["dead"]] is not None and rows[ids["dead"]].status is Status.DEAD, worker.log()[
                -3000:
            ]
            publish_raw(
                worker.settings,
                [(json.dumps(e).encode(), "application/json", "events.BasicEmail") for e in (refused, sent)],
            )
            rows.update(wait_for(worker.settings, [ids["failed"], ids["sent"]], worker=worker, timeout=60))
            # Let the last events arrive, and any (wrong) redelivery happen.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(
                (tasks := events.for_notification(i)) and all(_final(t) for t in tasks) for i in ids.values()
            ):
                time.sleep(0.2)
            time.sleep(2.0)
            log = worker.log()

    assert rows[ids["failed"]] is not None and rows[ids["failed"]].status is Status.FAILED
    assert rows[ids["sent"]] is not None and rows[ids["sent"]].status is Status.SENT

    for name in ("dead", "failed"):
        (task,) = events.for_notification(ids[name])
        final = _final(task)
        assert final is not None and final["type"] == "task-failed", (name, task, log[-3000:])
        # Celery names the error by a class it can rebuild (our root); the message is the ledger's.
        assert f"notification {ids[name]} {name}: " in final["exception"], final
        assert BOUNCED not in final["exception"]
        # Acked as failed: received once per attempt (two for the dead one), never redelivered.
        received = [e for e in task if e["type"] == "task-received"]
        assert len(received) == (2 if name == "dead" else 1), task
        assert sum(1 for e in task if e["type"] == "task-failed") == 1, task
    reason = _final(events.for_notification(ids["failed"])[0])
    assert reason is not None and "hard-bounce" in reason["exception"]
    assert "GeneralError" in str(_final(events.for_notification(ids["dead"])[0]))
    assert (
        sum(1 for r in mandrill.received if r.json["message"]["metadata"]["notification_id"] == ids["failed"])
        == 1
    )

    (sent_task,) = events.for_notification(ids["sent"])
    final = _final(sent_task)
    assert final is not None and final["type"] == "task-succeeded"

    # The dead one was retried once by the broker: both deliveries show the same readable description.
    (dead_task,) = events.for_notification(ids["dead"])
    received = [e for e in dead_task if e["type"] == "task-received"]
    assert len(received) == 2 and any(e["type"] == "task-retried" for e in dead_task), dead_task
    assert received[0]["args"] == received[1]["args"]
    assert received[1]["args"].startswith("'notification ") and ids["dead"] in received[1]["args"]
