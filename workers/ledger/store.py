"""The ledger's writes: accept, claim, record outcomes, resend, discard, and the sweeper's moves.

Every status change is a ``Transition``: one compare-and-set UPDATE (``WHERE status IN (...)``)
whose origins come from ``states``, built once by ``statements.transition`` and run by
``Ledger._move``, so two workers, a redelivered task or a racing resend can never both win.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, CursorResult, Engine, Select, Update, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from workers import jsoncodec
from workers.errors import LedgerUnavailable
from workers.events import ParsedEvent
from workers.ledger import statements, states
from workers.ledger.driver import DriverStatement
from workers.ledger.statements import BY_CLAIM, BY_ID, HAS_PAYLOAD, IDLE, NOTIFICATIONS, Change, Value
from workers.ledger.states import DiscardResult, ResendResult, explain_resend
from workers.messages import Channel, Receipt, Status
from workers.receipts import RecipientKeys, SuppressionReason

MAX_ERROR_CHARS = 2000
MAX_RAW_BYTES = 64 * 1024
SILENT_WORKER = "worker went silent after handing the message to the provider; outcome unknown"

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
    # The suppression list's answer, read by the claim's own statement: ``keyed`` says the row
    # holds its recipient's key, and then ``suppressed`` is why they are listed (None: they are
    # not). An unkeyed row's recipient must be looked up apart.
    keyed: bool = False
    suppressed: SuppressionReason | None = None


@dataclass(frozen=True, slots=True)
class SentWrite:
    """What ``record_sent`` did: whether it moved the row, and whether receipts wait for its message id."""

    moved: bool
    receipts_waiting: bool


@dataclass(frozen=True, slots=True)
class Held:
    """The claim behind an outcome that still has to be written: the row's id and its claim token."""

    notification_id: str
    token: str


@contextmanager
def away_is_retryable(what: str) -> Iterator[None]:
    """Raise ``LedgerUnavailable`` when the database is away (worth retrying the write); a bad
    statement's error passes unchanged."""
    try:
        yield
    except DBAPIError as exc:
        if isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated:
            raise LedgerUnavailable(f"{what}: {type(exc.orig).__name__}") from exc
        raise


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


