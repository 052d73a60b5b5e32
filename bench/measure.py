"""One measured run: the notify worker or the no-op ceiling, started, warmed up, fed, clocked, metered.

The clock starts just before the first message is published and stops when the last one is done
(the provider has the notification; for the no-op, a marker task published after the no-ops has
run). Bodies are encoded before the clock starts, so the publisher costs the same for both.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from celery import Celery

from bench import rig
from bench.services import settings_for
from bench.workload import MARK_HEADER, NOOP_SHAPE_VARIABLE, Planned, encoded, plan
from workers.broker import broker_settings
from workers.settings import Settings

Shape = Literal["task", "bus"]  # the 1-hop ceiling, or the bus event plus one task (our shape)


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
    """Running notify worker nodes with their providers and ledger, ready for events.

    ``worker`` is the first node (the one with the sweeper's beat) and ``meter`` meters it; ``nodes``
    holds every node, the first included."""

    settings: Settings
    worker: rig.Process
    providers: rig.Providers | rig.Outbox
    meter: rig.Meter
    nodes: list[rig.Process] = field(default_factory=list)

    def any_alive(self) -> bool:
        return any(node.alive() for node in self.nodes or [self.worker])

    def send(self, planned: list[Planned], *, timeout: float) -> float:
        """Publish ``planned`` (encoded beforehand) and return the seconds until the last arrived."""
        messages = encoded(planned)
        started = time.time()
        rig.publish_bus(self.settings, messages)
        last = self.providers.wait_for(
            [p.notification_id for p in planned], timeout=timeout, alive=self.any_alive
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
    nodes: int = 1,
    env: Mapping[str, str] | None = None,
    outbox: bool = False,
) -> Iterator[NotifyRun]:
    """Real workers (``notify worker``) on ``broker`` with a fresh ledger and local providers (the
    local Mandrill and Twilio servers, or with ``outbox`` the outbox providers' files).

    ``nodes`` workers share the broker, queues and ledger, each under its own node name, with the
    sweeper's beat in the first only, as a second box would be added; ``env`` adds settings."""
    folder = folder or rig.scratch_dir("notify")
    destination = rig.Outbox(folder / "outbox") if outbox else rig.Providers(delay)
    with destination as providers, rig.ledger_url(ledger, folder) as url:
        env = rig.bench_env(folder, broker=broker, database_url=url, **providers.env(), **(env or {}))
        settings = settings_for(env)
        rig.prepare_ledger(settings)
        workers = [
            rig.Process(
                rig.notify_worker_argv(pool, concurrency, beat=index == 0),
                env,
                folder / ("worker.log" if index == 0 else f"worker-{index + 1}.log"),
            )
            for index in range(nodes)
        ]
        try:
            for worker in workers:
                worker.start()
            with rig.Meter(workers[0].pid) as meter:
                run = NotifyRun(settings, workers[0], providers, meter, workers)
                if nodes > 1:
                    # Else the first node up takes the whole warm-up (and the bus's backlog).
                    rig.wait_for_consumers(settings, nodes, timeout=120, alive=run.any_alive)
                # One event of each kind first: the worker is consuming, templates are compiled,
                # connections to the database and the providers are open.
                run.send(plan(10, seed=1), timeout=120)
                meter.reset()
                yield run
        finally:
            for worker in workers:
                worker.stop()
            rig.drop_broker_state(settings)
    # Kept when the run failed: the worker log is in there.
    shutil.rmtree(folder, ignore_errors=True)


def measure_notify(
    broker: str,
    ledger: str,
    pool: str,
    concurrency: int,
    count: int,
    *,
    delay: float = 0.0,
    seed: int = 8,
    outbox: bool = False,
) -> Result:
    """The notify worker's rate: local Mandrill and Twilio servers, or with ``outbox`` its files."""
    planned = plan(count, seed=seed)
    with notify_worker(broker, ledger, pool, concurrency, delay=delay, outbox=outbox) as run:
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
            f"notify {'outbox' if outbox else 'http'} {pool} -c {concurrency}",
            count,
            seconds,
            run.meter.peak_rss / 2**20,
            run.meter.peak_pss / 2**20,
            run.meter.describe(),
            cpu * 1000 / count,
            counts,
        )


def measure_noop(broker: str, pool: str, concurrency: int, count: int, *, shape: Shape = "task") -> Result:
    """The same broker, pool and concurrency running a task that does nothing.

    ``task``: the 1-hop ceiling, no-op tasks published here. ``bus``: the same-shape ceiling, the
    benchmark's own raw VtEvents on a topic exchange, each turned into one no-op task by a consumer
    bootstep in the worker (``bench/noop_app.py``); the clock runs from the first publish to the
    last task finished, as it does for the notify worker."""
    folder = rig.scratch_dir("noop")
    env = rig.bench_env(
        folder,
        broker=broker,
        database_url=f"sqlite:///{folder / 'unused.db'}",
        **({NOOP_SHAPE_VARIABLE: "bus"} if shape == "bus" else {}),
    )
    settings = settings_for(env)
    worker = rig.Process(rig.noop_worker_argv(pool, concurrency), env, folder / "worker.log")
    run = _run_bus if shape == "bus" else _run_noops
    try:
        worker.start()
        with rig.Meter(worker.pid) as meter:
            app = _noop_publisher(settings)
            run(app, settings, 10, folder / "warm", timeout=120, alive=worker.alive)
            meter.reset()
            cpu_before = meter.cpu_seconds()
            seconds = run(
                app, settings, count, folder / "done", timeout=max(120.0, count / 50), alive=worker.alive
            )
            cpu = meter.cpu_seconds() - cpu_before
            meter.sample()
        return Result(
            f"{'same-shape' if shape == 'bus' else 'no-op'} {pool} -c {concurrency}",
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
    app: Celery, settings: Settings, count: int, marker: Path, *, timeout: float, alive: Callable[[], bool]
) -> float:
    queue = settings.task_queue
    started = time.time()
    with app.producer_or_acquire() as producer:
        for index in range(count):
            app.send_task("bench.noop", (index,), queue=queue, producer=producer)
        app.send_task("bench.mark", (str(marker),), queue=queue, producer=producer)
    _wait_for_marker(marker, count, timeout=timeout, alive=alive)
    return marker.stat().st_mtime - started


def _run_bus(
    app: Celery, settings: Settings, count: int, marker: Path, *, timeout: float, alive: Callable[[], bool]
) -> float:
    messages = encoded(plan(count))  # the mix measure_notify publishes, encoded before the clock
    started = time.time()
    rig.publish_bus(settings, messages, last_headers={MARK_HEADER: str(marker)})
    _wait_for_marker(marker, count, timeout=timeout, alive=alive)
    return marker.stat().st_mtime - started


def _wait_for_marker(marker: Path, count: int, *, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"the no-op worker did not finish {count} tasks within {timeout:.0f} s")
        time.sleep(0.005)
