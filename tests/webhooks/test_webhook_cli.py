"""`notify webhooks` as a user runs it: one-line start-up errors, and receipts published to the broker."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kombu import Connection, Queue

from tests.conftest import RABBITMQ_URL, ROOT
from tests.integration.harness import isolated_env
from tests.ops.stack import eventually, free_port
from tests.webhooks.helpers import MESSAGE_ID, SUPPRESSION_KEY, mandrill_event, mandrill_form
from workers.celery_app import create_app as create_celery_app
from workers.messages import Channel
from workers.receipts import DeliveryReceipt, ReceiptEffect, recipient_key
from workers.settings import load_settings
from workers.webhooks import RECEIPT_TASK, CelerySink, HandOffFailed

WEBHOOK_KEY = f"webhook-{uuid.uuid4().hex[:10]}-planted"
SUPPRESSION = f"suppress-{uuid.uuid4().hex[:10]}-planted"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", "webhooks", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({}, "NOTIFY_PUBLIC_URL: set it"),
        ({"NOTIFY_PUBLIC_URL": "hooks.example.com"}, "NOTIFY_PUBLIC_URL: set it"),
        ({"NOTIFY_PUBLIC_URL": "https://hooks.example.com/?a=1"}, "without a query"),
        ({"NOTIFY_PUBLIC_URL": "https://hooks.example.com", "MANDRILL_WEBHOOK_KEY": ""}, "both unset"),
        (
            {"NOTIFY_PUBLIC_URL": "https://hooks.example.com", "NOTIFY_SUPPRESSION_KEY": "short"},
            "at least 16",
        ),
        (
            {"NOTIFY_PUBLIC_URL": "https://hooks.example.com", "NOTIFY_WEBHOOKS_PORT": "0"},
            "NOTIFY_WEBHOOKS_PORT",
        ),
    ],
)
def test_start_up_errors_are_one_line_exit_2(tmp_path: Path, extra: dict[str, str], says: str) -> None:
    env = isolated_env(tmp_path, MANDRILL_WEBHOOK_KEY=WEBHOOK_KEY) | extra
    result = _run(env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert WEBHOOK_KEY not in result.stderr + result.stdout


def test_a_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = isolated_env(tmp_path, MANDRILL_WEBHOOK_KEY=WEBHOOK_KEY, NOTIFY_PUBLIC_URL="https://h.example")
        result = _run(env, "--port", str(port))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = isolated_env(
        tmp_path,
        MANDRILL_WEBHOOK_KEY=WEBHOOK_KEY,
        NOTIFY_SUPPRESSION_KEY=SUPPRESSION,
        NOTIFY_PUBLIC_URL=public_url,
        NOTIFY_LOG_LEVEL="DEBUG",
    )
    log = tmp_path / "webhooks.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers", "webhooks", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: _healthy(public_url), timeout=30)
        yield public_url, tmp_path, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_served_receipts_are_on_the_embedded_broker_before_the_200(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    public_url, tmp_path, process = served
    events = [
        mandrill_event("send"),
        mandrill_event("hard_bounce", email="ana@example.com", ts=1_760_000_001),
    ]
    form, headers = mandrill_form(events, url=public_url + "/webhooks/mandrill", key=WEBHOOK_KEY)
    answer = httpx.post(public_url + "/webhooks/mandrill", data=form, headers=headers)
    assert answer.status_code == 200, answer.text
    forged = httpx.post(public_url + "/webhooks/mandrill", data=form, headers={"X-Mandrill-Signature": "x"})
    assert forged.status_code == 403
    # Durable before the answer: the task's message file is already in the queue folder.
    (message_file,) = (tmp_path / "state" / "broker" / "queue").glob("*.msg")
    raw = message_file.read_text()
    assert "ana@" not in raw and "example.com" not in raw
    message = json.loads(raw)
    assert message["headers"]["task"] == RECEIPT_TASK
    assert message["headers"]["argsrepr"] == "(2 receipts, 0 changes)"
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    receipts = [DeliveryReceipt.from_task(item) for item in args[0]]
    assert [r.raw_status for r in receipts] == ["send", "hard_bounce"]
    assert receipts[1].provider_message_id == MESSAGE_ID
    assert receipts[1].recipient_key == recipient_key(Channel.EMAIL, "ana@example.com", SUPPRESSION.encode())
    assert args[1] == []
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    output = (tmp_path / "webhooks.log").read_text()
    assert "webhook.accepted" in output and "webhook.refused" in output
    for secret in (WEBHOOK_KEY, SUPPRESSION, "ana@example.com"):
        assert secret not in output
    assert "Traceback" not in output


@pytest.mark.rabbitmq
def test_celery_sink_publishes_with_confirms_on_rabbitmq() -> None:
    queue_name = f"notify-test-{uuid.uuid4().hex[:8]}"
    settings = load_settings(broker_url=RABBITMQ_URL, task_queue=queue_name, consume_events=False)
    app = create_celery_app(settings)
    sink = CelerySink(app)
    receipt = DeliveryReceipt.from_task(
        {
            "provider": "twilio",
            "provider_event_id": "SM" + "a" * 32 + ":delivered",
            "provider_message_id": "SM" + "a" * 32,
            "channel": "sms",
            "raw_status": "delivered",
            "effect": ReceiptEffect.DELIVERED.value,
            "occurred_at": "2026-01-02T03:04:05+00:00",
        }
    )
    try:
        sink.put([receipt], [])
        assert sink._connection.connection.confirm_publish  # py-amqp waits for the broker's ack
        with Connection(RABBITMQ_URL) as conn:
            queue = Queue(queue_name, no_declare=True)
            message = conn.SimpleQueue(queue).get(timeout=10)
            assert message.headers["task"] == RECEIPT_TASK
            assert message.headers["argsrepr"] == "(1 receipts, 0 changes)"
            args, _, _ = message.payload
            assert [DeliveryReceipt.from_task(item) for item in args[0]] == [receipt]
            message.ack()
            conn.default_channel.queue_delete(queue_name)
    finally:
        sink.close()
    assert SUPPRESSION_KEY  # the sink never needs the key: receipts arrive already hashed


def test_celery_sink_with_the_broker_away_raises_hand_off_failed() -> None:
    port = free_port()  # nothing listens there
    settings = load_settings(broker_url=f"amqp://guest:guest@127.0.0.1:{port}//", consume_events=False)
    sink = CelerySink(create_celery_app(settings))
    receipt = DeliveryReceipt.from_task(
        {
            "provider": "twilio",
            "provider_event_id": "SM" + "b" * 32 + ":sent",
            "provider_message_id": "SM" + "b" * 32,
            "channel": "sms",
            "raw_status": "sent",
            "effect": "none",
            "occurred_at": "2026-01-02T03:04:05+00:00",
        }
    )
    with pytest.raises(HandOffFailed, match=r"publishing notifications\.receipt failed"):
        sink.put([receipt], [])
