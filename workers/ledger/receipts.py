"""Delivery receipts in the ledger: keep each once, match it to its notification, move the status, suppress.

A batch from the ``notifications.receipt`` task is recorded in one transaction: every receipt is
inserted unless its ``(provider, provider_event_id)`` is already there (a replay is a no-op), the new
ones are matched to notifications by provider and provider message id, statuses move only along
``states.TRANSITIONS`` with a compare-and-set per step, and recipients go on (or off) the
suppression list. A receipt whose message id the ledger does not know yet is kept unmatched: the
dispatcher applies it once the send's answer is recorded (``apply_waiting``), the sweeper retries
the match (``match_waiting``) and drops what stayed unmatched past the wait (``drop_unmatched``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, and_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from workers.ledger import statements, states
from workers.ledger.models import Notification, ReceiptRecord
from workers.ledger.queries import iso
from workers.ledger.store import Clock, away_is_retryable, utcnow
from workers.ledger.suppressions import add_in, remove_in
from workers.messages import Channel, Status, StatusChange
from workers.receipts import DeliveryReceipt, ReceiptEffect, SuppressionChange

# What a notification row must tell about itself for a status move and its announcement.
_ROW = (
    Notification.id,
    Notification.status,
    Notification.channel,
    Notification.event_type,
    Notification.provider,
    Notification.provider_message_id,
    Notification.meta,
    Notification.sent_at,
)
# A kept receipt, read back to be applied.
_RECEIPT = (
    ReceiptRecord.provider,
    ReceiptRecord.provider_event_id,
    ReceiptRecord.provider_message_id,
    ReceiptRecord.channel,
    ReceiptRecord.raw_status,
    ReceiptRecord.effect,
    ReceiptRecord.error_code,
    ReceiptRecord.occurred_at,
)
# The receipts kept for one message id that no notification has claimed yet, oldest first. Built
# once: apply_waiting runs after every sent notification, and a statement built per call costs
# its construction and cache-key walk each time (py-spy, bench/profile_worker.py --outbox).
WAITING_FOR_MESSAGE = (
    select(*_RECEIPT)
    .where(
        ReceiptRecord.provider == bindparam("b_provider"),
        ReceiptRecord.provider_message_id == bindparam("b_message_id"),
        ReceiptRecord.notification_id.is_(None),
    )
    .order_by(ReceiptRecord.occurred_at, ReceiptRecord.id)
)
# Each compare-and-set step may lose to a concurrent writer; it re-reads and tries again this often.
MAX_RACES = 3


@dataclass(frozen=True, slots=True)
class Moved:
    """A status change a receipt caused, with what metrics want to know about it."""

    change: StatusChange
    sent_at: datetime | None  # when the row was sent, for the sent-to-delivered histogram
    occurred_at: datetime  # when the provider says the receipt's event happened


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What one batch did; ``moved`` lists the status changes, to announce after the commit."""

    recorded: int = 0  # new receipts kept (suppression-list changes included)
    duplicates: int = 0  # already there: replays, the provider's retries
    matched: int = 0  # new receipts whose notification is known
    waiting: int = 0  # new receipts kept unmatched until the send's answer names their message id
    suppressed: int = 0  # recipients put on the list
    unsuppressed: int = 0  # recipients taken off the list
    moved: tuple[Moved, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ReceiptView:
    """One receipt as ``notify deliveries show`` lists it: no body, no address."""

    provider: str
    provider_event_id: str
    raw_status: str
    effect: str
    error_code: str | None
    occurred_at: datetime
    received_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "provider_event_id": self.provider_event_id,
            "raw_status": self.raw_status,
            "effect": self.effect,
            "error_code": self.error_code,
            "occurred_at": iso(self.occurred_at),
            "received_at": iso(self.received_at),
        }


def _insert_ignore(dialect: str) -> Any:
    table = ReceiptRecord.__table__
    assert isinstance(table, Table)
    index = ["provider", "provider_event_id"]
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=index)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=index)
    else:  # pragma: no cover - other databases are not supported
        raise NotImplementedError(dialect)
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return stmt.returning(table.c.provider, table.c.provider_event_id)


def _reason(receipt: DeliveryReceipt) -> str:
    """The row's error text for a bounce or complaint: the provider's word and code, nothing personal."""
    code = f" [code {receipt.error_code}]" if receipt.error_code else ""
    return f"{receipt.provider} {receipt.raw_status}{code}"


def _receipt_row(receipt: DeliveryReceipt, now: datetime) -> dict[str, Any]:
    return {
        "provider": receipt.provider,
        "provider_event_id": receipt.provider_event_id,
        "provider_message_id": receipt.provider_message_id,
        "notification_id": None,
        "channel": receipt.channel.value,
        "raw_status": receipt.raw_status[:40],
        "effect": receipt.effect.value,
        "error_code": receipt.error_code[:40] if receipt.error_code else None,
        "occurred_at": receipt.occurred_at,
        "received_at": now,
    }


