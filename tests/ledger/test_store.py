"""The ledger's state machine on SQLite and PostgreSQL: idempotent accept, one claim wins, forward only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.clock import Clock
from tests.factories import basic_email, parsed, sms
from workers.errors import GiveUp, RetryLater
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import get_notification
from workers.ledger.store import DiscardResult, ResendResult
from workers.messages import Receipt, Status


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))


@pytest.fixture
def ledger(database_url: str, clock: Clock) -> Iterator[Ledger]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield Ledger(engine, clock=clock)
    engine.dispose()


def status(ledger: Ledger, notification_id: str) -> Status:
    view = get_notification(ledger.engine, notification_id)
    assert view is not None
    return view.status


def test_accept_is_idempotent(ledger: Ledger) -> None:
    event = parsed(basic_email())
    first = ledger.accept(event)
    second = ledger.accept(event)
    assert (first.created, second.created) == (True, False)
    assert second.status is Status.ACCEPTED
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.recipient == "person@example.org"


def test_one_claim_wins(ledger: Ledger) -> None:
    event = parsed(sms())
    ledger.accept(event)
    assert ledger.mark_queued(event.notification_id)
    first = ledger.claim(event.notification_id)
    second = ledger.claim(event.notification_id)
    assert first is not None and second is None
    assert first.payload["to_number"] == "+14155550199"
    assert status(ledger, event.notification_id) is Status.SENDING


def test_concurrent_claims_let_exactly_one_through(ledger: Ledger) -> None:
    events = [parsed(sms()) for _ in range(20)]
    for event in events:
        ledger.accept(event)
    wins: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        for event in events:
            claim = ledger.claim(event.notification_id)
            if claim is not None:
                with lock:
                    wins.append(claim.notification_id)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == sorted(e.notification_id for e in events)


def test_outcomes_only_move_forward(ledger: Ledger) -> None:
    event = parsed(basic_email())
    ledger.accept(event)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    assert ledger.record_sent(claim, Receipt("outbox", "m-1")).moved
    # A duplicate or late outcome for the same attempt cannot move a sent row.
    assert not ledger.record_failed(claim, GiveUp("late"), provider="outbox")
    assert not ledger.record_retry(
        claim, RetryLater("late"), provider="outbox", next_attempt_at=ledger.clock()
    )
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None
    assert (view.status, view.provider_message_id, view.attempts) == (Status.SENT, "m-1", 1)
    assert [a.outcome for a in view.history] == ["sent"]
    assert ledger.claim(event.notification_id) is None


def test_retry_then_claim_again_counts_attempts(ledger: Ledger, clock: Clock) -> None:
    event = parsed(sms())
    ledger.accept(event)
    claim = ledger.claim(event.notification_id)
    assert claim is not None and claim.attempt == 1
    ledger.record_retry(
        claim, RetryLater("503"), provider="twilio", next_attempt_at=clock() + timedelta(seconds=30)
    )
    assert status(ledger, event.notification_id) is Status.RETRYING
    assert ledger.due_for_enqueue(stuck_after=60) == []  # not due yet
    clock.advance(31)
    assert ledger.due_for_enqueue(stuck_after=60) == [event.notification_id]
    assert ledger.due_for_enqueue(stuck_after=60) == []  # touched: not picked twice
    again = ledger.claim(event.notification_id)
    assert again is not None and again.attempt == 2
    # The old claim's token no longer proves anything.
    assert not ledger.record_sent(claim, Receipt("twilio", "SM-old")).moved
    assert ledger.record_sent(again, Receipt("twilio", "SM-new")).moved
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.provider_message_id == "SM-new"
    assert [a.outcome for a in view.history] == ["retry", "sent"]


def test_uncounted_retry_gives_the_attempt_back(ledger: Ledger, clock: Clock) -> None:
    event = parsed(sms())
    ledger.accept(event)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    ledger.record_retry(claim, RetryLater("rate"), provider=None, next_attempt_at=clock(), counted=False)
    again = ledger.claim(event.notification_id)
    assert again is not None and again.attempt == 1


def test_stuck_rows_are_requeued_and_silent_senders_become_unknown(ledger: Ledger, clock: Clock) -> None:
    queued, sending = parsed(sms()), parsed(basic_email())
    ledger.accept(queued)
    ledger.mark_queued(queued.notification_id)
    ledger.accept(sending)
    claim = ledger.claim(sending.notification_id)
    assert claim is not None
    clock.advance(130)
    assert ledger.due_for_enqueue(stuck_after=120) == [queued.notification_id]
    assert ledger.expire_sending(older_than=600) == []
    clock.advance(600)
    assert ledger.expire_sending(older_than=600) == [sending.notification_id]
    assert status(ledger, sending.notification_id) is Status.UNKNOWN
    assert ledger.claim(sending.notification_id) is None  # never resent on its own
    # The presumed-dead worker reports after all: what it heard is the truth.
    assert ledger.record_sent(claim, Receipt("outbox", "late-but-true")).moved
    assert status(ledger, sending.notification_id) is Status.SENT


def test_a_late_outcome_is_written_in_the_attempt_history_but_moves_nothing(
    ledger: Ledger, clock: Clock
) -> None:
    event = parsed(sms())
    ledger.accept(event)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    clock.advance(700)
    assert ledger.expire_sending(older_than=600) == [event.notification_id]
    # Only a `sending` row may go to `retrying`: the row stays `unknown`, the attempt says why.
    assert not ledger.record_retry(claim, RetryLater("503"), provider="twilio", next_attempt_at=clock())
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status is Status.UNKNOWN
    [attempt] = view.history
    assert (attempt.outcome, attempt.provider, attempt.error_class) == (
        "retry (late)",
        "twilio",
        "RetryLater",
    )
    assert attempt.finished_at == clock()


def test_a_claim_records_its_attempt(ledger: Ledger, clock: Clock) -> None:
    event = parsed(basic_email())
    ledger.accept(event, queued=True)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    assert (claim.channel.value, claim.event_type, claim.attempt) == ("email", event.event_type, 1)
    assert claim.payload == dict(event.payload) and claim.meta["core"]["id"] == event.notification_id
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None
    [attempt] = view.history
    assert (attempt.number, attempt.started_at, attempt.finished_at, attempt.outcome) == (
        1,
        clock(),
        None,
        None,
    )


def test_resend_rules(ledger: Ledger) -> None:
    failed, sent = parsed(sms()), parsed(basic_email())
    for event in (failed, sent):
        ledger.accept(event)
    claim = ledger.claim(failed.notification_id)
    assert claim is not None
    ledger.record_failed(claim, GiveUp("21211 invalid number"), provider="twilio")
    claim2 = ledger.claim(sent.notification_id)
    assert claim2 is not None
    ledger.record_sent(claim2, Receipt("outbox", "x"))

    assert ledger.resend("no-such-id") is ResendResult.NOT_FOUND
    assert ledger.resend(sent.notification_id) is ResendResult.ALREADY_SENT
    assert ledger.resend(failed.notification_id) is ResendResult.QUEUED
    assert ledger.resend(failed.notification_id) is ResendResult.IN_FLIGHT
    again = ledger.claim(failed.notification_id)
    assert again is not None and again.attempt == 1  # a new cycle, a fresh budget
    assert ledger.resend(sent.notification_id, force=True) is ResendResult.QUEUED


def test_discard_and_reject(ledger: Ledger) -> None:
    event = parsed(sms())
    ledger.accept(event)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    assert ledger.discard(event.notification_id) is DiscardResult.REFUSED  # in flight
    ledger.record_failed(claim, RetryLater("gone"), provider="twilio", status=Status.DEAD)
    assert ledger.discard(event.notification_id) is DiscardResult.DISCARDED
    assert ledger.discard("nope") is DiscardResult.NOT_FOUND

    first = ledger.reject("raw-abc", reason="data.to_number: not E.164", raw=b"x" * 100_000)
    second = ledger.reject("raw-abc", reason="again")
    assert first.created and not second.created
    view = get_notification(ledger.engine, "raw-abc")
    assert view is not None and view.status is Status.REJECTED and view.error == "data.to_number: not E.164"
    assert ledger.resend("raw-abc") is ResendResult.NOT_RESENDABLE


def test_retention_purges_personal_data_but_keeps_the_row(ledger: Ledger, clock: Clock) -> None:
    event = parsed(basic_email())
    ledger.accept(event)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    ledger.record_sent(claim, Receipt("outbox", "x"))
    assert ledger.purge_personal_data(older_than_days=7) == 0
    clock.advance(8 * 86400)
    assert ledger.purge_personal_data(older_than_days=7) == 1
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None
    assert view.status is Status.SENT and view.recipient is None and view.purged_at is not None
    assert ledger.resend(event.notification_id, force=True) is ResendResult.NOT_RESENDABLE


def test_accept_many_is_one_batch_with_duplicates_inside_and_out(ledger: Ledger) -> None:
    old, fresh, twice = parsed(sms()), parsed(basic_email()), parsed(sms())
    ledger.accept(old)
    results = ledger.accept_many([old, fresh, twice, twice], queued=True)
    assert [(r.notification_id, r.created, r.status) for r in results] == [
        (old.notification_id, False, Status.ACCEPTED),
        (fresh.notification_id, True, Status.QUEUED),
        (twice.notification_id, True, Status.QUEUED),
        (twice.notification_id, False, Status.QUEUED),
    ]
    assert status(ledger, fresh.notification_id) is Status.QUEUED
    assert ledger.accept_many([]) == []


def test_a_batch_round_trips_every_field(ledger: Ledger, clock: Clock) -> None:
    email = basic_email(subject="Grüße, 你好 🚀", body='quotes " and \\ backslash')
    email["baggage"] = {"tenant": "acme"}
    email["trace"] = {"traceContext": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}}
    events = [parsed(email), parsed(sms())]
    ledger.accept_many(events, queued=True)
    for event in events:
        claim = ledger.claim(event.notification_id)
        assert claim is not None
        assert claim.payload == dict(event.payload)
        assert claim.meta == {
            "core": dict(event.core),
            "baggage": dict(event.baggage),
            "trace_context": dict(event.trace_context),
        }
        assert claim.occurred_at == event.occurred_at and claim.cycle_started_at == clock()
        view = get_notification(ledger.engine, event.notification_id)
        assert view is not None
        assert (view.recipient, view.channel, view.event_type, view.created_at) == (
            event.recipient,
            event.channel.value,
            event.event_type,
            clock(),
        )


# -- conflicting duplicates: another event under a known id ----------------------------------------


def test_another_payload_under_a_known_id_is_dropped_but_counted(ledger: Ledger, clock: Clock) -> None:
    first = parsed(sms(message="first text"))
    assert ledger.accept(first).created
    same = ledger.accept(parsed(sms(first.core["id"], message="first text")))
    assert (same.created, same.conflict) == (False, None)  # an honest redelivery is no conflict
    clock.advance(5)
    other = parsed(sms(first.core["id"], message="another text"))
    result = ledger.accept(other)
    assert not result.created and result.conflict is not None
    view = get_notification(ledger.engine, first.notification_id)
    assert view is not None
    assert result.conflict.accepted_digest == view.payload_digest != result.conflict.received_digest
    assert (view.conflicts, view.conflict_at, view.conflict_digest) == (
        1,
        clock.now,
        result.conflict.received_digest,
    )
    claim = ledger.claim(first.notification_id)
    assert claim is not None and claim.payload["message"] == "first text"  # the first event stays
    ledger.accept(parsed(sms(first.core["id"], message="a third text")))
    view = get_notification(ledger.engine, first.notification_id)
    assert view is not None and view.conflicts == 2


def test_the_batched_accept_detects_conflicts_within_and_across_batches(ledger: Ledger) -> None:
    a, b = parsed(sms(message="a")), parsed(basic_email(subject="b"))
    a_other = parsed(sms(a.core["id"], message="not a"))
    results = ledger.accept_many([a, a_other, b, a])
    assert [r.created for r in results] == [True, False, True, False]
    assert results[1].conflict is not None and results[3].conflict is None
    b_other = parsed(basic_email(b.core["id"], subject="not b"))
    c = parsed(sms())
    results = ledger.accept_many([b_other, c, b, a_other])
    assert [r.created for r in results] == [False, True, False, False]
    assert [r.conflict is not None for r in results] == [True, False, False, True]
    counts = {
        nid: view.conflicts
        for nid in (a.notification_id, b.notification_id, c.notification_id)
        if (view := get_notification(ledger.engine, nid)) is not None
    }
    assert counts == {a.notification_id: 2, b.notification_id: 1, c.notification_id: 0}


def test_a_valid_event_under_a_rejected_id_is_a_conflict(ledger: Ledger) -> None:
    event = parsed(sms())
    ledger.reject(event.notification_id, reason="data.to_number: not a number")
    result = ledger.accept(event)
    assert result.status is Status.REJECTED and result.conflict is not None
    assert result.conflict.accepted_digest is None
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.conflicts == 1


def test_a_retry_with_the_token_of_a_claim_whose_answer_was_lost_takes_its_own_row(
    ledger: Ledger, clock: Clock
) -> None:
    event = parsed(sms())
    ledger.accept(event)
    first = ledger.claim(event.notification_id, token="lost-answer-01")
    assert first is not None and first.token == "lost-answer-01"
    # The answer never arrived, so the task retries with the same token: the row is its own.
    again = ledger.claim(event.notification_id, token="lost-answer-01")
    assert again == first
    # Any other token (another worker, a redelivered message) finds the row taken.
    assert ledger.claim(event.notification_id, token="someone-else-02") is None
    assert ledger.claim(event.notification_id) is None
