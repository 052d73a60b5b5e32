"""What one delivery asks of the database, on SQLite and PostgreSQL: the suppression list's answer
comes with the claim, and the look for receipts that beat the send comes with the `sent` write.

Statements are counted as the driver sees them (``tests.driver_log``); BEGIN and COMMIT are not
statements there, so the counts are the ledger's own writes and reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
import structlog
from sqlalchemy import Engine, update

from tests.driver_log import driver_statements
from tests.factories import basic_email, mention, parsed, sms
from workers.compose import Composer
from workers.dispatch import Dispatcher, NullObserver
from workers.ledger import Ledger
from workers.ledger.models import Notification
from workers.ledger.queries import get_notification
from workers.ledger.receipts import ReceiptBook
from workers.ledger.suppressions import SuppressionCheck, Suppressions
from workers.messages import Channel, Status
from workers.providers.outbox import OutboxProvider
from workers.receipts import DeliveryReceipt, ReceiptEffect, RecipientKeys, SuppressionReason, recipient_key
from workers.rendering import TemplateStore, default_templates_dir, mention_template_data
from workers.retry import RetryPolicy

KEY = b"r" * 32
# The separate lookups the folded statements replace, as each starts.
LIST_LOOKUP = "SELECT suppressions.reason"
WAITING_LOOKUP = "SELECT receipts.provider"


class Counting(NullObserver):
    """An observer that counts the suppressed recipients it hears of."""

    def __init__(self) -> None:
        self.suppressed_seen: list[tuple[str, str]] = []

    def suppressed(self, channel: str, mode: str) -> None:
        self.suppressed_seen.append((channel, mode))


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def keyed(engine: Engine) -> Ledger:
    return Ledger(engine, recipient_keys=RecipientKeys(lambda: KEY))


def make(
    ledger: Ledger,
    outbox: Path,
    mode: Literal["enforce", "record", "off"] = "enforce",
    observer: Counting | None = None,
) -> Dispatcher:
    return Dispatcher(
        ledger,
        composer=Composer(TemplateStore(default_templates_dir()), mention_template_data),
        email=OutboxProvider(outbox),
        sms=OutboxProvider(outbox),
        policy=RetryPolicy(max_attempts=3, jitter=lambda low, high: 0.0),
        enqueue=lambda notification_id, label: None,
        observer=observer,
        suppression=SuppressionCheck(Suppressions(ledger.engine), RecipientKeys(lambda: KEY)),
        suppression_mode=mode,
        receipts=ReceiptBook(ledger.engine),
    )


def suppress(engine: Engine, channel: Channel, recipient: str, reason: SuppressionReason) -> None:
    Suppressions(engine).add(channel, recipient_key(channel, recipient, KEY), reason, source="test")


def per_delivery(engine: Engine) -> int:
    """A claim and one outcome: one statement each on PostgreSQL's fast paths; on SQLite each is
    the row's write and its attempt's."""
    return 2 if engine.dialect.name == "postgresql" else 4


@pytest.mark.parametrize(
    "payload",
    [
        basic_email(to_address="  Ana.Person@Straße.EXAMPLE\t"),
        mention(toEmail="Watcher@BÜCHER.example"),
        sms(toNumber=" +14155550199 "),
    ],
    ids=["basic", "mention", "sms"],
)
def test_intake_keys_the_recipient_the_composer_addresses(payload: dict[str, object]) -> None:
    """The key kept at intake must be the key of the recipient the send goes to: the composer reads
    the same validated payload field that intake took ``ParsedEvent.recipient`` from."""
    event = parsed(payload)
    composer = Composer(TemplateStore(default_templates_dir()), mention_template_data)
    if event.channel is Channel.SMS:
        addressed = composer.sms(event.notification_id, event.payload).to_number
    else:
        addressed = composer.email(event.notification_id, event.event_type, event.payload).to_address
    assert addressed == event.recipient
    keys = RecipientKeys(lambda: KEY)
    assert keys.key_of(event.channel, addressed) == keys.key_of(event.channel, event.recipient)


def test_a_suppressed_recipient_is_found_by_the_claim_with_no_statement_of_its_own(
    engine: Engine, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    dispatcher = make(keyed(engine), outbox)
    # Another spelling of the same address: intake hashed the normalised form, as the list does.
    suppress(engine, Channel.EMAIL, "Person@EXAMPLE.org", SuppressionReason.HARD_BOUNCE)
    other = parsed(basic_email(to_address="someone.else@example.org"))
    listed = parsed(basic_email())
    dispatcher.accept_many([listed, other])
    seen = driver_statements(engine)
    outcome = dispatcher.deliver(listed.notification_id)
    assert outcome.status is Status.FAILED and outcome.reason == "suppressed: hard_bounce"
    assert len(seen) == per_delivery(engine)
    assert not [s for s in seen if s.startswith(LIST_LOOKUP)]
    seen.clear()
    # Not on the list: sent, and the check cost nothing either.
    assert dispatcher.deliver(other.notification_id).status is Status.SENT
    assert len(seen) == per_delivery(engine)
    assert [p.stem for p in outbox.rglob("*.eml")] == [other.notification_id]


def test_a_row_without_a_recipient_key_is_looked_up_apart(engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    dispatcher = make(keyed(engine), outbox)
    suppress(engine, Channel.SMS, "+14155550199", SuppressionReason.STOP)
    # Accepted by a ledger without the key (as rows from before migration 0004 were): no key kept.
    stopped, other = parsed(sms()), parsed(sms(to_number="+14155550100"))
    Ledger(engine).accept_many([stopped, other], queued=True)
    with engine.connect() as conn:
        keys = conn.execute(Notification.__table__.select().with_only_columns(Notification.recipient_key))
        assert [row.recipient_key for row in keys] == [None, None]
    seen = driver_statements(engine)
    assert dispatcher.deliver(stopped.notification_id).status is Status.FAILED
    assert len([s for s in seen if s.startswith(LIST_LOOKUP)]) == 1
    assert len(seen) == per_delivery(engine) + 1
    assert dispatcher.deliver(other.notification_id).status is Status.SENT
    assert len([s for s in seen if s.startswith(LIST_LOOKUP)]) == 2


def test_a_row_whose_key_was_cleared_falls_back_too(engine: Engine, tmp_path: Path) -> None:
    dispatcher = make(keyed(engine), tmp_path / "outbox")
    suppress(engine, Channel.EMAIL, "person@example.org", SuppressionReason.COMPLAINT)
    listed = parsed(basic_email())
    dispatcher.accept(listed)
    with engine.begin() as conn:
        conn.execute(update(Notification).values(recipient_key=None))
    seen = driver_statements(engine)
    outcome = dispatcher.deliver(listed.notification_id)
    assert outcome.status is Status.FAILED and outcome.reason == "suppressed: complaint"
    assert len([s for s in seen if s.startswith(LIST_LOOKUP)]) == 1


def test_record_mode_sends_and_counts_what_the_claim_found(engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    observer = Counting()
    dispatcher = make(keyed(engine), outbox, mode="record", observer=observer)
    suppress(engine, Channel.SMS, "+14155550199", SuppressionReason.STOP)
    text = parsed(sms())
    dispatcher.accept(text)
    seen = driver_statements(engine)
    with structlog.testing.capture_logs() as logs:
        assert dispatcher.deliver(text.notification_id).status is Status.SENT
    assert observer.suppressed_seen == [("sms", "record")]
    assert any(line["event"] == "deliver.suppressed_sent" for line in logs)
    assert not [s for s in seen if s.startswith(LIST_LOOKUP)]
    assert len(list(outbox.rglob("*.json"))) == 1


def test_off_mode_sends_to_a_listed_recipient_without_a_lookup(engine: Engine, tmp_path: Path) -> None:
    observer = Counting()
    dispatcher = make(Ledger(engine), tmp_path / "outbox", mode="off", observer=observer)
    suppress(engine, Channel.EMAIL, "person@example.org", SuppressionReason.MANUAL)
    listed = parsed(basic_email())
    dispatcher.accept(listed)
    seen = driver_statements(engine)
    assert dispatcher.deliver(listed.notification_id).status is Status.SENT
    assert not [s for s in seen if s.startswith(LIST_LOOKUP)]
    assert observer.suppressed_seen == []


def test_a_receipt_that_beat_the_send_is_applied_after_the_folded_sent_write(
    engine: Engine, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    dispatcher = make(keyed(engine), outbox)
    email = parsed(basic_email())
    dispatcher.accept(email)
    # The outbox provider's message id is the file it writes: known before the send here.
    message_id = str((outbox / "email" / f"{email.notification_id}.eml").resolve())
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
    outcome = dispatcher.deliver(email.notification_id)
    assert outcome.status is Status.SENT and outcome.receipts_waiting
    view = get_notification(engine, email.notification_id)
    assert view is not None and view.status is Status.DELIVERED
    assert [r.provider_event_id for r in ReceiptBook(engine).of(email.notification_id)] == ["early-1"]


def test_no_look_for_waiting_receipts_when_none_wait(engine: Engine, tmp_path: Path) -> None:
    dispatcher = make(keyed(engine), tmp_path / "outbox")
    text = parsed(sms())
    dispatcher.accept(text)
    seen = driver_statements(engine)
    outcome = dispatcher.deliver(text.notification_id)
    assert outcome.status is Status.SENT and not outcome.receipts_waiting
    assert not [s for s in seen if s.startswith(WAITING_LOOKUP)]
    assert len(seen) == per_delivery(engine)
