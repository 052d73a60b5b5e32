"""Operator listing: filters, newest first, and keyset pages that stay right while rows arrive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import basic_email, parsed, sms
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import BadQuery, ListFilter, list_notifications, mask_recipient
from workers.ledger.tokens import PageTokens
from workers.messages import Status

TOKENS = PageTokens.with_key(b"test-page-token-key-0123456789")


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
        page = list_notifications(
            ledger.engine, tokens=TOKENS, query=ListFilter(), page_size=10, page_token=token
        )
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
        return [i.id for i in list_notifications(ledger.engine, tokens=TOKENS, query=query).items]

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
    page = list_notifications(ledger.engine, tokens=TOKENS, query=ListFilter(), page_size=2)
    assert page.next_page_token
    with pytest.raises(BadQuery, match="different filter"):
        list_notifications(
            ledger.engine, tokens=TOKENS, query=ListFilter(channel="sms"), page_token=page.next_page_token
        )
    with pytest.raises(BadQuery, match="malformed"):
        list_notifications(ledger.engine, tokens=TOKENS, query=ListFilter(), page_token="not-a-token")
    with pytest.raises(BadQuery, match="page size"):
        list_notifications(ledger.engine, tokens=TOKENS, query=ListFilter(), page_size=1001)


def test_json_view_masks_the_recipient(ledger: Ledger) -> None:
    ledger.accept(parsed(basic_email()))
    item = list_notifications(ledger.engine, tokens=TOKENS, query=ListFilter()).items[0]
    data = item.as_json()
    assert data["recipient"] == "p***@example.org"
    assert data["created_at"].endswith("Z")
    assert mask_recipient("+14155550199") == "+14*******99"


# -- every row exactly once, whatever the timestamps ----------------------------------------------


class FrozenClock:
    """A clock that stands still until moved: rows written meanwhile share one timestamp.

    The start has sub-millisecond digits on purpose: rows written together by one batch share a
    timestamp with microseconds, and a cursor that rounds them away skips the rest of the batch.
    """

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, 0, 123_456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, microseconds: int) -> None:
        self.now += timedelta(microseconds=microseconds)


@pytest.fixture
def frozen() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def shared_ledger(database_url: str, frozen: FrozenClock) -> Iterator[Ledger]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield Ledger(engine, clock=frozen)
    engine.dispose()


def fill(ledger: Ledger, clock: FrozenClock, total: int, *, batch: int, step_us: int = 1) -> list[str]:
    """``total`` rows written ``batch`` at a time; each batch shares one timestamp, as a bus batch does."""
    ids: list[str] = []
    while len(ids) < total:
        events = [parsed(sms()) for _ in range(min(batch, total - len(ids)))]
        ledger.accept_many(events)
        ids.extend(e.notification_id for e in events)
        clock.advance(step_us)
    return ids


def walk(ledger: Ledger, page_size: int, query: ListFilter | None = None) -> list[str]:
    seen: list[str] = []
    token: str | None = None
    while True:
        page = list_notifications(
            ledger.engine, query or ListFilter(), tokens=TOKENS, page_size=page_size, page_token=token
        )
        assert len(page.items) <= page_size
        seen.extend(item.id for item in page.items)
        token = page.next_page_token
        if token is None:
            return seen


def newest_first(ledger: Ledger) -> list[str]:
    from sqlalchemy import select

    from workers.ledger.models import Notification

    n = Notification
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(n.id).order_by(n.created_at.desc(), n.id.desc())).scalars())


PAGE_SIZES = [*range(1, 21), 31, 49, 50, 51, 99, 128, 333, 500, 999, 1000]


def test_rows_sharing_timestamps_are_each_listed_once_at_every_page_size(
    shared_ledger: Ledger, frozen: FrozenClock
) -> None:
    # 2,000 rows: batches of 50 sharing one timestamp, 1 µs apart (all inside one millisecond),
    # then batches of 7 a whole second apart.
    ids = fill(shared_ledger, frozen, 1_400, batch=50, step_us=1)
    frozen.advance(1_000_000)
    ids += fill(shared_ledger, frozen, 600, batch=7, step_us=1_000_000)
    expected = newest_first(shared_ledger)
    assert sorted(expected) == sorted(ids)
    for size in PAGE_SIZES:
        seen = walk(shared_ledger, size)
        assert len(seen) == len(set(seen)), f"page size {size} repeated rows"
        assert seen == expected, f"page size {size}: {len(set(ids) - set(seen))} rows never listed"


def test_a_filtered_listing_pages_through_shared_timestamps_too(
    shared_ledger: Ledger, frozen: FrozenClock
) -> None:
    texts = fill(shared_ledger, frozen, 300, batch=100)
    emails = [parsed(basic_email()) for _ in range(150)]
    shared_ledger.accept_many(emails)
    for size in (1, 7, 100, 1000):
        assert sorted(walk(shared_ledger, size, ListFilter(channel="sms"))) == sorted(texts)
        assert sorted(walk(shared_ledger, size, ListFilter(channel="email"))) == sorted(
            e.notification_id for e in emails
        )


def test_rows_added_while_paging_never_skip_or_repeat_a_row(
    shared_ledger: Ledger, frozen: FrozenClock
) -> None:
    before = set(fill(shared_ledger, frozen, 1_000, batch=100, step_us=0))  # all 1,000 at one instant
    seen: list[str] = []
    token: str | None = None
    added: set[str] = set()
    while True:
        page = list_notifications(
            shared_ledger.engine, ListFilter(), tokens=TOKENS, page_size=37, page_token=token
        )
        seen.extend(item.id for item in page.items)
        # New rows at the very same instant as the cursor (ids on both sides of it), and newer ones.
        batch = [parsed(sms()) for _ in range(5)]
        shared_ledger.accept_many(batch)
        added.update(e.notification_id for e in batch)
        token = page.next_page_token
        if token is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)  # every row that was there when paging began, exactly once
    assert set(seen) <= before | added


def test_a_ten_thousand_row_ledger_lists_every_row_exactly_once(
    shared_ledger: Ledger, frozen: FrozenClock
) -> None:
    ids = fill(shared_ledger, frozen, 10_000, batch=500, step_us=3)
    for size in (1000, 999, 333):
        seen = walk(shared_ledger, size)
        assert len(seen) == 10_000 == len(set(seen))
        assert set(seen) == set(ids)


def test_bad_cursor_contents_are_refused_by_name(shared_ledger: Ledger) -> None:
    """Tokens signed with the real key but holding odd values (as a key holder could make them)."""
    import base64
    import hashlib
    import hmac
    import json

    def signed(body: dict[str, object]) -> str:
        raw = json.dumps(body).encode()
        mac = hmac.new(b"test-page-token-key-0123456789", b"notify-page-token\x00" + raw, hashlib.sha256)
        enc = base64.urlsafe_b64encode
        return f"{enc(raw).decode().rstrip('=')}.{enc(mac.digest()).decode().rstrip('=')}"

    tag = TOKENS._filter_tag(ListFilter().fingerprint())
    odd = [
        {"v": 2, "c": "2026-11-25T12:00:00", "i": "x", "f": tag},  # naive ISO timestamp
        {"v": 2, "c": 10**20, "i": "x", "f": tag},  # far past year 9999
        {"v": 2, "c": -(10**20), "i": "x", "f": tag},
        {"v": 2, "c": 0, "i": "a\x00b", "f": tag},  # NUL in the id (PostgreSQL refuses it)
        {"v": 2, "c": 0, "i": "", "f": tag},
        {"v": 2, "c": 0, "i": "x" * 129, "f": tag},
        {"v": 1, "c": 0, "i": "x", "f": tag},
        {"v": 2, "c": True, "i": "x", "f": tag},
    ]
    for body in odd:
        with pytest.raises(BadQuery, match="page token is malformed") as caught:
            list_notifications(shared_ledger.engine, ListFilter(), tokens=TOKENS, page_token=signed(body))
        assert caught.value.argument == "page_token"
