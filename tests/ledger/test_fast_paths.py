"""Every PostgreSQL fast path and the plain path behind it record the same story of a notification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.factories import basic_email, parsed, sms
from workers.errors import GiveUp, RetryLater
from workers.ledger import FastPath, Ledger, get_notification
from workers.messages import Receipt, Status

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SUBSETS = [frozenset(), *(frozenset({path}) for path in FastPath), frozenset(FastPath)]


@pytest.fixture
def engine(postgres_engine: Engine) -> Engine:
    return postgres_engine


@pytest.mark.postgres
@pytest.mark.parametrize("fast_paths", SUBSETS, ids=lambda s: "+".join(sorted(p.value for p in s)) or "plain")
def test_a_notification_tells_the_same_story_on_every_path(
    engine: Engine, fast_paths: frozenset[FastPath]
) -> None:
    ledger = Ledger(engine, clock=lambda: NOW, fast_paths=fast_paths)
    email, text = parsed(basic_email()), parsed(sms())
    results = ledger.accept_many([email, text, email], queued=True)
    assert [(r.created, r.status) for r in results] == [
        (True, Status.QUEUED),
        (True, Status.QUEUED),
        (False, Status.QUEUED),
    ]

    first = ledger.claim(email.notification_id)
    assert first is not None and first.attempt == 1 and first.payload == dict(email.payload)
    assert ledger.claim(email.notification_id) is None  # one claim wins
    later = NOW + timedelta(seconds=30)
    assert ledger.record_retry(first, RetryLater("slow down"), provider="mandrill", next_attempt_at=later)
    assert not ledger.record_sent(first, Receipt("mandrill", "late")).moved  # the row moved on: late
    second = ledger.claim(email.notification_id)
    assert second is not None and second.attempt == 2
    assert ledger.record_sent(second, Receipt("mandrill", "m-1")).moved

    third = ledger.claim(text.notification_id)
    assert third is not None
    assert ledger.record_failed(third, GiveUp("21211 invalid number"), provider="twilio")

    view = get_notification(engine, email.notification_id)
    assert view is not None
    assert (view.status, view.provider_message_id, view.attempts, view.error) == (Status.SENT, "m-1", 2, None)
    assert [(a.number, a.outcome, a.provider) for a in view.history] == [
        (1, "retry", "mandrill"),
        (2, "sent", "mandrill"),
    ]
    failed = get_notification(engine, text.notification_id)
    assert failed is not None and failed.status is Status.FAILED
    assert [(a.outcome, a.error_class) for a in failed.history] == [("failed", "GiveUp")]
