"""The benchmark rig: local providers as processes, throwaway ledgers, worker processes, memory and CPU.

The worker under test runs its real HTTP clients against the local Mandrill and Twilio servers of
``tests/fakes``, started as programs from the checkout (``python -m tests.fakes.<server>``): bench
imports nothing from ``tests``, and the servers' threads stay off the measured processes' CPU and GIL.
Service addresses and the isolated environment come from ``bench.services``, which the tests share.
"""

from __future__ import annotations

import collections
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from kombu import Producer
from kombu.entity import Exchange, Queue
from sqlalchemy import create_engine, func, select, text

from bench.services import POSTGRES_ADMIN_URL, RABBITMQ_URL, REDIS_URL, ROOT, connection, isolated_env
from workers.ingest import declare_bus, event_exchange
from workers.ledger import make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.models import Notification
from workers.settings import Settings

BROKERS = {"rabbitmq": RABBITMQ_URL, "redis": REDIS_URL}
MANDRILL_KEY = "bench-key"
TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "bench-token"

_MANDRILL_ID = re.compile(r'"notification_id":\s*"([^"]+)"')
_TWILIO_ID = re.compile(r"ref(?:\+|%20)([0-9a-f-]{36})")


# --- providers -----------------------------------------------------------------------------------


class FakeServer:
    """One local provider server of ``tests/fakes`` as a child process, driven by its control API."""

    def __init__(self, module: str, variable: str, *args: str) -> None:
        self.argv = [sys.executable, "-m", f"tests.fakes.{module}", "--port", "0", *args]
        self.variable = variable  # the settings line the program prints once it listens
        self.url = ""
        self._popen: subprocess.Popen[str] | None = None
        self._client = httpx.Client(timeout=30.0)

    @classmethod
    def mandrill(cls) -> FakeServer:
        return cls("mandrill_server", "MANDRILL_BASE_URL", "--key", MANDRILL_KEY)

    @classmethod
    def twilio(cls) -> FakeServer:
        return cls("twilio_server", "TWILIO_BASE_URL", "--sid", TWILIO_SID, "--token", TWILIO_TOKEN)

    def start(self) -> FakeServer:
        self._popen = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self._popen.stdout is not None
        line = self._popen.stdout.readline().strip()
        name, _, url = line.partition("=")
        if name != self.variable or not url:
            self.stop()
            raise RuntimeError(f"{' '.join(self.argv[1:4])} did not start (printed {line!r})")
        self.url = url
        return self

    def stop(self) -> None:
        self._client.close()
        if self._popen is None or self._popen.poll() is not None:
            return
        self._popen.send_signal(signal.SIGTERM)
        try:
            self._popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait(timeout=30)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, action: str, payload: dict[str, Any] | None = None) -> Any:
        root = self.url.split("/", 3)[:3]  # scheme://host:port, whatever API path the URL carries
        url = "/".join(root) + "/_control/" + action
        reply = self._client.post(url, json=payload) if payload is not None else self._client.get(url)
        reply.raise_for_status()
        return reply.json()

    def received(self, since: int = 0) -> list[dict[str, Any]]:
        """The requests after the first ``since``: method, path, status, accepted, at, body."""
        items: list[dict[str, Any]] = self._control(f"received?since={since}")
        return items

    def accepted_count(self) -> int:
        return sum(1 for item in self.received() if item["accepted"])

    def reset(self) -> None:
        self._control("reset", {})

    def set_reply_delay(self, seconds: float) -> None:
        self._control("reply-delay", {"seconds": seconds})


class _Arrivals:
    """What a benchmark reads of a destination: when each notification id first arrived there."""

    def __init__(self) -> None:
        self._arrivals: dict[str, float] = {}

    def _poll(self) -> None:
        raise NotImplementedError

    def delivered(self) -> int:
        self._poll()
        return len(self._arrivals)

    def arrivals(self) -> dict[str, float]:
        self._poll()
        return dict(self._arrivals)

    def wait_for(self, ids: Sequence[str], *, timeout: float, alive: Callable[[], bool]) -> float | None:
        """Wait until every id has arrived; the arrival time of the last one, None on timeout."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            self._poll()
            if not wanted - self._arrivals.keys():
                return max(self._arrivals[i] for i in wanted)
            if time.monotonic() > deadline or not alive():
                return None
            time.sleep(0.2)


class Providers(_Arrivals):
    """Both local providers, answering at once or after ``delay`` seconds; arrival times of sends.

    An accepted send's arrival is the server's own clock at the request, by the notification id in
    Mandrill's metadata or at the end of the SMS body (``ref <id>``), read back by polling."""

    def __init__(self, delay: float = 0.0) -> None:
        self.mandrill = FakeServer.mandrill()
        self.twilio = FakeServer.twilio()
        self.delay = delay
        self._patterns = ((self.mandrill, _MANDRILL_ID), (self.twilio, _TWILIO_ID))
        self._seen = {id(self.mandrill): 0, id(self.twilio): 0}
        super().__init__()  # arrivals: the first acceptance of each id
        self._accepted: collections.Counter[str] = collections.Counter()  # every acceptance

    def __enter__(self) -> Providers:
        with contextlib.ExitStack() as started:
            for server in (self.mandrill, self.twilio):
                started.enter_context(server)
                server.set_reply_delay(self.delay)
            started.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mandrill.stop()
        self.twilio.stop()

    def env(self) -> dict[str, str]:
        return {
            "NOTIFY_EMAIL_PROVIDER": "mandrill",
            "NOTIFY_SMS_PROVIDER": "twilio",
            "MANDRILL_API_KEY": MANDRILL_KEY,
            "MANDRILL_BASE_URL": self.mandrill.url,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_BASE_URL": self.twilio.url,
        }

    def _poll(self) -> None:
        for server, pattern in self._patterns:
            items = server.received(since=self._seen[id(server)])
            self._seen[id(server)] += len(items)
            for item in items:
                found = pattern.search(item["body"]) if item["accepted"] else None
                if found:
                    self._arrivals.setdefault(found.group(1), float(item["at"]))
                    self._accepted[found.group(1)] += 1

    def acceptances(self) -> collections.Counter[str]:
        """How many times a provider accepted each id: the ground truth of what was sent."""
        self._poll()
        return collections.Counter(self._accepted)


