"""The contract every SMS provider keeps: what goes on the wire, and how each failure surfaces."""

from __future__ import annotations

import pytest
from conftest import SmsHarness, WireSms, make_sms

from workers.errors import DeliveryError, GiveUp, MaybeDelivered, ProviderMisconfigured, RetryLater


def _needs_remote(sms: SmsHarness) -> None:
    if not sms.supports_failures:
        pytest.skip(f"{sms.name} has no remote side that can fail")


def test_success_returns_a_receipt_naming_the_provider(sms: SmsHarness) -> None:
    receipt = sms.provider.send_sms(make_sms())
    assert receipt.provider == sms.name
    assert receipt.provider_message_id
    assert sms.wire() == [WireSms("+447700900123", "+15005550006", "Your code is 123456")]


def test_messaging_service_sender(sms: SmsHarness) -> None:
    service = "MG" + "a" * 32
    sms.provider.send_sms(make_sms(from_number=service, body="Ünïcode ✓ body"))
    assert sms.wire() == [WireSms("+447700900123", service, "Ünïcode ✓ body")]


@pytest.mark.parametrize(
    ("failure", "error", "code"),
    [
        ("transient", RetryLater, "20500"),
        ("permanent", GiveUp, "21211"),
        ("throttled", RetryLater, "20429"),
        ("timeout", MaybeDelivered, "timeout"),
        ("drop", RetryLater, "connection"),
    ],
)
def test_each_failure_class(sms: SmsHarness, failure: str, error: type[DeliveryError], code: str) -> None:
    _needs_remote(sms)
    sms.inject(failure)
    with pytest.raises(error) as caught:
        sms.provider.send_sms(make_sms())
    assert type(caught.value) is error
    assert caught.value.provider == sms.name
    assert caught.value.code == code
    assert "447700900123" not in str(caught.value)
    assert sms.wire() == []
    sms.provider.send_sms(make_sms())
    assert len(sms.wire()) == 1


def test_opted_out_recipient_is_refused_for_good(sms: SmsHarness) -> None:
    _needs_remote(sms)
    sms.refuse("+447700900123")
    with pytest.raises(GiveUp) as caught:
        sms.provider.send_sms(make_sms())
    assert caught.value.code == "21610"
    assert "447700900123" not in str(caught.value)


def test_retry_after_is_passed_on(sms: SmsHarness) -> None:
    _needs_remote(sms)
    sms.inject("throttled")
    with pytest.raises(RetryLater) as caught:
        sms.provider.send_sms(make_sms())
    assert caught.value.retry_after == 7.0


def test_bad_credentials_are_misconfiguration(sms: SmsHarness) -> None:
    _needs_remote(sms)
    provider = sms.misconfigured()
    try:
        with pytest.raises(ProviderMisconfigured) as caught:
            provider.send_sms(make_sms())
    finally:
        provider.close()
    assert caught.value.code == "20003"
    assert "wrong-token" not in str(caught.value)


def test_connections_dropped_while_idle_are_reopened(sms: SmsHarness) -> None:
    _needs_remote(sms)
    sms.provider.send_sms(make_sms("00000000-0000-4000-8000-000000000001"))
    sms.drop_idle()
    sms.provider.send_sms(make_sms("00000000-0000-4000-8000-000000000002"))
    assert len(sms.wire()) == 2
