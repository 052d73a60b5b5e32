"""The Celery app: broker, queues and routes declared once, the reliability settings, the runtime.

The app carries the process's runtime (settings, metrics, and the ledger, templates and providers
built on first use), so tasks and the bus consumer reach it through the app, never through another
module's globals. Nothing here imports the tasks or the bus consumer: a worker loads both by name
(``include`` and a consumer step), so they sit above this module and a cycle cannot come back.
"""

from __future__ import annotations

import gc
from typing import Any

import click
from celery import Celery, bootsteps
from celery.beat import EmbeddedService
from celery.signals import setup_logging, worker_init, worker_process_init, worker_ready, worker_shutdown
from kombu.entity import Exchange, Queue

from workers import logs
from workers.broker import broker_settings
from workers.events.status import BusAnnouncer
from workers.metrics import MetricsEndpoint, build_observer, endpoint_for
from workers.publisher import ConfirmedPublisher
from workers.runtime import LazyRuntime
from workers.settings import Settings, get_settings

DELIVER_TASK = "notifications.deliver"
# Imported by the worker when it starts, by name: both modules import this one.
TASKS_MODULE = "workers.tasks"
EVENT_CONSUMER_STEP = "workers.ingest:EventConsumerStep"


class NotifyCelery(Celery):
    """A Celery app that holds the process's runtime: built on first use, once per process.

    Celery's docs keep such a resource (their example: a database connection) on a Task base
    class; it lives on the app here because the bus consumer step needs it too, through its parent.

    ``settings`` stays an attribute, out of ``app.conf``: `celery inspect conf` and Flower's
    /api/workers print app.conf, masking only by key name, and the settings hold credentials.
    """

    def __init__(self, main: str | None = None, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(main, **kwargs)
        self.settings = settings
        # One observer per app (a worker has one), outliving runtimes, so its metrics register once.
        self.observer = build_observer(settings)
        self.metrics_endpoint: MetricsEndpoint | None = endpoint_for(self.observer, settings)
        self.runtime = LazyRuntime(
            settings,
            self.enqueue_delivery,
            observer=self.observer,
            # Built unconnected; it connects on its first event, and only with NOTIFY_STATUS_EVENTS=1.
            announcer=BusAnnouncer(ConfirmedPublisher(settings)),
        )

    def enqueue_delivery(self, notification_id: str, description: str) -> None:
        """Send the deliver task for one id, shown in Flower as ``description``."""
        self.tasks[DELIVER_TASK].apply_async((notification_id,), argsrepr=repr(description), kwargsrepr="{}")

    def __reduce_keys__(self) -> dict[str, Any]:
        # Celery rebuilds a pickled app from these keyword arguments; ours needs its settings.
        keys: dict[str, Any] = super().__reduce_keys__()
        return {**keys, "settings": self.settings}


def create_app(settings: Settings) -> NotifyCelery:
    queue = settings.task_queue
    control = f"{queue}.control"
    app = NotifyCelery("notify", settings=settings, set_as_current=True, include=[TASKS_MODULE])
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
    app.user_options["worker"].add(
        click.Option(
            ["--sweeper-schedule"],
            default=None,
            help="run the sweeper's beat in a thread of this worker, keeping its schedule in this file",
        )
    )
    app.steps["worker"].add(ThreadedBeat)
    if settings.consume_events:
        app.steps["consumer"].add(EVENT_CONSUMER_STEP)
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


app = create_app(get_settings())


@setup_logging.connect
def _masked_logging(loglevel: Any = None, **_: Any) -> None:
    # Having a receiver stops Celery from installing its own handlers and formats (some of its
    # lines print task arguments or message bodies); ours mask addresses and numbers and blank out
    # bodies, also for `celery -A workers.celery_app worker` and in prefork children.
    settings = app.settings
    logs.configure(
        level=loglevel or settings.log_level, fmt=settings.log_format, secrets=settings.secret_values()
    )


@worker_init.connect
def _metrics_before_pool(sender: Any, **_: Any) -> None:
    # Main process, before the pool exists: a forking pool needs prometheus multiprocess mode.
    if app.metrics_endpoint is not None:
        pool = getattr(sender, "pool_cls", None) or app.conf.worker_pool
        app.metrics_endpoint.prepare(pool if isinstance(pool, str) else pool.__module__.rsplit(".", 1)[-1])


@worker_init.connect
def _freeze_start_up_objects(**_: Any) -> None:
    # Everything imported and built so far lives as long as the process: moved out of the
    # collector's reach, full collections stop walking it, and a prefork child stops dirtying
    # (copying) the pages it shares with the parent when the collector touches those objects.
    gc.freeze()


@worker_ready.connect
def _metrics_serve(**_: Any) -> None:
    if app.metrics_endpoint is not None:
        app.metrics_endpoint.start()


@worker_shutdown.connect
def _metrics_stop(**_: Any) -> None:
    if app.metrics_endpoint is not None:
        app.metrics_endpoint.stop()


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # A forked pool child must not share the parent's database or HTTP connections.
    app.runtime.reset()