class Outbox(_Arrivals):
    """The outbox providers as the worker's destination: arrival times of sends are the files' times.

    Same reading interface as ``Providers``; the worker writes ``email/<id>.eml`` and
    ``sms/<id>.json`` (bench ids are UUIDs, so the file name is the id)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def env(self) -> dict[str, str]:
        return {
            "NOTIFY_EMAIL_PROVIDER": "outbox",
            "NOTIFY_SMS_PROVIDER": "outbox",
            "NOTIFY_OUTBOX_DIR": str(self.folder),
        }

    def _poll(self) -> None:
        for kind in ("email", "sms"):
            with contextlib.suppress(FileNotFoundError), os.scandir(self.folder / kind) as entries:
                for entry in entries:
                    name, dot, _ = entry.name.rpartition(".")
                    if dot and not name.startswith(".") and name not in self._arrivals:
                        with contextlib.suppress(FileNotFoundError):
                            self._arrivals[name] = entry.stat().st_mtime


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

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown, no acks, no last writes."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

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


def notify_worker_argv(pool: str, concurrency: int, *, beat: bool = True) -> list[str]:
    """``notify worker`` with this pool; gevent needs Celery's own entry point, which monkey-patches
    before anything imports sockets (``notify worker`` imports them first) and runs no beat.
    ``beat=False`` for every node but one: one sweeper schedule per deployment."""
    if pool == "gevent":
        return [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO",
            "--without-mingle", "--without-gossip", f"--hostname={_node('notify')}",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "workers", "worker", f"--pool={pool}", f"--concurrency={concurrency}",
        f"--hostname={_node('notify')}", *([] if beat else ["--no-beat"]),
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
    and the ceiling run with or without Celery's task events. ``extra`` wins over these defaults."""
    defaults = {
        "NOTIFY_SWEEP_INTERVAL": "30",
        "NOTIFY_STUCK_AFTER": "600",
        "NOTIFY_LOG_LEVEL": "INFO",
        "NOTIFY_TASK_EVENTS": task_events(),
    }
    return isolated_env(
        folder, broker_url=BROKERS[broker], database_url=database_url, **{**defaults, **extra}
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


def wait_for_consumers(settings: Settings, nodes: int, *, timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until ``nodes`` workers consume both the bus queue and the task queue (RabbitMQ counts
    consumers; on other brokers this returns at once)."""
    if not settings.broker_url.startswith("amqp"):
        return
    deadline = time.monotonic() + timeout
    while True:
        counts = []
        with connection(settings) as conn:
            for name in (settings.event_queue, settings.task_queue):
                try:
                    # A passive declare that fails closes the channel: one fresh channel per queue.
                    with conn.channel() as channel:
                        counts.append(channel.queue_declare(queue=name, passive=True).consumer_count)
                except Exception:
                    counts.append(0)  # not declared yet: no worker got that far
        if min(counts) >= nodes:
            return
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(
                f"{nodes} workers did not all start consuming within {timeout:.0f} s: {counts}"
            )
        time.sleep(0.2)


def publish_bus(
    settings: Settings,
    messages: Sequence[tuple[bytes, str, str]],
    *,
    last_headers: Mapping[str, str] | None = None,
) -> None:
    """Put raw events on the bus with plain kombu, as a foreign producer does.

    ``last_headers`` go on the last message only (the same-shape ceiling's end-of-run marker), on
    the same channel as the others, so the broker queues it after them."""
    with connection(settings) as conn:
        declare_bus(conn, settings)
        producer = Producer(conn.default_channel)
        exchange = event_exchange(settings)
        last = len(messages) - 1
        for index, (body, content_type, routing_key) in enumerate(messages):
            producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                content_type=content_type,
                content_encoding="binary",
                delivery_mode=2,
                headers=dict(last_headers) if last_headers and index == last else None,
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
