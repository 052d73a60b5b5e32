"""The use case's side of issue 15: suppression before a send, receipts waiting for the send's answer,
outcome events after each final status, and the receipt task's arguments and logs free of addresses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import structlog

from tests.factories import basic_email, parsed, sms
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer
from workers.compose import Composer
from workers.dispatch import Dispatcher
from workers.errors import LedgerUnavailable
from workers.events.status import STATUS_CHANGED, BusAnnouncer
from workers.events.status_pb2 import NotificationStatusChanged
from workers.ledger import Ledger, make_engine
from workers.ledger.queries import get_notification
from workers.ledger.receipts import ReceiptBook
from workers.ledger.suppressions import SuppressionCheck, Suppressions
from workers.messages import Channel, Status, StatusChange
from workers.providers.mandrill import REJECT_REASONS as MANDRILL_REJECT_REASONS
from workers.providers.mandrill import MandrillProvider
from workers.providers.mandrill_webhooks import REJECT_REASONS_SUPPRESSED
from workers.providers.outbox import OutboxProvider
from workers.providers.twilio import TwilioProvider
from workers.receipts import DeliveryReceipt, ReceiptEffect, RecipientKeys, SuppressionReason, recipient_key
from workers.rendering import TemplateStore, default_templates_dir, mention_template_data
from workers.retry import RetryPolicy

KEY = b"k" * 32


class Collected:
    """An announcer that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.changes: list[StatusChange] = []

    def announce(self, change: StatusChange) -> None:
        self.changes.append(change)


def make(
    ledger: Ledger, outbox: Path, mode: Literal["enforce", "record", "off"] = "enforce"
) -> tuple[Dispatcher, Collected]:
    announced = Collected()
    dispatcher = Dispatcher(
        ledger,
        composer=Composer(TemplateStore(default_templates_dir()), mention_template_data),
        email=OutboxProvider(outbox),
        sms=OutboxProvider(outbox),
        policy=RetryPolicy(max_attempts=3, jitter=lambda low, high: 0.0),
        enqueue=lambda notification_id, label: None,
        suppression=SuppressionCheck(Suppressions(ledger.engine), RecipientKeys(lambda: KEY)),
        suppression_mode=mode,
        receipts=ReceiptBook(ledger.engine),
        announcer=announced,
    )
    return dispatcher, announced


def sent_files(outbox: Path) -> list[Path]:
    return sorted(outbox.rglob("*.*")) if outbox.exists() else []


def suppress(ledger: Ledger, channel: Channel, recipient: str, reason: SuppressionReason) -> None:
    Suppressions(ledger.engine).add(channel, recipient_key(channel, recipient, KEY), reason, source="test")


