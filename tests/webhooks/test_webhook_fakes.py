"""The local Mandrill and Twilio servers post signed webhooks to the real receiver over HTTP (uvicorn)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from tests.fakes.mandrill_server import MandrillServer, Outcome
from tests.fakes.twilio_server import DEFAULT_SID, TwilioServer
from tests.webhooks.helpers import MANDRILL_KEY, SUPPRESSION_KEY
from workers.messages import Channel
from workers.receipts import ReceiptEffect, SuppressionReason, recipient_key
from workers.webhooks import MemorySink, ReceiverConfig, create_app, listen

TWILIO_TOKEN = "test-token"  # the local Twilio server's default auth token


@dataclass
class Receiver:
    public_url: str
    sink: MemorySink


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    sock = listen("127.0.0.1", 0)
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = ReceiverConfig(
        public_url=public_url,
        suppression_key=SUPPRESSION_KEY,
        mandrill_webhook_key=SecretStr(MANDRILL_KEY),
        twilio_auth_token=SecretStr(TWILIO_TOKEN),
    )
    sink = MemorySink()
    server = uvicorn.Server(uvicorn.Config(create_app(config, sink), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Receiver(public_url, sink)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _send_mail(server: MandrillServer, email: str) -> dict[str, str]:
    message = {"to": [{"email": email}], "from_email": "noreply@example.org", "subject": "s", "text": "t"}
    answer = httpx.post(f"{server.api_url}/messages/send.json", json={"key": "test-key", "message": message})
    (result,) = answer.json()
    return dict(result)


def test_mandrill_posts_batched_signed_events_per_outcome(receiver: Receiver) -> None:
    outcomes = {
        "delivered@example.com": Outcome.DELIVERED,
        "gone@example.com": Outcome.HARD_BOUNCE,
        "full@example.com": Outcome.SOFT_BOUNCE_THEN_DELIVERED,
        "angry@example.com": Outcome.SPAM,
        "blocked@example.com": Outcome.REJECT,
    }
    with MandrillServer() as server:
        assert isinstance(server, MandrillServer)
        server.configure_webhooks(
            receiver.public_url + "/webhooks/mandrill", MANDRILL_KEY, batch_interval=1.0
        )
        for email, outcome in outcomes.items():
            server.set_outcome(email, outcome)
        answers = {email: _send_mail(server, email) for email in outcomes}
        assert server.wait_webhooks()
        posts = server.webhook_posts
    assert answers["blocked@example.com"]["status"] == "rejected"
    assert all(post.ok for post in posts)
    assert len(posts) < len(outcomes)  # batched, as Mandrill does, not one post per event
    by_message: dict[str, list[str]] = {}
    for receipt in receiver.sink.receipts:
        by_message.setdefault(receipt.provider_message_id, []).append(receipt.raw_status)
    statuses = {email: by_message[answers[email]["_id"]] for email in outcomes}
    assert statuses == {
        "delivered@example.com": ["send", "delivered"],
        "gone@example.com": ["send", "hard_bounce"],
        "full@example.com": ["send", "soft_bounce", "delivered"],
        "angry@example.com": ["send", "delivered", "spam"],
        "blocked@example.com": ["reject"],
    }
    suppressed = {r.recipient_key: r.suppress for r in receiver.sink.receipts if r.suppress}
    assert suppressed == {
        recipient_key(Channel.EMAIL, "gone@example.com", SUPPRESSION_KEY): SuppressionReason.HARD_BOUNCE,
        recipient_key(Channel.EMAIL, "angry@example.com", SUPPRESSION_KEY): SuppressionReason.COMPLAINT,
        recipient_key(Channel.EMAIL, "blocked@example.com", SUPPRESSION_KEY): SuppressionReason.REJECT,
    }


def test_mandrill_resends_a_batch_the_receiver_could_not_store(receiver: Receiver) -> None:
    with MandrillServer() as server:
        assert isinstance(server, MandrillServer)
        server.configure_webhooks(receiver.public_url + "/webhooks/mandrill", MANDRILL_KEY)
        receiver.sink.fail_next(2)
        answer = _send_mail(server, "ana@example.com")
        assert server.wait_webhooks()
        (post,) = server.webhook_posts
    assert post.ok and post.attempts == 3
    assert [r.raw_status for r in receiver.sink.receipts] == ["send", "delivered"]
    assert {r.provider_message_id for r in receiver.sink.receipts} == {answer["_id"]}


def test_mandrill_signing_for_another_url_is_refused(receiver: Receiver) -> None:
    with MandrillServer() as server:
        assert isinstance(server, MandrillServer)
        server.configure_webhooks(
            receiver.public_url + "/webhooks/mandrill",
            MANDRILL_KEY,
            signed_url="https://elsewhere.example/hook",
        )
        _send_mail(server, "ana@example.com")
        assert server.wait_webhooks()
        statuses = {post.status for post in server.webhook_posts}
    assert statuses == {403}
    assert receiver.sink.batches == []


def _send_sms(server: TwilioServer, to: str, callback: str) -> str:
    answer = httpx.post(
        f"{server.base_url}/2010-04-01/Accounts/{DEFAULT_SID}/Messages.json",
        data={"To": to, "From": "+15005550006", "Body": "hi", "StatusCallback": callback},
        auth=(DEFAULT_SID, TWILIO_TOKEN),
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sid"])


def test_twilio_posts_signed_status_callbacks(receiver: Receiver) -> None:
    callback = receiver.public_url + "/webhooks/twilio"
    with TwilioServer() as server:
        assert isinstance(server, TwilioServer)
        server.set_callback_outcome("+447700900002", "undelivered", 30005)
        server.set_callback_outcome("+447700900003", "undelivered", 21610)
        sids = [_send_sms(server, f"+44770090000{i}", callback) for i in (1, 2, 3)]
        assert server.wait_callbacks()
        assert all(post.ok for post in server.callback_posts)
    by_sid: dict[str, list[tuple[str, ReceiptEffect]]] = {}
    for receipt in receiver.sink.receipts:
        by_sid.setdefault(receipt.provider_message_id, []).append((receipt.raw_status, receipt.effect))
    none = ReceiptEffect.NONE
    assert by_sid == {
        sids[0]: [("queued", none), ("sent", none), ("delivered", ReceiptEffect.DELIVERED)],
        sids[1]: [("queued", none), ("sent", none), ("undelivered", ReceiptEffect.BOUNCED)],
        sids[2]: [("queued", none), ("sent", none), ("undelivered", ReceiptEffect.BOUNCED)],
    }
    (stop,) = [r for r in receiver.sink.receipts if r.suppress]
    assert stop.suppress is SuppressionReason.STOP
    assert stop.recipient_key == recipient_key(Channel.SMS, "+447700900003", SUPPRESSION_KEY)


def test_twilio_duplicates_reordering_and_delay(receiver: Receiver) -> None:
    callback = receiver.public_url + "/webhooks/twilio"
    with TwilioServer() as server:
        assert isinstance(server, TwilioServer)
        server.configure_callbacks(duplicates=True, reorder=True, delay=0.2)
        sid = _send_sms(server, "+447700900001", callback)
        assert server.wait_callbacks()
    statuses = [r.raw_status for r in receiver.sink.receipts]
    assert statuses == ["delivered", "delivered", "sent", "sent", "queued", "queued"]
    ids = [r.provider_event_id for r in receiver.sink.receipts]
    assert ids[0] == ids[1] and len(set(ids)) == 3  # a duplicate has the same event id: a no-op
    assert {r.provider_message_id for r in receiver.sink.receipts} == {sid}
