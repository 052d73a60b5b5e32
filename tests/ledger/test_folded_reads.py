"""Reads that ride on the ledger's writes, on SQLite and PostgreSQL and on every path: the recipient's
key kept at intake, the suppression list's answer in the claim, waiting receipts in the `sent` write."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from tests.clock import Clock
from tests.factories import basic_email, mention, parsed, sms
from workers.errors import RetryLater
from workers.ledger import FastPath, Ledger, SentWrite
from workers.ledger.models import Notification
from workers.ledger.receipts import ReceiptBook
from workers.ledger.suppressions import Suppressions
from workers.messages import Channel, Receipt, Status
from workers.receipts import DeliveryReceipt, ReceiptEffect, RecipientKeys, SuppressionReason, recipient_key

KEY = b"f" * 32
PATHS = {"plain": frozenset[FastPath](), "fast": frozenset(FastPath)}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 3, 12, 0, tzinfo=UTC))


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


@pytest.fixture(params=sorted(PATHS))
def ledger(request: pytest.FixtureRequest, engine: Engine, clock: Clock) -> Ledger:
    """A keyed ledger on the plain path and, on PostgreSQL, on its fast paths (SQLite has only one)."""
    return Ledger(
        engine, clock=clock, fast_paths=PATHS[request.param], recipient_keys=RecipientKeys(lambda: KEY)
    )


def kept_keys(engine: Engine) -> dict[str, str | None]:
    n = Notification
    with engine.connect() as conn:
        return {row.id: row.recipient_key for row in conn.execute(select(n.id, n.recipient_key))}


def test_intake_keeps_the_key_the_list_knows_the_recipient_by(ledger: Ledger, engine: Engine) -> None:
    email, text, mentioned = parsed(basic_email()), parsed(sms()), parsed(mention())
    # Validation keeps an address the hash cannot spell out of intake; should one get through, the
    # row is kept without a key (and its send looks the recipient up apart).
    odd = dataclasses.replace(parsed(basic_email("evt-odd")), notification_id="odd-1", recipient="no address")
    ledger.accept_many([email, text, mentioned, odd], queued=True)
    assert kept_keys(engine) == {
        email.notification_id: recipient_key(Channel.EMAIL, "Person@Example.org", KEY),
        text.notification_id: recipient_key(Channel.SMS, "+1 415 555 0199", KEY),
        mentioned.notification_id: recipient_key(Channel.EMAIL, mentioned.payload["to_email"], KEY),
        "odd-1": None,
    }


def test_a_ledger_without_the_key_keeps_none(engine: Engine) -> None:
    ledger = Ledger(engine)
    email = parsed(basic_email())
    ledger.accept(email, queued=True)
    assert kept_keys(engine) == {email.notification_id: None}
    claim = ledger.claim(email.notification_id)
    assert claim is not None and (claim.keyed, claim.suppressed) == (False, None)


def test_the_claim_answers_for_the_suppression_list(ledger: Ledger, engine: Engine) -> None:
    listed, other, text = (
        parsed(basic_email()),
        parsed(basic_email("evt-2", to_address="b@example.org")),
        parsed(sms()),
    )
    ledger.accept_many([listed, other, text], queued=True)
    key = recipient_key(Channel.EMAIL, "person@example.org", KEY)
    Suppressions(engine).add(Channel.EMAIL, key, SuppressionReason.UNSUBSCRIBE, source="test")
    # The same hash on the other channel's list says nothing about this channel.
    Suppressions(engine).add(Channel.SMS, key, SuppressionReason.STOP, source="test")
    claims = [ledger.claim(event.notification_id) for event in (listed, other, text)]
    assert [(c.keyed, c.suppressed) if c else None for c in claims] == [
        (True, SuppressionReason.UNSUBSCRIBE),
        (True, None),
        (True, None),
    ]


def test_a_claim_taken_back_after_a_lost_answer_says_the_same(ledger: Ledger, engine: Engine) -> None:
    text = parsed(sms())
    ledger.accept(text, queued=True)
    key = recipient_key(Channel.SMS, "+14155550199", KEY)
    Suppressions(engine).add(Channel.SMS, key, SuppressionReason.STOP, source="test")
    first = ledger.claim(text.notification_id, token="lost-answer-03")
    again = ledger.claim(text.notification_id, token="lost-answer-03")
    assert first is not None and first.suppressed is SuppressionReason.STOP and first.keyed
    assert again == first


def test_the_sent_write_tells_whether_receipts_wait_for_its_message_id(
    ledger: Ledger, engine: Engine, clock: Clock
) -> None:
    book = ReceiptBook(engine, clock=clock)
    early = DeliveryReceipt(
        provider="twilio",
        provider_event_id="ev-early",
        provider_message_id="SM-early",
        channel=Channel.SMS,
        raw_status="delivered",
        effect=ReceiptEffect.DELIVERED,
        occurred_at=clock(),
    )
    # The same message id from another provider is another message.
    elsewhere = dataclasses.replace(
        early, provider="mandrill", provider_event_id="ev-m", channel=Channel.EMAIL
    )
    assert book.record([early, elsewhere]).waiting == 2
    waited, alone, late = parsed(sms()), parsed(sms("evt-2")), parsed(sms("evt-3"))
    ledger.accept_many([waited, alone, late], queued=True)

    claim = ledger.claim(waited.notification_id)
    assert claim is not None
    assert ledger.record_sent(claim, Receipt("twilio", "SM-early")) == SentWrite(
        moved=True, receipts_waiting=True
    )
    claim = ledger.claim(alone.notification_id)
    assert claim is not None
    assert ledger.record_sent(claim, Receipt("twilio", "SM-alone")) == SentWrite(
        moved=True, receipts_waiting=False
    )
    # Applied receipts no longer wait: their row has them.
    assert [m.change.new for m in book.apply_waiting("twilio", "SM-early")] == [Status.DELIVERED]
    claim = ledger.claim(late.notification_id)
    assert claim is not None
    assert ledger.record_retry(
        claim, RetryLater("busy"), provider="twilio", next_attempt_at=clock() + timedelta(1)
    )
    # An answer for a row that moved on moves nothing, and looks for nothing.
    assert ledger.record_sent(claim, Receipt("mandrill", "SM-early")) == SentWrite(
        moved=False, receipts_waiting=False
    )


def test_retention_purges_the_key_with_the_recipient(ledger: Ledger, engine: Engine, clock: Clock) -> None:
    text = parsed(sms())
    ledger.accept(text, queued=True)
    claim = ledger.claim(text.notification_id)
    assert claim is not None and ledger.record_sent(claim, Receipt("twilio", "SM-1")).moved
    clock.advance(31 * 86400)
    assert ledger.purge_personal_data(older_than_days=30) == 1
    assert kept_keys(engine) == {text.notification_id: None}
    assert ledger.status_of(text.notification_id) is Status.SENT
