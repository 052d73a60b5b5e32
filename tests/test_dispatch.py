"""The use case without Celery: outcomes of each provider answer, and intake of raw bus messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.factories import basic_email, mention, parsed, sms
from workers.compose import Composer
from workers.dispatch import Dispatcher, Intake
from workers.errors import (
    GiveUp,
    MaybeDelivered,
    ProviderMisconfigured,
    RateLimited,
    RetryLater,
    TemplateError,
)
from workers.ledger import Ledger
from workers.ledger.queries import get_notification
from workers.messages import EmailMessage, Receipt, SmsMessage, Status
from workers.providers.outbox import OutboxProvider
from workers.retry import RetryPolicy


class ScriptedProvider:
    """Answers each send with the next scripted result: an exception to raise, or success."""

    name = "scripted"

    def __init__(self, *script: BaseException | None) -> None:
        self.script = list(script)
        self.sent: list[EmailMessage | SmsMessage] = []

    def _next(self, message: EmailMessage | SmsMessage) -> Receipt:
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append(message)
        return Receipt(self.name, f"id-{len(self.sent)}")

    def send_email(self, message: EmailMessage) -> Receipt:
        return self._next(message)

    def send_sms(self, message: SmsMessage) -> Receipt:
        return self._next(message)

    def close(self) -> None:
        pass


class EchoTemplates:
    """Renders a part as a fixed line naming what was asked; enough to test composing."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def render(self, name: str, part: str, language: str, data: Mapping[str, Any]) -> str:
        if self.fail:
            raise TemplateError("unexpected '}}'", template=f"{name}/{part}", line=3, column=7)
        return f"{part} of {name} in {language} for {len(data['mentions'])} mention(s)"


def mention_data(place_holders: Mapping[str, Any], *, from_name: str, service_name: str) -> dict[str, Any]:
    return {"mentions": list(place_holders.get("mentions", []))}


def make(
    ledger: Ledger, provider: Any, *, templates: Any = None, policy: RetryPolicy | None = None
) -> tuple[Dispatcher, list[str]]:
    queued: list[str] = []
    dispatcher = Dispatcher(
        ledger,
        composer=Composer(templates or EchoTemplates(), mention_data),
        email=provider,
        sms=provider,
        policy=policy or RetryPolicy(max_attempts=3, jitter=lambda low, high: 0.0),
        enqueue=lambda notification_id, label: queued.append(notification_id),
    )
    return dispatcher, queued


def test_accept_enqueues_once_and_delivery_writes_the_outbox(ledger: Ledger, tmp_path: Path) -> None:
    dispatcher, queued = make(ledger, OutboxProvider(tmp_path / "outbox"))
    event = parsed(sms())
    dispatcher.accept(event)
    dispatcher.accept(event)  # the duplicate is recorded once and queued once
    assert queued == [event.notification_id]
    outcome = dispatcher.deliver(event.notification_id)
    assert outcome.status is Status.SENT
    assert dispatcher.deliver(event.notification_id).status is None  # a redelivered task is a no-op
    written = json.loads((tmp_path / "outbox" / "sms" / f"{event.notification_id}.json").read_text())
    assert written["to"] == "+14155550199"


def test_transient_failures_retry_then_die_when_the_budget_is_spent(ledger: Ledger) -> None:
    provider = ScriptedProvider(
        RetryLater("503", provider="p"), RetryLater("503", provider="p"), RetryLater("503")
    )
    dispatcher, _ = make(ledger, provider)
    event = parsed(basic_email())
    dispatcher.accept(event)
    first = dispatcher.deliver(event.notification_id)
    assert first.status is Status.RETRYING and first.retry_in == pytest.approx(1.0)
    second = dispatcher.deliver(event.notification_id)
    assert second.status is Status.RETRYING and second.retry_in == pytest.approx(2.0)
    third = dispatcher.deliver(event.notification_id)
    assert third.status is Status.DEAD
    view = get_notification(ledger.engine, event.notification_id)
    assert (
        view is not None
        and view.attempts == 3
        and [a.outcome for a in view.history] == ["retry", "retry", "dead"]
    )


def test_retry_after_from_the_provider_is_honoured(ledger: Ledger) -> None:
    dispatcher, _ = make(ledger, ScriptedProvider(RetryLater("429", retry_after=42.0)))
    event = parsed(sms())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).retry_in == pytest.approx(42.0)


def test_permanent_refusal_fails_at_once_with_the_reason(ledger: Ledger) -> None:
    dispatcher, _ = make(
        ledger, ScriptedProvider(GiveUp("21211: invalid 'To' number", provider="twilio", code="21211"))
    )
    event = parsed(sms())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.FAILED
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.provider == "twilio" and "21211" in (view.error or "")


def test_misconfiguration_waits_long_and_rate_limits_do_not_burn_attempts(ledger: Ledger) -> None:
    dispatcher, _ = make(
        ledger, ScriptedProvider(ProviderMisconfigured("Invalid_Key"), RateLimited("wait", retry_after=0.5))
    )
    event = parsed(basic_email())
    dispatcher.accept(event)
    slow = dispatcher.deliver(event.notification_id)
    assert slow.status is Status.RETRYING and slow.retry_in is not None and slow.retry_in >= 900
    limited = dispatcher.deliver(event.notification_id)
    assert limited.retry_in == pytest.approx(0.5)
    view = get_notification(ledger.engine, event.notification_id)
    # Neither a bad key nor our own rate limit spends the notification's attempt budget.
    assert view is not None and view.attempts == 0


