"""The benchmark rig: stamping local providers, throwaway ledgers, worker processes, memory and CPU.

Everything here reuses the integration harness (``isolated_env``, ``connection``) and the local
Mandrill and Twilio servers, so the worker under test runs its real HTTP clients against servers
that speak the real protocols.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from kombu import Producer
from kombu.entity import Exchange, Queue
from sqlalchemy import create_engine, func, select, text

from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL, REDIS_URL
from tests.fakes.http_base import CONTROL_PREFIX, Reply, Request
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer
from tests.integration.harness import connection, isolated_env
from workers.ingest import declare_bus, event_exchange
from workers.ledger import make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.models import Notification
from workers.settings import Settings

BROKERS = {"rabbitmq": RABBITMQ_URL, "redis": REDIS_URL}
MANDRILL_KEY = "bench-key"
TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "bench-token"

_MANDRILL_ID = re.compile(rb'"notification_id":\s*"([^"]+)"')
_TWILIO_ID = re.compile(rb"ref(?:\+|%20)([0-9a-f-]{36})")


# --- providers -----------------------------------------------------------------------------------


class _Stamps:
    """First arrival time of each notification at a provider, and a way to wait for a count."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.cond = threading.Condition()

    def add(self, notification_id: str, stamp: float) -> None:
        with self.cond:
            self.arrivals.setdefault(notification_id, stamp)
            self.requests += 1
            self.cond.notify_all()


class _Stamping:
    """Records arrival times of accepted sends instead of keeping every request body."""

    stamps: _Stamps
    id_pattern: re.Pattern[bytes]

    def _route(self, request: Request) -> Reply:
        if request.path.startswith(CONTROL_PREFIX):
            return super()._route(request)  # type: ignore[misc]
        stamp = time.time()
        reply, accepted = self._apply(request, self._next_fault())  # type: ignore[attr-defined]
        found = self.id_pattern.search(request.body)
        if accepted and found:
            self.stamps.add(found.group(1).decode(), stamp)
        return reply  # type: ignore[no-any-return]


class StampingMandrill(_Stamping, MandrillServer):
    """The local Mandrill server, stamping arrival times by the notification id in the metadata."""

    id_pattern = _MANDRILL_ID

    def __init__(self, stamps: _Stamps) -> None:
        super().__init__(api_keys={MANDRILL_KEY})
        self.stamps = stamps


class StampingTwilio(_Stamping, TwilioServer):
    """The local Twilio server, stamping arrival times (the SMS body ends with ``ref <id>``)."""

    id_pattern = _TWILIO_ID

    def __init__(self, stamps: _Stamps) -> None:
        super().__init__(TWILIO_SID, TWILIO_TOKEN)
        self.stamps = stamps


class Providers:
    """Both local providers, answering at once or after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.stamps = _Stamps()
        self.mandrill = StampingMandrill(self.stamps)
        self.twilio = StampingTwilio(self.stamps)
        self.delay = delay

    def __enter__(self) -> Providers:
        for server in (self.mandrill, self.twilio):
            server.start()
            server.set_reply_delay(self.delay)
        return self

    def __exit__(self, *exc: object) -> None:
        self.mandrill.stop()
        self.twilio.stop()

    def env(self) -> dict[str, str]:
        return {
            "NOTIFY_EMAIL_PROVIDER": "mandrill",
            "NOTIFY_SMS_PROVIDER": "twilio",
            "MANDRILL_API_KEY": MANDRILL_KEY,
            "MANDRILL_BASE_URL": self.mandrill.api_url,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_BASE_URL": self.twilio.base_url,
        }

    def delivered(self) -> int:
        with self.stamps.cond:
            return len(self.stamps.arrivals)

    def arrivals(self) -> dict[str, float]:
        with self.stamps.cond:
            return dict(self.stamps.arrivals)

    def wait_for(self, ids: Sequence[str], *, timeout: float, alive: Callable[[], bool]) -> float | None:
        """Wait until every id has arrived; the arrival time of the last one, None on timeout."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        with self.stamps.cond:
            while True:
                missing = wanted - self.stamps.arrivals.keys()
                if not missing:
                    return max(self.stamps.arrivals[i] for i in wanted)
                if time.monotonic() > deadline or not alive():
                    return None
                self.stamps.cond.wait(0.2)