def _json_value(value: object) -> str:
    """Timestamps in the batch's JSON: ISO 8601 with the offset, which timestamptz reads exactly."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass(frozen=True, eq=False)
class Transition:
    """A move of the state machine: rows in ``origins`` (and ``where``) go to ``target`` with ``changes``.

    Compared by identity: each is a module constant, and a ledger builds its statement once.
    """

    origins: frozenset[Status]
    target: Status
    changes: Mapping[str, Change] = field(default_factory=dict)
    where: tuple[ColumnElement[bool], ...] = (BY_ID,)
    returning: tuple[str | ColumnElement[Any], ...] = ()

    def statement(self) -> Update:
        return statements.transition(
            self.origins, self.target, self.changes, where=self.where, returning=self.returning
        )


def _edge(origins: frozenset[Status], target: Status, **kwargs: Any) -> Transition:
    """A transition along edges of ``states.TRANSITIONS`` only; a wrong one fails at import."""
    if not origins or not all(states.allowed(origin, target) for origin in origins):
        raise ValueError(f"not edges of the state machine: {sorted(origins)} -> {target}")
    return Transition(origins, target, **kwargs)


_n = NOTIFICATIONS.c
# What a claim reads back from the row it took, the suppression list's answer for its recipient included.
CLAIM_COLUMNS: tuple[str | ColumnElement[Any], ...] = (
    "id",
    "channel",
    "event_type",
    "template",
    "payload",
    "meta",
    "attempts",
    "cycle_attempts_base",
    "cycle_started_at",
    "occurred_at",
    "recipient_key",
    statements.SUPPRESSION_OF_ROW,
)
CLAIM = _edge(
    states.CLAIMABLE,
    Status.SENDING,
    changes={
        "attempts": _n.attempts + 1,
        "claim_token": statements.param("b_token", NOTIFICATIONS, "claim_token"),
        "next_attempt_at": Value.NULL,
    },
    returning=CLAIM_COLUMNS,
)
# The claim's answer again, read from a row still `sending` under the token that claimed it.
OWN_CLAIM: Select[Any] = select(*statements.row_columns(CLAIM_COLUMNS)).where(
    BY_ID, _n.status == Status.SENDING.value, BY_CLAIM
)
QUEUE = _edge(states.sources(Status.QUEUED), Status.QUEUED)
DISCARD = _edge(states.sources(Status.DISCARDED), Status.DISCARDED)
EXPIRE = _edge(
    states.sources(Status.UNKNOWN),
    Status.UNKNOWN,
    changes={"error": Value.GIVEN},
    where=(IDLE,),
    returning=("id",),
)


def _outcome(
    target: Status, returning: tuple[str | ColumnElement[Any], ...] = ("id",), **changes: Change
) -> Transition:
    """An attempt's outcome: only the attempt that holds the row (its claim token) may write it.

    It returns the row it moved (none when it did not), so the plain and the one-statement paths
    answer alike.
    """
    return _edge(
        states.outcome_sources(target), target, changes=changes, where=(BY_ID, BY_CLAIM), returning=returning
    )


SENT = _outcome(
    Status.SENT,
    returning=("id", statements.RECEIPTS_WAITING),
    provider=Value.GIVEN,
    provider_message_id=Value.GIVEN,
    sent_at=Value.NOW,
    error=Value.NULL,
)
RETRY = _outcome(Status.RETRYING, error=Value.GIVEN, next_attempt_at=Value.GIVEN, provider=Value.GIVEN)
# Our own rate limit deferred the send: the attempt is given back.
DEFER = _outcome(
    Status.RETRYING,
    error=Value.GIVEN,
    next_attempt_at=Value.GIVEN,
    provider=Value.GIVEN,
    attempts=_n.attempts - 1,
)
GIVE_UP = {
    status: _outcome(status, error=Value.GIVEN, provider=Value.GIVEN)
    for status in (Status.FAILED, Status.DEAD, Status.UNKNOWN)
}


def _restart(origins: frozenset[Status]) -> Transition:
    """An operator's resend: outside the forward-only table, the one way back to `queued`."""
    return Transition(
        origins,
        Status.QUEUED,
        changes={
            "cycle_started_at": Value.NOW,
            "cycle_attempts_base": _n.attempts,
            "next_attempt_at": Value.NULL,
            "claim_token": Value.NULL,
        },
        where=(BY_ID, HAS_PAYLOAD),
    )


RESEND = _restart(states.RESENDABLE)
RESEND_FORCED = _restart(states.RESENDABLE_FORCED)


class FastPath(enum.Enum):
    """A PostgreSQL-only way to run a write, behind the same method as the plain one."""

    # Claim and its attempt's INSERT as one statement (data-modifying CTEs), in autocommit: one
    # round trip instead of BEGIN, two statements and COMMIT.
    CLAIM = "claim"
    # An outcome's move and its attempt's outcome as one statement, likewise.
    OUTCOME = "outcome"
    # A batch of new rows as one JSON parameter that PostgreSQL unpacks: a small fixed statement
    # (prepared once), where a multi-VALUES INSERT is a long text the driver rewrites per batch.
    BATCH = "batch"


