"""The ledger's SQL, built with SQLAlchemy Core: one compare-and-set builder for every status move.

Statements take their values as named bind parameters (``b_id``, ``b_token``, ``b_now`` and
``b_<column>``), so the store builds each one once and runs it many times: building a Core
statement and its cache key costs about as much CPU as the round trip it makes.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from enum import Enum
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Select,
    Table,
    TextClause,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from workers.ledger.models import Attempt, Base, Notification, ReceiptRecord, Suppression
from workers.messages import Status


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


NOTIFICATIONS = _table(Notification)
ATTEMPTS = _table(Attempt)
RECEIPTS = _table(ReceiptRecord)
SUPPRESSIONS = _table(Suppression)
_n = NOTIFICATIONS.c
_a = ATTEMPTS.c
_r = RECEIPTS.c
_s = SUPPRESSIONS.c


class Value(Enum):
    """A column's new value that is not an SQL expression over the row."""

    GIVEN = "given"  # the caller's value at execution, as parameter ``b_<column>``
    NOW = "now"  # the moment of the write, parameter ``b_now``
    NULL = "null"


Change = Value | ColumnElement[Any]


def param(name: str, table: Table, column: str) -> BindParameter[Any]:
    """A named bind parameter typed like the column (so UTC timestamps and JSON convert as usual)."""
    return bindparam(name, type_=table.c[column].type)


def status_in(statuses: Collection[Status]) -> ColumnElement[bool]:
    """``status IN (...)`` for a fixed set, as plain comparisons: SQLAlchemy renders ``in_()`` of a
    list as an "expanding" parameter, rewriting the SQL text on every execution of a cached statement."""
    return or_(*(_n.status == status.value for status in sorted(statuses)))


# Conditions a transition may add to its status check.
BY_ID: ColumnElement[bool] = _n.id == param("b_id", NOTIFICATIONS, "id")
BY_CLAIM: ColumnElement[bool] = _n.claim_token == param("b_token", NOTIFICATIONS, "claim_token")
HAS_PAYLOAD: ColumnElement[bool] = and_(_n.payload.is_not(None), _n.purged_at.is_(None))
IDLE: ColumnElement[bool] = _n.updated_at < param("b_cutoff", NOTIFICATIONS, "updated_at")


def _value(column: str, change: Change) -> ColumnElement[Any] | None:
    if change is Value.GIVEN:
        return param(f"b_{column}", NOTIFICATIONS, column)
    if change is Value.NOW:
        return param("b_now", NOTIFICATIONS, column)
    if change is Value.NULL:
        return None
    assert isinstance(change, ColumnElement)
    return change


def transition(
    origins: Collection[Status],
    target: Status,
    changes: Mapping[str, Change],
    *,
    where: Sequence[ColumnElement[bool]] = (),
    returning: Sequence[str | ColumnElement[Any]] = (),
) -> Update:
    """The one compare-and-set: rows in ``origins`` (and ``where``) move to ``target`` with ``changes``.

    ``updated_at`` always becomes ``b_now``. A row that another writer moved first no longer
    matches, so of two racing writers exactly one moves it. ``returning`` names columns of the
    row, or gives expressions over it (``SUPPRESSION_OF_ROW``, ``RECEIPTS_WAITING``).
    """
    stmt = (
        update(NOTIFICATIONS)
        .where(*where, status_in(origins))
        .values(
            status=target.value,
            updated_at=param("b_now", NOTIFICATIONS, "updated_at"),
            **{column: _value(column, change) for column, change in changes.items()},
        )
    )
    columns = row_columns(returning)
    return stmt.returning(*columns) if columns else stmt