# --- ledgers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def ledger_url(kind: str, folder: Path) -> Iterator[str]:
    """A fresh ledger: a throwaway PostgreSQL database (dropped afterwards) or a SQLite file."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"notify_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def status_counts(settings: Settings) -> dict[str, int]:
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
        return {str(status): int(count) for status, count in rows}
    finally:
        engine.dispose()


# --- memory and CPU ------------------------------------------------------------------------------


class Meter:
    """Samples the RSS of a process tree (the worker and its pool children) and its CPU time."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.peak_parts: list[int] = []
        self.peak_pss = 0  # proportional: pages shared with the parent after fork counted once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-meter", daemon=True)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self) -> None:
        parts, pss = [], 0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                info = proc.memory_full_info()
                parts.append(info.rss)
                pss += info.pss
        if sum(parts) > self.peak_rss:
            self.peak_rss, self.peak_parts = sum(parts), sorted(parts, reverse=True)
        self.peak_pss = max(self.peak_pss, pss)

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> Meter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def describe(self) -> str:
        parts = " + ".join(f"{p / 2**20:.0f}" for p in self.peak_parts)
        return (
            f"{self.peak_rss / 2**20:.0f} MB ({len(self.peak_parts)} processes: {parts}; "
            f"PSS {self.peak_pss / 2**20:.0f} MB)"
        )

    def reset(self) -> None:
        self.peak_rss, self.peak_parts, self.peak_pss = 0, [], 0


# --- worker processes ----------------------------------------------------------------------------


@dataclass
class Process:
    """A worker subprocess in its own session, logging to a file."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def notify_worker_argv(pool: str, concurrency: int) -> list[str]:
    """``notify worker`` with this pool; gevent needs Celery's own entry point, which monkey-patches
    before anything imports sockets (``notify worker`` imports them first)."""
    if pool == "gevent":
        return [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO",
            "--without-mingle", "--without-gossip", f"--hostname={_node('notify')}",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "workers", "worker", f"--pool={pool}", f"--concurrency={concurrency}",
        f"--hostname={_node('notify')}",
    ]  # fmt: skip


def _node(kind: str) -> str:
    # A node name of its own: another worker on this host with the default name would hold the
    # same exclusive remote-control queue, and one of the two would die at start.
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}@%h"


def noop_worker_argv(pool: str, concurrency: int) -> list[str]:
    """The ceiling's worker; task events follow ``NOTIFY_TASK_EVENTS`` through the copied config."""
    return [
        sys.executable, "-m", "celery", "-A", "bench.noop_app", "worker",
        f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO",
        "--without-mingle", "--without-gossip", f"--hostname={_node('noop')}",
    ]  # fmt: skip


def bench_env(folder: Path, *, broker: str, database_url: str, **extra: str) -> dict[str, str]:
    """The harness's isolated environment, with the production sweeper timings (the harness's
    5-second ``stuck_after`` would re-enqueue a deep backlog while the benchmark builds it).

    ``NOTIFY_TASK_EVENTS`` passes through from the benchmark's own environment, so both the worker
    and the ceiling run with or without Celery's task events."""
    return isolated_env(
        folder,
        broker_url=BROKERS[broker],
        database_url=database_url,
        NOTIFY_SWEEP_INTERVAL="30",
        NOTIFY_STUCK_AFTER="600",
        NOTIFY_LOG_LEVEL="INFO",
        NOTIFY_TASK_EVENTS=task_events(),
        **extra,
    )


def task_events() -> str:
    return os.environ.get("NOTIFY_TASK_EVENTS", "1")


def prepare_ledger(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    engine.dispose()


def drop_broker_state(settings: Settings) -> None:
    """Delete this run's queues and exchange so runs do not pile up on the shared broker."""
    with contextlib.suppress(Exception), connection(settings) as conn:
        channel = conn.default_channel
        for name in (settings.task_queue, settings.event_queue):
            with contextlib.suppress(Exception):
                Queue(name, channel=channel).delete()
        with contextlib.suppress(Exception):
            Exchange(settings.event_exchange, channel=channel).delete()
        with contextlib.suppress(Exception):
            Exchange(settings.task_queue, channel=channel).delete()


def publish_bus(settings: Settings, messages: Sequence[tuple[bytes, str, str]]) -> None:
    """Put raw events on the bus with plain kombu, as a foreign producer does."""
    with connection(settings) as conn:
        declare_bus(conn, settings)
        producer = Producer(conn.default_channel)
        exchange = event_exchange(settings)
        for body, content_type, routing_key in messages:
            producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                content_type=content_type,
                content_encoding="binary",
                delivery_mode=2,
            )


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"notify-bench-{prefix}-"))


def spread(values: Sequence[float]) -> str:
    """``median (min-max)`` of repeated figures."""
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def percentile(sorted_values: Sequence[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(share * (len(sorted_values) - 1))))
    return sorted_values[index]


def describe_machine() -> str:
    load = os.getloadavg()
    events = "on" if task_events().strip().lower() in {"1", "true", "yes", "on"} else "off"
    return f"{psutil.cpu_count()} cores, load average {load[0]:.2f} at start, Celery task events {events}"
