"""SIGKILL during intake on the embedded (filesystem) broker, then a restart: no event is lost.

A real `notify worker` on the default embedded broker takes events from the bus folder while the
test holds the SQLite ledger's write lock, so the worker has messages in hand and no row for them
yet. Killed there with SIGKILL and started again, it must end with a row for every event that was
published: a bus message is gone only once the ledger has it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.factories import basic_email
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for

pytestmark = pytest.mark.slow

EVENTS = 30


def _waiting(queue_dir: Path, queue: str) -> int:
    return sum(1 for name in queue_dir.iterdir() if name.name.endswith(f".{queue}.msg"))


def test_sigkill_during_intake_on_the_embedded_broker_loses_no_event(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, NOTIFY_AUTO_MIGRATE="0", NOTIFY_INGEST_BATCH="10")
    events = [basic_email(subject=f"Intake {n}") for n in range(EVENTS)]
    ids = [event["core"]["id"] for event in events]
    worker = WorkerProcess(env, tmp_path / "worker.log")
    publish_raw(
        worker.settings, [(json.dumps(e).encode(), "application/json", "events.BasicEmail") for e in events]
    )
    queue_dir = worker.settings.state_dir / "broker" / "queue"
    event_queue = worker.settings.event_queue
    assert _waiting(queue_dir, event_queue) == EVENTS

    # The ledger refuses writes (another writer holds SQLite's lock): intake takes messages, and stalls.
    lock = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while _waiting(queue_dir, event_queue) == EVENTS:
            assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.05)
        time.sleep(0.5)  # the consumer takes its whole prefetch
        in_hand = EVENTS - _waiting(queue_dir, event_queue)
        worker.kill()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert in_hand > 0

    restarted = WorkerProcess(env, tmp_path / "worker-2.log")
    with restarted:
        rows = wait_for(restarted.settings, ids, worker=restarted, timeout=90)
    missing = [i for i, row in rows.items() if row is None]
    assert missing == [], f"{len(missing)} of {EVENTS} events lost ({in_hand} were in hand at the kill)"
    assert all(row is not None and row.status.terminal for row in rows.values())
