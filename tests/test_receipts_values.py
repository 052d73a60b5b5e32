"""The receipt values survive the trip through task arguments, and a recipient's key is one per person."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.messages import Channel
from workers.receipts import (
    DeliveryReceipt,
    ReceiptEffect,
    SuppressionChange,
    SuppressionReason,
    normalise_recipient,
    recipient_key,
)

KEY = b"k" * 32


def test_receipt_round_trips_through_task_arguments() -> None:
    receipt = DeliveryReceipt(
        provider="mandrill",
        provider_event_id="evt-1",
        provider_message_id="abc123",
        channel=Channel.EMAIL,
        raw_status="hard_bounce",
        effect=ReceiptEffect.BOUNCED,
        occurred_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
        error_code="5.1.1",
        suppress=SuppressionReason.HARD_BOUNCE,
        recipient_key=recipient_key(Channel.EMAIL, "a@example.com", KEY),
    )
    assert DeliveryReceipt.from_task(receipt.to_task()) == receipt
    assert "a@example.com" not in repr(receipt.to_task())


def test_change_round_trips_and_refuses_a_non_boolean_add() -> None:
    change = SuppressionChange(
        provider="mandrill",
        provider_event_id="sync-1",
        channel=Channel.EMAIL,
        recipient_key="f" * 64,
        reason=SuppressionReason.BLACKLIST,
        add=False,
        occurred_at=datetime(2026, 12, 3, tzinfo=UTC),
    )
    assert SuppressionChange.from_task(change.to_task()) == change
    with pytest.raises(ValueError, match="add"):
        SuppressionChange.from_task({**change.to_task(), "add": "no"})


def test_naive_times_are_refused() -> None:
    data = {
        "provider": "twilio",
        "provider_event_id": "e",
        "provider_message_id": "SM1",
        "channel": "sms",
        "raw_status": "delivered",
        "effect": "delivered",
        "occurred_at": "2026-12-03T12:00:00",
    }
    with pytest.raises(ValueError, match="zone"):
        DeliveryReceipt.from_task(data)


def test_one_key_per_recipient_however_it_is_spelled() -> None:
    assert normalise_recipient(Channel.EMAIL, " Ana@Straße.DE ") == "ana@xn--strae-oqa.de"
    assert recipient_key(Channel.EMAIL, "Ana@Straße.de", KEY) == recipient_key(
        Channel.EMAIL, "ana@xn--strae-oqa.de", KEY
    )
    assert recipient_key(Channel.SMS, "+44 7700 900123", KEY) == recipient_key(
        Channel.SMS, "+447700900123", KEY
    )
    # The channel is part of the hash, and so is the key.
    assert recipient_key(Channel.EMAIL, "a@b.c", KEY) != recipient_key(Channel.EMAIL, "a@b.c", b"other")


@pytest.mark.parametrize("value", ["", "no-at-sign", "@example.com", "a@"])
def test_not_an_address(value: str) -> None:
    with pytest.raises(ValueError):
        normalise_recipient(Channel.EMAIL, value)
