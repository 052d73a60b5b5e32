"""The use case: accept an event, then claim, render, send and record one notification; no Celery here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Literal, Protocol

import structlog

from workers.compose import Composer
from workers.errors import (
    GiveUp,
    InvalidEvent,
    LedgerUnavailable,
    MaybeDelivered,
    NotOurEvent,
    ProviderMisconfigured,
    RateLimited,
    RecipientSuppressed,
    RetryLater,
    TemplateError,
)
from workers.events import ParsedEvent, parse_event
from workers.events.schema import KINDS
from workers.ledger import AcceptResult, Claim, Held, Ledger, Reason, describe_error, states
from workers.ledger.receipts import Moved, RecordResult
from workers.ledger.states import ATTEMPT_OUTCOMES, GAVE_UP
from workers.messages import Channel, Receipt, Status, StatusChange
from workers.providers.base import EmailProvider, SmsProvider
from workers.receipts import DeliveryReceipt, SuppressionChange, SuppressionReason
from workers.retry import RetryPolicy
from workers.tracing import delivery_span, provider_span

log = structlog.get_logger("workers.dispatch")
# How long a send waits for the suppression list's database before giving the attempt up to a
# retry: longer than a failover's usual blip, well inside NOTIFY_SENDING_TIMEOUT's default (600 s).
SUPPRESSION_OUTAGE_WAIT = 30.0

Enqueue = Callable[[str, str], None]  # (notification_id, non-personal label for Flower)


class _Timer:
    """Measures the provider call alone (not rendering), for the latency histogram."""

    seconds: float | None = None

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """An outcome the ledger could not take (its database was away), kept to write again.

    It travels in the deliver task's retry, so it holds ids, statuses and codes only: the claim
    token, the provider's name and message id, the error's class and code; never an address or
    a provider's free text.
    """

    token: str
    status: Status
    provider: str | None = None
    provider_message_id: str | None = None
    error_class: str | None = None
    error_code: str | None = None
    retry_in: float | None = None  # for `retrying`: the wait chosen when the answer came
    counted: bool = True  # for `retrying`: whether the attempt counts against the budget

    def as_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "status": self.status.value,
            "provider": self.provider,
            "provider_message_id": self.provider_message_id,
            "error_class": self.error_class,
            "error_code": self.error_code,
            "retry_in": self.retry_in,
            "counted": self.counted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unrecorded:
        """The outcome back from a task's arguments; ``ValueError`` names the field that is wrong."""

        def text(name: str) -> str | None:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"unrecorded outcome: {name} must be a string, got {type(value).__name__}")
            return value

        token, status = text("token"), text("status")
        if not token:
            raise ValueError("unrecorded outcome: token is missing")
        if status not in {s.value for s in _LATE_STATUSES}:
            raise ValueError(f"unrecorded outcome: status {status!r} is not one a delivery ends in")
        retry_in = data.get("retry_in")
        if retry_in is not None and not isinstance(retry_in, int | float):
            raise ValueError("unrecorded outcome: retry_in must be a number")
        return cls(
            token=token,
            status=Status(status),
            provider=text("provider"),
            provider_message_id=text("provider_message_id"),
            error_class=text("error_class"),
            error_code=text("error_code"),
            retry_in=float(retry_in) if retry_in is not None else None,
            counted=bool(data.get("counted", True)),
        )

    @property
    def reason(self) -> Reason:
        """What the ledger says about a late failure: the class and code; the text is in the log."""
        code = f" [code {self.error_code}]" if self.error_code else ""
        return Reason(
            self.error_class or "Error",
            f"{self.error_class or 'Error'}{code} (written after a database outage; "
            "the provider's full answer is in the worker log)",
        )


def _held(
    claim: Claim,
    status: Status,
    provider: str | None,
    exc: BaseException,
    *,
    retry_in: float | None = None,
    counted: bool = True,
) -> Unrecorded:
    code = getattr(exc, "code", None)
    return Unrecorded(
        claim.token,
        status,
        provider=provider,
        error_class=type(exc).__name__,
        error_code=str(code) if code is not None else None,
        retry_in=retry_in,
        counted=counted,
    )


