"""End to end through a real worker process: every event type, both encodings, on each broker and ledger."""

from __future__ import annotations

import email
import json
from pathlib import Path

import pytest

from tests.conftest import RABBITMQ_URL, REDIS_URL, ROOT, require_service
from tests.factories import basic_email, mention, sms
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.errors import InvalidEvent
from workers.events import load_event_file, parse_event
from workers.messages import Status

EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


def example_messages() -> tuple[list[tuple[bytes, str, str]], dict[str, Path], list[str]]:
    messages: list[tuple[bytes, str, str]] = []
    valid: dict[str, Path] = {}
    invalid: list[str] = []
    for path in sorted(EXAMPLES.rglob("*")):
        if path.suffix not in {".json", ".pb"}:
            continue
        event = load_event_file(path)
        messages.append((event.body, event.content_type, event.routing_key or "events.BasicEmail"))
        try:
            valid[parse_event(event.body, event.content_type).notification_id] = path
        except InvalidEvent as exc:
            assert exc.notification_id
            invalid.append(exc.notification_id)
    return messages, valid, invalid


@pytest.mark.parametrize(
    ("broker", "ledger"),
    [("embedded", "sqlite"), ("rabbitmq", "postgres"), ("redis", "postgres"), ("rabbitmq", "sqlite")],
)
def test_examples_are_delivered_end_to_end(
    broker: str, ledger: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    broker_url = {"embedded": "", "rabbitmq": RABBITMQ_URL, "redis": REDIS_URL}[broker]
    if broker != "embedded":
        require_service(broker)
    database_url = str(request.getfixturevalue("postgres_url")) if ledger == "postgres" else ""
    env = isolated_env(tmp_path, broker_url=broker_url, database_url=database_url)
    messages, valid, invalid = example_messages()
    assert len(valid) == 6 and invalid
    # A duplicate of every message: each notification must still be delivered exactly once.
    messages = messages + messages
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        publish_raw(worker.settings, messages)
        rows = wait_for(worker.settings, valid, worker=worker, timeout=90)
        rejected = wait_for(worker.settings, invalid, worker=worker, timeout=30)
    assert {i: (r.status if r else None) for i, r in rows.items()} == {i: Status.SENT for i in valid}, (
        worker.log()[-3000:]
    )
    outbox = tmp_path / "outbox"
    emails = sorted(p.stem for p in (outbox / "email").glob("*.eml"))
    texts = sorted(p.stem for p in (outbox / "sms").glob("*.json"))
    assert sorted(emails + texts) == sorted(valid)
    for path in (outbox / "email").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        assert message["Message-ID"] and message["Subject"]
        parts = sorted(part.get_content_type() for part in message.walk() if not part.is_multipart())
        # multipart/alternative whenever there is HTML, and a text part always rides along.
        assert parts in (["text/html", "text/plain"], ["text/plain"])
        if "text/html" in parts:
            assert message.get_content_type() == "multipart/alternative"
    for path in (outbox / "sms").glob("*.json"):
        assert json.loads(path.read_text())["to"].startswith("+")
    for row in rows.values():
        assert row is not None and row.attempts == 1
    for row in rejected.values():
        assert row is not None and row.status is Status.REJECTED and row.error


def test_invalid_event_is_rejected_with_a_reason(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    bad = sms(toNumber="12345")
    body = json.dumps(bad).encode()
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        publish_raw(worker.settings, [(body, "application/json", "events.SMSNotification")])
        rows = wait_for(worker.settings, [bad["core"]["id"]], worker=worker)
    row = rows[bad["core"]["id"]]
    assert row is not None and row.status is Status.REJECTED
    assert row.error and "to_number" in row.error


def test_python_producers_submit_through_the_accept_task(tmp_path: Path) -> None:
    require_service("rabbitmq")
    env = isolated_env(tmp_path, broker_url=RABBITMQ_URL)
    events = [basic_email(), sms(), mention(mentions=3, template="mention-notification-bulk")]
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        # Use the real producer helper against this worker's queue, as a Python service would.
        from celery import Celery

        from tests.integration.harness import connection
        from workers.celery_app import create_app

        app: Celery = create_app(worker.settings)
        with connection(worker.settings):
            for event in events:
                app.send_task(
                    "notifications.accept",
                    (event,),
                    argsrepr=repr(f"event {event['core']['id']}"),
                    queue=worker.settings.task_queue,
                )
        rows = wait_for(worker.settings, [e["core"]["id"] for e in events], worker=worker)
    assert all(r is not None and r.status is Status.SENT for r in rows.values()), worker.log()[-3000:]
