"""Mandrill's pure request builder and response parser, and the provider's specifics on the wire."""

from __future__ import annotations

import json

import pytest
from conftest import make_email

from tests.fakes.mandrill_server import MandrillServer, Queued
from workers.errors import ConfigurationError, DeliveryError, GiveUp, ProviderMisconfigured, RetryLater
from workers.messages import StoredTemplate
from workers.providers.mandrill import (
    ERROR_NAMES,
    REJECT_REASONS,
    MandrillProvider,
    Rule,
    build_send_request,
    parse_send_response,
)


def test_send_request_for_locally_rendered_mail() -> None:
    path, body = build_send_request(make_email(), "secret-key")
    assert path == "messages/send"
    assert body == {
        "key": "secret-key",
        "async": False,
        "message": {
            "from_email": "alerts@notify.example.com",
            "from_name": "Example Alerts",
            "to": [{"email": "reader@example.org", "type": "to"}],
            "subject": "You were mentioned: Q3 report",
            "text": "Plain body with ünïcode",
            "html": "<p>HTML <b>body</b> with ünïcode</p>",
            "headers": {
                "List-Unsubscribe": "<https://notify.example.com/u/abc123>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Reply-To": "support@notify.example.com",
            },
            "tags": ["mention-notification"],
            "metadata": {"notification_id": "6f1c2a9e-8f57-4d5e-9a43-2d4b1f0c9e11"},
        },
    }


def test_send_template_request_carries_merge_language_and_global_merge_vars() -> None:
    template = StoredTemplate(
        "mention-notification",
        "handlebars",
        {"tracking_unit_name": "Q3", "mentions": [{"program_name": "News", "mention_date": 1700000000}]},
    )
    path, body = build_send_request(make_email(text=None, html=None, template=template), "k")
    assert path == "messages/send-template"
    assert body["template_name"] == "mention-notification"
    assert body["template_content"] == []
    assert body["message"]["merge_language"] == "handlebars"
    assert body["message"]["merge"] is True
    assert body["message"]["global_merge_vars"] == [
        {"name": "tracking_unit_name", "content": "Q3"},
        {"name": "mentions", "content": [{"program_name": "News", "mention_date": 1700000000}]},
    ]
    assert "text" not in body["message"] and "html" not in body["message"]


def _reply(results: object) -> bytes:
    return json.dumps(results).encode()


def test_parse_sent_keeps_the_id() -> None:
    receipt = parse_send_response(200, {}, _reply([{"email": "x@y.z", "status": "sent", "_id": "abc123"}]))
    assert receipt.provider == "mandrill"
    assert receipt.provider_message_id == "abc123"
    assert receipt.detail == {"status": "sent"}


def test_parse_queued_is_accepted_with_its_reason() -> None:
    receipt = parse_send_response(
        200, {}, _reply([{"email": "x@y.z", "status": "queued", "queued_reason": "quota", "_id": "q1"}])
    )
    assert receipt.provider_message_id == "q1"
    assert receipt.detail == {"status": "queued", "queued_reason": "quota"}


@pytest.mark.parametrize(("reason", "rule"), sorted(REJECT_REASONS.items()))
def test_every_reject_reason_follows_the_table(reason: str, rule: Rule) -> None:
    expected: dict[str, type[DeliveryError]] = {
        "retry": RetryLater,
        "give_up": GiveUp,
        "misconfigured": ProviderMisconfigured,
    }
    body = _reply(
        [{"email": "person@example.org", "status": "rejected", "reject_reason": reason, "_id": "r"}]
    )
    with pytest.raises(expected[rule.action]) as caught:
        parse_send_response(200, {}, body)
    assert type(caught.value) is expected[rule.action]
    assert caught.value.code == reason
    assert "person@example.org" not in str(caught.value)
    # hard-bounce, spam and unsub also put the recipient on our suppression list.
    listed = rule.suppress.value if rule.suppress is not None else None
    assert getattr(caught.value, "suppress", None) == listed


def test_soft_bounce_retries_and_hard_bounce_gives_up() -> None:
    with pytest.raises(RetryLater):
        parse_send_response(200, {}, _reply([{"status": "rejected", "reject_reason": "soft-bounce"}]))
    with pytest.raises(GiveUp):
        parse_send_response(200, {}, _reply([{"status": "rejected", "reject_reason": "hard-bounce"}]))
    with pytest.raises(GiveUp):
        parse_send_response(200, {}, _reply([{"status": "invalid"}]))