_LATE_STATUSES = ATTEMPT_OUTCOMES
FAILURES = GAVE_UP


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one deliver call did; ``retry_in`` is set when the next attempt should be scheduled.

    ``unrecorded`` is set when the provider answered but the ledger could not take the outcome:
    the caller writes it again (``Dispatcher.record_late``) and never sends again. ``reason`` is
    the ledger's reason for a failure.
    """

    notification_id: str
    status: Status | None  # None: another worker holds the row, or it is already done
    provider: str | None = None
    retry_in: float | None = None
    reason: str | None = None
    unrecorded: Unrecorded | None = None
    provider_message_id: str | None = None  # for `sent`: what the provider calls the message
    # For `sent`: receipts that came before the provider's answer wait for its message id (the
    # `sent` write saw them); only then is there anything for ``ReceiptBook.apply_waiting`` to do.
    receipts_waiting: bool = False


class Observer(Protocol):
    """Hears what happened to each notification (metrics hang here); must never raise."""

    def intake(self, outcome: Intake, event_type: str | None, channel: str | None) -> None: ...

    def delivered(
        self,
        claim: Claim,
        status: Status,
        provider: str | None,
        *,
        provider_seconds: float | None,
        end_to_end_seconds: float | None,
    ) -> None: ...

    def swept(self, found: dict[str, int]) -> None: ...

    def suppressed(self, channel: str, mode: str) -> None: ...

    def receipts(self, provider: str, effect: str, count: int) -> None: ...

    def moved(self, moved: Moved) -> None: ...


class NullObserver:
    """The observer used when nobody is listening."""

    def intake(self, outcome: Intake, event_type: str | None, channel: str | None) -> None:
        pass

    def delivered(
        self,
        claim: Claim,
        status: Status,
        provider: str | None,
        *,
        provider_seconds: float | None,
        end_to_end_seconds: float | None,
    ) -> None:
        pass

    def swept(self, found: dict[str, int]) -> None:
        pass

    def suppressed(self, channel: str, mode: str) -> None:
        pass

    def receipts(self, provider: str, effect: str, count: int) -> None:
        pass

    def moved(self, moved: Moved) -> None:
        pass


class SuppressionGate(Protocol):
    """Answers, before a send, whether the recipient is on the suppression list and why; and puts
    a recipient on it when the provider's refusal says they cannot or will not receive."""

    def reason(self, channel: Channel, recipient: str) -> SuppressionReason | None: ...

    def add(self, channel: Channel, recipient: str, reason: SuppressionReason, *, source: str) -> bool: ...


class ReceiptLedger(Protocol):
    """The ledger's receipts (``ledger.receipts.ReceiptBook``), as the use case needs them."""

    def record(
        self, receipts: Sequence[DeliveryReceipt], changes: Sequence[SuppressionChange] = ()
    ) -> RecordResult: ...

    def apply_waiting(self, provider: str, provider_message_id: str) -> list[Moved]: ...

    def match_waiting(self, *, limit: int = 1000) -> list[Moved]: ...

    def drop_unmatched(self, *, older_than: float) -> int: ...


class Announcer(Protocol):
    """Tells the bus a notification reached a final status, after the ledger committed it; never raises."""

    def announce(self, change: StatusChange) -> None: ...


class Silent:
    """The announcer when ``NOTIFY_STATUS_EVENTS`` is off."""

    def announce(self, change: StatusChange) -> None:
        pass


SuppressionMode = Literal["enforce", "record", "off"]


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One raw message from the event bus, as the broker handed it over."""

    body: bytes
    content_type: str | None
    routing_key: str | None


class Intake(StrEnum):
    """What became of one message from the event bus."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # a duplicate id carrying a different payload: dropped, but counted
    REJECTED = "rejected"
    IGNORED = "ignored"  # another service's event type, reaching us through a broad binding


def intake_outcome(result: AcceptResult) -> Intake:
    if result.created:
        return Intake.ACCEPTED
    return Intake.DUPLICATE if result.conflict is None else Intake.CONFLICT


