"""The suppression list: recipients not to be sent to, known only by their keyed hash.

Entries come from hard bounces, complaints, unsubscribes, STOPs and Mandrill's rejection list
(``ledger/receipts.py`` adds them in the receipt's transaction), or from an operator. Before a
send the claim itself reads the row's entry (``ledger/statements.SUPPRESSION_OF_ROW``); only a row
kept without a recipient key costs the dispatcher a separate ``is_suppressed``, one primary-key lookup.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, delete, literal, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from workers.ledger.models import Suppression
from workers.ledger.queries import MAX_PAGE_SIZE, BadQuery, iso
from workers.ledger.store import Clock, away_is_retryable, utcnow
from workers.ledger.tokens import BadPageToken, Cursor, PageTokens
from workers.messages import Channel
from workers.receipts import RecipientKeys, SuppressionReason

OPERATOR = "operator"  # the source of an entry an operator added by hand

# Asked before every send: built once with bind parameters, so each call skips building the
# statement and its cache key (bench/profile_worker.py showed the per-call build at ~7% of a send).
_REASON_OF = select(Suppression.reason).where(
    Suppression.channel == bindparam("b_channel"), Suppression.recipient_key == bindparam("b_key")
)


@dataclass(frozen=True, slots=True)
class SuppressionView:
    channel: Channel
    recipient_key: str
    reason: SuppressionReason
    source: str
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "recipient_key": self.recipient_key,
            "reason": self.reason.value,
            "source": self.source,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class SuppressionPage:
    items: tuple[SuppressionView, ...]
    next_page_token: str | None


def _insert_ignore(dialect: str) -> Any:
    table = Suppression.__table__
    assert isinstance(table, Table)
    keys = ["channel", "recipient_key"]
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys).returning(table.c.channel)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys).returning(table.c.channel)
    raise NotImplementedError(dialect)  # pragma: no cover - other databases are not supported


def add_in(
    conn: Connection, *, channel: Channel, key: str, reason: SuppressionReason, source: str, now: datetime
) -> bool:
    """Put a recipient on the list inside the caller's transaction; the first reason stays."""
    row = {
        "channel": channel.value,
        "recipient_key": key,
        "reason": reason.value,
        "source": source[:255],
        "created_at": now,
    }
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return conn.execute(_insert_ignore(conn.dialect.name), row).first() is not None


def remove_in(conn: Connection, *, channel: Channel, key: str) -> bool:
    s = Suppression
    return bool(conn.execute(delete(s).where(s.channel == channel.value, s.recipient_key == key)).rowcount)


def _fingerprint(channel: Channel | None) -> str:
    # Its own namespace: a `deliveries list` token can never page this list.
    blob = json.dumps(["suppressions", channel.value if channel else None])
    return hashlib.sha256(blob.encode()).hexdigest()


class Suppressions:
    """The list's reads and an operator's writes; receipts add entries through ``add_in``."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        # The check before each send is one statement: in autocommit it is one round trip, with no
        # BEGIN before it and no ROLLBACK when the connection goes back to the pool (as Ledger does).
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT")

    def add(
        self, channel: Channel, key: str, reason: SuppressionReason = SuppressionReason.MANUAL, *, source: str
    ) -> bool:
        """True when the recipient was not on the list before."""
        with self.engine.begin() as conn:
            return add_in(conn, channel=channel, key=key, reason=reason, source=source, now=self.clock())

    def remove(self, channel: Channel, key: str) -> bool:
        """True when the recipient was on the list."""
        with self.engine.begin() as conn:
            return remove_in(conn, channel=channel, key=key)

    def is_suppressed(self, channel: Channel, key: str) -> SuppressionReason | None:
        """Why the recipient is on the list, or None: one primary-key lookup."""
        with away_is_retryable("suppression check"), self._single.connect() as conn:
            reason = conn.execute(_REASON_OF, {"b_channel": channel.value, "b_key": key}).scalar_one_or_none()
        return SuppressionReason(reason) if reason is not None else None

    def list(
        self,
        *,
        tokens: PageTokens,
        channel: Channel | None = None,
        page_size: int = 25,
        page_token: str | None = None,
    ) -> SuppressionPage:
        """Newest first in the total order (created_at, channel, recipient_key), paged like deliveries."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadQuery(f"page size must be between 1 and {MAX_PAGE_SIZE}", argument="page_size")
        s = Suppression
        conditions: list[Any] = []
        if channel is not None:
            conditions.append(s.channel == channel.value)
        fingerprint = _fingerprint(channel)
        if page_token is not None:
            try:
                cursor = tokens.read(page_token, fingerprint)
            except BadPageToken as exc:
                raise BadQuery(str(exc), argument="page_token") from None
            last_channel, _, last_key = cursor.notification_id.partition(":")
            after = tuple_(
                literal(cursor.created_at, type_=s.created_at.type),
                literal(last_channel, type_=s.channel.type),
                literal(last_key, type_=s.recipient_key.type),
            )
            conditions.append(tuple_(s.created_at, s.channel, s.recipient_key) < after)
        stmt = (
            select(s.channel, s.recipient_key, s.reason, s.source, s.created_at)
            .where(*conditions)
            .order_by(s.created_at.desc(), s.channel.desc(), s.recipient_key.desc())
            .limit(page_size + 1)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        items = tuple(
            SuppressionView(
                Channel(row.channel),
                row.recipient_key,
                SuppressionReason(row.reason),
                row.source,
                row.created_at,
            )
            for row in rows[:page_size]
        )
        token = None
        if len(rows) > page_size:
            last = items[-1]
            token = tokens.issue(
                Cursor(last.created_at, f"{last.channel.value}:{last.recipient_key}"), fingerprint
            )
        return SuppressionPage(items, token)


class SuppressionCheck:
    """The dispatcher's question before a send: is this recipient on the list, and why?

    It hashes with the ``RecipientKeys`` the ledger keys its rows with, so a row keyed at intake
    and a recipient hashed here name the same list entry.
    """

    def __init__(self, suppressions: Suppressions, keys: RecipientKeys) -> None:
        self._suppressions = suppressions
        self._keys = keys

    def __repr__(self) -> str:
        return "SuppressionCheck(key=<hidden>)"

    def key_of(self, channel: Channel, recipient: str) -> str:
        """The recipient's hash; ``ValueError`` when it is no address or number."""
        return self._keys.key_of(channel, recipient)

    def reason(self, channel: Channel, recipient: str) -> SuppressionReason | None:
        return self._suppressions.is_suppressed(channel, self.key_of(channel, recipient))

    def add(self, channel: Channel, recipient: str, reason: SuppressionReason, *, source: str) -> bool:
        """Put the recipient on the list (hashed); True when they were not on it before.

        ``ValueError`` when it is no address or number; ``LedgerUnavailable`` when the database is away.
        """
        key = self.key_of(channel, recipient)
        with away_is_retryable("suppressions"):
            return self._suppressions.add(channel, key, reason, source=source)
