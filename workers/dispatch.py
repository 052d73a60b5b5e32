"""The use case: accept an event, then claim, render, send and record one notification; no Celery here."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

import structlog

from workers.compose import Composer
from workers.errors import (
    GiveUp,
    InvalidEvent,
    MaybeDelivered,
    NotOurEvent,
    ProviderMisconfigured,
    RateLimited,
    RetryLater,
    TemplateError,
)
from workers.events import ParsedEvent, parse_event
from workers.events.schema import KINDS
from workers.ledger import AcceptResult, Claim, Ledger
from workers.messages import Channel, Receipt, Status
from workers.providers.base import EmailProvider, SmsProvider
from workers.retry import RetryPolicy
from workers.tracing import delivery_span, provider_span

log = structlog.get_logger("workers.dispatch")

Enqueue = Callable[[str, str], None]  # (notification_id, non-personal label for Flower)


class _Timer:
    """Measures the provider call alone (not rendering), for the latency histogram."""

    seconds: float | None = None

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one deliver call did; ``retry_in`` is set when the next attempt should be scheduled."""

    notification_id: str
    status: Status | None  # None: another worker holds the row, or it is already done
    provider: str | None = None
    retry_in: float | None = None


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
    ) -> None:
        self.observer: Observer = observer or NullObserver()
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
        return result

    # -- delivery ---------------------------------------------------------------------------

    def deliver(self, notification_id: str) -> Outcome:
        claim = self.ledger.claim(notification_id)
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
        return outcome

    def _attempt(self, claim: Claim, timer: _Timer, bound: structlog.typing.FilteringBoundLogger) -> Outcome:
        notification_id = claim.notification_id
        try:
            receipt = self._send(claim, timer)
        except MaybeDelivered as exc:
            if self.on_maybe_delivered == "unknown":
                # Never risk a duplicate: park it for an operator, as if the worker had died mid-send.
                self.ledger.record_failed(claim, exc, provider=exc.provider or None, status=Status.UNKNOWN)
                bound.warning("deliver.unknown", provider=exc.provider, error=str(exc))
                outcome = Outcome(notification_id, Status.UNKNOWN, exc.provider or None)
            else:
                outcome = self._retry(claim, exc, bound)
        except RetryLater as exc:
            outcome = self._retry(claim, exc, bound)
        except ProviderMisconfigured as exc:
            # Loud, and slow to retry: a bad key fails every message until someone fixes it.
            bound.error("deliver.misconfigured", provider=exc.provider, error=str(exc))
            outcome = self._retry(claim, exc, bound, floor=self.policy.cap)
        except (GiveUp, TemplateError, InvalidEvent) as exc:
            provider = getattr(exc, "provider", None) or None
            self.ledger.record_failed(claim, exc, provider=provider)
            bound.warning("deliver.failed", provider=provider, error_class=type(exc).__name__, error=str(exc))
            outcome = Outcome(notification_id, Status.FAILED, provider)
        except Exception as exc:
            # A bug of ours, not a provider's answer: the same code would fail the same way on every
            # retry, and ending `dead` would say the provider was down. It fails, with the reason,
            # for an operator to resend once the code is fixed.
            bound.exception("deliver.crashed", error_class=type(exc).__name__)
            self.ledger.record_failed(claim, exc, provider=None)
            outcome = Outcome(notification_id, Status.FAILED, None)
        else:
            self.ledger.record_sent(claim, receipt)
            bound.info(
                "deliver.sent", provider=receipt.provider, provider_message_id=receipt.provider_message_id
            )
            outcome = Outcome(notification_id, Status.SENT, receipt.provider)
        return outcome

    def _send(self, claim: Claim, timer: _Timer) -> Receipt:
        if claim.channel is Channel.SMS:
            sms = self.composer.sms(claim.notification_id, claim.payload)
            with timer, provider_span(self.sms.name):
                return self.sms.send_sms(sms)
        email = self.composer.email(claim.notification_id, claim.event_type, claim.payload)
        with timer, provider_span(self.email.name):
            return self.email.send_email(email)

    def _retry(
        self,
        claim: Claim,
        exc: BaseException,
        bound: structlog.typing.FilteringBoundLogger,
        *,
        floor: float | None = None,
    ) -> Outcome:
        provider = getattr(exc, "provider", None) or None
        counted = not isinstance(exc, RateLimited)
        retry_after = getattr(exc, "retry_after", None)
        if floor is not None:
            retry_after = max(retry_after or 0.0, floor)
        now = self.ledger.clock()
        age = (now - claim.cycle_started_at).total_seconds()
        if counted:
            wait = self.policy.next_delay(claim.attempt, age, retry_after)
        else:
            wait = retry_after if retry_after is not None else self.policy.base
        if wait is None:
            self.ledger.record_failed(claim, exc, provider=provider, status=Status.DEAD)
            bound.warning("deliver.dead", provider=provider, error_class=type(exc).__name__)
            return Outcome(claim.notification_id, Status.DEAD, provider)
        self.ledger.record_retry(
            claim, exc, provider=provider, next_attempt_at=now + timedelta(seconds=wait), counted=counted
        )
        bound.info(
            "deliver.retry", provider=provider, error_class=type(exc).__name__, retry_in=round(wait, 3)
        )
        return Outcome(claim.notification_id, Status.RETRYING, provider, retry_in=wait)

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
        if any(found.values()):
            log.info("sweep.done", **found)
        self.observer.swept(found)
        return found
