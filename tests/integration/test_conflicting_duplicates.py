"""Another event under a known id, through the bus and a real worker: dropped, but logged, counted and shown.

The worker runs on the embedded broker with the outbox providers and its metrics endpoint on;
`notify deliveries show` runs as the console script an operator types.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import sms
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.messages import Status

ROUTING_KEY = "events.SMSNotification"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def conflicts_counted(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "notify_events_total" and sample.labels.get("outcome") == "conflict"
    )


def test_a_conflicting_event_is_logged_counted_and_shown(tmp_path: Path) -> None:
    port = free_port()
    env = isolated_env(tmp_path, NOTIFY_METRICS_PORT=str(port))
    first = sms(message="The first text", toNumber="+14155550142")
    other = sms(first["core"]["id"], message="A different text", toNumber="+14155550143")
    notification_id = first["core"]["id"]
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        publish_raw(worker.settings, [(json.dumps(first).encode(), "application/json", ROUTING_KEY)])
        rows = wait_for(worker.settings, [notification_id], worker=worker)
        assert rows[notification_id] is not None and rows[notification_id].status is Status.SENT
        # An honest redelivery of the same event, then another event under the same id.
        publish_raw(
            worker.settings,
            [
                (json.dumps(first).encode(), "application/json", ROUTING_KEY),
                (json.dumps(other).encode(), "application/json", ROUTING_KEY),
            ],
        )
        rows = wait_for(
            worker.settings, [notification_id], worker=worker, done=lambda view: view and view.conflicts >= 1
        )
        view = rows[notification_id]
        assert view is not None and view.conflicts == 1 and view.status is Status.SENT
        deadline = time.monotonic() + 30
        while conflicts_counted(port) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conflicts_counted(port) == 1
        log = worker.log()
    warnings = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and "event.conflicting_duplicate" in line
    ]
    assert len(warnings) == 1, log[-3000:]
    warning = warnings[0]
    assert warning["level"] == "warning" and warning["notification_id"] == notification_id
    assert warning["accepted_digest"] == view.payload_digest
    assert warning["received_digest"] == view.conflict_digest != view.payload_digest
    for personal in ("The first text", "A different text", "4155550142", "4155550143"):
        assert personal not in log
    # Only the first event was delivered.
    outbox = json.loads((tmp_path / "outbox" / "sms" / f"{notification_id}.json").read_text())
    assert "The first text" in json.dumps(outbox)

    shown = subprocess.run(
        [str(Path(sys.executable).with_name("notify")), "deliveries", "show", notification_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("conflicting duplicates:"))
    assert line.startswith("conflicting duplicates: 1, last at 20")
    assert f"digest {view.conflict_digest[:16]}" in line and f"accepted {view.payload_digest[:16]}" in line