def _change_row(change: SuppressionChange, now: datetime) -> dict[str, Any]:
    # Kept beside the receipts so a replayed list change is a no-op too (a replayed `add` after a
    # `remove` would otherwise put the recipient back).
    return {
        "provider": change.provider,
        "provider_event_id": change.provider_event_id,
        "provider_message_id": None,
        "notification_id": None,
        "channel": change.channel.value,
        "raw_status": f"{change.reason.value} {'add' if change.add else 'remove'}",
        "effect": ReceiptEffect.NONE.value,
        "error_code": None,
        "occurred_at": change.occurred_at,
        "received_at": now,
    }


def _suppressions(receipts: Iterable[DeliveryReceipt]) -> list[SuppressionChange]:
    return [
        SuppressionChange(
            provider=r.provider,
            provider_event_id=r.provider_event_id,
            channel=r.channel,
            recipient_key=r.recipient_key,
            reason=r.suppress,
            add=True,
            occurred_at=r.occurred_at,
        )
        for r in receipts
        if r.suppress is not None and r.recipient_key
    ]


class ReceiptBook:
    """The ledger's receipts; collaborators (engine, clock) come in through the constructor."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._insert = _insert_ignore(engine.dialect.name)
        # The look for waiting receipts after each send is one statement, so autocommit: one round
        # trip, no BEGIN/COMMIT around it; a transaction is opened only when some are waiting.
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- the receipt task -------------------------------------------------------------------

    def record(
        self, receipts: Sequence[DeliveryReceipt], changes: Sequence[SuppressionChange] = ()
    ) -> RecordResult:
        """Keep, match and apply one batch in one transaction.

        Raises ``LedgerUnavailable`` when the database is away: nothing of the batch was kept.
        """
        now = self.clock()
        # The first of an event id within the batch wins, as it would across batches.
        unique_receipts = {(r.provider, r.provider_event_id): r for r in reversed(receipts)}
        unique_changes = {(c.provider, c.provider_event_id): c for c in reversed(changes)}
        rows = [_receipt_row(r, now) for r in unique_receipts.values()]
        rows += [_change_row(c, now) for c in unique_changes.values() if c.provider_event_id]
        with away_is_retryable("receipts"), self.engine.begin() as conn:
            new: set[tuple[str, str]] = set()
            if rows:
                new = {(row.provider, row.provider_event_id) for row in conn.execute(self._insert, rows)}
            fresh = sorted(
                (r for key, r in unique_receipts.items() if key in new), key=lambda r: r.occurred_at
            )
            found = self._rows_for(conn, fresh)
            by_row: dict[str, list[DeliveryReceipt]] = defaultdict(list)
            for receipt in fresh:
                row = found.get((receipt.provider, receipt.provider_message_id))
                if row is not None:
                    by_row[row.id].append(receipt)
            matched = [(nid, r) for nid, batch in by_row.items() for r in batch]
            self._link(conn, matched)
            moved: list[Moved] = []
            for batch in by_row.values():
                row = found[(batch[0].provider, batch[0].provider_message_id)]
                moved += self._advance(conn, row, batch, now)
            # A receipt that suppresses is one more addition to the list: receipts first, then the
            # provider's own list changes in the order they happened, each applied once.
            listed = sorted(unique_changes.values(), key=lambda c: c.occurred_at)
            suppressed = unsuppressed = 0
            for change in [*_suppressions(fresh), *listed]:
                if (change.provider, change.provider_event_id) not in new:
                    continue
                if change.add:
                    suppressed += add_in(
                        conn,
                        channel=change.channel,
                        key=change.recipient_key,
                        reason=change.reason,
                        source=change.provider_event_id,
                        now=now,
                    )
                else:
                    unsuppressed += remove_in(conn, channel=change.channel, key=change.recipient_key)
        return RecordResult(
            recorded=len(new),
            duplicates=len(unique_receipts) + len(unique_changes) - len(new),
            matched=len(matched),
            waiting=len(fresh) - len(matched),
            suppressed=suppressed,
            unsuppressed=unsuppressed,
            moved=tuple(moved),
        )

    # -- receipts that came before the send's answer ----------------------------------------

    def apply_waiting(self, provider: str, provider_message_id: str) -> list[Moved]:
        """Match and apply the receipts kept for this message id, now that the ledger knows it."""
        params = {"b_provider": provider, "b_message_id": provider_message_id}
        # The waiting receipts first: after almost every send there are none, and then this one
        # round trip is all it costs (the dispatcher calls it once per sent notification).
        with away_is_retryable("waiting receipts"), self._single.connect() as conn:
            if not conn.execute(WAITING_FOR_MESSAGE, params).first():
                return []
        with away_is_retryable("waiting receipts"), self.engine.begin() as conn:
            # Read again inside the transaction that applies them: the first look held no lock.
            waiting = conn.execute(WAITING_FOR_MESSAGE, params).all()
            if not waiting:
                return []
            found = self._rows_for_ids(conn, {(provider, provider_message_id)})
            row = found.get((provider, provider_message_id))
            if row is None:
                return []
            receipts = [_from_record(record) for record in waiting]
            self._link(conn, [(row.id, receipt) for receipt in receipts])
            return self._advance(conn, row, receipts, self.clock())

    def match_waiting(self, *, limit: int = 1000) -> list[Moved]:
        """The sweeper's pass over unmatched receipts whose message id has appeared since."""
        r, n = ReceiptRecord, Notification
        with self.engine.connect() as conn:
            pairs = conn.execute(
                select(r.provider, r.provider_message_id)
                .join(n, and_(n.provider_message_id == r.provider_message_id, n.provider == r.provider))
                .where(r.notification_id.is_(None), r.provider_message_id.is_not(None))
                .distinct()
                .limit(limit)
            ).all()
        moved: list[Moved] = []
        for provider, message_id in pairs:
            if message_id is not None:
                moved += self.apply_waiting(provider, message_id)
        return moved

    def drop_unmatched(self, *, older_than: float) -> int:
        """Delete receipts that found no notification within ``older_than`` seconds; returns how many."""
        r = ReceiptRecord
        cutoff = self.clock() - timedelta(seconds=older_than)
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    delete(r).where(
                        r.notification_id.is_(None),
                        # List changes name no message and are never matched: they stay as the record.
                        r.provider_message_id.is_not(None),
                        r.received_at < cutoff,
                    )
                ).rowcount
            )

    # -- operators --------------------------------------------------------------------------

    def of(self, notification_id: str) -> list[ReceiptView]:
        """A notification's receipts in the order they happened."""
        r = ReceiptRecord
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    r.provider,
                    r.provider_event_id,
                    r.raw_status,
                    r.effect,
                    r.error_code,
                    r.occurred_at,
                    r.received_at,
                )
                .where(r.notification_id == notification_id)
                .order_by(r.occurred_at, r.id)
            ).all()
        return [ReceiptView(**row._asdict()) for row in rows]

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _rows_for(conn: Connection, receipts: Iterable[DeliveryReceipt]) -> dict[tuple[str, str], Row[Any]]:
        return ReceiptBook._rows_for_ids(conn, {(r.provider, r.provider_message_id) for r in receipts})

    @staticmethod
    def _rows_for_ids(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Row[Any]]:
        if not keys:
            return {}
        n = Notification
        rows = conn.execute(
            select(*_ROW).where(n.provider_message_id.in_(sorted({message_id for _, message_id in keys})))
        ).all()
        # The provider must agree too: two providers' id spaces are unrelated.
        return {
            (row.provider, row.provider_message_id): row
            for row in rows
            if (row.provider, row.provider_message_id) in keys
        }

    @staticmethod
    def _link(conn: Connection, matched: Sequence[tuple[str, DeliveryReceipt]]) -> None:
        if not matched:
            return
        r = ReceiptRecord
        conn.execute(
            update(r)
            .where(r.provider == bindparam("b_provider"), r.provider_event_id == bindparam("b_event"))
            .values(notification_id=bindparam("b_id")),
            [
                {
                    "b_provider": receipt.provider,
                    "b_event": receipt.provider_event_id,
                    "b_id": notification_id,
                }
                for notification_id, receipt in matched
            ],
        )

    @staticmethod
    def _advance(
        conn: Connection, row: Row[Any], receipts: Sequence[DeliveryReceipt], now: datetime
    ) -> list[Moved]:
        """Move one row through its receipts, in the order they happened, along the rule table."""
        n = Notification
        current = Status(row.status)
        moved: list[Moved] = []
        for receipt in receipts:
            if receipt.effect is ReceiptEffect.NONE:
                continue  # soft bounce, deferral, open, queued: kept, the status stays
            target = Status(receipt.effect.value)
            for _ in range(MAX_RACES):
                if not states.allowed(current, target):
                    break
                # The store's one compare-and-set: the row moves only if it is still `current`.
                reason = None if target is Status.DELIVERED else _reason(receipt)
                changes: dict[str, statements.Change] = (
                    {} if reason is None else {"error": statements.Value.GIVEN}
                )
                done = conn.execute(
                    statements.transition({current}, target, changes, where=[statements.BY_ID]),
                    {"b_id": row.id, "b_now": now, "b_error": reason},
                ).rowcount
                if done:
                    change = StatusChange(
                        notification_id=row.id,
                        old=current,
                        new=target,
                        at=now,
                        channel=row.channel,
                        event_type=row.event_type,
                        provider=receipt.provider,
                        reason=reason,
                        meta=row.meta or {},
                    )
                    moved.append(Moved(change, row.sent_at, receipt.occurred_at))
                    current = target
                    break
                # Another writer moved it first: decide again from where it is now.
                current = Status(conn.execute(select(n.status).where(n.id == row.id)).scalar_one())
        return moved


def _from_record(record: Any) -> DeliveryReceipt:
    return DeliveryReceipt(
        provider=record.provider,
        provider_event_id=record.provider_event_id,
        provider_message_id=record.provider_message_id or "",
        channel=Channel(record.channel),
        raw_status=record.raw_status,
        effect=ReceiptEffect(record.effect),
        occurred_at=record.occurred_at,
        error_code=record.error_code,
    )
