"""The sweeper runs inside `notify worker` (beat) on RabbitMQ, and NOTIFY_SWEEP_ENABLED=0 turns it off."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from tests.conftest import RABBITMQ_URL
from tests.factories import basic_email, parsed, sms
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.ledger import Ledger, make_engine
from workers.ledger.queries import NotificationView, get_notification
from workers.messages import Receipt, Status

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

LONG_AGO = datetime.now(UTC) - timedelta(days=2)


def seed(worker: WorkerProcess) -> tuple[str, str, str]:
    """Rows as a dead worker leaves them, two days ago: one queued without a task, one mid-send,
    and one delivered and past retention."""
    engine = make_engine(worker.settings.resolved_database_url)
    ledger = Ledger(engine, clock=lambda: LONG_AGO)
    stuck, silent, old = parsed(sms()), parsed(basic_email()), parsed(basic_email())
    for event in (stuck, silent, old):
        ledger.accept(event)
    ledger.mark_queued(stuck.notification_id)  # its deliver task died with the broker message
    assert ledger.claim(silent.notification_id) is not None  # the worker died mid-send
    claim = ledger.claim(old.notification_id)
    assert claim is not None
    ledger.record_sent(claim, Receipt("outbox", "old"))
    engine.dispose()
    return stuck.notification_id, silent.notification_id, old.notification_id


def test_the_worker_sweeps_on_rabbitmq(tmp_path: Path) -> None:
    env = isolated_env(
        tmp_path,
        broker_url=RABBITMQ_URL,
        NOTIFY_SWEEP_INTERVAL="0.5",
        NOTIFY_STUCK_AFTER="60",
        NOTIFY_SENDING_TIMEOUT="60",
        NOTIFY_RETENTION_DAYS="1",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    stuck, silent, old = seed(worker)

    def swept(view: NotificationView | None) -> bool:
        if view is None:
            return False
        if view.id == stuck:
            return view.status is Status.SENT
        if view.id == silent:
            return view.status is Status.UNKNOWN
        return view.purged_at is not None

    with worker:
        rows = wait_for(worker.settings, [stuck, silent, old], worker=worker, done=swept, timeout=60)
        assert worker.process is not None
        # Beat runs as a thread of the worker: no second process (Celery's --beat forks one).
        children = psutil.Process(worker.process.pid).children(recursive=True)
    assert all(swept(view) for view in rows.values()), worker.log()[-3000:]
    assert children == []
    assert "beat: Starting" in worker.log()
    assert (tmp_path / "outbox" / "sms" / f"{stuck}.json").exists()
    view = rows[old]
    assert view is not None and view.status is Status.SENT and view.recipient is None  # row kept, data gone
    silent_view = rows[silent]
    assert silent_view is not None and silent_view.error and "outcome unknown" in silent_view.error


def test_sweep_disabled_means_no_beat(tmp_path: Path) -> None:
    env = isolated_env(
        tmp_path, broker_url=RABBITMQ_URL, NOTIFY_SWEEP_ENABLED="0", NOTIFY_SWEEP_INTERVAL="0.5"
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    stuck, silent, _ = seed(worker)
    marker = sms()
    with worker:
        # A delivered event proves the worker is up and consuming; the schedule never started.
        publish_raw(
            worker.settings, [(json.dumps(marker).encode(), "application/json", "events.SMSNotification")]
        )
        rows = wait_for(worker.settings, [marker["core"]["id"]], worker=worker)
    assert rows[marker["core"]["id"]] is not None
    engine = make_engine(worker.settings.resolved_database_url)
    stuck_view, silent_view = get_notification(engine, stuck), get_notification(engine, silent)
    engine.dispose()
    assert stuck_view is not None and stuck_view.status is Status.QUEUED
    assert silent_view is not None and silent_view.status is Status.SENDING
    assert "beat: Starting" not in worker.log()
