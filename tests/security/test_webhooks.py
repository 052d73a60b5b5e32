"""The webhook receiver, attacked: forged, oversized, malformed, replayed and hostile requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.webhooks.helpers import (
    MANDRILL_KEY,
    MESSAGE_ID,
    PUBLIC_URL,
    AsgiClient,
    mandrill_event,
    mandrill_form,
    receiver_config,
    twilio_fields,
    twilio_form,
)
from workers.providers.mandrill_webhooks import MAX_EVENTS, signature
from workers.webhooks import MAX_BODY, MemorySink, create_app

MANDRILL = "/webhooks/mandrill"
TWILIO = "/webhooks/twilio"


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def client(sink: MemorySink) -> AsgiClient:
    return AsgiClient(create_app(receiver_config(), sink))


def test_unsigned_requests_are_403_and_change_nothing(client: AsgiClient, sink: MemorySink) -> None:
    form, _ = mandrill_form([mandrill_event("hard_bounce")])
    assert client.post(MANDRILL, data=form).status_code == 403
    tform, _ = twilio_form(twilio_fields("undelivered", code="21610"))
    assert client.post(TWILIO, data=tform).status_code == 403
    assert sink.batches == []


@pytest.mark.parametrize(
    "bad", [b"", b"x", b"AAAA", b"/fJA3eT7y2U9CAmNUk8q1FEElRk=", "é".encode("latin-1") * 28]
)
def test_wrong_signatures_are_403(client: AsgiClient, sink: MemorySink, bad: bytes) -> None:
    form, _ = mandrill_form([mandrill_event("hard_bounce")])
    headers = {"X-Mandrill-Signature": bad}
    assert client.post(MANDRILL, data=form, headers=headers).status_code == 403
    tform, _ = twilio_form(twilio_fields("delivered"))
    assert client.post(TWILIO, data=tform, headers={"X-Twilio-Signature": bad}).status_code == 403
    assert sink.batches == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/webhooks/mandrill",
        "http://hooks.example.com/webhooks/mandrill",
        PUBLIC_URL + "/webhooks/twilio",
        PUBLIC_URL + "/webhooks/mandrill/",
        PUBLIC_URL + "/webhooks/mandrill?x=1",
    ],
)
def test_signature_computed_for_another_url_is_403(client: AsgiClient, sink: MemorySink, url: str) -> None:
    form, headers = mandrill_form([mandrill_event("hard_bounce")], url=url)
    assert client.post(MANDRILL, data=form, headers=headers).status_code == 403
    assert sink.batches == []


def test_signature_with_another_key_is_403(client: AsgiClient, sink: MemorySink) -> None:
    form, headers = mandrill_form([mandrill_event("spam")], key="someone-elses-key")
    assert client.post(MANDRILL, data=form, headers=headers).status_code == 403
    tform, theaders = twilio_form(twilio_fields("delivered"), token="someone-elses-token")
    assert client.post(TWILIO, data=tform, headers=theaders).status_code == 403
    assert sink.batches == []


def test_a_signed_body_changed_in_flight_is_403(client: AsgiClient, sink: MemorySink) -> None:
    _, headers = mandrill_form([mandrill_event("delivered")])
    tampered = {"mandrill_events": json.dumps([mandrill_event("hard_bounce", email="victim@example.com")])}
    assert client.post(MANDRILL, data=tampered, headers=headers).status_code == 403
    tform, theaders = twilio_form(twilio_fields("delivered"))
    extra = tform | {"MessageStatus": "undelivered", "ErrorCode": "21610"}
    assert client.post(TWILIO, data=extra, headers=theaders).status_code == 403
    assert sink.batches == []


def test_replay_reaches_the_sink_twice_with_identical_event_ids(client: AsgiClient, sink: MemorySink) -> None:
    form, headers = mandrill_form([mandrill_event("send"), mandrill_event("hard_bounce", ts=1_760_000_001)])
    tform, theaders = twilio_form(twilio_fields("delivered"))
    for _ in range(2):
        assert client.post(MANDRILL, data=form, headers=headers).status_code == 200
        assert client.post(TWILIO, data=tform, headers=theaders).status_code == 200
    first, second = sink.batches[0:2], sink.batches[2:4]
    ids = [[r.provider_event_id for r in batch] for batch, _ in first]
    assert ids == [[r.provider_event_id for r in batch] for batch, _ in second]
    # The ledger keys receipts by these ids: the second copy is a no-op there. (A Twilio callback
    # carries no time, so its occurred_at is the receiver's; the id does not depend on it.)
    assert sink.batches[0] == sink.batches[2]


def test_body_over_the_limit_by_content_length_is_413(client: AsgiClient, sink: MemorySink) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(MAX_BODY + 1)}
    answer = client.post(MANDRILL, content=b"mandrill_events=%5B%5D", headers=headers)
    assert answer.status_code == 413
    assert sink.batches == []


def test_body_over_the_limit_without_content_length_is_413_while_reading(
    client: AsgiClient, sink: MemorySink
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"mandrill_events="
        while sent < 2 * MAX_BODY:  # the receiver must stop long before this
            sent += 1 << 20
            yield b"%5B" * ((1 << 20) // 3)

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in (MANDRILL, TWILIO):
        sent = 0
        answer = client.post(path, content=chunks(), headers=headers)
        assert answer.status_code == 413
    assert sink.batches == []


def test_a_body_just_under_the_limit_is_read(client: AsgiClient, sink: MemorySink) -> None:
    # A signed, valid batch padded with an extra field to just under 10 MiB: read, checked, accepted.
    events = [mandrill_event("delivered")]
    form, _ = mandrill_form(events)
    form["padding"] = "x" * (MAX_BODY - 1000)
    headers = {"X-Mandrill-Signature": signature(MANDRILL_KEY.encode(), PUBLIC_URL + MANDRILL, form.items())}
    assert client.post(MANDRILL, data=form, headers=headers).status_code == 200
    assert len(sink.receipts) == 1


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "{}", "null", '"[]"', "[" * 50_000 + "]" * 50_000, json.dumps([{}] * (MAX_EVENTS + 1))],
)
def test_malformed_but_signed_mandrill_batches_are_400(
    client: AsgiClient, sink: MemorySink, raw: str
) -> None:
    form, headers = mandrill_form(raw)
    answer = client.post(MANDRILL, data=form, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("mandrill_events:")
    assert sink.batches == []


def test_malformed_bodies_are_400_never_500(client: AsgiClient, sink: MemorySink) -> None:
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    for content, headers in [
        (b"\xff\xfe\x00garbage", form_type),
        (b"a=1&" * 200, form_type),  # more fields than any provider sends
        (
            b"--x\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nz\r\n--x--",
            {"Content-Type": "multipart/form-data; boundary=x"},
        ),
        (b"mandrill_events=[]", {"Content-Length": "12abc", **form_type}),
    ]:
        for path in (MANDRILL, TWILIO):
            answer = client.post(path, content=content, headers=headers)
            assert answer.status_code in (400, 403), (path, content[:20], answer.status_code)
    # Signed, but no events field at all.

    other = {"something_else": "[]"}
    headers = {"X-Mandrill-Signature": signature(MANDRILL_KEY.encode(), PUBLIC_URL + MANDRILL, other.items())}
    assert client.post(MANDRILL, data=other, headers=headers).status_code == 400
    assert sink.batches == []


@pytest.mark.parametrize(
    "fields",
    [
        {"MessageSid": "../../../etc/passwd"},
        {"MessageSid": "SM" + "a" * 32 + "\n"},
        {"MessageSid": "<script>"},
        {"MessageStatus": "delivered\r\nSet-Cookie: x"},
        {"MessageStatus": "D" * 10_000},
        {"ErrorCode": "1; DROP TABLE receipts"},
    ],
)
def test_hostile_signed_twilio_fields_are_400(
    client: AsgiClient, sink: MemorySink, fields: dict[str, str]
) -> None:
    form, headers = twilio_form(twilio_fields("delivered") | fields)
    answer = client.post(TWILIO, data=form, headers=headers)
    assert answer.status_code == 400
    assert sink.batches == []


def test_hostile_ids_in_a_signed_mandrill_batch_are_skipped_not_passed_on(
    client: AsgiClient, sink: MemorySink
) -> None:
    hostile = [
        "../../etc/passwd",
        "a" * 65,
        "a" * 32 + "\n",
        "id\nwith\nnewlines",
        "<img src=x>",
        "",
        "ø" * 10,
        "x;rm -rf /",
    ]
    events = [mandrill_event("delivered", message_id=value) for value in hostile]
    events += [mandrill_event("delivered") | {"_id": value} for value in hostile]
    events += [mandrill_event("delivered")]
    form, headers = mandrill_form(events)
    answer = client.post(MANDRILL, data=form, headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {"receipts": 1, "changes": 0, "skipped": 2 * len(hostile)}
    (receipt,) = sink.receipts
    assert receipt.provider_message_id == MESSAGE_ID


def test_a_full_batch_of_a_thousand_is_accepted(client: AsgiClient, sink: MemorySink) -> None:
    events = [mandrill_event("delivered", message_id=f"{i:032x}") for i in range(MAX_EVENTS)]
    form, headers = mandrill_form(events)
    assert client.post(MANDRILL, data=form, headers=headers).json()["receipts"] == MAX_EVENTS
    assert sink.receipt_count == MAX_EVENTS
