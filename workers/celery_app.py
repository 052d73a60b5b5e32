"""The Celery app: broker, queues and routes declared once, with the reliability settings."""

from __future__ import annotations

from typing import Any

import click
from celery import Celery, bootsteps
from celery.beat import EmbeddedService
from celery.signals import setup_logging
from kombu.entity import Exchange, Queue

from workers import logs
from workers.broker import broker_settings
from workers.settings import Settings, get_settings


def create_app(settings: Settings) -> Celery:
    queue = settings.task_queue
    control = f"{queue}.control"
    app = Celery("notify", set_as_current=True, include=["workers.tasks"])
    app.conf.update(
        **broker_settings(settings),
        # JSON only: a pickle payload on the broker would be remote code execution.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # At-least-once from the broker; the ledger's compare-and-set claim makes it once in effect.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # Flower needs these; our task arguments are ids, never personal data.
        worker_send_task_events=settings.task_events,
        # "task-sent" lets Flower list a task before a worker takes it; it is one more message per
        # enqueue (about 0.18 ms of the worker's CPU per notification), so it is a choice.
        task_send_sent_event=settings.task_sent_events,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_queues=[
            Queue(queue, Exchange(queue, type="direct"), routing_key=queue, durable=True),
            Queue(control, Exchange(control, type="direct"), routing_key=control, durable=True),
        ],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        # The sweeper has its own queue: behind a backlog of deliveries it would wait, then expire.
        task_routes={
            "notifications.sweep": {"queue": control, "exchange": control, "routing_key": control},
            "notifications.*": {"queue": queue},
        },
        beat_schedule=(
            {
                "notifications.sweep": {
                    "task": "notifications.sweep",
                    "schedule": settings.sweep_interval,
                    "options": {"expires": settings.sweep_interval},
                }
            }
            if settings.sweep_enabled
            else {}
        ),
        beat_schedule_filename=str(settings.state_dir / "celerybeat-schedule"),
        timezone="UTC",
    )
    # The Settings object stays out of app.conf: `celery inspect conf` and Flower's /api/workers
    # print app.conf, masking only by key name, and the settings hold credentials.
    app.user_options["worker"].add(
        click.Option(
            ["--sweeper-schedule"],
            default=None,
            help="run the sweeper's beat in a thread of this worker, keeping its schedule in this file",
        )
    )
    app.steps["worker"].add(ThreadedBeat)
    if settings.consume_events:
        from workers.ingest import EventConsumerStep

        app.steps["consumer"].add(EventConsumerStep)
    return app


class ThreadedBeat(bootsteps.StartStopStep):
    """Celery beat in a thread of the worker's main process, for the sweeper's schedule.

    Celery's ``--beat`` forks a whole second process for it: about 100 MB of memory for one timer
    that publishes a sweep every ``NOTIFY_SWEEP_INTERVAL``. This is the same beat (same schedule,
    same schedule file, same log lines), without the process. On by ``--sweeper-schedule FILE``.
    """

    label = "Beat"
    conditional = True
    # Started once the pool exists: a prefork pool then forks its first children before the
    # beat thread runs (a fork copies no threads, but would copy a lock one of them holds).
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, sweeper_schedule: str | None = None, **kwargs: Any) -> None:
        self.enabled = bool(sweeper_schedule)
        self.schedule_filename = sweeper_schedule
        super().__init__(parent, **kwargs)

    def create(self, parent: Any) -> Any:
        return EmbeddedService(parent.app, schedule_filename=self.schedule_filename, thread=True)


settings: Settings = get_settings()
app = create_app(settings)


@setup_logging.connect
def _masked_logging(loglevel: Any = None, **_: Any) -> None:
    # Having a receiver stops Celery from installing its own handlers and formats (some of its
    # lines print task arguments or message bodies); ours mask addresses and numbers and blank out
    # bodies, also for `celery -A workers.celery_app worker` and in prefork children.
    logs.configure(
        level=loglevel or settings.log_level, fmt=settings.log_format, secrets=settings.secret_values()
    )
