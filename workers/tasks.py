"""Thin Celery tasks: accept, deliver, resend, sweep; the use case and retry policy do the work."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from workers.celery_app import app
from workers.celery_app import settings as app_settings
from workers.dispatch import label
from workers.errors import InvalidEvent, NotOurEvent
from workers.events import parse_event_dict
from workers.ledger.store import ResendResult
from workers.metrics import build_observer, endpoint_for
from workers.runtime import LazyRuntime
from workers.settings import Settings

settings: Settings = app_settings


def enqueue_delivery(notification_id: str, description: str) -> None:
    deliver.apply_async((notification_id,), argsrepr=repr(description), kwargsrepr="{}")


observer = build_observer(settings)
metrics_endpoint = endpoint_for(observer, settings)
runtime = LazyRuntime(settings, enqueue_delivery, observer=observer)


@worker_init.connect
def _metrics_before_pool(sender: Any, **_: Any) -> None:
    # Main process, before the pool exists: a forking pool needs prometheus multiprocess mode.
    if metrics_endpoint is not None:
        pool = getattr(sender, "pool_cls", None) or app.conf.worker_pool
        metrics_endpoint.prepare(pool if isinstance(pool, str) else pool.__module__.rsplit(".", 1)[-1])


@worker_init.connect
def _freeze_start_up_objects(**_: Any) -> None:
    # Everything imported and built so far lives as long as the process: moved out of the
    # collector's reach, full collections stop walking it, and a prefork child stops dirtying
    # (copying) the pages it shares with the parent when the collector touches those objects.
    gc.freeze()


@worker_ready.connect
def _metrics_serve(**_: Any) -> None:
    if metrics_endpoint is not None:
        metrics_endpoint.start()


@worker_shutdown.connect
def _metrics_stop(**_: Any) -> None:
    if metrics_endpoint is not None:
        metrics_endpoint.stop()


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # A forked pool child must not share the parent's database or HTTP connections.
    runtime.reset()


@app.task(name="notifications.accept", ignore_result=True)
def accept(event: Mapping[str, Any]) -> dict[str, str]:
    """A VtEvent as a proto3-JSON dict, for Python producers; send it with ``submit_event``."""
    dispatcher = runtime.get().dispatcher
    try:
        parsed = parse_event_dict(event, templates=runtime.get().templates.names())
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


@app.task(name="notifications.deliver", bind=True, ignore_result=True, max_retries=None)
def deliver(self: Task, notification_id: str) -> dict[str, str | None]:
    outcome = runtime.get().dispatcher.deliver(notification_id)
    if outcome.retry_in is not None and outcome.retry_in <= settings.short_retry_limit:
        # Short waits ride on the broker; longer ones are picked up by the sweeper from the ledger,
        # so no worker holds minutes-long ETA messages.
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return {"id": notification_id, "status": outcome.status.value if outcome.status else "skipped"}


@app.task(name="notifications.resend", ignore_result=True)
def resend(notification_id: str, force: bool = False) -> dict[str, str]:
    """Start a new delivery cycle for a failed notification (``force`` also for a sent one)."""
    result = runtime.get().ledger.resend(notification_id, force=force)
    if result is ResendResult.QUEUED:
        enqueue_delivery(notification_id, label(notification_id, None, "resend"))
    return {"id": notification_id, "result": result.value}


@app.task(name="notifications.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return runtime.get().dispatcher.sweep(
        stuck_after=settings.stuck_after,
        sending_timeout=settings.sending_timeout,
        retention_days=settings.retention_days,
    )
