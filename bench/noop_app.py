"""The ceiling: a tiny Celery app whose task does nothing, configured like the notify app.

Run as ``celery -A bench.noop_app worker`` with the same NOTIFY_* environment as the worker under
test: same broker, same task queue, and the reliability and event settings copied from
``workers.celery_app.create_app`` (late acks, prefetch 1, task events), so the ratio compares our
work with Celery's own cost under the same rules.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from workers.celery_app import create_app
from workers.settings import get_settings

# The settings that change what a task costs Celery; copied so the ceiling runs under our rules.
SHARED = (
    "broker_url",
    "broker_transport_options",
    "task_serializer",
    "accept_content",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "task_acks_on_failure_or_timeout",
    "worker_prefetch_multiplier",
    "worker_send_task_events",
    "task_send_sent_event",
    "task_ignore_result",
    "broker_connection_retry_on_startup",
    "worker_hijack_root_logger",
    "worker_redirect_stdouts",
    "timezone",
)

settings = get_settings()
reference = create_app(settings)
app = Celery("bench-noop", set_as_current=True)
app.conf.update({key: reference.conf[key] for key in SHARED})
app.conf.update(task_default_queue=settings.task_queue)


@app.task(name="bench.noop", ignore_result=True)
def noop(_: int) -> None:
    """Nothing: what is measured is Celery fetching, running and acking it."""


@app.task(name="bench.mark", ignore_result=True)
def mark(path: str) -> None:
    """Touch ``path``: the publisher sends one after the no-ops and stops its clock when it appears."""
    Path(path).touch()