def test_misconfiguration_parks_the_row_and_never_makes_it_dead(ledger: Ledger) -> None:
    refusals = [ProviderMisconfigured("Invalid_Key", provider="mandrill", code="Invalid_Key")] * 6
    dispatcher, _ = make(ledger, ScriptedProvider(*refusals), policy=RetryPolicy(max_attempts=2, base=0.01))
    event = parsed(basic_email())
    dispatcher.accept(event)
    for _ in refusals:
        outcome = dispatcher.deliver(event.notification_id)
        assert outcome.status is Status.RETRYING and outcome.retry_in == pytest.approx(900.0)
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status is Status.RETRYING and view.attempts == 0
    assert "Invalid_Key" in (view.error or "")
    # Once the key is fixed, the parked row goes out on its next turn.
    assert dispatcher.deliver(event.notification_id).status is Status.SENT


def test_a_bug_in_our_code_fails_with_its_reason_and_is_not_retried_into_dead(ledger: Ledger) -> None:
    # Issue 13.5: an exception that is no provider's answer is not "the provider is down".
    provider = ScriptedProvider(UnicodeEncodeError("ascii", "x", 0, 1, "ordinal not in range(128)"))
    dispatcher, _ = make(ledger, provider)
    event = parsed(sms())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.FAILED
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status == "failed" and view.attempts == 1
    assert (view.error or "").startswith("UnicodeEncodeError:")
    assert [a.outcome for a in view.history] == ["failed"]
    assert provider.sent == []


def test_mentions_are_rendered_with_an_unsubscribe_header(ledger: Ledger) -> None:
    provider = ScriptedProvider()
    dispatcher, _ = make(ledger, provider)
    event = parsed(mention(mentions=2))
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.SENT
    message = provider.sent[0]
    assert isinstance(message, EmailMessage)
    assert message.subject == "subject of mention-notification in handlebars for 2 mention(s)"
    assert message.headers["List-Unsubscribe"] == "<https://app.example.com/unsub/hash1>"
    assert message.from_name == "Alerts" and message.to_address == "watcher@example.org"


def test_a_broken_template_fails_the_notification_and_nothing_is_sent(ledger: Ledger) -> None:
    provider = ScriptedProvider()
    dispatcher, _ = make(ledger, provider, templates=EchoTemplates(fail=True))
    event = parsed(mention())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.FAILED
    assert provider.sent == []
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and "mention-notification/subject:3:7" in (view.error or "")


def test_receive_classifies_raw_messages(ledger: Ledger) -> None:
    dispatcher, queued = make(ledger, ScriptedProvider())
    templates = frozenset({"mention-notification", "mention-notification-bulk"})
    good = json.dumps(sms()).encode()
    assert (
        dispatcher.receive(good, "application/json", "events.SMSNotification", templates=templates)
        is Intake.ACCEPTED
    )
    assert (
        dispatcher.receive(good, "application/json", "events.SMSNotification", templates=templates)
        is Intake.DUPLICATE
    )
    assert (
        dispatcher.receive(b"\x00garbage", "application/x-protobuf", "events.BasicEmail", templates=templates)
        is Intake.REJECTED
    )
    other = {
        "core": {"id": "x-1"},
        "data": {"@type": "type.googleapis.com/events.LoginFailed", "ip": "1.2.3.4"},
    }
    assert (
        dispatcher.receive(
            json.dumps(other).encode(), "application/json", "events.LoginFailed", templates=templates
        )
        is Intake.IGNORED
    )
    assert len(queued) == 1


def test_maybe_delivered_is_retried_by_default(ledger: Ledger) -> None:
    dispatcher, _ = make(ledger, ScriptedProvider(MaybeDelivered("read timeout", provider="mandrill")))
    event = parsed(basic_email())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.RETRYING


def test_maybe_delivered_becomes_unknown_when_duplicates_must_never_happen(ledger: Ledger) -> None:
    provider = ScriptedProvider(MaybeDelivered("read timeout", provider="mandrill"))
    dispatcher, _ = make(ledger, provider)
    dispatcher.on_maybe_delivered = "unknown"
    event = parsed(basic_email())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.UNKNOWN
    assert dispatcher.deliver(event.notification_id).status is None  # never resent on its own
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status is Status.UNKNOWN and "read timeout" in (view.error or "")


def test_a_rejected_event_keeps_its_channel_when_its_type_is_known(ledger: Ledger) -> None:
    dispatcher, _ = make(ledger, ScriptedProvider())
    event = sms(toNumber="12")
    body = json.dumps(event).encode()
    templates = frozenset({"mention-notification"})
    assert dispatcher.receive(body, "application/json", "events.SMSNotification", templates=templates) is (
        Intake.REJECTED
    )
    view = get_notification(ledger.engine, event["core"]["id"])
    assert view is not None and view.channel == "sms" and view.status is Status.REJECTED
