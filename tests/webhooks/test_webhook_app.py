"""The receiver's endpoints: what a valid request hands to the sink, and each way of being refused."""

from __future__ import annotations

from pydantic import SecretStr

from tests.webhooks.helpers import (
    MESSAGE_ID,
    MESSAGE_SID,
    PUBLIC_URL,
    SUPPRESSION_KEY,
    AsgiClient,
    mandrill_event,
    mandrill_form,
    twilio_fields,
    twilio_form,
)
from workers.messages import Channel
from workers.receipts import ReceiptEffect, SuppressionReason, recipient_key
from workers.webhooks import MemorySink, ReceiverConfig, create_app


def test_healthz_and_mandrill_url_check(client: AsgiClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/webhooks/mandrill").status_code == 200
    assert client.get("/webhooks/mandrill").status_code == 200
    assert client.get("/webhooks/twilio").status_code == 405


def test_mandrill_batch_is_handed_on_whole(client: AsgiClient, sink: MemorySink) -> None:
    events = [
        mandrill_event("send"),
        mandrill_event("hard_bounce", ts=1_760_000_100),
        {"type": "blacklist", "action": "add", "ts": 1_760_000_200, "reject": {"email": "ana@example.com"}},
        {"type": "whitelist", "action": "add", "ts": 1_760_000_200, "entry": {"email": "ana@example.com"}},
    ]
    form, headers = mandrill_form(events)
    answer = client.post("/webhooks/mandrill", data=form, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"receipts": 2, "changes": 1, "skipped": 1}
    assert len(sink.batches) == 1
    send, bounce = sink.receipts
    assert (send.effect, bounce.effect) == (ReceiptEffect.DELIVERED, ReceiptEffect.BOUNCED)
    assert bounce.provider_message_id == MESSAGE_ID
    assert bounce.suppress is SuppressionReason.HARD_BOUNCE
    assert bounce.recipient_key == recipient_key(Channel.EMAIL, "ana@example.com", SUPPRESSION_KEY)
    (change,) = sink.changes
    assert change.add and change.reason is SuppressionReason.BLACKLIST


def test_mandrill_empty_batch_is_answered_without_a_hand_off(client: AsgiClient, sink: MemorySink) -> None:
    # Mandrill's "send test" and URL checks post an empty batch.
    form, headers = mandrill_form([])
    assert client.post("/webhooks/mandrill", data=form, headers=headers).status_code == 200
    assert sink.batches == []


def test_twilio_callback_is_handed_on(client: AsgiClient, sink: MemorySink) -> None:
    form, headers = twilio_form(twilio_fields("undelivered", code="21610") | {"RawDlrDoneDate": "2601021530"})
    answer = client.post("/webhooks/twilio", data=form, headers=headers)
    assert answer.status_code == 200, answer.text
    (receipt,) = sink.receipts
    assert receipt.provider_message_id == MESSAGE_SID
    assert receipt.effect is ReceiptEffect.BOUNCED
    assert receipt.suppress is SuppressionReason.STOP


def test_a_query_string_the_provider_was_given_is_part_of_the_signed_url(
    client: AsgiClient, sink: MemorySink
) -> None:
    form, headers = twilio_form(twilio_fields("delivered"), url=PUBLIC_URL + "/webhooks/twilio?tenant=a")
    assert client.post("/webhooks/twilio?tenant=a", data=form, headers=headers).status_code == 200
    assert client.post("/webhooks/twilio?tenant=b", data=form, headers=headers).status_code == 403
    assert len(sink.receipts) == 1


def test_sink_down_is_503_and_the_provider_sends_again(client: AsgiClient, sink: MemorySink) -> None:
    form, headers = mandrill_form([mandrill_event("delivered")])
    sink.unavailable = True
    answer = client.post("/webhooks/mandrill", data=form, headers=headers)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    sink.unavailable = False
    assert client.post("/webhooks/mandrill", data=form, headers=headers).status_code == 200
    assert len(sink.receipts) == 1


def test_a_provider_without_its_secret_has_no_endpoint(config: ReceiverConfig, sink: MemorySink) -> None:
    bare = ReceiverConfig(config.public_url, config.suppression_key, twilio_auth_token=SecretStr("t" * 20))
    client = AsgiClient(create_app(bare, sink))
    form, headers = mandrill_form([mandrill_event("delivered")], key="")
    assert client.post("/webhooks/mandrill", data=form, headers=headers).status_code == 404
    assert client.get("/healthz").status_code == 200
    assert sink.batches == []
