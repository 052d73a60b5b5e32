"""Issue 15 end to end: a real worker, `notify webhooks` and the provider fakes, on RabbitMQ and PostgreSQL.

The fakes speak the providers' protocols both ways: the worker sends through them, and they post
signed webhooks (Mandrill batches, Twilio status callbacks) to the receiver process, which hands
them to the worker's `notifications.receipt` task. One test walks the whole story, since a worker
and a receiver take seconds to start: delivered; a hard bounce, then `bounced` and the address
suppressed, and the next send to it `failed: suppressed` with no provider call; a Twilio STOP (at
send time and in a callback) suppressing the number; forged signatures answered 403 with nothing
changed; replayed, duplicated and reordered callbacks changing nothing they should not; a receipt
that beats the send's answer, kept and matched once the answer is recorded. Waits poll the ledger
with a deadline; nothing asserts on time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu import Connection
from sqlalchemy import Engine, func, select

from tests.conftest import RABBITMQ_URL, ROOT
from tests.factories import basic_email, sms
from tests.fakes.http_base import HoldAnswer
from tests.fakes.mandrill_server import MandrillServer, Outcome
from tests.fakes.twilio_server import TwilioServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw
from tests.ops.stack import free_port
from workers.ledger import make_engine
from workers.ledger.models import ReceiptRecord
from workers.ledger.queries import NotificationView, get_notification
from workers.ledger.receipts import ReceiptBook
from workers.ledger.suppressions import Suppressions
from workers.messages import Channel, Status
from workers.providers.mandrill_webhooks import EVENTS_FIELD, SIGNATURE_HEADER, signature
from workers.receipts import SuppressionReason, recipient_key

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres]

SID, TOKEN, API_KEY = "AC" + "5" * 32, "twilio-e2e-token", "mandrill-e2e-key"
WEBHOOK_KEY = "mandrill-e2e-webhook-key"
SUPPRESSION_KEY = "suppression-e2e-key-0123456789"
WAIT = 60.0  # the deadline of each wait; a loaded CI machine is slow, and nothing here is timed


@dataclass
class Stack:
    worker: WorkerProcess
    receiver: subprocess.Popen[bytes]
    receiver_log: Path
    mandrill: MandrillServer
    twilio: TwilioServer
    public_url: str
    engine: Engine

    def publish(self, *events: dict[str, Any]) -> list[str]:
        messages = []
        for event in events:
            kind = event["data"]["@type"].rsplit(".", 1)[-1]
            messages.append((json.dumps(event).encode(), "application/json", f"events.{kind}"))
        publish_raw(self.worker.settings, messages)
        return [event["core"]["id"] for event in events]

    def row(self, notification_id: str) -> NotificationView:
        view = get_notification(self.engine, notification_id)
        assert view is not None, notification_id
        return view

    def wait(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            if not self.worker.alive():
                raise AssertionError(
                    f"the worker exited while waiting for {what}:\n{self.worker.log()[-4000:]}"
                )
            if self.receiver.poll() is not None:
                raise AssertionError(f"the receiver exited while waiting for {what}:\n{self.receiver_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}:\n{self.worker.log()[-4000:]}")
            time.sleep(0.1)

    def wait_statuses(self, wanted: dict[str, Status]) -> None:
        def reached() -> bool:
            return all(
                (view := get_notification(self.engine, key)) is not None and view.status is status
                for key, status in wanted.items()
            )

        self.wait(f"statuses {sorted(s.value for s in wanted.values())}", reached)

    def receipts(self, notification_id: str) -> list[tuple[str, str | None]]:
        return [(r.raw_status, r.error_code) for r in ReceiptBook(self.engine).of(notification_id)]

    def receipt_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ReceiptRecord)).scalar_one())

    def suppressed(self, channel: Channel, recipient: str) -> SuppressionReason | None:
        key = recipient_key(channel, recipient, SUPPRESSION_KEY.encode())
        return Suppressions(self.engine).is_suppressed(channel, key)

    def recorded_lines(self) -> list[dict[str, Any]]:
        """The worker's `receipts.recorded` log lines: what each receipt task did."""
        lines = []
        for line in self.worker.log().splitlines():
            if '"receipts.recorded"' in line:
                lines.append(json.loads(line[line.index("{") :]))
        return lines

    def receiver_text(self) -> str:
        return self.receiver_log.read_text(errors="replace")[-4000:]

    def post_mandrill(self, events: list[dict[str, Any]], *, forged: bool = False) -> httpx.Response:
        url = self.public_url + "/webhooks/mandrill"
        form = [(EVENTS_FIELD, json.dumps(events))]
        signed = signature(WEBHOOK_KEY.encode(), url, form)
        headers = {SIGNATURE_HEADER: signed[::-1] if forged else signed}
        return httpx.post(url, data=dict(form), headers=headers, timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _delete_broker_names(env: dict[str, str]) -> None:
    queue, events = env["NOTIFY_TASK_QUEUE"], env["NOTIFY_EVENT_QUEUE"]
    with Connection(RABBITMQ_URL) as conn:
        channel = conn.default_channel
        for name in (queue, f"{queue}.control", events):
            channel.queue_delete(name)
        for name in (queue, f"{queue}.control", env["NOTIFY_EVENT_EXCHANGE"]):
            channel.exchange_delete(name)


@pytest.fixture
def stack(tmp_path: Path, postgres_url: str) -> Iterator[Stack]:
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    with MandrillServer(api_keys={API_KEY}) as mandrill, TwilioServer(SID, TOKEN) as twilio:
        mandrill.configure_webhooks(public_url + "/webhooks/mandrill", WEBHOOK_KEY)
        env = isolated_env(
            tmp_path,
            broker_url=RABBITMQ_URL,
            database_url=postgres_url,
            NOTIFY_EMAIL_PROVIDER="mandrill",
            NOTIFY_SMS_PROVIDER="twilio",
            MANDRILL_API_KEY=API_KEY,
            MANDRILL_BASE_URL=mandrill.api_url,
            # The held answer below must outlast the receipt's trip, never the client's patience.
            MANDRILL_TIMEOUT="60",
            MANDRILL_WEBHOOK_KEY=WEBHOOK_KEY,
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_BASE_URL=twilio.base_url,
            NOTIFY_PUBLIC_URL=public_url,
            NOTIFY_SUPPRESSION_KEY=SUPPRESSION_KEY,
            NOTIFY_SUPPRESSION="enforce",
        )
        receiver_log = tmp_path / "webhooks.log"
        with receiver_log.open("wb") as out:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "workers", "webhooks", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(env, tmp_path / "worker.log")
        engine = make_engine(postgres_url)
        try:
            worker.start()
            built = Stack(worker, receiver, receiver_log, mandrill, twilio, public_url, engine)
            built.wait("the receiver's /healthz", lambda: _healthy(public_url))
            yield built
        finally:
            worker.stop()
            receiver.send_signal(signal.SIGTERM)
            try:
                receiver.wait(timeout=20)
            except subprocess.TimeoutExpired:
                receiver.kill()
            engine.dispose()
            _delete_broker_names(env)


def test_receipts_and_suppression_end_to_end(stack: Stack) -> None:
    mandrill, twilio = stack.mandrill, stack.twilio
    ana, bob = "ana@example.org", "bob@example.org"
    sms_ok, sms_stop_later, sms_stop_now = "+14155550101", "+14155550102", "+14155550123"
    mandrill.set_outcome(bob, Outcome.HARD_BOUNCE)
    # Every callback twice, the final status first: neither may move a row backwards or twice.
    twilio.configure_callbacks(duplicates=True, reorder=True)
    twilio.set_callback_outcome(sms_stop_later, "undelivered", 21610)
    twilio.refuse_number(sms_stop_now, code=21610)

    # -- delivered, bounced, and STOP at send time and in a callback --------------------------------
    to_ana, to_bob, to_ok, to_later, to_now = stack.publish(
        basic_email(toAddress=ana),
        basic_email(toAddress=bob),
        sms(toNumber=sms_ok),
        sms(toNumber=sms_stop_later),
        sms(toNumber=sms_stop_now),
    )
    stack.wait_statuses(
        {
            to_ana: Status.DELIVERED,
            to_bob: Status.BOUNCED,
            to_ok: Status.DELIVERED,
            to_later: Status.BOUNCED,
            to_now: Status.FAILED,
        }
    )
    assert mandrill.wait_webhooks() and twilio.wait_callbacks()
    posts = mandrill.webhook_posts + twilio.callback_posts
    assert all(post.ok for post in posts)
    # Each accepted POST is one receipt task: once all have run, nothing is still in flight.
    stack.wait("every webhook recorded", lambda: len(stack.recorded_lines()) >= len(posts))
    assert stack.receipts(to_ana) == [("send", None), ("delivered", None)]
    assert stack.receipts(to_bob) == [("send", None), ("hard_bounce", "bad_mailbox")]
    assert stack.row(to_bob).error == "mandrill hard_bounce [code bad_mailbox]"
    # Six callbacks posted (three statuses, each twice), three kept; the reordered `queued` and
    # `sent` after `delivered` left the row delivered.
    assert len(twilio.callback_posts) >= 6
    assert sorted(stack.receipts(to_ok)) == [("delivered", None), ("queued", None), ("sent", None)]
    assert ("undelivered", "21610") in stack.receipts(to_later)
    assert "21610" in (stack.row(to_now).error or "") and stack.receipts(to_now) == []
    assert stack.suppressed(Channel.EMAIL, bob) is SuppressionReason.HARD_BOUNCE
    assert stack.suppressed(Channel.SMS, sms_stop_later) is SuppressionReason.STOP
    assert stack.suppressed(Channel.SMS, sms_stop_now) is SuppressionReason.STOP
    assert stack.suppressed(Channel.EMAIL, ana) is None
    assert stack.suppressed(Channel.SMS, sms_ok) is None

    # -- the next event to a suppressed recipient: failed, and no provider call --------------------
    calls = (len(mandrill.received), len(twilio.received))
    again_bob, again_later, again_now = stack.publish(
        basic_email(toAddress=bob), sms(toNumber=sms_stop_later), sms(toNumber=sms_stop_now)
    )
    stack.wait_statuses({again_bob: Status.FAILED, again_later: Status.FAILED, again_now: Status.FAILED})
    assert stack.row(again_bob).error == "suppressed: hard_bounce"
    assert stack.row(again_later).error == "suppressed: stop"
    assert stack.row(again_now).error == "suppressed: stop"
    assert (len(mandrill.received), len(twilio.received)) == calls

    # -- forged signatures: 403, and nothing changes -----------------------------------------------
    (ana_send,) = [p for p in mandrill.webhook_posts if ana in dict(p.form)[EVENTS_FIELD]]
    ana_message_id = json.loads(dict(ana_send.form)[EVENTS_FIELD])[0]["_id"]
    receipts_before = stack.receipt_count()
    bounce_ana = {
        "event": "hard_bounce",
        "_id": ana_message_id,
        "ts": int(time.time()) + 60,
        "msg": {"_id": ana_message_id, "email": ana, "state": "bounced", "bounce_description": "bad_mailbox"},
    }
    assert stack.post_mandrill([bounce_ana], forged=True).status_code == 403
    (ok_sms_post, *_) = [p for p in twilio.callback_posts if dict(p.form)["To"] == sms_ok]
    forged_callback = {**dict(ok_sms_post.form), "MessageStatus": "undelivered", "ErrorCode": "30005"}
    answer = httpx.post(
        stack.public_url + "/webhooks/twilio",
        data=forged_callback,
        headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        timeout=30,
    )
    assert answer.status_code == 403

    # -- a replayed batch, then a late `delivered` after the bounce: kept, nothing moves back --------
    tasks_before = len(stack.recorded_lines())
    (bob_batch,) = [p for p in mandrill.webhook_posts if bob in dict(p.form)[EVENTS_FIELD]]
    replay = json.loads(dict(bob_batch.form)[EVENTS_FIELD])
    assert stack.post_mandrill(replay).status_code == 200
    (bob_message_id,) = {event["_id"] for event in replay if event["msg"]["email"] == bob}
    late = {
        "event": "delivered",
        "_id": bob_message_id,
        "ts": int(time.time()) + 120,
        "msg": {"_id": bob_message_id, "email": bob, "state": "delivered"},
    }
    assert stack.post_mandrill([late]).status_code == 200
    stack.wait(
        "the replay and the late receipt recorded", lambda: len(stack.recorded_lines()) >= tasks_before + 2
    )
    done = stack.recorded_lines()[tasks_before:]
    assert sorted((line["recorded"], line["duplicates"], line["moved"]) for line in done) == [
        (0, len(replay), 0),
        (1, 0, 0),
    ]
    assert stack.receipt_count() == receipts_before + 1  # the late one only; no forged one
    assert stack.row(to_bob).status is Status.BOUNCED
    assert stack.row(to_ana).status is Status.DELIVERED and stack.row(to_ok).status is Status.DELIVERED
    assert stack.suppressed(Channel.EMAIL, ana) is None and stack.suppressed(Channel.SMS, sms_ok) is None

    # -- a receipt that beats the send's answer: kept waiting, then matched --------------------------
    cara = "cara@example.org"
    release = threading.Event()
    mandrill.fail_next(HoldAnswer(release))
    waiting_before = _waiting(stack.engine)
    (to_cara,) = stack.publish(basic_email(toAddress=cara))
    try:
        stack.wait(
            "cara's receipts kept before the answer", lambda: _waiting(stack.engine) >= waiting_before + 2
        )
        # The worker still waits for Mandrill's answer: the row has no message id to match yet.
        assert stack.row(to_cara).status is Status.SENDING
    finally:
        release.set()
    stack.wait_statuses({to_cara: Status.DELIVERED})
    assert stack.receipts(to_cara) == [("send", None), ("delivered", None)]
    assert _waiting(stack.engine) == waiting_before

    # A failed delivery's task shows a traceback by design (tasks.deliver raises DeliveryFailed for
    # Flower); what must not appear is a crash of ours or a receipt the task could not read.
    assert "deliver.crashed" not in stack.worker.log() and "receipt.malformed" not in stack.worker.log()
    assert "Traceback" not in stack.receiver_text()
    for secret in (ana, bob, cara, sms_ok, sms_stop_now, WEBHOOK_KEY, SUPPRESSION_KEY, TOKEN):
        assert secret not in stack.receiver_text()
    for recipient in (ana, bob, cara, sms_ok, sms_stop_now):
        assert recipient not in stack.worker.log()


def _waiting(engine: Engine) -> int:
    """Receipts kept for a message id the ledger does not know yet."""
    r = ReceiptRecord
    with engine.connect() as conn:
        query = (
            select(func.count()).select_from(r).where(r.notification_id.is_(None), r.provider == "mandrill")
        )
        return int(conn.execute(query).scalar_one())
