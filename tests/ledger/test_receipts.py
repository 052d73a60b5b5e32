"""Receipts in the ledger on SQLite and PostgreSQL: replays are no-ops, order never drags a status back,
receipts that beat the send's answer are matched later, and unmatched ones are dropped after the wait."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.clock import Clock
from tests.factories import basic_email, parsed, sms
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import get_notification
from workers.ledger.receipts import ReceiptBook
from workers.ledger.suppressions import Suppressions
from workers.messages import Channel, Receipt, Status
from workers.receipts import DeliveryReceipt, ReceiptEffect, SuppressionChange, SuppressionReason

_events = itertools.count(1)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 8, 12, 0, tzinfo=UTC))


@pytest.fixture
def engine_url(database_url: str) -> Iterator[str]:
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    yield database_url


@pytest.fixture
def ledger(engine_url: str, clock: Clock) -> Iterator[Ledger]:
    engine = make_engine(engine_url)
    yield Ledger(engine, clock=clock)
    engine.dispose()


@pytest.fixture
def book(ledger: Ledger, clock: Clock) -> ReceiptBook:
    return ReceiptBook(ledger.engine, clock=clock)


def sent(ledger: Ledger, message_id: str, *, provider: str = "mandrill", event: dict | None = None) -> str:
    """A notification the provider accepted as ``message_id``."""
    item = parsed(event or basic_email())
    ledger.accept(item, queued=True)
    claim = ledger.claim(item.notification_id)
    assert claim is not None
    assert ledger.record_sent(claim, Receipt(provider, message_id)).moved
    return item.notification_id


def receipt(
    message_id: str,
    effect: ReceiptEffect,
    raw: str,
    *,
    minute: int = 0,
    event_id: str | None = None,
    provider: str = "mandrill",
    channel: Channel = Channel.EMAIL,
    **extra: object,
) -> DeliveryReceipt:
    return DeliveryReceipt(
        provider=provider,
        provider_event_id=event_id or f"evt-{next(_events)}",
        provider_message_id=message_id,
        channel=channel,
        raw_status=raw,
        effect=effect,
        occurred_at=datetime(2026, 12, 8, 12, minute, tzinfo=UTC),
        **extra,  # type: ignore[arg-type]
    )


def status(ledger: Ledger, notification_id: str) -> Status:
    view = get_notification(ledger.engine, notification_id)
    assert view is not None
    return view.status


def test_delivered_moves_sent_and_is_kept(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "m-1")
    result = book.record([receipt("m-1", ReceiptEffect.DELIVERED, "delivered")])
    assert (result.recorded, result.matched, result.waiting) == (1, 1, 0)
    assert status(ledger, nid) is Status.DELIVERED
    [moved] = result.moved
    assert (moved.change.old, moved.change.new, moved.change.notification_id) == (
        Status.SENT,
        Status.DELIVERED,
        nid,
    )
    assert moved.sent_at is not None
    assert [(v.raw_status, v.effect) for v in book.of(nid)] == [("delivered", "delivered")]


def test_a_replay_is_a_no_op(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "m-2")
    bounce = receipt("m-2", ReceiptEffect.BOUNCED, "hard_bounce", event_id="same")
    first = book.record([bounce])
    again = book.record([bounce, bounce])
    assert (first.recorded, first.duplicates) == (1, 0)
    assert (again.recorded, again.duplicates, again.moved) == (0, 1, ())
    assert status(ledger, nid) is Status.BOUNCED
    assert len(book.of(nid)) == 1


def test_delivered_after_bounced_stays_bounced(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "m-3")
    book.record([receipt("m-3", ReceiptEffect.BOUNCED, "hard_bounce", minute=5)])
    late = book.record([receipt("m-3", ReceiptEffect.DELIVERED, "delivered", minute=1)])
    assert late.recorded == 1 and late.moved == ()
    assert status(ledger, nid) is Status.BOUNCED
    # Both are kept, listed in the order they happened.
    assert [v.raw_status for v in book.of(nid)] == ["delivered", "hard_bounce"]


def test_delivered_then_bounced_is_bounced(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "m-4")
    book.record([receipt("m-4", ReceiptEffect.DELIVERED, "delivered", minute=1)])
    result = book.record([receipt("m-4", ReceiptEffect.BOUNCED, "undelivered", minute=2, error_code="30005")])
    assert status(ledger, nid) is Status.BOUNCED
    assert [(m.change.old, m.change.new) for m in result.moved] == [(Status.DELIVERED, Status.BOUNCED)]
    view = get_notification(ledger.engine, nid)
    assert view is not None and view.error == "mandrill undelivered [code 30005]"


def test_one_batch_applies_in_the_order_things_happened(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "m-5")
    result = book.record(
        [
            receipt("m-5", ReceiptEffect.COMPLAINED, "spam", minute=9),
            receipt("m-5", ReceiptEffect.DELIVERED, "delivered", minute=1),
        ]
    )
    assert [m.change.new for m in result.moved] == [Status.DELIVERED, Status.COMPLAINED]
    assert status(ledger, nid) is Status.COMPLAINED
    # Nothing leaves `complained`.
    book.record([receipt("m-5", ReceiptEffect.BOUNCED, "hard_bounce", minute=10)])
    assert status(ledger, nid) is Status.COMPLAINED


def test_soft_bounce_and_deferral_leave_sent(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "m-6")
    result = book.record(
        [
            receipt("m-6", ReceiptEffect.NONE, "soft_bounce", minute=1),
            receipt("m-6", ReceiptEffect.NONE, "deferral", minute=2),
        ]
    )
    assert (result.recorded, result.matched, result.moved) == (2, 2, ())
    assert status(ledger, nid) is Status.SENT


def test_receipt_before_the_send_is_matched_when_the_id_appears(ledger: Ledger, book: ReceiptBook) -> None:
    early = book.record([receipt("SM-early", ReceiptEffect.DELIVERED, "delivered", provider="twilio")])
    assert (early.recorded, early.matched, early.waiting) == (1, 0, 1)
    nid = sent(ledger, "SM-early", provider="twilio", event=sms())
    assert status(ledger, nid) is Status.SENT
    moved = book.apply_waiting("twilio", "SM-early")
    assert [m.change.new for m in moved] == [Status.DELIVERED]
    assert status(ledger, nid) is Status.DELIVERED
    assert book.apply_waiting("twilio", "SM-early") == []  # applied once


def test_the_sweeper_matches_what_the_dispatcher_missed(ledger: Ledger, book: ReceiptBook) -> None:
    book.record([receipt("m-late", ReceiptEffect.BOUNCED, "hard_bounce")])
    nid = sent(ledger, "m-late")
    moved = book.match_waiting()
    assert [(m.change.notification_id, m.change.new) for m in moved] == [(nid, Status.BOUNCED)]
    assert book.match_waiting() == []


def test_another_providers_id_does_not_match(ledger: Ledger, book: ReceiptBook) -> None:
    nid = sent(ledger, "shared-id", provider="mandrill")
    result = book.record([receipt("shared-id", ReceiptEffect.BOUNCED, "undelivered", provider="twilio")])
    assert result.waiting == 1
    assert status(ledger, nid) is Status.SENT


def test_unmatched_receipts_are_dropped_after_the_wait(
    ledger: Ledger, book: ReceiptBook, clock: Clock
) -> None:
    book.record([receipt("never-sent", ReceiptEffect.DELIVERED, "delivered")])
    clock.advance(599)
    assert book.drop_unmatched(older_than=600) == 0
    clock.advance(2)
    assert book.drop_unmatched(older_than=600) == 1
    assert book.drop_unmatched(older_than=600) == 0


def test_matched_receipts_are_never_dropped(ledger: Ledger, book: ReceiptBook, clock: Clock) -> None:
    nid = sent(ledger, "m-kept")
    book.record([receipt("m-kept", ReceiptEffect.DELIVERED, "delivered")])
    clock.advance(86400)
    assert book.drop_unmatched(older_than=600) == 0
    assert len(book.of(nid)) == 1


def test_unknown_row_moves_on_a_receipt(ledger: Ledger, book: ReceiptBook, clock: Clock) -> None:
    nid = sent(ledger, "m-u")
    # A forced resend whose attempt went silent: the old message's receipt still proves acceptance.
    ledger.resend(nid, force=True)
    assert ledger.claim(nid) is not None
    clock.advance(700)
    assert ledger.expire_sending(older_than=600) == [nid]
    book.record([receipt("m-u", ReceiptEffect.DELIVERED, "delivered")])
    assert status(ledger, nid) is Status.DELIVERED


def test_receipts_put_recipients_on_the_list(ledger: Ledger, book: ReceiptBook) -> None:
    sent(ledger, "m-7")
    suppressions = Suppressions(ledger.engine)
    result = book.record(
        [
            receipt(
                "m-7",
                ReceiptEffect.BOUNCED,
                "hard_bounce",
                event_id="hb-1",
                suppress=SuppressionReason.HARD_BOUNCE,
                recipient_key="k" * 64,
            )
        ]
    )
    assert result.suppressed == 1
    assert suppressions.is_suppressed(Channel.EMAIL, "k" * 64) is SuppressionReason.HARD_BOUNCE
    assert suppressions.is_suppressed(Channel.SMS, "k" * 64) is None


def test_list_changes_add_and_remove_and_replays_change_nothing(ledger: Ledger, book: ReceiptBook) -> None:
    suppressions = Suppressions(ledger.engine)
    at = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    add = SuppressionChange(
        "mandrill", "bl-add", Channel.EMAIL, "a" * 64, SuppressionReason.BLACKLIST, True, at
    )
    remove = SuppressionChange(
        "mandrill",
        "bl-rm",
        Channel.EMAIL,
        "a" * 64,
        SuppressionReason.BLACKLIST,
        False,
        at + timedelta(minutes=1),
    )
    assert book.record([], [add]).suppressed == 1
    assert book.record([], [remove]).unsuppressed == 1
    replay = book.record([], [add])
    assert (replay.recorded, replay.duplicates, replay.suppressed) == (0, 1, 0)
    assert suppressions.is_suppressed(Channel.EMAIL, "a" * 64) is None
