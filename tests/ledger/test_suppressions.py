"""The suppression list on SQLite and PostgreSQL: add once, remove, look up by channel and hash, page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.clock import Clock
from workers.ledger import make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import BadQuery
from workers.ledger.suppressions import SuppressionCheck, Suppressions
from workers.ledger.tokens import PageTokens
from workers.messages import Channel
from workers.receipts import RecipientKeys, SuppressionReason, recipient_key

TOKENS = PageTokens.with_key(b"t" * 32)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 8, tzinfo=UTC))


@pytest.fixture
def suppressions(database_url: str, clock: Clock) -> Iterator[Suppressions]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield Suppressions(engine, clock=clock)
    engine.dispose()


def test_add_is_once_and_the_first_reason_stays(suppressions: Suppressions) -> None:
    assert suppressions.add(Channel.EMAIL, "a" * 64, SuppressionReason.HARD_BOUNCE, source="ev-1")
    assert not suppressions.add(Channel.EMAIL, "a" * 64, SuppressionReason.COMPLAINT, source="ev-2")
    assert suppressions.is_suppressed(Channel.EMAIL, "a" * 64) is SuppressionReason.HARD_BOUNCE
    assert suppressions.is_suppressed(Channel.SMS, "a" * 64) is None
    assert suppressions.remove(Channel.EMAIL, "a" * 64)
    assert not suppressions.remove(Channel.EMAIL, "a" * 64)
    assert suppressions.is_suppressed(Channel.EMAIL, "a" * 64) is None


def test_the_check_hashes_with_the_key(suppressions: Suppressions) -> None:
    key = b"s" * 32
    check = SuppressionCheck(suppressions, RecipientKeys(lambda: key))
    suppressions.add(
        Channel.SMS, recipient_key(Channel.SMS, "+14155550199", key), SuppressionReason.STOP, source="ev"
    )
    assert check.reason(Channel.SMS, "+1 415 555 0199") is SuppressionReason.STOP
    assert check.reason(Channel.SMS, "+14155550100") is None
    # Another key, another hash: the list only means something with its own key.
    assert (
        SuppressionCheck(suppressions, RecipientKeys(lambda: b"o" * 32)).reason(Channel.SMS, "+14155550199")
        is None
    )
    assert "s" * 16 not in repr(check)


def test_pages_cover_every_entry_once_even_with_shared_timestamps(
    suppressions: Suppressions, clock: Clock
) -> None:
    keys = []
    for n in range(7):
        if n % 3 == 0:
            clock.now += timedelta(seconds=1)  # groups of rows share a timestamp
        key = f"{n:064x}"
        keys.append(key)
        suppressions.add(Channel.EMAIL if n % 2 else Channel.SMS, key, source="operator")
    for size in (1, 2, 3, 7, 8):
        seen: list[str] = []
        token = None
        while True:
            page = suppressions.list(tokens=TOKENS, page_size=size, page_token=token)
            seen += [item.recipient_key for item in page.items]
            token = page.next_page_token
            if token is None:
                break
        assert sorted(seen) == sorted(keys), size
    sms_only = suppressions.list(tokens=TOKENS, channel=Channel.SMS, page_size=10)
    assert {item.channel for item in sms_only.items} == {Channel.SMS}


def test_a_token_from_another_filter_is_refused(suppressions: Suppressions) -> None:
    for n in range(3):
        suppressions.add(Channel.SMS, f"{n:064x}", source="operator")
    token = suppressions.list(tokens=TOKENS, page_size=1).next_page_token
    assert token is not None
    with pytest.raises(BadQuery) as caught:
        suppressions.list(tokens=TOKENS, channel=Channel.SMS, page_token=token)
    assert caught.value.argument == "page_token"
    with pytest.raises(BadQuery):
        suppressions.list(tokens=TOKENS, page_size=0)
