"""Mandrill events and Twilio callbacks as receipt values: one table row per provider word."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.webhooks.helpers import MESSAGE_ID, MESSAGE_SID, SUPPRESSION_KEY, TS, mandrill_event, twilio_fields
from workers.errors import InvalidWebhook
from workers.messages import Channel
from workers.providers.mandrill_webhooks import MAX_EVENTS, parse_events
from workers.providers.twilio_callbacks import parse_callback
from workers.receipts import DeliveryReceipt, ReceiptEffect, SuppressionReason, recipient_key

ANA = "Ana@Example.com"
ANA_KEY = recipient_key(Channel.EMAIL, ANA, SUPPRESSION_KEY)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _one(event: dict[str, object]) -> DeliveryReceipt:
    batch = parse_events(json.dumps([event]), SUPPRESSION_KEY)
    assert batch.skipped == {} and batch.changes == ()
    (receipt,) = batch.receipts
    return receipt


@pytest.mark.parametrize(
    ("kind", "extra", "effect", "suppress", "error_code"),
    [
        ("send", {}, ReceiptEffect.DELIVERED, None, None),
        ("deferral", {}, ReceiptEffect.NONE, None, None),
        ("soft_bounce", {"bounce_description": "mailbox_full"}, ReceiptEffect.NONE, None, "mailbox_full"),
        ("open", {}, ReceiptEffect.NONE, None, None),
        ("click", {}, ReceiptEffect.NONE, None, None),
        ("delivered", {}, ReceiptEffect.DELIVERED, None, None),
        (
            "hard_bounce",
            {"bounce_description": "bad_mailbox", "diag": "smtp;550 5.1.1 <ana@example.com> unknown"},
            ReceiptEffect.BOUNCED,
            SuppressionReason.HARD_BOUNCE,
            "bad_mailbox",
        ),
        ("spam", {}, ReceiptEffect.COMPLAINED, SuppressionReason.COMPLAINT, None),
        ("unsub", {}, ReceiptEffect.NONE, SuppressionReason.UNSUBSCRIBE, None),
        (
            "reject",
            {"reject": {"reason": "hard-bounce"}},
            ReceiptEffect.BOUNCED,
            SuppressionReason.REJECT,
            "hard-bounce",
        ),
        ("reject", {"reject": {"reason": "spam"}}, ReceiptEffect.BOUNCED, SuppressionReason.REJECT, "spam"),
        ("reject", {"reject": {"reason": "unsub"}}, ReceiptEffect.BOUNCED, SuppressionReason.REJECT, "unsub"),
        (
            "reject",
            {"reject_reason": "hard-bounce"},
            ReceiptEffect.BOUNCED,
            SuppressionReason.REJECT,
            "hard-bounce",
        ),
        ("reject", {"reject": {"reason": "soft-bounce"}}, ReceiptEffect.BOUNCED, None, "soft-bounce"),
        ("reject", {"reject": {"reason": "invalid-sender"}}, ReceiptEffect.BOUNCED, None, "invalid-sender"),
        ("reject", {"reject": {"reason": "custom"}}, ReceiptEffect.BOUNCED, None, "custom"),
    ],
)
def test_mandrill_message_events(
    kind: str,
    extra: dict[str, object],
    effect: ReceiptEffect,
    suppress: SuppressionReason | None,
    error_code: str | None,
) -> None:
    receipt = _one(mandrill_event(kind, email=ANA, **extra))
    assert receipt.provider == "mandrill"
    assert receipt.provider_message_id == MESSAGE_ID
    assert receipt.provider_event_id == f"{MESSAGE_ID}:{kind}:{TS}"
    assert receipt.channel is Channel.EMAIL
    assert receipt.raw_status == kind
    assert receipt.effect is effect
    assert receipt.occurred_at == datetime.fromtimestamp(TS, UTC)
    assert receipt.suppress is suppress
    assert receipt.recipient_key == (ANA_KEY if suppress else None)
    assert receipt.error_code == error_code
    # The address, the SMTP diagnostic and the body never travel on.
    task = json.dumps(receipt.to_task()).lower()
    assert "ana@" not in task and "example.com" not in task and "550" not in task
    assert DeliveryReceipt.from_task(receipt.to_task()) == receipt


def test_mandrill_recipient_key_is_the_normalised_address() -> None:
    receipt = _one(mandrill_event("hard_bounce", email="  ana@EXAMPLE.com "))
    assert receipt.recipient_key == ANA_KEY


def test_mandrill_suppressing_event_without_a_usable_address_keeps_the_receipt_only() -> None:
    for email in (None, "", "not-an-address", "a" * 300 + "@example.com", 42):
        receipt = _one(mandrill_event("hard_bounce", email=email))  # type: ignore[arg-type]
        assert receipt.effect is ReceiptEffect.BOUNCED
        assert receipt.suppress is None and receipt.recipient_key is None


@pytest.mark.parametrize(("action", "add"), [("add", True), ("remove", False)])
def test_mandrill_blacklist_sync_events(action: str, add: bool) -> None:
    event = {
        "type": "blacklist",
        "action": action,
        "ts": TS,
        "reject": {"email": ANA, "reason": "hard-bounce"},
    }
    batch = parse_events(json.dumps([event]), SUPPRESSION_KEY)
    (change,) = batch.changes
    assert batch.receipts == ()
    assert change.recipient_key == ANA_KEY
    assert change.reason is SuppressionReason.BLACKLIST
    assert change.add is add
    assert change.channel is Channel.EMAIL
    assert change.provider_event_id == f"blacklist:{action}:{TS}:{ANA_KEY[:32]}"
    assert "example" not in json.dumps(change.to_task()).lower()


def test_mandrill_skips_are_counted_not_fatal() -> None:
    events = [
        mandrill_event("delivered"),
        {"type": "whitelist", "action": "add", "ts": TS, "entry": {"email": ANA}},
        {"type": "blacklist", "action": "change", "ts": TS, "reject": {"email": ANA}},
        {"event": "inbound", "ts": TS, "msg": {"raw_msg": "x"}},
        {"event": "teleport", "ts": TS, "msg": {"_id": MESSAGE_ID}},
        mandrill_event("delivered", message_id="../../etc/passwd"),
        mandrill_event("delivered", ts="yesterday"),  # type: ignore[arg-type]
        mandrill_event("delivered", ts=True),  # type: ignore[arg-type]
        mandrill_event("delivered", ts=10**12),
        {"event": "delivered", "ts": TS},
        "not an object",
        None,
    ]
    batch = parse_events(json.dumps(events), SUPPRESSION_KEY)
    assert len(batch.receipts) == 1
    assert batch.skipped == {
        "whitelist": 1,
        "blacklist change": 1,
        "inbound": 1,
        "unknown event": 1,
        "bad message id": 1,
        "bad ts": 3,
        "no msg": 1,
        "not an object": 2,
    }


def test_mandrill_event_ids_are_stable_across_replays_and_distinct_per_event() -> None:
    events = [
        mandrill_event("send"),
        mandrill_event("delivered", ts=TS + 1),
        mandrill_event("open", ts=TS + 5),
    ]
    first = parse_events(json.dumps(events), SUPPRESSION_KEY)
    again = parse_events(json.dumps(events), SUPPRESSION_KEY)
    ids = [r.provider_event_id for r in first.receipts]
    assert ids == [r.provider_event_id for r in again.receipts]
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("not json", "is not JSON"),
        ('{"event": "send"}', "is not a JSON array"),
        ("[" * 100_000 + "]" * 100_000, "is not JSON"),
        (json.dumps([{}] * (MAX_EVENTS + 1)), "holds 1001 events"),
    ],
)
def test_mandrill_malformed_batches(raw: str, problem: str) -> None:
    with pytest.raises(InvalidWebhook, match=problem) as caught:
        parse_events(raw, SUPPRESSION_KEY)
    assert caught.value.where == "mandrill_events"


def test_mandrill_full_batch_of_a_thousand() -> None:
    events = [mandrill_event("delivered", message_id=f"{i:032x}") for i in range(MAX_EVENTS)]
    assert len(parse_events(json.dumps(events), SUPPRESSION_KEY).receipts) == MAX_EVENTS


NUMBER = "+447700900123"
NUMBER_KEY = recipient_key(Channel.SMS, NUMBER, SUPPRESSION_KEY)


@pytest.mark.parametrize(
    ("status", "code", "effect", "suppress"),
    [
        ("accepted", None, ReceiptEffect.NONE, None),
        ("scheduled", None, ReceiptEffect.NONE, None),
        ("queued", None, ReceiptEffect.NONE, None),
        ("sending", None, ReceiptEffect.NONE, None),
        ("sent", None, ReceiptEffect.NONE, None),
        ("delivered", None, ReceiptEffect.DELIVERED, None),
        ("read", None, ReceiptEffect.DELIVERED, None),
        ("canceled", None, ReceiptEffect.NONE, None),
        ("partially_delivered", None, ReceiptEffect.NONE, None),
        ("undelivered", "30005", ReceiptEffect.BOUNCED, None),
        ("undelivered", "30006", ReceiptEffect.BOUNCED, None),
        ("failed", "21614", ReceiptEffect.BOUNCED, None),
        ("undelivered", "21610", ReceiptEffect.BOUNCED, SuppressionReason.STOP),
        ("failed", "21610", ReceiptEffect.BOUNCED, SuppressionReason.STOP),
        ("undelivered", "30003", ReceiptEffect.NONE, None),  # handset off: passing
        ("failed", "30001", ReceiptEffect.NONE, None),  # queue overflow: ours, passing
        ("undelivered", None, ReceiptEffect.NONE, None),
        ("some_future_status", None, ReceiptEffect.NONE, None),
    ],
)
def test_twilio_callbacks(
    status: str, code: str | None, effect: ReceiptEffect, suppress: SuppressionReason | None
) -> None:
    receipt = parse_callback(twilio_fields(status, code=code, to=NUMBER), SUPPRESSION_KEY, NOW)
    assert receipt.provider == "twilio"
    assert receipt.provider_message_id == MESSAGE_SID
    assert receipt.provider_event_id == f"{MESSAGE_SID}:{status}" + (f":{code}" if code else "")
    assert receipt.channel is Channel.SMS
    assert receipt.raw_status == status
    assert receipt.effect is effect
    assert receipt.error_code == code
    assert receipt.suppress is suppress
    assert receipt.recipient_key == (NUMBER_KEY if suppress else None)
    assert receipt.occurred_at == NOW
    assert "7700900123" not in json.dumps(receipt.to_task())


def test_twilio_raw_dlr_done_date_is_the_time_and_not_part_of_the_id() -> None:
    fields = twilio_fields("delivered") | {"RawDlrDoneDate": "2601021530"}
    receipt = parse_callback(fields, SUPPRESSION_KEY, NOW)
    assert receipt.occurred_at == datetime(2026, 1, 2, 15, 30, tzinfo=UTC)
    assert (
        receipt.provider_event_id
        == parse_callback(twilio_fields("delivered"), SUPPRESSION_KEY, NOW).provider_event_id
    )
    for bad in ("2613991530", "yesterday", "26010215300"):
        assert (
            parse_callback(
                twilio_fields("delivered") | {"RawDlrDoneDate": bad}, SUPPRESSION_KEY, NOW
            ).occurred_at
            == NOW
        )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"MessageSid": ""}, "MessageSid"),
        ({"MessageSid": "../../x"}, "MessageSid"),
        ({"MessageSid": "SM" + "g" * 32}, "MessageSid"),
        ({"MessageSid": "SM" + "a" * 33}, "MessageSid"),
        ({"MessageStatus": ""}, "MessageStatus"),
        ({"MessageStatus": "Delivered\r\nX: y"}, "MessageStatus"),
        ({"MessageStatus": "x" * 40}, "MessageStatus"),
        ({"ErrorCode": "30005; DROP TABLE"}, "ErrorCode"),
    ],
)
def test_twilio_malformed_callbacks(change: dict[str, str], where: str) -> None:
    with pytest.raises(InvalidWebhook) as caught:
        parse_callback(twilio_fields("delivered") | change, SUPPRESSION_KEY, NOW)
    assert caught.value.where == where


def test_twilio_stop_without_a_usable_number_keeps_the_bounce_only() -> None:
    for to in ("", "no digits", "+" + "1" * 40):
        receipt = parse_callback(twilio_fields("undelivered", code="21610", to=to), SUPPRESSION_KEY, NOW)
        assert receipt.effect is ReceiptEffect.BOUNCED
        assert receipt.suppress is None and receipt.recipient_key is None
