"""The ledger's writes: accept, claim, record outcomes, resend, discard, and the sweeper's moves.

Every state change is a single compare-and-set UPDATE (``WHERE status IN (...)``) checked against
``states.TRANSITIONS``, so two workers, a redelivered task or a racing resend can never both win.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from workers.errors import LedgerUnavailable
from workers.events import ParsedEvent
from workers.ledger import states
from workers.ledger.models import Attempt, Notification
from workers.messages import Channel, Receipt, Status

MAX_ERROR_CHARS = 2000
MAX_RAW_BYTES = 64 * 1024

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another event under an id the ledger already holds: dropped, but counted on the row.

    ``accepted_digest`` is None when the row is a rejected event (nothing valid was accepted).
    """

    accepted_digest: str | None
    received_digest: str


@dataclass(frozen=True, slots=True)
class AcceptResult:
    notification_id: str
    created: bool
    status: Status
    conflict: Conflict | None = None  # set when a duplicate's payload differs from the accepted one


def payload_digest(event: ParsedEvent) -> str:
    """sha256 of what makes the notification: its type, template and payload (not the envelope's
    trace or timestamps, which a producer's honest retry may change)."""
    canonical = json.dumps(
        [event.event_type, event.template, event.payload],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """A row won by one worker for one attempt; ``token`` proves it when recording the outcome."""

    notification_id: str
    token: str
    channel: Channel
    event_type: str
    template: str | None
    payload: Mapping[str, Any]
    meta: Mapping[str, Any]
    attempt: int  # attempts in the current cycle, this one included
    cycle_started_at: datetime
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class Held:
    """The claim behind an outcome that still has to be written: the row's id and its claim token."""

    notification_id: str
    token: str


@contextmanager
def _away_is_retryable(what: str) -> Iterator[None]:
    """Raise ``LedgerUnavailable`` when the database is away (worth retrying the write); a bad
    statement's error passes unchanged."""
    try:
        yield
    except DBAPIError as exc:
        if isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated:
            raise LedgerUnavailable(f"{what}: {type(exc.orig).__name__}") from exc
        raise


class ResendResult(StrEnum):
    QUEUED = "queued"
    NOT_FOUND = "not-found"
    ALREADY_SENT = "already-sent"  # refused without --force
    IN_FLIGHT = "in-flight"  # queued, sending or retrying: it is already on its way
    NOT_RESENDABLE = "not-resendable"  # rejected events, or personal data already purged


class DiscardResult(StrEnum):
    DISCARDED = "discarded"
    NOT_FOUND = "not-found"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Reason:
    """An outcome's error known only by its class name and text (recalled after a failed write)."""

    error_class: str
    text: str


def _error_class(error: BaseException | Reason) -> str:
    return error.error_class if isinstance(error, Reason) else type(error).__name__


def describe_error(error: BaseException | Reason) -> str:
    if isinstance(error, Reason):
        return error.text if len(error.text) <= MAX_ERROR_CHARS else error.text[: MAX_ERROR_CHARS - 1] + "…"
    text = f"{type(error).__name__}: {error}"
    code = getattr(error, "code", None)
    if code and str(code) not in text:
        # The provider's own code (Twilio 21610, Mandrill's error name) is what an operator searches for.
        text += f" [code {code}]"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# What a claim reads back from the row it took.
_CLAIM_COLUMNS = (
    "channel",
    "event_type",
    "template",
    "payload",
    "meta",
    "attempts",
    "cycle_attempts_base",
    "cycle_started_at",
    "occurred_at",
)


@functools.lru_cache(maxsize=4)
def _pg_insert_batch(columns: tuple[str, ...]) -> Any:
    """INSERT of a JSON array of rows with these keys (``Ledger._row``); other columns keep defaults."""
    names = ", ".join(columns)
    return text(
        f"INSERT INTO notifications ({names}) SELECT {names} "
        "FROM json_populate_recordset(NULL::notifications, CAST(:rows AS json)) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def _json_value(value: object) -> str:
    """Timestamps in the batch's JSON: ISO 8601 with the offset, which timestamptz reads exactly."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _status_in(statuses: Collection[Status]) -> Any:
    """``status IN (...)`` for a fixed set, as plain comparisons: SQLAlchemy renders ``in_()`` of a
    list as an "expanding" parameter, rewriting the SQL text on every execution of a cached statement."""
    return or_(*(Notification.status == status.value for status in sorted(statuses)))


def _param(name: str, column: Any) -> Any:
    """A named bind parameter typed like ``column`` (so UTC timestamps and JSON convert as usual)."""
    return bindparam(name, type_=column.type)


class Ledger:
    """The source of truth for every notification's fate.

    The statements of the hot path (accept, claim, record outcome) are built once with bind
    parameters: building a Core statement and its cache key costs about as much CPU as the
    round trip it makes, and a reused statement's cache key is memoized.
    """

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._dialect = engine.dialect.name
        # One statement is its own transaction: no BEGIN and COMMIT round trips around it.
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._insert_stmt = self._build_insert()
        self._claim_stmt = self._build_claim()
        self._finish_attempt_stmt = self._build_finish_attempt()
        self._finish_stmts: dict[tuple[Status, frozenset[Status], tuple[str, ...]], Any] = {}
        # PostgreSQL runs claim and finish as one statement each (data-modifying CTEs), in
        # autocommit: one round trip instead of BEGIN, two statements and COMMIT. SQLite has no
        # writes inside WITH, and no network between it and us, so it keeps the transaction.
        self._one_trip = self._dialect == "postgresql"
        self._claim_one_trip = self._build_claim_one_trip() if self._one_trip else None
        self._finish_one_trip: dict[tuple[Status, frozenset[Status], tuple[str, ...]], Any] = {}

    def _build_insert(self) -> Any:
        table = Notification.__table__
        assert isinstance(table, Table)
        stmt: Any
        if self._dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=["id"])
        elif self._dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=["id"])
        else:  # pragma: no cover - other databases are not supported yet
            raise NotImplementedError(self._dialect)
        # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
        return stmt.returning(table.c.id)

    @staticmethod
    def _build_claim() -> Any:
        n = Notification
        return (
            update(n)
            .where(
                n.id == _param("b_id", n.id),
                _status_in(states.CLAIMABLE),
            )
            .values(
                status=Status.SENDING.value,
                attempts=n.attempts + 1,
                claim_token=_param("b_token", n.claim_token),
                updated_at=_param("b_now", n.updated_at),
                next_attempt_at=None,
            )
            .returning(*(n.__table__.c[name] for name in _CLAIM_COLUMNS))
        )

    def _build_claim_one_trip(self) -> Any:
        """The claim UPDATE and the attempt's INSERT in one statement (PostgreSQL)."""
        claimed = self._claim_stmt.returning(Notification.id).cte("claimed")
        a = Attempt
        started = (
            insert(a)
            .from_select(
                ["notification_id", "number", "claim_token", "started_at"],
                select(
                    claimed.c.id,
                    claimed.c.attempts,
                    _param("b_token", a.claim_token),
                    _param("b_now", a.started_at),
                ),
            )
            .cte("started")
        )
        return select(*(claimed.c[name] for name in _CLAIM_COLUMNS)).add_cte(started)

    @staticmethod
    def _build_finish_attempt(outcome: Any = None) -> Any:
        """The attempt's outcome; ``outcome`` is an SQL expression for it, else the ``b_outcome`` value."""
        a = Attempt
        return (
            update(a)
            .where(
                a.notification_id == _param("b_id", a.notification_id),
                a.claim_token == _param("b_token", a.claim_token),
                # The first answer for an attempt is its story; a duplicate never rewrites it.
                a.finished_at.is_(None),
            )
            .values(
                finished_at=_param("b_now", a.finished_at),
                outcome=_param("b_outcome", a.outcome) if outcome is None else outcome,
                provider=_param("b_provider", a.provider),
                error_class=_param("b_error_class", a.error_class),
                error_message=_param("b_error_message", a.error_message),
            )
        )

    def _finish_stmt(self, target: Status, origins: set[Status], names: tuple[str, ...]) -> Any:
        """The compare-and-set UPDATE of ``_finish`` for these origins and value columns, cached."""
        key = (target, frozenset(origins), names)
        stmt = self._finish_stmts.get(key)
        if stmt is None:
            n = Notification
            columns = n.__table__.c
            stmt = (
                update(n)
                .where(
                    n.id == _param("b_id", n.id),
                    n.claim_token == _param("b_token", n.claim_token),
                    _status_in(origins),
                )
                .values(
                    status=target.value,
                    updated_at=_param("b_now", n.updated_at),
                    **{name: _param(f"b_{name}", columns[name]) for name in names},
                )
            )
            self._finish_stmts[key] = stmt
        return stmt

    def _finish_one_trip_stmt(self, target: Status, origins: set[Status], names: tuple[str, ...]) -> Any:
        """The row's compare-and-set and its attempt's outcome in one statement (PostgreSQL).

        Both parts see the same snapshot; the attempt's outcome says ``(late)`` when the row had
        already moved on, exactly as the two-statement version records it.
        """
        key = (target, frozenset(origins), names)
        stmt = self._finish_one_trip.get(key)
        if stmt is None:
            moved = self._finish_stmt(target, origins, names).returning(Notification.id).cte("moved")
            outcome = _param("b_outcome", Attempt.outcome)
            noted = self._build_finish_attempt(
                case((exists(select(moved.c.id)), outcome), else_=func.concat(outcome, literal(" (late)")))
            ).cte("noted")
            stmt = select(func.count()).select_from(moved).add_cte(noted)
            self._finish_one_trip[key] = stmt
        return stmt

    # -- intake -----------------------------------------------------------------------------

    def _insert_ignore(self, values: dict[str, Any]) -> bool:
        with self._single.connect() as conn:
            return conn.execute(self._insert_stmt, values).first() is not None

    def accept(self, event: ParsedEvent, *, queued: bool = False) -> AcceptResult:
        """Record a valid event as ``accepted``; the same id twice is one row (the second is a no-op).

        ``queued``: record it as ``queued`` straight away, for a caller that enqueues its deliver
        task right after. That saves the ``accepted -> queued`` write, and is as safe: should the
        caller die before enqueueing, the sweeper re-enqueues a stuck ``queued`` row exactly as it
        does a stuck ``accepted`` one.
        """
        return self.accept_many([event], queued=queued)[0]

    def accept_many(self, events: Sequence[ParsedEvent], *, queued: bool = False) -> list[AcceptResult]:
        """``accept`` for a batch, in one INSERT (and one SELECT when some were already there).

        Results come in the order of ``events``. An id seen twice in the batch is created by its
        first occurrence; the later ones are duplicates, as they would be one at a time.
        """
        if not events:
            return []
        now = self.clock()
        initial = Status.QUEUED if queued else Status.ACCEPTED
        rows: dict[str, dict[str, Any]] = {}
        for event in events:
            rows.setdefault(event.notification_id, self._row(event, initial, now))
        with self._single.connect() as conn:
            if self._dialect == "postgresql":
                # The whole batch as one JSON parameter that PostgreSQL unpacks into rows: a small
                # fixed statement (prepared once), where a multi-VALUES INSERT is a new long text
                # with 16 parameters per row for the driver to rewrite on every batch.
                values = list(rows.values())
                batch = json.dumps(values, default=_json_value, ensure_ascii=False)
                created = set(conn.execute(_pg_insert_batch(tuple(values[0])), {"rows": batch}).scalars())
            else:
                # A list of parameter sets with RETURNING: SQLAlchemy sends one multi-VALUES INSERT.
                created = {row.id for row in conn.execute(self._insert_stmt, list(rows.values()))}
        existing = self._existing([i for i in rows if i not in created]) if len(created) < len(rows) else {}
        # What each id holds now: the digest this batch wrote, or the one already stored.
        held = {nid: rows[nid]["payload_digest"] for nid in created}
        results = []
        conflicts: list[tuple[str, str]] = []
        first = set(created)
        for event in events:
            nid = event.notification_id
            if nid in first:
                first.discard(nid)
                results.append(AcceptResult(nid, True, initial))
                continue
            status, accepted = existing[nid] if nid in existing else (initial, held.get(nid))
            received = payload_digest(event)
            conflict = None
            # A rejected row held an event that did not validate, so any valid one differs from it.
            # A row from before digests were kept (None, not rejected) cannot be compared: not counted.
            if received != accepted and (accepted is not None or status is Status.REJECTED):
                conflict = Conflict(accepted, received)
                conflicts.append((nid, received))
            results.append(AcceptResult(nid, False, status, conflict))
        if conflicts:
            self._count_conflicts(conflicts, now)
        return results

    def _existing(self, notification_ids: Sequence[str]) -> dict[str, tuple[Status, str | None]]:
        n = Notification
        with self._single.connect() as conn:
            found = conn.execute(
                select(n.id, n.status, n.payload_digest).where(n.id.in_(notification_ids))
            ).all()
        return {row.id: (Status(row.status), row.payload_digest) for row in found}

    def _count_conflicts(self, conflicts: Sequence[tuple[str, str]], now: datetime) -> None:
        n = Notification
        with self.engine.begin() as conn:
            for nid, digest in conflicts:
                conn.execute(
                    update(n)
                    .where(n.id == nid)
                    .values(conflicts=n.conflicts + 1, conflict_at=now, conflict_digest=digest)
                )

    @staticmethod
    def _row(event: ParsedEvent, status: Status, now: datetime) -> dict[str, Any]:
        return {
            "id": event.notification_id,
            "channel": event.channel.value,
            "event_type": event.event_type,
            "template": event.template,
            "status": status.value,
            "attempts": 0,
            "cycle_attempts_base": 0,
            "recipient": event.recipient,
            "payload": dict(event.payload),
            "meta": {
                "core": dict(event.core),
                "baggage": dict(event.baggage),
                "trace_context": dict(event.trace_context),
            },
            "occurred_at": event.occurred_at,
            "created_at": now,
            "updated_at": now,
            "cycle_started_at": now,
            "payload_digest": payload_digest(event),
        }

    def _statuses_of(self, notification_ids: Sequence[str]) -> dict[str, Status]:
        with self._single.connect() as conn:
            found = conn.execute(
                select(Notification.id, Notification.status).where(Notification.id.in_(notification_ids))
            ).all()
        return {row.id: Status(row.status) for row in found}

    def reject(
        self,
        notification_id: str,
        *,
        reason: str,
        event_type: str | None = None,
        channel: Channel | None = None,
        raw: bytes | None = None,
    ) -> AcceptResult:
        """Record an event that cannot be delivered as ``rejected``, with a size-capped raw copy."""
        now = self.clock()
        created = self._insert_ignore(
            {
                "id": notification_id,
                "channel": channel.value if channel else None,
                "event_type": event_type,
                "status": Status.REJECTED.value,
                "attempts": 0,
                "cycle_attempts_base": 0,
                "error": reason[:MAX_ERROR_CHARS],
                "raw": raw[:MAX_RAW_BYTES] if raw is not None else None,
                "created_at": now,
                "updated_at": now,
                "cycle_started_at": now,
            }
        )
        status = Status.REJECTED if created else self._statuses_of([notification_id])[notification_id]
        return AcceptResult(notification_id, created, status)

    def mark_queued(self, notification_id: str) -> bool:
        """``accepted -> queued`` once the deliver task is on the broker; losing the race is fine."""
        return self._move(notification_id, Status.QUEUED, {Status.ACCEPTED})

    # -- delivery ---------------------------------------------------------------------------

    def claim(self, notification_id: str) -> Claim | None:
        """Atomically take a row for one attempt (``-> sending``); None if another worker has it.

        Raises ``LedgerUnavailable`` when the database is away: nothing was claimed or sent.
        """
        with _away_is_retryable(f"claim of {notification_id}"):
            return self._claim(notification_id)

    def _claim(self, notification_id: str) -> Claim | None:
        now = self.clock()
        token = secrets.token_hex(8)
        params = {"b_id": notification_id, "b_token": token, "b_now": now}
        if self._claim_one_trip is not None:
            with self._single.connect() as conn:
                row = conn.execute(self._claim_one_trip, params).one_or_none()
            if row is None:
                return None
        else:
            with self.engine.begin() as conn:
                row = conn.execute(self._claim_stmt, params).one_or_none()
                if row is None:
                    return None
                conn.execute(
                    insert(Attempt),
                    {
                        "notification_id": notification_id,
                        "number": row.attempts,
                        "claim_token": token,
                        "started_at": now,
                    },
                )
        return Claim(
            notification_id=notification_id,
            token=token,
            channel=Channel(row.channel),
            event_type=row.event_type,
            template=row.template,
            payload=row.payload or {},
            meta=row.meta or {},
            attempt=row.attempts - row.cycle_attempts_base,
            cycle_started_at=row.cycle_started_at,
            occurred_at=row.occurred_at,
        )

    def _finish(
        self,
        claim: Claim | Held,
        target: Status,
        *,
        origins: set[Status],
        values: dict[str, Any],
        outcome: str,
        provider: str | None,
        error: BaseException | Reason | None,
    ) -> bool:
        """One outcome's write; ``LedgerUnavailable`` when the database is away, so it can be retried."""
        now = self.clock()
        n = Notification
        assert all(states.allowed(origin, target) for origin in origins), (origins, target)
        keys = {"b_id": claim.notification_id, "b_token": claim.token, "b_now": now}
        move: Any
        if any(isinstance(value, ColumnElement) for value in values.values()):
            # A SQL expression among the values (an uncounted retry): rare, so built each time.
            move = (
                update(n)
                .where(
                    n.id == claim.notification_id,
                    n.claim_token == claim.token,
                    n.status.in_([s.value for s in origins]),
                )
                .values(status=target.value, updated_at=now, **values)
            )
            params: dict[str, Any] = {}
        else:
            names = tuple(sorted(values))
            move = self._finish_stmt(target, origins, names)
            params = {**keys, **{f"b_{name}": values[name] for name in names}}
        attempt = {
            "b_provider": provider,
            "b_error_class": _error_class(error) if error else None,
            "b_error_message": describe_error(error)[:MAX_ERROR_CHARS] if error else None,
        }
        with _away_is_retryable(f"{target.value} of {claim.notification_id}"):
            if params and self._one_trip:
                one_trip = self._finish_one_trip_stmt(target, origins, tuple(sorted(values)))
                with self._single.connect() as conn:
                    moved = conn.execute(one_trip, {**params, **attempt, "b_outcome": outcome}).scalar_one()
                return bool(moved)
            with self.engine.begin() as conn:
                moved = conn.execute(move, params).rowcount if params else conn.execute(move).rowcount
                conn.execute(
                    self._finish_attempt_stmt,
                    {**keys, **attempt, "b_outcome": outcome if moved else f"{outcome} (late)"},
                )
            return bool(moved)

    def record_sent(self, claim: Claim | Held, receipt: Receipt) -> bool:
        return self._finish(
            claim,
            Status.SENT,
            origins={Status.SENDING, Status.UNKNOWN},
            values={
                "provider": receipt.provider,
                "provider_message_id": receipt.provider_message_id,
                "sent_at": self.clock(),
                "error": None,
            },
            outcome="sent",
            provider=receipt.provider,
            error=None,
        )

    def record_retry(
        self,
        claim: Claim | Held,
        error: BaseException | Reason,
        *,
        provider: str | None,
        next_attempt_at: datetime,
        counted: bool = True,
    ) -> bool:
        """``sending -> retrying``; an uncounted retry (our own rate limit) gives the attempt back."""
        values: dict[str, Any] = {
            "error": describe_error(error),
            "next_attempt_at": next_attempt_at,
            "provider": provider,
        }
        if not counted:
            values["attempts"] = Notification.attempts - 1
        return self._finish(
            claim,
            Status.RETRYING,
            origins={Status.SENDING},
            values=values,
            outcome="retry" if counted else "deferred",
            provider=provider,
            error=error,
        )

    def record_failed(
        self,
        claim: Claim | Held,
        error: BaseException | Reason,
        *,
        provider: str | None,
        status: Status = Status.FAILED,
    ) -> bool:
        """``sending -> failed`` (refused for good), ``-> dead`` (retry budget spent) or ``-> unknown``
        (the provider may have it and nobody can tell: an operator decides)."""
        origins = {Status.SENDING} | ({Status.UNKNOWN} if status is Status.FAILED else set())
        return self._finish(
            claim,
            status,
            origins=origins,
            values={"error": describe_error(error), "provider": provider},
            outcome=status.value,
            provider=provider,
            error=error,
        )

    # -- operators --------------------------------------------------------------------------

    def resend(self, notification_id: str, *, force: bool = False) -> ResendResult:
        """Start a new delivery cycle for a failed (or, forced, a sent) notification."""
        now = self.clock()
        n = Notification
        allowed = states.RESENDABLE_FORCED if force else states.RESENDABLE
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(n)
                .where(
                    n.id == notification_id,
                    n.status.in_([s.value for s in allowed]),
                    n.payload.is_not(None),
                    n.purged_at.is_(None),
                )
                .values(
                    status=Status.QUEUED.value,
                    updated_at=now,
                    cycle_started_at=now,
                    cycle_attempts_base=n.attempts,
                    next_attempt_at=None,
                    claim_token=None,
                )
            ).rowcount
            if moved:
                return ResendResult.QUEUED
            current = conn.execute(
                select(n.status, n.payload.is_(None).label("no_payload")).where(n.id == notification_id)
            ).one_or_none()
        if current is None:
            return ResendResult.NOT_FOUND
        status = Status(current.status)
        if current.no_payload:
            return ResendResult.NOT_RESENDABLE
        if status is Status.SENT:
            return ResendResult.ALREADY_SENT
        if status in {Status.ACCEPTED, Status.QUEUED, Status.SENDING, Status.RETRYING}:
            return ResendResult.IN_FLIGHT
        return ResendResult.NOT_RESENDABLE

    def discard(self, notification_id: str) -> DiscardResult:
        if self._move(notification_id, Status.DISCARDED, states.sources(Status.DISCARDED)):
            return DiscardResult.DISCARDED
        with self.engine.connect() as conn:
            exists = conn.execute(
                select(Notification.id).where(Notification.id == notification_id)
            ).scalar_one_or_none()
        return DiscardResult.REFUSED if exists else DiscardResult.NOT_FOUND

    def _move(self, notification_id: str, target: Status, origins: set[Status] | frozenset[Status]) -> bool:
        assert all(states.allowed(origin, target) for origin in origins), (origins, target)
        n = Notification
        with self._single.connect() as conn:
            return bool(
                conn.execute(
                    update(n)
                    .where(n.id == notification_id, n.status.in_([s.value for s in origins]))
                    .values(status=target.value, updated_at=self.clock())
                ).rowcount
            )

    # -- sweeper ----------------------------------------------------------------------------

    def due_for_enqueue(self, *, stuck_after: float, limit: int = 500) -> list[str]:
        """Rows whose deliver task may have vanished, or whose retry is due; each is touched so a
        concurrent sweeper cannot pick it too, and so it waits ``stuck_after`` before the next try."""
        now = self.clock()
        cutoff = now - timedelta(seconds=stuck_after)
        n = Notification
        stuck = and_(n.status.in_([Status.ACCEPTED.value, Status.QUEUED.value]), n.updated_at < cutoff)
        due = and_(n.status == Status.RETRYING.value, n.next_attempt_at <= now)
        with self.engine.begin() as conn:
            candidates = conn.execute(
                select(n.id, n.status).where(or_(stuck, due)).order_by(n.updated_at).limit(limit)
            ).all()
            taken: list[str] = []
            for row in candidates:
                if row.status == Status.RETRYING.value:
                    guard = and_(n.status == Status.RETRYING.value, n.next_attempt_at <= now)
                    values: dict[str, Any] = {"next_attempt_at": now + timedelta(seconds=stuck_after)}
                else:
                    guard = stuck
                    values = {"updated_at": now}
                if conn.execute(update(n).where(n.id == row.id, guard).values(**values)).rowcount:
                    taken.append(row.id)
        return taken

    def expire_sending(self, *, older_than: float) -> list[str]:
        """``sending -> unknown`` for rows whose worker went silent mid-send; never resent on its own."""
        now = self.clock()
        cutoff = now - timedelta(seconds=older_than)
        n = Notification
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(n)
                .where(n.status == Status.SENDING.value, n.updated_at < cutoff)
                .values(
                    status=Status.UNKNOWN.value,
                    updated_at=now,
                    error="worker went silent after handing the message to the provider; outcome unknown",
                )
                .returning(n.id)
            ).all()
        return [row.id for row in rows]

    def purge_personal_data(self, *, older_than_days: float) -> int:
        """Drop payload, recipient and raw bytes of finished rows past retention; keep the metadata."""
        now = self.clock()
        cutoff = now - timedelta(days=older_than_days)
        n = Notification
        finished = [
            s.value for s in (Status.SENT, Status.DISCARDED, Status.REJECTED, Status.FAILED, Status.DEAD)
        ]
        finished += [s.value for s in sorted(states.RECEIPT_STATUSES)]  # delivered, bounced, complained
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    update(n)
                    .where(n.status.in_(finished), n.updated_at < cutoff, n.purged_at.is_(None))
                    .values(payload=None, recipient=None, raw=None, purged_at=now)
                ).rowcount
            )

    def ids_in(self, statuses: Sequence[Status], *, limit: int = 100_000) -> list[str]:
        n = Notification
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(n.id)
                    .where(n.status.in_([s.value for s in statuses]))
                    .order_by(n.created_at, n.id)
                    .limit(limit)
                ).scalars()
            )