@pytest.mark.parametrize(("name", "rule"), sorted(ERROR_NAMES.items()))
def test_every_error_name_follows_the_table(name: str, rule: Rule) -> None:
    expected: dict[str, type[DeliveryError]] = {
        "retry": RetryLater,
        "give_up": GiveUp,
        "misconfigured": ProviderMisconfigured,
    }
    body = _reply({"status": "error", "code": -1, "name": name, "message": "about someone@example.org"})
    with pytest.raises(expected[rule.action]) as caught:
        parse_send_response(500, {}, body)  # Mandrill answers every error with HTTP 500
    assert type(caught.value) is expected[rule.action]
    assert caught.value.code == name
    assert "someone@example.org" not in str(caught.value)


def test_the_required_names_are_classified_as_the_issue_says() -> None:
    cases = {
        "Invalid_Key": ProviderMisconfigured,
        "PaymentRequired": ProviderMisconfigured,
        "ValidationError": GiveUp,
        "Unknown_Template": GiveUp,
        "GeneralError": RetryLater,
        "ServiceUnavailable": RetryLater,
    }
    for name, error in cases.items():
        with pytest.raises(error):
            parse_send_response(500, {}, _reply({"status": "error", "code": -1, "name": name, "message": ""}))


def test_unknown_error_name_retries_and_http_statuses_without_a_body() -> None:
    with pytest.raises(RetryLater):
        parse_send_response(500, {}, _reply({"status": "error", "name": "Brand_New_Error"}))
    with pytest.raises(RetryLater) as caught:
        parse_send_response(429, {"retry-after": "12"}, b"")
    assert caught.value.retry_after == 12.0
    with pytest.raises(RetryLater):
        parse_send_response(502, {}, b"<html>bad gateway</html>")
    with pytest.raises(ProviderMisconfigured):
        parse_send_response(404, {}, b"Not Found")
    with pytest.raises(RetryLater):
        parse_send_response(200, {}, b"not json")
    with pytest.raises(RetryLater):
        parse_send_response(200, {}, b"[]")


def test_stored_template_on_the_wire(mandrill_server: MandrillServer) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    template = StoredTemplate("mention-notification", "mailchimp", {"FNAME": "Ada"})
    try:
        receipt = provider.send_email(make_email(text=None, html=None, template=template))
    finally:
        provider.close()
    [received] = mandrill_server.accepted
    assert received.path == "/api/1.0/messages/send-template"
    assert received.json["template_name"] == "mention-notification"
    assert received.json["message"]["global_merge_vars"] == [{"name": "FNAME", "content": "Ada"}]
    assert received.json["message"]["merge_language"] == "mailchimp"
    assert receipt.provider_message_id


def test_unknown_stored_template_gives_up() -> None:
    with MandrillServer(api_keys={"k"}, templates={"mention-notification"}) as server:
        assert isinstance(server, MandrillServer)
        provider = MandrillProvider("k", base_url=server.api_url)
        template = StoredTemplate("no-such-template", "handlebars", {})
        with pytest.raises(GiveUp) as caught:
            provider.send_email(make_email(template=template))
        provider.close()
    assert caught.value.code == "Unknown_Template"


def test_queued_reply_through_the_server_is_a_receipt(mandrill_server: MandrillServer) -> None:
    mandrill_server.fail_next(Queued("quota"))
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    receipt = provider.send_email(make_email())
    provider.close()
    assert receipt.detail == {"status": "queued", "queued_reason": "quota"}


def test_denylisted_address_is_rejected(mandrill_server: MandrillServer) -> None:
    mandrill_server.reject_address("reader@example.org", "unsub")
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    with pytest.raises(GiveUp) as caught:
        provider.send_email(make_email())
    provider.close()
    assert caught.value.code == "unsub"


def test_key_is_in_the_body_only_and_never_in_repr(mandrill_server: MandrillServer) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    provider.send_email(make_email())
    provider.close()
    [received] = mandrill_server.received
    assert received.json["key"] == "test-key"
    assert "test-key" not in repr(provider)


def test_empty_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        MandrillProvider("")


def test_one_kept_alive_connection_serves_many_sends(mandrill_server: MandrillServer) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    for n in range(5):
        provider.send_email(make_email(f"00000000-0000-4000-8000-00000000000{n}"))
    provider.close()
    assert len(mandrill_server.accepted) == 5
    assert mandrill_server.connections_opened == 1