def row_columns(items: Sequence[str | ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    """Columns of ``notifications`` by name, and expressions over its row, as one list."""
    return [_n[item] if isinstance(item, str) else item for item in items]


# Read in the claim's own statement, so the check before a send costs no round trip of its own:
# why the row's recipient is on the suppression list of its channel (NULL when they are not, or
# when the row has no recipient key). A primary-key probe of ``suppressions``. Written out, not
# built: SQLAlchemy's SQLite compiler drops every table name inside RETURNING, subqueries included,
# and an unqualified ``channel = channel`` there would compare the list's entry with itself.
SUPPRESSION_OF_ROW: ColumnElement[Any] = literal_column(
    "(SELECT suppressions.reason FROM suppressions"
    " WHERE suppressions.channel = notifications.channel"
    " AND suppressions.recipient_key = notifications.recipient_key)",
    type_=SUPPRESSIONS.c.reason.type,
).label("suppressed")
# Read in the `sent` write's own statement, so the look for receipts that beat the send's answer
# costs no round trip when none did (nearly always): whether any waits for the message id just
# written (``b_provider``, ``b_provider_message_id``). Uses ``ix_receipts_provider_message``. It
# names no column of the row, so the table names SQLite's RETURNING drops are not missed: each
# name resolves to ``receipts``, the nearest table that has it.
RECEIPTS_WAITING: ColumnElement[Any] = (
    exists()
    .where(
        _r.provider == param("b_provider", RECEIPTS, "provider"),
        _r.provider_message_id == param("b_provider_message_id", RECEIPTS, "provider_message_id"),
        _r.notification_id.is_(None),
    )
    .label("receipts_waiting")
)


# -- attempts -------------------------------------------------------------------------------------

START_ATTEMPT: Insert = insert(ATTEMPTS).values(
    notification_id=param("b_id", ATTEMPTS, "notification_id"),
    number=param("b_number", ATTEMPTS, "number"),
    claim_token=param("b_token", ATTEMPTS, "claim_token"),
    started_at=param("b_now", ATTEMPTS, "started_at"),
)


def finish_attempt(outcome: ColumnElement[Any] | None = None) -> Update:
    """The attempt's outcome; ``outcome`` is an SQL expression for it, else the ``b_outcome`` value."""
    return (
        update(ATTEMPTS)
        .where(
            _a.notification_id == param("b_id", ATTEMPTS, "notification_id"),
            _a.claim_token == param("b_token", ATTEMPTS, "claim_token"),
            # The first answer for an attempt is its story; a duplicate never rewrites it.
            _a.finished_at.is_(None),
        )
        .values(
            finished_at=param("b_now", ATTEMPTS, "finished_at"),
            outcome=param("b_outcome", ATTEMPTS, "outcome") if outcome is None else outcome,
            provider=param("b_provider", ATTEMPTS, "provider"),
            error_class=param("b_error_class", ATTEMPTS, "error_class"),
            error_message=param("b_error_message", ATTEMPTS, "error_message"),
        )
    )


FINISH_ATTEMPT: Update = finish_attempt()


def claim_starting_attempt(claim: Update) -> Select[Any]:
    """A claim and its attempt's INSERT as one statement (PostgreSQL data-modifying CTEs), answering
    what ``claim`` returns, which must include ``id`` and ``attempts``.
    """
    claimed = claim.cte("claimed")
    started = (
        insert(ATTEMPTS)
        .from_select(
            ["notification_id", "number", "claim_token", "started_at"],
            select(
                claimed.c.id,
                claimed.c.attempts,
                param("b_token", ATTEMPTS, "claim_token"),
                param("b_now", ATTEMPTS, "started_at"),
            ),
        )
        .cte("started")
    )
    return select(*claimed.c).add_cte(started)


def move_finishing_attempt(move: Update) -> Select[Any]:
    """An outcome's move and its attempt's outcome as one statement (PostgreSQL), answering what
    ``move`` returns (it must return ``id``): one row when the row moved, none when it did not.

    Both parts see the same snapshot; the attempt's outcome says ``(late)`` when the row had
    already moved on, exactly as the two-statement version records it.
    """
    moved = move.cte("moved")
    outcome = param("b_outcome", ATTEMPTS, "outcome")
    noted = finish_attempt(
        case((exists(select(moved.c.id)), outcome), else_=func.concat(outcome, literal(" (late)")))
    ).cte("noted")
    return select(*moved.c).add_cte(noted)


# -- intake ---------------------------------------------------------------------------------------


def insert_ignoring_duplicates(dialect: str) -> Insert:
    """INSERT that leaves an existing id alone and returns the ids it wrote."""
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(NOTIFICATIONS).on_conflict_do_nothing(index_elements=["id"])
    elif dialect == "sqlite":
        stmt = sqlite.insert(NOTIFICATIONS).on_conflict_do_nothing(index_elements=["id"])
    else:  # pragma: no cover - other databases are not supported yet
        raise NotImplementedError(dialect)
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return stmt.returning(_n.id)


@functools.lru_cache(maxsize=4)
def insert_json_batch(columns: tuple[str, ...]) -> TextClause:
    """INSERT of a JSON array of rows with these keys (parameter ``rows``); other columns keep
    their defaults. PostgreSQL only: a small fixed statement, prepared once."""
    names = ", ".join(columns)
    return text(
        f"INSERT INTO notifications ({names}) SELECT {names} "
        "FROM json_populate_recordset(NULL::notifications, CAST(:rows AS json)) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def digests_of(notification_ids: Sequence[str]) -> Select[Any]:
    return select(_n.id, _n.status, _n.payload_digest).where(_n.id.in_(notification_ids))


def statuses_of(notification_ids: Sequence[str]) -> Select[Any]:
    return select(_n.id, _n.status).where(_n.id.in_(notification_ids))


COUNT_CONFLICT: Update = (
    update(NOTIFICATIONS)
    .where(BY_ID)
    .values(
        conflicts=_n.conflicts + 1,
        conflict_at=param("b_now", NOTIFICATIONS, "conflict_at"),
        conflict_digest=param("b_digest", NOTIFICATIONS, "conflict_digest"),
    )
)

# -- operators and the sweeper --------------------------------------------------------------------

RESEND_STATE: Select[Any] = select(
    _n.status, or_(_n.payload.is_(None), _n.purged_at.is_not(None)).label("no_payload")
).where(BY_ID)


def due_for_enqueue(awaiting_task: Collection[Status], retrying: Status, limit: int) -> Select[Any]:
    """Rows idle since ``b_cutoff`` in ``awaiting_task``, and ``retrying`` rows due by ``b_now``."""
    stuck = and_(status_in(awaiting_task), IDLE)
    due = and_(_n.status == retrying.value, _n.next_attempt_at <= param("b_now", NOTIFICATIONS, "updated_at"))
    return select(_n.id, _n.status).where(or_(stuck, due)).order_by(_n.updated_at).limit(limit)


def touch_stuck(awaiting_task: Collection[Status]) -> Update:
    """Mark a stuck row as just enqueued, if nobody did first; its status does not change."""
    return (
        update(NOTIFICATIONS)
        .where(BY_ID, status_in(awaiting_task), IDLE)
        .values(updated_at=param("b_now", NOTIFICATIONS, "updated_at"))
    )


def touch_due(retrying: Status) -> Update:
    """Push a due retry's next attempt to ``b_next_attempt_at``, if nobody did first."""
    return (
        update(NOTIFICATIONS)
        .where(
            BY_ID,
            _n.status == retrying.value,
            _n.next_attempt_at <= param("b_now", NOTIFICATIONS, "next_attempt_at"),
        )
        .values(next_attempt_at=param("b_next_attempt_at", NOTIFICATIONS, "next_attempt_at"))
    )


def purge(finished: Collection[Status]) -> Update:
    """Drop personal data of ``finished`` rows idle since ``b_cutoff``; the row and its story stay."""
    return (
        update(NOTIFICATIONS)
        .where(status_in(finished), IDLE, _n.purged_at.is_(None))
        .values(
            payload=None,
            recipient=None,
            recipient_key=None,
            raw=None,
            purged_at=param("b_now", NOTIFICATIONS, "purged_at"),
        )
    )


def ids_in(statuses: Collection[Status], limit: int) -> Select[Any]:
    return select(_n.id).where(status_in(statuses)).order_by(_n.created_at, _n.id).limit(limit)


STATUS_OF: Select[Any] = select(_n.status).where(BY_ID)