class Ledger:
    """The source of truth for every notification's fate.

    ``fast_paths`` are used on PostgreSQL only (SQLite has no writes inside WITH, and no network
    between it and us); ``bench/ledger_paths.py`` measures each against the plain path.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = utcnow,
        fast_paths: Collection[FastPath] = tuple(FastPath),
        recipient_keys: RecipientKeys | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        # Keys each accepted row's recipient for the claim's suppression answer; without it rows
        # are kept unkeyed and the dispatcher looks their recipient up apart.
        self._keys = recipient_keys
        self._dialect = engine.dialect.name
        self._fast = frozenset(fast_paths) if self._dialect == "postgresql" else frozenset()
        # One statement is its own transaction: no BEGIN and COMMIT round trips around it.
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._insert = statements.insert_ignoring_duplicates(self._dialect)
        self._built: dict[Transition, Update] = {}
        self._one_trip: dict[Transition, DriverStatement] = {}
        self._batches: dict[tuple[str, ...], DriverStatement] = {}

    def _statement(self, move: Transition) -> Update:
        stmt = self._built.get(move)
        if stmt is None:
            stmt = self._built[move] = move.statement()
        return stmt

    def _with_attempt(self, move: Transition) -> DriverStatement:
        """``move`` and its attempt's write as one statement (``FastPath.CLAIM`` and ``OUTCOME``),
        run on the driver's connection (``driver.DriverStatement``)."""
        stmt = self._one_trip.get(move)
        if stmt is None:
            built = self._statement(move)
            one_trip = (
                statements.claim_starting_attempt(built)
                if move is CLAIM
                else statements.move_finishing_attempt(built)
            )
            stmt = self._one_trip[move] = DriverStatement(self.engine, one_trip)
        return stmt

    def _batch_insert(self, columns: tuple[str, ...]) -> DriverStatement:
        stmt = self._batches.get(columns)
        if stmt is None:
            built = statements.insert_json_batch(columns)
            stmt = self._batches[columns] = DriverStatement(self.engine, built)
        return stmt

    def _move(self, conn: Connection, move: Transition, params: Mapping[str, object]) -> CursorResult[Any]:
        """Run ``move``'s compare-and-set; ``params`` name the row and give the changed values."""
        return conn.execute(self._statement(move), {"b_now": self.clock(), **params})

    # -- intake -----------------------------------------------------------------------------

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
            # Only an id's first occurrence is built: a row costs a digest and a keyed hash.
            if event.notification_id not in rows:
                rows[event.notification_id] = self._row(event, initial, now)
        values = list(rows.values())
        if FastPath.BATCH in self._fast:
            batch = jsoncodec.dumps(values, default=_json_value)
            created = {row[0] for row in self._batch_insert(tuple(values[0])).run({"rows": batch})}
        else:
            with self._single.connect() as conn:
                # A list of parameter sets with RETURNING: SQLAlchemy sends one multi-VALUES INSERT.
                created = {row.id for row in conn.execute(self._insert, values)}
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
            with self.engine.begin() as conn:
                for nid, digest in conflicts:
                    conn.execute(statements.COUNT_CONFLICT, {"b_id": nid, "b_now": now, "b_digest": digest})
        return results

    def _existing(self, notification_ids: Sequence[str]) -> dict[str, tuple[Status, str | None]]:
        with self._single.connect() as conn:
            found = conn.execute(statements.digests_of(notification_ids)).all()
        return {row.id: (Status(row.status), row.payload_digest) for row in found}

    def _recipient_key(self, event: ParsedEvent) -> str | None:
        """The key the suppression list knows the recipient by; None when the hash cannot spell them.

        ``event.recipient`` is the payload's own recipient field as validation left it, the very
        string the composer addresses the message to, so intake and send hash the same recipient.
        """
        if self._keys is None:
            return None
        try:
            return self._keys.key_of(event.channel, event.recipient)
        except ValueError:
            return None

    def _row(self, event: ParsedEvent, status: Status, now: datetime) -> dict[str, Any]:
        return {
            "id": event.notification_id,
            "channel": event.channel.value,
            "event_type": event.event_type,
            "template": event.template,
            "status": status.value,
            "attempts": 0,
            "cycle_attempts_base": 0,
            "recipient": event.recipient,
            "recipient_key": self._recipient_key(event),
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
        row = {
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
        with self._single.connect() as conn:
            created = conn.execute(self._insert, row).first() is not None
        status = Status.REJECTED if created else self.status_of(notification_id)
        return AcceptResult(notification_id, created, status or Status.REJECTED)

    def mark_queued(self, notification_id: str) -> bool:
        """``accepted -> queued`` once the deliver task is on the broker; losing the race is fine."""
        with self._single.connect() as conn:
            return bool(self._move(conn, QUEUE, {"b_id": notification_id}).rowcount)

    # -- delivery ---------------------------------------------------------------------------

    def claim(self, notification_id: str, *, token: str | None = None) -> Claim | None:
        """Atomically take a row for one attempt (``-> sending``); None if another worker has it.

        Raises ``LedgerUnavailable`` when the database is away: nothing was sent. The claim itself
        may have committed with its answer lost on the way back; a retry that passes the same
        ``token`` then finds the row `sending` under that token and takes it as its own.
        """
        with away_is_retryable(f"claim of {notification_id}"):
            claim = self._claim(notification_id, token or secrets.token_hex(8))
            if claim is None and token is not None:
                claim = self._own_lost_claim(notification_id, token)
            return claim

    def _own_lost_claim(self, notification_id: str, token: str) -> Claim | None:
        """The row this token claimed in an attempt that never heard the answer, if it still holds it."""
        with self._single.connect() as conn:
            row = conn.execute(OWN_CLAIM, {"b_id": notification_id, "b_token": token}).one_or_none()
        return None if row is None else self._claim_of(notification_id, token, row)

    def _claim_of(self, notification_id: str, token: str, row: Any) -> Claim:
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
            keyed=row.recipient_key is not None,
            suppressed=SuppressionReason(row.suppressed) if row.suppressed is not None else None,
        )

    def _claim(self, notification_id: str, token: str) -> Claim | None:
        params = {"b_id": notification_id, "b_token": token, "b_now": self.clock()}
        if FastPath.CLAIM in self._fast:
            # The primary key names one row at most.
            row = next(iter(self._with_attempt(CLAIM).run(params)), None)
        else:
            with self.engine.begin() as conn:
                row = self._move(conn, CLAIM, params).one_or_none()
                if row is not None:
                    conn.execute(statements.START_ATTEMPT, {**params, "b_number": row.attempts})
        return None if row is None else self._claim_of(notification_id, token, row)

    def _finish(
        self,
        claim: Claim | Held,
        move: Transition,
        values: Mapping[str, object],
        *,
        outcome: str,
        provider: str | None,
        error: BaseException | Reason | None,
    ) -> Any:
        """One outcome's write: what ``move`` returns of the row it moved, None when it did not move it.

        ``LedgerUnavailable`` when the database is away, so it can be retried.
        """
        params: dict[str, object] = {
            "b_id": claim.notification_id,
            "b_token": claim.token,
            "b_now": self.clock(),
            **{f"b_{name}": value for name, value in values.items()},
            "b_provider": provider,
            "b_error_class": _error_class(error) if error else None,
            "b_error_message": describe_error(error)[:MAX_ERROR_CHARS] if error else None,
        }
        with away_is_retryable(f"{move.target.value} of {claim.notification_id}"):
            if FastPath.OUTCOME in self._fast:
                return next(iter(self._with_attempt(move).run({**params, "b_outcome": outcome})), None)
            with self.engine.begin() as conn:
                moved = conn.execute(self._statement(move), params).first()
                late = outcome if moved is not None else f"{outcome} (late)"
                conn.execute(statements.FINISH_ATTEMPT, {**params, "b_outcome": late})
            return moved

    def record_sent(self, claim: Claim | Held, receipt: Receipt) -> SentWrite:
        """``sending -> sent`` (or a late answer for an `unknown` row); the same statement tells
        whether receipts that beat this answer wait for its message id (``ReceiptBook.apply_waiting``)."""
        values = {"provider_message_id": receipt.provider_message_id}
        row = self._finish(claim, SENT, values, outcome="sent", provider=receipt.provider, error=None)
        if row is None:
            return SentWrite(moved=False, receipts_waiting=False)
        return SentWrite(moved=True, receipts_waiting=bool(row.receipts_waiting))

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
        moved = self._finish(
            claim,
            RETRY if counted else DEFER,
            {"error": describe_error(error), "next_attempt_at": next_attempt_at},
            outcome="retry" if counted else "deferred",
            provider=provider,
            error=error,
        )
        return moved is not None

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
        moved = self._finish(
            claim,
            GIVE_UP[status],
            {"error": describe_error(error)},
            outcome=status.value,
            provider=provider,
            error=error,
        )
        return moved is not None

    # -- operators --------------------------------------------------------------------------

    def status_of(self, notification_id: str) -> Status | None:
        """The row's status, or None when the ledger has no such notification."""
        with self._single.connect() as conn:
            value = conn.execute(statements.STATUS_OF, {"b_id": notification_id}).scalar()
        return Status(value) if value else None

    def resend(self, notification_id: str, *, force: bool = False) -> ResendResult:
        """Start a new delivery cycle for a failed (or, forced, a sent) notification."""
        with self.engine.begin() as conn:
            if self._move(conn, RESEND_FORCED if force else RESEND, {"b_id": notification_id}).rowcount:
                return ResendResult.QUEUED
            current = conn.execute(statements.RESEND_STATE, {"b_id": notification_id}).one_or_none()
        if current is None:
            return ResendResult.NOT_FOUND
        result = explain_resend(Status(current.status), force=force, purged=current.no_payload)
        # The rules say yes, yet the move found nothing: the row was on its way and has just landed.
        return ResendResult.IN_FLIGHT if result is ResendResult.QUEUED else result

    def discard(self, notification_id: str) -> DiscardResult:
        with self._single.connect() as conn:
            if self._move(conn, DISCARD, {"b_id": notification_id}).rowcount:
                return DiscardResult.DISCARDED
        return DiscardResult.NOT_FOUND if self.status_of(notification_id) is None else DiscardResult.REFUSED

    def ids_in(self, statuses: Collection[Status], *, limit: int = 100_000) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(statements.ids_in(statuses, limit)).scalars())

    def ids_to_resend_in_bulk(self) -> list[str]:
        """What ``failed resend --all`` takes: only rows that certainly never reached anyone."""
        return self.ids_in(states.RESEND_IN_BULK)

    # -- sweeper ----------------------------------------------------------------------------

    def due_for_enqueue(self, *, stuck_after: float, limit: int = 500) -> list[str]:
        """Rows whose deliver task may have vanished, or whose retry is due; each is touched so a
        concurrent sweeper cannot pick it too, and so it waits ``stuck_after`` before the next try."""
        now = self.clock()
        params = {"b_now": now, "b_cutoff": now - timedelta(seconds=stuck_after)}
        touch_stuck = statements.touch_stuck(states.AWAITING_TASK)
        touch_due = statements.touch_due(Status.RETRYING)
        with self.engine.begin() as conn:
            candidates = conn.execute(
                statements.due_for_enqueue(states.AWAITING_TASK, Status.RETRYING, limit), params
            ).all()
            taken: list[str] = []
            for row in candidates:
                if row.status == Status.RETRYING.value:
                    later = now + timedelta(seconds=stuck_after)
                    touched = conn.execute(touch_due, {**params, "b_id": row.id, "b_next_attempt_at": later})
                else:
                    touched = conn.execute(touch_stuck, {**params, "b_id": row.id})
                if touched.rowcount:
                    taken.append(row.id)
        return taken

    def expire_sending(self, *, older_than: float) -> list[str]:
        """``sending -> unknown`` for rows whose worker went silent mid-send; never resent on its own."""
        now = self.clock()
        params = {"b_now": now, "b_cutoff": now - timedelta(seconds=older_than), "b_error": SILENT_WORKER}
        with self.engine.begin() as conn:
            return [row.id for row in self._move(conn, EXPIRE, params).all()]

    def purge_personal_data(self, *, older_than_days: float) -> int:
        """Drop payload, recipient and raw bytes of finished rows past retention; keep the metadata."""
        now = self.clock()
        params = {"b_now": now, "b_cutoff": now - timedelta(days=older_than_days)}
        with self.engine.begin() as conn:
            return int(conn.execute(statements.purge(states.PURGEABLE), params).rowcount)
