"""The contract every email provider keeps: what goes on the wire, and how each failure surfaces."""

from __future__ import annotations

import pytest
from conftest import EmailHarness, make_email

from workers.errors import DeliveryError, GiveUp, MaybeDelivered, ProviderMisconfigured, RetryLater


def _needs_remote(email: EmailHarness) -> None:
    if not email.supports_failures:
        pytest.skip(f"{email.name} has no remote side that can fail")


def test_success_returns_a_receipt_naming_the_provider(email: EmailHarness) -> None:
    receipt = email.provider.send_email(make_email())
    assert receipt.provider == email.name
    assert receipt.provider_message_id
    assert len(email.wire()) == 1


def test_exact_payload_on_the_wire(email: EmailHarness) -> None:
    email.provider.send_email(make_email())
    [wire] = email.wire()
    assert wire.from_address == "alerts@notify.example.com"
    assert wire.from_name == "Example Alerts"
    assert wire.to == ("reader@example.org",)
    assert wire.subject == "You were mentioned: Q3 report"
    assert wire.text == "Plain body with ünïcode"
    assert wire.html == "<p>HTML <b>body</b> with ünïcode</p>"
    assert wire.reply_to == "support@notify.example.com"
    assert wire.notification_id == "6f1c2a9e-8f57-4d5e-9a43-2d4b1f0c9e11"
    assert wire.headers == {
        "List-Unsubscribe": "<https://notify.example.com/u/abc123>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_mailto_unsubscribe_gets_no_one_click_header(email: EmailHarness) -> None:
    email.provider.send_email(make_email(headers={"List-Unsubscribe": "<mailto:unsub@notify.example.com>"}))
    [wire] = email.wire()
    assert wire.headers == {"List-Unsubscribe": "<mailto:unsub@notify.example.com>"}


def test_text_only_message(email: EmailHarness) -> None:
    email.provider.send_email(make_email(html=None, headers={}, reply_to=None, from_name=None))
    [wire] = email.wire()
    assert wire.text == "Plain body with ünïcode"
    assert wire.html is None
    assert wire.reply_to is None
    assert wire.from_name is None
    assert wire.headers == {}


@pytest.mark.parametrize(
    ("failure", "error", "code"),
    [
        ("transient", RetryLater, {"mandrill": "GeneralError", "smtp": "451"}),
        ("permanent", GiveUp, {"mandrill": "ValidationError", "smtp": "553"}),
        ("rejected-recipient", GiveUp, {"mandrill": "hard-bounce", "smtp": "550"}),
        ("throttled", RetryLater, {"mandrill": "Too_Many_Requests", "smtp": "421"}),
        ("timeout", MaybeDelivered, {"mandrill": "timeout", "smtp": "timeout"}),
        ("drop", RetryLater, {"mandrill": "connection", "smtp": "connection"}),
    ],
)
def test_each_failure_class(
    email: EmailHarness, failure: str, error: type[DeliveryError], code: dict[str, str]
) -> None:
    _needs_remote(email)
    email.inject(failure)
    with pytest.raises(error) as caught:
        email.provider.send_email(make_email())
    assert type(caught.value) is error
    assert caught.value.provider == email.name
    assert caught.value.code == code[email.name]
    # Our errors never carry the recipient's address.
    assert "reader@example.org" not in str(caught.value)
    assert "someone@example.org" not in str(caught.value)
    assert email.wire() == []
    # The failure was one-off: the same provider delivers the next message.
    email.provider.send_email(make_email())
    assert len(email.wire()) == 1


def test_retry_after_is_passed_on_when_the_provider_gives_one(email: EmailHarness) -> None:
    _needs_remote(email)
    email.inject("throttled")
    with pytest.raises(RetryLater) as caught:
        email.provider.send_email(make_email())
    # SMTP has no Retry-After; HTTP providers pass the server's hint through.
    assert caught.value.retry_after == (None if email.name == "smtp" else 7.0)


def test_bad_credentials_are_misconfiguration(email: EmailHarness) -> None:
    _needs_remote(email)
    provider = email.misconfigured()
    try:
        with pytest.raises(ProviderMisconfigured) as caught:
            provider.send_email(make_email())
    finally:
        provider.close()
    assert caught.value.provider == email.name
    assert "wrong" not in str(caught.value)  # the credential itself is never echoed


def test_connections_dropped_while_idle_are_reopened(email: EmailHarness) -> None:
    _needs_remote(email)
    email.provider.send_email(make_email("00000000-0000-4000-8000-000000000001"))
    email.drop_idle()
    email.provider.send_email(make_email("00000000-0000-4000-8000-000000000002"))
    assert [wire.notification_id for wire in email.wire()] == [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
    ]
