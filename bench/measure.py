"""One measured run: the notify worker or the no-op ceiling, started, warmed up, fed, clocked, metered.

The clock starts just before the first message is published and stops when the last one is done
(the provider has the notification; for the no-op, a marker task published after the no-ops has
run). Bodies are encoded before the clock starts, so the publisher costs the same for both.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from bench import rig
from bench.services import settings_for
from bench.workload import Planned, encoded, plan
from workers.broker import broker_settings
from workers.settings import Settings


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    count: int
    seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    rss_detail: str
    cpu_ms_per_item: float
    ledger: dict[str, int] | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class NotifyRun:
    """A running notify worker with its providers and ledger, ready for events."""

    settings: Settings
    worker: rig.Process
    providers: rig.Providers | rig.Outbox
    meter: rig.Meter

    def send(self, planned: list[Planned], *, timeout: float) -> float:
        """Publish ``planned`` (encoded beforehand) and return the seconds until the last arrived."""
        messages = encoded(planned)
        started = time.time()
        rig.publish_bus(self.settings, messages)
        last = self.providers.wait_for(
            [p.notification_id for p in planned], timeout=timeout, alive=self.worker.alive
        )
        if last is None:
            missing = len({p.notification_id for p in planned} - self.providers.arrivals().keys())
            raise RuntimeError(
                f"{missing} of {len(planned)} notifications never reached a provider within {timeout:.0f} s;"
                f" worker log tail:\n{self.worker.log_tail()}"
            )
        return last - started


@contextlib.contextmanager
def notify_worker(
    broker: str,
    ledger: str,
    pool: str,
    concurrency: int,
    *,
    delay: float = 0.0,
    folder: Path | None = None,
    outbox: bool = False,
) -> Iterator[NotifyRun]:
    """A real worker (``notify worker``) on ``broker`` with a fresh ledger and local providers
    (the local Mandrill and Twilio servers, or with ``outbox`` the outbox providers' files)."""
    folder = folder or rig.scratch_dir("notify")
    destination = rig.Outbox(folder / "outbox") if outbox else rig.Providers(delay)
    with destination as providers, rig.ledger_url(ledger, folder) as url:
        env = rig.bench_env(folder, broker=broker, database_url=url, **providers.env())
        settings = settings_for(env)
        rig.prepare_ledger(settings)
        worker = rig.Process(rig.notify_worker_argv(pool, concurrency), env, folder / "worker.log")
        try:
            worker.start()
            with rig.Meter(worker.pid) as meter:
                run = NotifyRun(settings, worker, providers, meter)
                # One event of each kind first: the worker is consuming, templates are compiled,
                # connections to the database and the providers are open.
                run.send(plan(10, seed=1), timeout=120)
                meter.reset()
                yield run
        finally:
            worker.stop()
            rig.drop_broker_state(settings)
    # Kept when the run failed: the worker log is in there.
    shutil.rmtree(folder, ignore_errors=True)


def measure_notify(
    broker: str, ledger: str, pool: str, concurrency: int, count: int, *, delay: float = 0.0, seed: int = 8
) -> Result:
    planned = plan(count, seed=seed)
    with notify_worker(broker, ledger, pool, concurrency, delay=delay) as run:
        cpu_before = run.meter.cpu_seconds()
        seconds = run.send(planned, timeout=max(120.0, count / 20))
        cpu = run.meter.cpu_seconds() - cpu_before
        run.meter.sample()
        # The ledger records `sent` just after the provider answers; give it a moment.
        deadline = time.monotonic() + 30
        counts = rig.status_counts(run.settings)
        while counts.get("sent", 0) < count + 10 and time.monotonic() < deadline:
            time.sleep(0.2)
            counts = rig.status_counts(run.settings)
        counts["sent"] = counts.get("sent", 0) - 10  # the warm-up events
        return Result(
            f"notify {pool} -c {concurrency}",
            count,
            seconds,
            run.meter.peak_rss / 2**20,
            run.meter.peak_pss / 2**20,
            run.meter.describe(),
            cpu * 1000 / count,
            counts,
        )


def measure_noop(broker: str, pool: str, concurrency: int, count: int) -> Result:
    """The same broker, pool and concurrency running a task that does nothing."""
    folder = rig.scratch_dir("noop")
    env = rig.bench_env(folder, broker=broker, database_url=f"sqlite:///{folder / 'unused.db'}")
    settings = settings_for(env)
    worker = rig.Process(rig.noop_worker_argv(pool, concurrency), env, folder / "worker.log")
    try:
        worker.start()
        with rig.Meter(worker.pid) as meter:
            app = _noop_publisher(settings)
            queue = settings.task_queue
            _run_noops(app, queue, 10, folder / "warm", timeout=120, alive=worker.alive)
            meter.reset()
            cpu_before = meter.cpu_seconds()
            seconds = _run_noops(
                app, queue, count, folder / "done", timeout=max(120.0, count / 50), alive=worker.alive
            )
            cpu = meter.cpu_seconds() - cpu_before
            meter.sample()
        return Result(
            f"no-op {pool} -c {concurrency}",
            count,
            seconds,
            meter.peak_rss / 2**20,
            meter.peak_pss / 2**20,
            meter.describe(),
            cpu * 1000 / count,
        )
    finally:
        worker.stop()
        rig.drop_broker_state(settings)
        shutil.rmtree(folder, ignore_errors=True)


def _noop_publisher(settings: Settings) -> Celery:
    """A bare Celery client on the same broker; it sends the bench tasks by name."""
    conf = broker_settings(settings)
    app = Celery("bench-publisher", broker=conf["broker_url"], set_as_current=False)
    app.conf.update(
        broker_transport_options=conf.get("broker_transport_options", {}),
        task_serializer="json",
        task_default_queue=settings.task_queue,
    )
    return app


def _run_noops(
    app: Celery, queue: str, count: int, marker: Path, *, timeout: float, alive: Callable[[], bool]
) -> float:
    started = time.time()
    with app.producer_or_acquire() as producer:
        for index in range(count):
            app.send_task("bench.noop", (index,), queue=queue, producer=producer)
        app.send_task("bench.mark", (str(marker),), queue=queue, producer=producer)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"the no-op worker did not finish {count} tasks within {timeout:.0f} s")
        time.sleep(0.005)
    return marker.stat().st_mtime - started
