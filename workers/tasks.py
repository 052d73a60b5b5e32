"""Thin Celery tasks: accept, deliver, resend, sweep, receipt; the use case and retry policy do the work."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import structlog
from celery import Task

from workers.celery_app import DELIVER_TASK, app
from workers.dispatch import FAILURES, Unrecorded, label
from workers.errors import DeliveryFailed, InvalidEvent, LedgerUnavailable, NotOurEvent
from workers.events import parse_event_dict
from workers.ledger import ResendResult
from workers.providers.redact import redact
from workers.receipts import DeliveryReceipt, SuppressionChange

log = structlog.get_logger("workers.tasks")

# Waits between tries of a ledger write while its database is away: short, doubling, capped.
LEDGER_RETRY_FIRST = 0.5
LEDGER_RETRY_CAP = 10.0


@app.task(name="notifications.accept", ignore_result=True)
def accept(event: Mapping[str, Any]) -> dict[str, str]:
    """A VtEvent as a proto3-JSON dict, for Python producers; send it with ``submit_event``."""
    runtime = app.runtime.get()
    dispatcher = runtime.dispatcher
    try:
        parsed = parse_event_dict(event, templates=runtime.templates.names())
    except InvalidEvent as exc:
        result = dispatcher.reject(exc)
        return {"id": result.notification_id, "status": result.status.value}
    except NotOurEvent as exc:
        return {"id": "", "status": "ignored", "type": exc.type_name}
    result = dispatcher.accept(parsed)
    return {"id": result.notification_id, "status": result.status.value}


def submit_event(event: Mapping[str, Any]) -> None:
    """Send a VtEvent dict to ``notifications.accept`` without showing its contents in Flower."""
    core = event.get("core") or {}
    data = event.get("data") or {}
    type_url = str(data.get("@type", "")) if isinstance(data, Mapping) else ""
    description = f"event {core.get('id', '?')} {type_url.rsplit('/', 1)[-1]}"
    accept.apply_async((dict(event),), argsrepr=repr(description), kwargsrepr="{}")


@app.task(
    name=DELIVER_TASK,
    bind=True,
    ignore_result=True,
    max_retries=None,
    # Expected: logged by Celery at INFO without a traceback, shown by Flower as a failed task,
    # acked (task_acks_on_failure_or_timeout) and never retried.
    throws=(DeliveryFailed,),
)
def deliver(
    self: Task,
    notification_id: str,
    unrecorded: Mapping[str, Any] | None = None,
    ledger_down_since: float | None = None,
    claim_token: str | None = None,
) -> dict[str, str | None]:
    """Deliver one notification; with ``unrecorded``, only write the outcome a provider already gave.

    ``unrecorded`` is set by this task's own retry when the ledger could not take an outcome:
    the retry writes it and never sends again.
    """
    dispatcher = app.runtime.get().dispatcher
    try:
        if unrecorded is not None:
            outcome = dispatcher.record_late(notification_id, Unrecorded.from_dict(unrecorded))
        else:
            # Chosen here so that a retry after a lost claim answer presents the same token.
            claim_token = claim_token or secrets.token_hex(8)
            outcome = dispatcher.deliver(notification_id, claim_token=claim_token)
    except ValueError as exc:
        # Only a hand-made message carries a malformed outcome: say so and drop it.
        log.error("deliver.bad_arguments", notification_id=notification_id, error=str(exc))
        return {"id": notification_id, "status": "skipped"}
    except LedgerUnavailable as exc:
        # Before a send (the claim) nothing went out; after one, `unrecorded` is the outcome.
        held = Unrecorded.from_dict(unrecorded) if unrecorded is not None else None
        _retry_ledger_write(self, notification_id, held, ledger_down_since, exc, claim_token)
    if outcome.unrecorded is not None:
        _retry_ledger_write(self, notification_id, outcome.unrecorded, ledger_down_since, None)
    if outcome.status in FAILURES:
        # After the ledger has it: the task fails, so Flower shows it failed, with the reason.
        raise DeliveryFailed(notification_id, outcome.status.value, redact(outcome.reason or "no reason"))
    if outcome.retry_in is not None and outcome.retry_in <= app.settings.short_retry_limit:
        # Short waits ride on the broker; longer ones are picked up by the sweeper from the ledger,
        # so no worker holds minutes-long ETA messages.
        raise self.retry(
            args=(notification_id,),
            kwargs={},
            countdown=outcome.retry_in,
            max_retries=None,
            **_description(self, notification_id),
        )
    return {"id": notification_id, "status": outcome.status.value if outcome.status else "skipped"}


def _description(task: Task, notification_id: str) -> dict[str, str]:
    """The retry's ``argsrepr``: the one the task was sent with (Celery's retry drops it)."""
    argsrepr = getattr(task.request, "argsrepr", None)
    if not isinstance(argsrepr, str) or not argsrepr:
        argsrepr = repr(label(notification_id, None, "retry"))
    return {"argsrepr": argsrepr, "kwargsrepr": "{}"}


def _retry_ledger_write(
    task: Task,
    notification_id: str,
    held: Unrecorded | None,
    down_since: float | None,
    error: LedgerUnavailable | None,
    claim_token: str | None = None,
) -> NoReturn:
    """Try again soon: the write of ``held`` (never the send), or the whole delivery if nothing went out.

    Keeps trying for twice ``NOTIFY_SENDING_TIMEOUT``, so the outcome outlasts the sweeper's
    wait before it would call the row `unknown`; past that, the log line is the record.
    """
    now = time.time()
    since = down_since if down_since is not None else now
    retries = int(task.request.retries or 0)
    fields = {
        "notification_id": notification_id,
        "status": held.status.value if held else None,
        "provider": held.provider if held else None,
        "provider_message_id": held.provider_message_id if held else None,
        "error": str(error) if error else None,
    }
    if now - since > 2 * app.settings.sending_timeout:
        log.error("deliver.ledger_gave_up", down_for=round(now - since, 1), **fields)
        if held is None:
            # Nothing was sent: the row is still `queued`/`retrying`, and the sweeper brings it back.
            raise LedgerUnavailable(f"notification {notification_id}: the ledger stayed away")
        raise LedgerUnavailable(
            f"notification {notification_id}: outcome {held.status.value} could not be written"
        )
    wait = min(LEDGER_RETRY_CAP, LEDGER_RETRY_FIRST * 2.0 ** min(retries, 16))
    log.warning("deliver.ledger_retry", retry_in=wait, **fields)
    raise task.retry(
        args=(notification_id,),
        kwargs={
            "unrecorded": held.as_dict() if held else None,
            "ledger_down_since": since,
            # Nothing was sent: the retry claims again with the same token (see Ledger.claim).
            "claim_token": claim_token if held is None else None,
        },
        countdown=wait,
        max_retries=None,
        **_description(task, notification_id),
    )


@app.task(name="notifications.resend", ignore_result=True)
def resend(notification_id: str, force: bool = False) -> dict[str, str]:
    """Start a new delivery cycle for a failed notification (``force`` also for a sent one)."""
    result = app.runtime.get().ledger.resend(notification_id, force=force)
    if result is ResendResult.QUEUED:
        app.enqueue_delivery(notification_id, label(notification_id, None, "resend"))
    return {"id": notification_id, "result": result.value}


@app.task(name="notifications.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    settings = app.settings
    return app.runtime.get().dispatcher.sweep(
        stuck_after=settings.stuck_after,
        sending_timeout=settings.sending_timeout,
        retention_days=settings.retention_days,
    )


Value = TypeVar("Value")


def _values(items: Any, read: Callable[[Mapping[str, Any]], Value], kind: str) -> list[Value]:
    """Each dict read back as a value; a malformed one is logged with its index and skipped."""
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        log.error("receipt.malformed", kind=kind, index=None, error="expected a list")
        return []
    values: list[Value] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, Mapping):
                raise ValueError("expected an object")
            values.append(read(item))
        except (ValueError, TypeError) as exc:
            # The field's name and problem; the dict holds ids and hashes only, never an address.
            log.error("receipt.malformed", kind=kind, index=index, error=str(exc)[:200])
            app.observer.receipts("unknown", "malformed", 1)
    return values


@app.task(
    name="notifications.receipt",
    ignore_result=True,
    # A database blip: the whole batch again later (recording it is idempotent).
    autoretry_for=(LedgerUnavailable,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=None,
)
def receipt(receipts: Any, changes: Any = ()) -> dict[str, int]:
    """Provider receipts and list changes (``DeliveryReceipt.to_task`` dicts) into the ledger."""
    result = app.runtime.get().dispatcher.record_receipts(
        _values(receipts, DeliveryReceipt.from_task, "receipt"),
        _values(changes, SuppressionChange.from_task, "change"),
    )
    return {"recorded": result.recorded, "duplicates": result.duplicates, "moved": len(result.moved)}