def test_a_suppressed_recipient_fails_without_a_provider_call(ledger: Ledger, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    dispatcher, announced = make(ledger, outbox)
    # Another spelling of the same address: the hash is taken over the normalised form.
    suppress(ledger, Channel.EMAIL, "Person@EXAMPLE.org", SuppressionReason.HARD_BOUNCE)
    event = parsed(basic_email())
    dispatcher.accept(event)
    outcome = dispatcher.deliver(event.notification_id)
    assert outcome.status is Status.FAILED
    assert sent_files(outbox) == []
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.error == "suppressed: hard_bounce" and view.provider is None
    assert [(c.new, c.reason) for c in announced.changes] == [(Status.FAILED, "suppressed: hard_bounce")]


def test_a_stopped_number_fails_and_other_numbers_go_out(ledger: Ledger, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    dispatcher, _ = make(ledger, outbox)
    suppress(ledger, Channel.SMS, "+1 415 555 0199", SuppressionReason.STOP)
    stopped, other = parsed(sms()), parsed(sms(to_number="+14155550100"))
    for event in (stopped, other):
        dispatcher.accept(event)
    assert dispatcher.deliver(stopped.notification_id).status is Status.FAILED
    assert dispatcher.deliver(other.notification_id).status is Status.SENT
    assert [p.stem for p in sent_files(outbox)] == [other.notification_id]


def test_record_mode_sends_anyway(ledger: Ledger, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    dispatcher, _ = make(ledger, outbox, mode="record")
    suppress(ledger, Channel.EMAIL, "person@example.org", SuppressionReason.COMPLAINT)
    event = parsed(basic_email())
    dispatcher.accept(event)
    with structlog.testing.capture_logs() as logs:
        assert dispatcher.deliver(event.notification_id).status is Status.SENT
    assert len(sent_files(outbox)) == 1
    assert any(line["event"] == "deliver.suppressed_sent" for line in logs)


def test_off_mode_never_looks(ledger: Ledger, tmp_path: Path) -> None:
    dispatcher, _ = make(ledger, tmp_path / "outbox", mode="off")
    assert dispatcher.suppression is None
    suppress(ledger, Channel.EMAIL, "person@example.org", SuppressionReason.MANUAL)
    event = parsed(basic_email())
    dispatcher.accept(event)
    assert dispatcher.deliver(event.notification_id).status is Status.SENT


def test_a_receipt_that_beat_the_send_is_applied_when_it_is_recorded(ledger: Ledger, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    dispatcher, announced = make(ledger, outbox)
    event = parsed(basic_email())
    dispatcher.accept(event)
    # The outbox provider's message id is the file it writes: known before the send here.
    message_id = str((outbox / "email" / f"{event.notification_id}.eml").resolve())
    early = DeliveryReceipt(
        provider="outbox",
        provider_event_id="early-1",
        provider_message_id=message_id,
        channel=Channel.EMAIL,
        raw_status="delivered",
        effect=ReceiptEffect.DELIVERED,
        occurred_at=datetime.now(UTC),
    )
    assert dispatcher.record_receipts([early]).waiting == 1
    assert dispatcher.deliver(event.notification_id).status is Status.SENT
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status is Status.DELIVERED
    assert [(c.old, c.new) for c in announced.changes] == [
        (Status.SENDING, Status.SENT),
        (Status.SENT, Status.DELIVERED),
    ]


def test_outcome_events_carry_ids_and_statuses_only(ledger: Ledger, tmp_path: Path) -> None:
    published: list[tuple[bytes, str]] = []
    dispatcher, _ = make(ledger, tmp_path / "outbox")
    dispatcher.announcer = BusAnnouncer(lambda body, key: published.append((body, key)))
    event = parsed(sms())
    dispatcher.accept(event)
    dispatcher.deliver(event.notification_id)
    [(body, key)] = published
    assert key == STATUS_CHANGED == "events.NotificationStatusChanged"
    from workers.events.core_pb2 import VtEvent

    envelope = VtEvent.FromString(body)
    payload = NotificationStatusChanged()
    assert envelope.data.Unpack(payload)
    assert envelope.data.type_url == "type.googleapis.com/events.NotificationStatusChanged"
    assert (payload.notification_id, payload.event_id) == (event.notification_id, event.notification_id)
    assert (payload.old_status, payload.new_status, payload.channel) == ("sending", "sent", "sms")
    assert payload.event_type == "events.SMSNotification" and payload.provider == "outbox"
    assert envelope.core.id != event.notification_id
    assert b"14155550199" not in body and b"+1415" not in body


def test_a_publisher_that_fails_never_fails_the_delivery(ledger: Ledger, tmp_path: Path) -> None:
    def refuse(body: bytes, key: str) -> None:
        raise ConnectionError("broker away")

    dispatcher, _ = make(ledger, tmp_path / "outbox")
    dispatcher.announcer = BusAnnouncer(refuse)
    event = parsed(basic_email())
    dispatcher.accept(event)
    with structlog.testing.capture_logs() as logs:
        assert dispatcher.deliver(event.notification_id).status is Status.SENT
    assert [line["event"] for line in logs if line["event"].startswith("status_event")] == [
        "status_event.unpublished"
    ]


def test_the_sweeper_drops_unmatched_receipts_and_says_how_many(ledger: Ledger, tmp_path: Path) -> None:
    dispatcher, _ = make(ledger, tmp_path / "outbox")
    dispatcher.receipt_wait = 0.0
    orphan = DeliveryReceipt(
        "twilio", "ev-x", "SM-nobody", Channel.SMS, "delivered", ReceiptEffect.DELIVERED, datetime.now(UTC)
    )
    dispatcher.record_receipts([orphan])
    found = dispatcher.sweep(stuck_after=120, sending_timeout=600, retention_days=7)
    assert found["receipts_dropped"] == 1


@pytest.mark.parametrize("bad", [{"provider": "twilio"}, "not a dict", {**{"effect": "exploded"}}])
def test_receipt_task_arguments_hold_no_address_and_bad_items_are_skipped(
    bad: Any, ledger: Ledger, tmp_path: Path
) -> None:
    from workers import tasks

    receipt = DeliveryReceipt(
        "mandrill",
        "ev-1",
        "m-1",
        Channel.EMAIL,
        "hard_bounce",
        ReceiptEffect.BOUNCED,
        datetime.now(UTC),
        error_code="5.1.1",
        suppress=SuppressionReason.HARD_BOUNCE,
        recipient_key=recipient_key(Channel.EMAIL, "person@example.org", KEY),
    )
    arguments = json.dumps([[receipt.to_task(), bad], []])
    assert "person" not in arguments and "example.org" not in arguments
    with structlog.testing.capture_logs() as logs:
        items = tasks._values(json.loads(arguments)[0], DeliveryReceipt.from_task, "receipt")
    assert items == [receipt]
    [line] = [line for line in logs if line["event"] == "receipt.malformed"]
    assert line["index"] == 1
    assert "person@" not in json.dumps(logs, default=str)


# -- send-time sources of suppression: the provider's own refusal puts the recipient on the list ----


def with_providers(
    ledger: Ledger, email: Any, sms_provider: Any, mode: Literal["enforce", "record", "off"]
) -> Dispatcher:
    return Dispatcher(
        ledger,
        composer=Composer(TemplateStore(default_templates_dir()), mention_template_data),
        email=email,
        sms=sms_provider,
        policy=RetryPolicy(max_attempts=3, jitter=lambda low, high: 0.0),
        enqueue=lambda notification_id, label: None,
        suppression=SuppressionCheck(Suppressions(ledger.engine), RecipientKeys(lambda: KEY)),
        suppression_mode=mode,
        receipts=ReceiptBook(ledger.engine),
    )


@pytest.mark.parametrize("reject_reason", ["hard-bounce", "spam", "unsub"])
def test_a_mandrill_rejection_for_the_recipient_suppresses_them(
    ledger: Ledger, tmp_path: Path, reject_reason: str
) -> None:
    with MandrillServer(api_keys={"k"}) as server:
        mandrill = MandrillProvider("k", base_url=server.api_url)
        dispatcher = with_providers(ledger, mandrill, OutboxProvider(tmp_path), "enforce")
        server.reject_address("Person@Example.org", reject_reason)
        first, second = parsed(basic_email()), parsed(basic_email())
        dispatcher.accept(first)
        assert dispatcher.deliver(first.notification_id).status is Status.FAILED
        view = get_notification(ledger.engine, first.notification_id)
        assert view is not None and reject_reason in (view.error or "")
        key = recipient_key(Channel.EMAIL, "person@example.org", KEY)
        assert Suppressions(ledger.engine).is_suppressed(Channel.EMAIL, key) is SuppressionReason.REJECT
        # The next one to that address never reaches Mandrill.
        dispatcher.accept(second)
        calls = len(server.received)
        assert dispatcher.deliver(second.notification_id).status is Status.FAILED
        assert len(server.received) == calls
        view = get_notification(ledger.engine, second.notification_id)
        assert view is not None and view.error == "suppressed: reject"
        mandrill.close()


@pytest.mark.parametrize("reject_reason", ["soft-bounce", "invalid", "custom", "rule"])
def test_a_mandrill_rejection_about_the_sender_or_a_passing_state_lists_nobody(
    ledger: Ledger, tmp_path: Path, reject_reason: str
) -> None:
    with MandrillServer(api_keys={"k"}) as server:
        mandrill = MandrillProvider("k", base_url=server.api_url)
        dispatcher = with_providers(ledger, mandrill, OutboxProvider(tmp_path), "enforce")
        server.reject_address("person@example.org", reject_reason)
        event = parsed(basic_email())
        dispatcher.accept(event)
        assert dispatcher.deliver(event.notification_id).status in {Status.FAILED, Status.RETRYING}
        key = recipient_key(Channel.EMAIL, "person@example.org", KEY)
        assert Suppressions(ledger.engine).is_suppressed(Channel.EMAIL, key) is None
        mandrill.close()


@pytest.mark.parametrize(
    ("mode", "listed"),
    [("enforce", SuppressionReason.STOP), ("record", SuppressionReason.STOP), ("off", None)],
)
def test_a_twilio_stop_refusal_suppresses_the_number_unless_suppression_is_off(
    ledger: Ledger,
    tmp_path: Path,
    mode: Literal["enforce", "record", "off"],
    listed: SuppressionReason | None,
) -> None:
    sid, token = "AC" + "2" * 32, "token"
    with TwilioServer(sid, token) as server:
        twilio = TwilioProvider(sid, token, base_url=server.base_url)
        dispatcher = with_providers(ledger, OutboxProvider(tmp_path), twilio, mode)
        server.refuse_number("+14155550199", code=21610)
        event = parsed(sms())
        dispatcher.accept(event)
        with structlog.testing.capture_logs() as logs:
            assert dispatcher.deliver(event.notification_id).status is Status.FAILED
        key = recipient_key(Channel.SMS, "+14155550199", KEY)
        assert Suppressions(ledger.engine).is_suppressed(Channel.SMS, key) is listed
        assert "+14155550199" not in json.dumps(logs, default=str)
        twilio.close()


def test_a_list_write_that_fails_still_fails_the_notification(ledger: Ledger, tmp_path: Path) -> None:
    class Away:
        """A gate whose database is away for writes, as during an outage."""

        def reason(self, channel: Channel, recipient: str) -> SuppressionReason | None:
            return None

        def add(self, channel: Channel, recipient: str, reason: SuppressionReason, *, source: str) -> bool:
            raise LedgerUnavailable("suppressions: OperationalError")

    sid, token = "AC" + "3" * 32, "token"
    with TwilioServer(sid, token) as server:
        twilio = TwilioProvider(sid, token, base_url=server.base_url)
        dispatcher = with_providers(ledger, OutboxProvider(tmp_path), twilio, "enforce")
        dispatcher.suppression = Away()
        server.refuse_number("+14155550199", code=21610)
        event = parsed(sms())
        dispatcher.accept(event)
        with structlog.testing.capture_logs() as logs:
            assert dispatcher.deliver(event.notification_id).status is Status.FAILED
        assert any(line["event"] == "deliver.suppress_unrecorded" for line in logs)
        twilio.close()


def test_the_send_time_and_webhook_reject_reasons_agree() -> None:
    listed = {reason for reason, rule in MANDRILL_REJECT_REASONS.items() if rule.suppress is not None}
    assert listed == REJECT_REASONS_SUPPRESSED


def test_a_suppression_list_that_is_away_retries_the_attempt_without_sending(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The list's database refusing connections is a transient failure: nothing is sent unchecked,
    and the notification is neither failed nor lost (it waits in `retrying`)."""
    outbox = tmp_path / "outbox"
    dispatcher, _ = make(ledger, outbox)
    away = make_engine("postgresql://postgres@127.0.0.1:1/test")  # nothing listens on port 1
    dispatcher.suppression = SuppressionCheck(Suppressions(away), RecipientKeys(lambda: KEY))
    dispatcher.suppression_outage_wait = 0.5  # it waits out a blip first (30 s by default)
    event = parsed(basic_email())
    dispatcher.accept(event)
    outcome = dispatcher.deliver(event.notification_id)
    away.dispose()
    assert outcome.status is Status.RETRYING
    assert sent_files(outbox) == []
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status is Status.RETRYING
    assert view.error is not None and "suppression list unreachable" in view.error
