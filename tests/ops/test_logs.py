"""The log pipeline: addresses and numbers masked in messages and tracebacks, Celery's bodies blanked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from workers import logs


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield capsys
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    structlog.reset_defaults()


def configure() -> None:
    # In the test body: the handler binds the sys.stderr that capsys swaps in for this phase.
    logs.configure(level="DEBUG", fmt="json")


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_provider_exception_is_masked_in_the_traceback(json_logs: pytest.CaptureFixture[str]) -> None:
    configure()
    try:
        raise RuntimeError("550 5.1.1 <bob.smith@example.org> unknown; call +1 (415) 555-0123")
    except RuntimeError:
        logging.getLogger("workers.providers.smtp").exception("send failed for %s", "carol@example.com")
    (entry,) = lines(json_logs)
    text = json.dumps(entry)
    assert "bob.smith" not in text and "carol@" not in text and "555-0123" not in text
    assert "<email>" in str(entry["exception"]) and "<phone>" in str(entry["exception"])
    assert entry["level"] == "error"


def test_structlog_fields_are_masked_but_ids_kept(json_logs: pytest.CaptureFixture[str]) -> None:
    configure()
    structlog.get_logger("workers.dispatch").info(
        "deliver.failed", notification_id="5f0c2a", error="rejected dave@example.net", attempt=2
    )
    (entry,) = lines(json_logs)
    assert entry["notification_id"] == "5f0c2a" and entry["attempt"] == 2
    assert entry["error"] == "rejected <email>"


def test_celery_lines_that_carry_bodies_are_blanked(json_logs: pytest.CaptureFixture[str]) -> None:
    configure()
    body = {"toAddress": "erin@example.com", "subject": "Secret subject", "body": "secret body"}
    logging.getLogger("celery.pool").debug("TaskPool: Apply %s (args:%s kwargs:%s)", "<fn>", (body,), {})
    logging.getLogger("celery.worker.consumer.consumer").error(
        "Received unregistered task of type %s.\nThe message has been ignored and discarded.\n\n%s",
        "x.y",
        body,
    )
    logging.getLogger("celery.app.trace").info("Task %(name)s[%(id)s] received", {"name": "n", "id": "1"})
    entries = lines(json_logs)
    text = json.dumps(entries)
    assert "Secret subject" not in text and "secret body" not in text and "erin" not in text
    assert entries[0]["event"] == "TaskPool: Apply <hidden> (args:<hidden> kwargs:<hidden>)"
    assert entries[1]["event"] == "Received unregistered task of type <hidden>."
    assert entries[2]["event"] == "Task n[1] received"  # ordinary lines untouched


def test_console_rendering_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        logs.configure(level=logging.INFO, fmt="console")
        structlog.get_logger("workers.test").info("deliver.sent", to="frank@example.com")
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = saved
        structlog.reset_defaults()
    assert "deliver.sent" in err and "<email>" in err and not err.lstrip().startswith("{")


def test_celery_per_task_chatter_is_kept_for_debug_only(json_logs: pytest.CaptureFixture[str]) -> None:
    logs.configure(level="INFO", fmt="json")
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", "n", "1")
    assert lines(json_logs) == []
    configure()  # DEBUG
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", "n", "2")
    assert [entry["event"] for entry in lines(json_logs)] == ["Task n[2] received"]


def test_httpx_request_lines_only_at_debug(json_logs: pytest.CaptureFixture[str]) -> None:
    httpx_log = logging.getLogger("httpx")
    saved = httpx_log.level
    try:
        logs.configure(level="INFO", fmt="json")
        httpx_log.info("HTTP Request: %s %s", "POST", "https://api.example/x")
        assert lines(json_logs) == []  # our provider lines and the ledger tell each call already
        configure()
        httpx_log.info("HTTP Request: %s %s", "POST", "https://api.example/x")
        assert [entry["event"] for entry in lines(json_logs)] == ["HTTP Request: POST https://api.example/x"]
    finally:
        httpx_log.setLevel(saved)