def label(notification_id: str, channel: str | None, detail: str | None) -> str:
    """The task description Flower shows: ids and kinds, never addresses."""
    return " ".join(part for part in ("notification", notification_id, channel, detail) if part)


# Caps on what the event's envelope puts into every log line of its notification.
MAX_LOG_NAME_CHARS = 128
MAX_LOG_BAGGAGE_ITEMS = 16
MAX_LOG_BAGGAGE_CHARS = 256


def _capped(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def correlation(core: Mapping[str, Any], baggage: Mapping[str, Any]) -> dict[str, Any]:
    """``core.id``, ``core.name`` and ``baggage`` for the log context of one notification.

    Baggage keys and values are correlation data, not personal data, by the platform's contract
    (the log's masking still applies); they are capped so a producer cannot bloat every line.
    """
    items = sorted((str(k), str(v)) for k, v in baggage.items())[:MAX_LOG_BAGGAGE_ITEMS]
    return {
        "core_id": _capped(str(core.get("id") or ""), MAX_LOG_NAME_CHARS) or None,
        "core_name": _capped(str(core.get("name") or ""), MAX_LOG_NAME_CHARS) or None,
        "baggage": {_capped(k, MAX_LOG_NAME_CHARS): _capped(v, MAX_LOG_BAGGAGE_CHARS) for k, v in items},
    }


class Dispatcher:
    """Owns the flow of one notification; collaborators come in through the constructor."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        composer: Composer,
        email: EmailProvider,
        sms: SmsProvider,
        policy: RetryPolicy,
        enqueue: Enqueue,
        observer: Observer | None = None,
        on_maybe_delivered: Literal["retry", "unknown"] = "retry",
        misconfigured_backoff: float = 900.0,
        suppression: SuppressionGate | None = None,
        suppression_mode: SuppressionMode = "enforce",
        receipts: ReceiptLedger | None = None,
        receipt_wait: float = 3600.0,
        announcer: Announcer | None = None,
        suppression_outage_wait: float = SUPPRESSION_OUTAGE_WAIT,
    ) -> None:
        self.observer: Observer = observer or NullObserver()
        # No gate (or mode off): no lookup at all before a send.
        self.suppression = suppression if suppression_mode != "off" else None
        self.suppression_mode = suppression_mode
        self.suppression_outage_wait = suppression_outage_wait
        self.receipts = receipts
        self.receipt_wait = receipt_wait
        self.announcer: Announcer = announcer or Silent()
        self.misconfigured_backoff = misconfigured_backoff
        # Providers this process has already shouted about; a send they accept re-arms the shout.
        self._shouted: set[str] = set()
        self._shout_lock = threading.Lock()
        self.on_maybe_delivered = on_maybe_delivered
        self.ledger = ledger
        self.composer = composer
        self.email = email
        self.sms = sms
        self.policy = policy
        self.enqueue = enqueue

    # -- intake -----------------------------------------------------------------------------

    def accept(self, event: ParsedEvent) -> AcceptResult:
        """Record the event, then hand its id to a deliver task; a duplicate is a no-op."""
        return self.accept_many([event])[0]

    def accept_many(self, events: Sequence[ParsedEvent]) -> list[AcceptResult]:
        """``accept`` for a batch: one ledger write for all of them, then one deliver task each."""
        # Recorded as `queued` at once, one write instead of accept + mark_queued. Should this
        # process die, or the enqueue fail, before the deliver task is on the broker, the sweeper
        # re-enqueues the stuck `queued` row (after NOTIFY_STUCK_AFTER) as it would an `accepted` one.
        results = self.ledger.accept_many(events, queued=True)
        for event, result in zip(events, results, strict=True):
            bound = log.bind(
                notification_id=event.notification_id,
                event_type=event.event_type,
                **correlation(event.core, event.baggage),
            )
            if result.created or result.status is Status.ACCEPTED:
                # Also for a duplicate still in `accepted` (recorded by an older worker): the first
                # accept may have died before enqueueing, and a second deliver task is harmless.
                self.enqueue(
                    event.notification_id, label(event.notification_id, event.channel, event.template)
                )
                if result.status is Status.ACCEPTED:
                    self.ledger.mark_queued(event.notification_id)
                bound.info("event.accepted", duplicate=not result.created)
            elif result.conflict is not None:
                # The id is the dedup key, so the ledger keeps the first event; a producer reusing an
                # id for another event must hear of it. Digests only: payloads hold personal data.
                bound.warning(
                    "event.conflicting_duplicate",
                    status=result.status.value,
                    accepted_digest=result.conflict.accepted_digest,
                    received_digest=result.conflict.received_digest,
                )
            else:
                bound.info("event.duplicate", status=result.status.value)
            self.observer.intake(intake_outcome(result), event.event_type, event.channel.value)
        return results

    def receive(
        self,
        body: bytes,
        content_type: str | None,
        routing_key: str | None,
        *,
        templates: Collection[str],
    ) -> Intake:
        """One raw message from the bus: decode, validate, then accept or record the rejection."""
        return self.receive_many([BusMessage(body, content_type, routing_key)], templates=templates)[0]

    def receive_many(self, messages: Sequence[BusMessage], *, templates: Collection[str]) -> list[Intake]:
        """Raw bus messages, in order: each decoded and validated; the valid ones accepted together.

        A rejection or an ignored type is settled on its own and never holds up its neighbours;
        an exception (the database is down) means none of the batch is settled.
        """
        outcomes: list[Intake | None] = []
        valid: list[ParsedEvent] = []
        for message in messages:
            try:
                valid.append(
                    parse_event(
                        message.body,
                        message.content_type,
                        routing_key=message.routing_key,
                        templates=templates,
                    )
                )
            except NotOurEvent as exc:
                log.info("event.ignored", event_type=exc.type_name, routing_key=message.routing_key)
                self.observer.intake(Intake.IGNORED, exc.type_name, None)
                outcomes.append(Intake.IGNORED)
            except InvalidEvent as exc:
                self.reject(exc, raw=message.body)
                outcomes.append(Intake.REJECTED)
            else:
                outcomes.append(None)  # settled by the batch accept below
        accepted = iter(self.accept_many(valid))
        return [outcome or intake_outcome(next(accepted)) for outcome in outcomes]

    def reject(self, error: InvalidEvent, *, raw: bytes | None = None) -> AcceptResult:
        notification_id = error.notification_id or "unknown"
        kind = KINDS.get(error.event_type or "")
        result = self.ledger.reject(
            notification_id,
            reason=str(error),
            event_type=error.event_type,
            # So `notify failed list --channel sms` finds rejected SMS events too.
            channel=kind.channel if kind else None,
            raw=raw,
        )
        log.warning(
            "event.rejected",
            notification_id=notification_id,
            event_type=error.event_type,
            field=error.field,
            reason=error.reason,
            duplicate=not result.created,
        )
        if result.created:
            self.observer.intake(Intake.REJECTED, error.event_type, None)
            # The field's name only: a rejection's text may quote the hostile value itself.
            self.announcer.announce(
                StatusChange(
                    notification_id=notification_id,
                    old=None,
                    new=Status.REJECTED,
                    at=self.ledger.clock(),
                    channel=kind.channel.value if kind else None,
                    event_type=error.event_type,
                    reason=f"invalid {error.field}" if error.field else "invalid event",
                )
            )
        return result

    # -- receipts ---------------------------------------------------------------------------

    def record_receipts(
        self, receipts: Sequence[DeliveryReceipt], changes: Sequence[SuppressionChange] = ()
    ) -> RecordResult:
        """One batch of provider receipts into the ledger, then its status changes onto the bus.

        Raises ``LedgerUnavailable`` when the database is away (nothing was kept: retry the batch).
        """
        if self.receipts is None:
            raise RuntimeError("this dispatcher was built without a receipt ledger")
        result = self.receipts.record(receipts, changes)
        counts: dict[tuple[str, str], int] = {}
        for receipt in receipts:
            key = (receipt.provider, receipt.effect.value)
            counts[key] = counts.get(key, 0) + 1
        for (provider, effect), count in counts.items():
            self.observer.receipts(provider, effect, count)
        self._announce_moves(result.moved)
        log.info(
            "receipts.recorded",
            recorded=result.recorded,
            duplicates=result.duplicates,
            matched=result.matched,
            waiting=result.waiting,
            suppressed=result.suppressed,
            unsuppressed=result.unsuppressed,
            moved=len(result.moved),
        )
        return result

    # -- delivery ---------------------------------------------------------------------------

    def deliver(self, notification_id: str, *, claim_token: str | None = None) -> Outcome:
        """One attempt; ``claim_token``: the token of an earlier try whose claim answer was lost."""
        claim = self.ledger.claim(notification_id, token=claim_token)
        if claim is None:
            log.info("deliver.skipped", notification_id=notification_id, reason="not claimable")
            return Outcome(notification_id, None)
        bound = log.bind(
            notification_id=notification_id,
            event_id=claim.meta.get("core", {}).get("event_id") or None,
            channel=claim.channel.value,
            attempt=claim.attempt,
            **correlation(claim.meta.get("core") or {}, claim.meta.get("baggage") or {}),
        )
        timer = _Timer()
        with delivery_span(
            notification_id,
            claim.meta.get("trace_context") or {},
            channel=claim.channel.value,
            attempt=claim.attempt,
        ):
            outcome = self._attempt(claim, timer, bound)
        end_to_end = None
        if outcome.status is Status.SENT and claim.occurred_at is not None:
            end_to_end = (self.ledger.clock() - claim.occurred_at).total_seconds()
        if outcome.status is not None:
            self.observer.delivered(
                claim,
                outcome.status,
                outcome.provider,
                provider_seconds=timer.seconds,
                end_to_end_seconds=end_to_end,
            )
            if outcome.unrecorded is None:
                self._announce_outcome(
                    notification_id, outcome, claim.channel.value, claim.event_type, claim.meta
                )
                if outcome.status is Status.SENT and outcome.receipts_waiting:
                    self._after_sent(outcome.provider or "", outcome.provider_message_id)
        return outcome

    def _announce_outcome(
        self,
        notification_id: str,
        outcome: Outcome,
        channel: str | None,
        event_type: str | None,
        meta: Mapping[str, Any],
        *,
        old: Status | None = Status.SENDING,
    ) -> None:
        """After the ledger committed a final status: tell the bus (when on)."""
        if outcome.status is None or outcome.status not in states.ANNOUNCED:
            return
        self.announcer.announce(
            StatusChange(
                notification_id=notification_id,
                old=old,
                new=outcome.status,
                at=self.ledger.clock(),
                channel=channel,
                event_type=event_type,
                provider=outcome.provider,
                reason=outcome.reason,
                meta=meta,
            )
        )

    def _after_sent(self, provider: str, provider_message_id: str | None) -> None:
        """Receipts that came before the send's answer waited for this message id: apply them now."""
        if self.receipts is None or not provider_message_id:
            return
        try:
            moved = self.receipts.apply_waiting(provider, provider_message_id)
        except LedgerUnavailable as exc:
            # The sweeper's match_waiting pass applies them later; the send itself is recorded.
            log.warning("receipts.waiting_deferred", provider=provider, error=str(exc))
            return
        self._announce_moves(moved)

    def _announce_moves(self, moved: Sequence[Moved]) -> None:
        for item in moved:
            self.observer.moved(item)
            self.announcer.announce(item.change)

    def _attempt(self, claim: Claim, timer: _Timer, bound: structlog.typing.FilteringBoundLogger) -> Outcome:
        notification_id = claim.notification_id
        try:
            receipt = self._send(claim, timer)
        except MaybeDelivered as exc:
            if self.on_maybe_delivered == "unknown":
                # Never risk a duplicate: park it for an operator, as if the worker had died mid-send.
                provider = exc.provider or None
                bound.warning("deliver.unknown", provider=exc.provider, error=str(exc))
                outcome = self._write(
                    Outcome(notification_id, Status.UNKNOWN, provider),
                    _held(claim, Status.UNKNOWN, provider, exc),
                    partial(self.ledger.record_failed, claim, exc, provider=provider, status=Status.UNKNOWN),
                    bound,
                )
            else:
                outcome = self._retry(claim, exc, bound)
        except RetryLater as exc:
            outcome = self._retry(claim, exc, bound)
        except ProviderMisconfigured as exc:
            outcome = self._park(claim, exc, bound)
        except RecipientSuppressed as exc:
            # No provider was called; the reason names the list entry's cause, never the recipient.
            reason = Reason(type(exc).__name__, str(exc))
            bound.info("deliver.suppressed", reason=exc.reason, mode=self.suppression_mode)
            outcome = self._write(
                Outcome(notification_id, Status.FAILED, None, reason=reason.text),
                Unrecorded(claim.token, Status.FAILED, error_class=reason.error_class, error_code=exc.code),
                partial(self.ledger.record_failed, claim, reason, provider=None),
                bound,
            )
        except (GiveUp, TemplateError, InvalidEvent) as exc:
            provider = getattr(exc, "provider", None) or None
            bound.warning("deliver.failed", provider=provider, error_class=type(exc).__name__, error=str(exc))
            outcome = self._write(
                Outcome(notification_id, Status.FAILED, provider, reason=describe_error(exc)),
                _held(claim, Status.FAILED, provider, exc),
                partial(self.ledger.record_failed, claim, exc, provider=provider),
                bound,
            )
        except Exception as exc:
            # A bug of ours, not a provider's answer: the same code would fail the same way on every
            # retry, and ending `dead` would say the provider was down. It fails, with the reason,
            # for an operator to resend once the code is fixed.
            bound.exception("deliver.crashed", error_class=type(exc).__name__)
            self.ledger.record_failed(claim, exc, provider=None)
            outcome = Outcome(notification_id, Status.FAILED, None)
        else:
            with self._shout_lock:
                self._shouted.discard(receipt.provider)
            sent = Outcome(
                notification_id,
                Status.SENT,
                receipt.provider,
                provider_message_id=receipt.provider_message_id,
            )

            def record_sent() -> Outcome:
                written = self.ledger.record_sent(claim, receipt)
                return replace(sent, receipts_waiting=written.receipts_waiting)

            outcome = self._write(
                sent,
                Unrecorded(
                    claim.token,
                    Status.SENT,
                    provider=receipt.provider,
                    provider_message_id=receipt.provider_message_id,
                ),
                record_sent,
                bound,
            )
            if outcome.unrecorded is None:
                bound.info(
                    "deliver.sent",
                    provider=receipt.provider,
                    provider_message_id=receipt.provider_message_id,
                )
        return outcome

    @staticmethod
    def _write(
        outcome: Outcome,
        held: Unrecorded,
        write: Callable[[], Outcome | bool],
        bound: structlog.typing.FilteringBoundLogger,
    ) -> Outcome:
        """Write an outcome; if the database is away, hand it back unrecorded to be written again.

        A write that learns more than ``outcome`` knew (the `sent` write: whether receipts wait)
        returns the outcome to use instead.
        """
        try:
            written = write()
        except LedgerUnavailable as exc:
            # The provider's answer is in hand: losing it would leave the row to go `unknown`.
            bound.error(
                "deliver.unrecorded",
                status=held.status.value,
                provider=held.provider,
                provider_message_id=held.provider_message_id,
                error=str(exc),
            )
            return Outcome(
                outcome.notification_id,
                outcome.status,
                outcome.provider,
                retry_in=outcome.retry_in,
                reason=held.reason.text if outcome.reason is not None else None,
                unrecorded=held,
            )
        return written if isinstance(written, Outcome) else outcome

    def record_late(self, notification_id: str, held: Unrecorded) -> Outcome:
        """Write an outcome that could not be written when the provider answered; never sends.

        Raises ``LedgerUnavailable`` while the database is still away. A row another path has
        moved on since (an operator's discard) is left alone, as for any late answer.
        """
        claim = Held(notification_id, held.token)
        provider = held.provider
        reason: str | None = None
        if held.status is Status.SENT:
            written = self.ledger.record_sent(claim, Receipt(provider or "", held.provider_message_id)).moved
        elif held.status is Status.RETRYING:
            wait = held.retry_in if held.retry_in is not None else self.policy.base
            written = self.ledger.record_retry(
                claim,
                held.reason,
                provider=provider,
                next_attempt_at=self.ledger.clock() + timedelta(seconds=wait),
                counted=held.counted,
            )
        else:
            reason = held.reason.text
            written = self.ledger.record_failed(claim, held.reason, provider=provider, status=held.status)
        log.warning(
            "deliver.recorded_late",
            notification_id=notification_id,
            status=held.status.value,
            provider=provider,
            provider_message_id=held.provider_message_id,
            written=written,
        )
        retry_in = held.retry_in if held.status is Status.RETRYING else None
        outcome = Outcome(notification_id, held.status, provider, retry_in=retry_in, reason=reason)
        if written:
            self._announce_outcome(notification_id, outcome, None, None, {}, old=None)
            if held.status is Status.SENT:
                self._after_sent(provider or "", held.provider_message_id)
        return outcome

    def _park(
        self, claim: Claim, exc: ProviderMisconfigured, bound: structlog.typing.FilteringBoundLogger
    ) -> Outcome:
        """A provider refused our credentials or account: park the row, spending none of its budget.

        Every message would fail the same way until someone fixes the configuration, so the row
        waits ``NOTIFY_MISCONFIGURED_BACKOFF`` as `retrying`, its attempt given back, and is never
        made `dead` by it. The log shouts once per provider (again after it next accepts a send);
        `notify health` reports the parked rows.
        """
        provider = exc.provider or None
        with self._shout_lock:
            first = (exc.provider or "?") not in self._shouted
            self._shouted.add(exc.provider or "?")
        if first:
            bound.error(
                "provider.misconfigured",
                provider=exc.provider,
                code=exc.code,
                error=str(exc),
                parked_for=self.misconfigured_backoff,
            )
        else:
            bound.info("deliver.parked", provider=exc.provider, code=exc.code)
        wait = self.misconfigured_backoff
        return self._write(
            Outcome(claim.notification_id, Status.RETRYING, provider, retry_in=wait),
            _held(claim, Status.RETRYING, provider, exc, retry_in=wait, counted=False),
            lambda: self.ledger.record_retry(
                claim,
                exc,
                provider=provider,
                next_attempt_at=self.ledger.clock() + timedelta(seconds=wait),
                counted=False,
            ),
            bound,
        )

    def _send(self, claim: Claim, timer: _Timer) -> Receipt:
        send: Callable[[], Receipt]
        if claim.channel is Channel.SMS:
            sms = self.composer.sms(claim.notification_id, claim.payload)
            recipient, provider = sms.to_number, self.sms.name
            send = partial(self.sms.send_sms, sms)
        else:
            email = self.composer.email(claim.notification_id, claim.event_type, claim.payload)
            recipient, provider = email.to_address, self.email.name
            send = partial(self.email.send_email, email)
        self._check_list(claim, claim.channel, recipient)
        with timer, provider_span(provider):
            try:
                return send()
            except GiveUp as exc:
                if exc.suppress is not None:
                    self._suppress_refused(claim, claim.channel, recipient, exc.suppress, exc)
                raise

    def _suppress_refused(
        self, claim: Claim, channel: Channel, recipient: str, why: str, exc: GiveUp
    ) -> None:
        """The provider refused the recipient for good (a STOP, a hard bounce on its own list): list
        them here too, so the next send fails before any provider call. The notification fails
        either way; a list write that fails is logged, and the provider's next refusal tries again.
        """
        if self.suppression is None:
            return  # NOTIFY_SUPPRESSION=off: no list at all
        try:
            added = self.suppression.add(
                channel,
                recipient,
                SuppressionReason(why),
                source=f"{exc.provider or 'provider'}:{exc.code or 'refused'}:{claim.notification_id}",
            )
        except (LedgerUnavailable, ValueError) as error:
            log.warning(
                "deliver.suppress_unrecorded",
                notification_id=claim.notification_id,
                provider=exc.provider,
                error_class=type(error).__name__,
            )
            return
        log.info(
            "deliver.suppressed_by_provider",
            notification_id=claim.notification_id,
            provider=exc.provider,
            code=exc.code,
            reason=why,
            added=added,
        )

    def _ask_list(self, channel: Channel, recipient: str) -> SuppressionReason | None:
        """The list's answer, waiting out a short database outage.

        The row is already claimed (`sending`), and a write back to `retrying` would meet the same
        outage; so the attempt waits for the database, as its outcome write would, and only past
        ``suppression_outage_wait`` seconds gives up with ``RetryLater`` (nothing sent unchecked).
        """
        assert self.suppression is not None
        deadline = time.monotonic() + self.suppression_outage_wait
        pause = 0.2
        while True:
            try:
                return self.suppression.reason(channel, recipient)
            except LedgerUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise RetryLater(f"suppression list unreachable ({exc})", code="ledger") from None
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _check_list(self, claim: Claim, channel: Channel, recipient: str) -> None:
        """Before any provider call: enforce raises ``RecipientSuppressed``, record only counts.

        The claim already read the list for a row keyed at intake; only an unkeyed row (accepted
        before keys were kept, or by a ledger without the key) costs a lookup of its own.
        """
        if self.suppression is None:
            return
        if claim.keyed:
            why = claim.suppressed
        else:
            try:
                why = self._ask_list(channel, recipient)
            except ValueError:
                # Intake validated the recipient; one the hash cannot spell is not on the list either.
                return
        if why is None:
            return
        self.observer.suppressed(channel.value, self.suppression_mode)
        if self.suppression_mode == "enforce":
            raise RecipientSuppressed(why.value)
        log.warning("deliver.suppressed_sent", notification_id=claim.notification_id, reason=why.value)

    def _retry(
        self,
        claim: Claim,
        exc: BaseException,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> Outcome:
        provider = getattr(exc, "provider", None) or None
        counted = not isinstance(exc, RateLimited)
        retry_after = getattr(exc, "retry_after", None)
        now = self.ledger.clock()
        age = (now - claim.cycle_started_at).total_seconds()
        if counted:
            wait = self.policy.next_delay(claim.attempt, age, retry_after)
        else:
            wait = retry_after if retry_after is not None else self.policy.base
        if wait is None:
            bound.warning("deliver.dead", provider=provider, error_class=type(exc).__name__)
            return self._write(
                Outcome(claim.notification_id, Status.DEAD, provider, reason=describe_error(exc)),
                _held(claim, Status.DEAD, provider, exc),
                lambda: self.ledger.record_failed(claim, exc, provider=provider, status=Status.DEAD),
                bound,
            )
        bound.info(
            "deliver.retry", provider=provider, error_class=type(exc).__name__, retry_in=round(wait, 3)
        )
        return self._write(
            Outcome(claim.notification_id, Status.RETRYING, provider, retry_in=wait),
            _held(claim, Status.RETRYING, provider, exc, retry_in=wait, counted=counted),
            lambda: self.ledger.record_retry(
                claim, exc, provider=provider, next_attempt_at=now + timedelta(seconds=wait), counted=counted
            ),
            bound,
        )

    # -- sweeper ----------------------------------------------------------------------------

    def sweep(self, *, stuck_after: float, sending_timeout: float, retention_days: float) -> dict[str, int]:
        """One pass of the sweeper; returns counts of what it found."""
        requeued = self.ledger.due_for_enqueue(stuck_after=stuck_after)
        for notification_id in requeued:
            self.enqueue(notification_id, label(notification_id, None, "sweep"))
        unknown = self.ledger.expire_sending(older_than=sending_timeout)
        for notification_id in unknown:
            log.warning("sweep.unknown", notification_id=notification_id)
        purged = self.ledger.purge_personal_data(older_than_days=retention_days)
        found = {"requeued": len(requeued), "unknown": len(unknown), "purged": purged}
        if self.receipts is not None:
            # Receipts that beat the send's answer: matched if their message id appeared since
            # (the dispatcher's own match may have lost to a database blip), else dropped after the wait.
            self._announce_moves(self.receipts.match_waiting())
            found["receipts_dropped"] = self.receipts.drop_unmatched(older_than=self.receipt_wait)
        if any(found.values()):
            log.info("sweep.done", **found)
        self.observer.swept(found)
        return found
