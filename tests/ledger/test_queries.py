"""Operator listing: filters, newest first, and keyset pages that stay right while rows arrive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import basic_email, parsed, sms
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import BadQuery, ListFilter, list_notifications, mask_recipient
from workers.messages import Status


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield Ledger(engine, clock=Clock())
    engine.dispose()


def test_pages_cover_every_row_once_while_new_rows_arrive(ledger: Ledger) -> None:
    original = [parsed(sms()) for _ in range(57)]
    for event in original:
        ledger.accept(event)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = list_notifications(ledger.engine, ListFilter(), page_size=10, page_token=token)
        seen.extend(item.id for item in page.items)
        pages += 1
        # Newer rows land while the operator pages; they must not shift or repeat later pages.
        ledger.accept(parsed(basic_email()))
        token = page.next_page_token
        if token is None:
            break
    assert pages == 6
    assert seen == [e.notification_id for e in reversed(original)]


def test_filters(ledger: Ledger) -> None:
    email, text = parsed(basic_email()), parsed(sms())
    ledger.accept(email)
    ledger.accept(text)
    ledger.reject("raw-1", reason="bad")

    def ids(query: ListFilter) -> list[str]:
        return [i.id for i in list_notifications(ledger.engine, query).items]

    assert ids(ListFilter(channel="sms")) == [text.notification_id]
    assert ids(ListFilter(event_type="BasicEmail")) == [email.notification_id]
    assert ids(ListFilter(statuses=(Status.REJECTED,))) == ["raw-1"]
    assert ids(ListFilter(recipient="+14155550199")) == [text.notification_id]
    far = datetime(2030, 1, 1, tzinfo=UTC)
    assert ids(ListFilter(since=far)) == []
    assert len(ids(ListFilter(until=far))) == 3


def test_bad_tokens_and_sizes_are_named(ledger: Ledger) -> None:
    for event in [parsed(sms()) for _ in range(3)]:
        ledger.accept(event)
    page = list_notifications(ledger.engine, ListFilter(), page_size=2)
    assert page.next_page_token
    with pytest.raises(BadQuery, match="different filter"):
        list_notifications(ledger.engine, ListFilter(channel="sms"), page_token=page.next_page_token)
    with pytest.raises(BadQuery, match="malformed"):
        list_notifications(ledger.engine, ListFilter(), page_token="not-a-token")
    with pytest.raises(BadQuery, match="page size"):
        list_notifications(ledger.engine, ListFilter(), page_size=1001)


def test_json_view_masks_the_recipient(ledger: Ledger) -> None:
    ledger.accept(parsed(basic_email()))
    item = list_notifications(ledger.engine, ListFilter()).items[0]
    data = item.as_json()
    assert data["recipient"] == "p***@example.org"
    assert data["created_at"].endswith("Z")
    assert mask_recipient("+14155550199") == "+14*******99"
