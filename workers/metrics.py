"""Prometheus metrics: an Observer of the dispatcher and the rate limiter, and the worker's /metrics endpoint.

Served on ``NOTIFY_METRICS_PORT`` (0, the default, turns metrics off) and ``NOTIFY_METRICS_HOST``
(default 127.0.0.1; a container sets 0.0.0.0) by the worker's main process.

Pools:

* ``threads`` (the default), ``solo``, ``gevent``, ``eventlet``: every task runs in the main
  process, so the endpoint serves the observer's own registry (plus the process's CPU and memory).
* ``prefork``: tasks run in forked children, whose counters the main process cannot see. The worker
  then switches prometheus-client into multiprocess mode before the pool forks: each process writes
  its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (``NOTIFY_STATE_DIR/prometheus/<main pid>``
  unless the environment already names a folder), and the endpoint sums them. The folder is emptied
  at start and removed at shutdown.

Labels carry kinds, never people: channel, provider, event type (our three types, else ``other``),
status, outcome, limit name.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, values
from prometheus_client.exposition import start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from workers.dispatch import Intake, NullObserver, Observer
from workers.events.schema import OUR_EVENT_TYPES
from workers.ledger import Claim
from workers.ledger.receipts import Moved
from workers.messages import Status
from workers.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FORKING_POOLS = frozenset({"prefork", "processes"})

PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From the event's own timestamp: includes bus and queue time, retries, and rate-limit waits.
END_TO_END_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
# From the send's acceptance to the provider's `delivered` receipt: seconds for SMS, up to days for mail.
DELIVERY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 259200.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def event_type_label(event_type: str | None) -> str:
    """Our three types by short name; anything else (a foreign or garbled type) is ``other``."""
    if event_type is None:
        return "unknown"
    name = event_type if event_type.startswith("events.") else f"events.{event_type}"
    return name.removeprefix("events.") if name in OUR_EVENT_TYPES else "other"


class PrometheusObserver:
    """Counts what the dispatcher and the rate limiter report; never raises into them."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.events = Counter(
            "notify_events",
            # conflict: a known id with another payload, dropped (the id is the dedup key) but counted
            "Messages from the bus or the accept task, by what became of them",
            ["outcome", "channel", "event_type"],
            registry=registry,
        )
        self.deliveries = Counter(
            "notify_deliveries",
            "Outcomes of delivery attempts (sent, failed, dead, retrying)",
            ["status", "channel", "provider", "event_type"],
            registry=registry,
        )
        self.provider_seconds = Histogram(
            "notify_provider_call_seconds",
            "Time spent in the provider call alone (not rendering)",
            ["channel", "provider", "status"],
            buckets=PROVIDER_BUCKETS,
            registry=registry,
        )
        self.end_to_end_seconds = Histogram(
            "notify_end_to_end_seconds",
            "From the event's timestamp to the provider's acceptance",
            ["channel", "event_type"],
            buckets=END_TO_END_BUCKETS,
            registry=registry,
        )
        self.sweeper = Counter(
            "notify_sweeper_found",
            "What the sweeper found: requeued, unknown (stuck in sending), purged (personal data)",
            ["finding"],
            registry=registry,
        )
        self.sweeps = Counter(
            "notify_sweeps", "Sweeper passes, by whether they found anything", ["found"], registry=registry
        )
        self.rate_limit_waits = Counter(
            "notify_rate_limit_waits",
            "Sends postponed by a shared rate limit",
            ["limit"],
            registry=registry,
        )
        self.rate_limit_wait_seconds = Histogram(
            "notify_rate_limit_wait_seconds",
            "How far a shared rate limit postponed a send",
            ["limit"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )

        self.receipts_total = Counter(
            "notify_receipts",
            "Delivery receipts taken from providers, by provider and what they ask of the status",
            ["provider", "status"],
            registry=registry,
        )
        self.sent_to_delivered_seconds = Histogram(
            "notify_sent_to_delivered_seconds",
            "From the provider's acceptance (sent) to its delivered receipt",
            ["channel", "provider"],
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.suppressed_total = Counter(
            "notify_suppressed",
            "Sends to a recipient on the suppression list: stopped (enforce) or only counted (record)",
            ["channel", "mode"],
            registry=registry,
        )

    def intake(self, outcome: Intake, event_type: str | None, channel: str | None) -> None:
        self.events.labels(outcome.value, channel or "none", event_type_label(event_type)).inc()

    def delivered(
        self,
        claim: Claim,
        status: Status,
        provider: str | None,
        *,
        provider_seconds: float | None,
        end_to_end_seconds: float | None,
    ) -> None:
        channel = claim.channel.value
        kind = event_type_label(claim.event_type)
        who = provider or "none"
        self.deliveries.labels(status.value, channel, who, kind).inc()
        if provider_seconds is not None:
            self.provider_seconds.labels(channel, who, status.value).observe(provider_seconds)
        if end_to_end_seconds is not None:
            # A producer's clock ahead of ours would give a negative age; it still took "no time".
            self.end_to_end_seconds.labels(channel, kind).observe(max(end_to_end_seconds, 0.0))

    def swept(self, found: dict[str, int]) -> None:
        self.sweeps.labels("yes" if any(found.values()) else "no").inc()
        for finding, count in found.items():
            if count:
                self.sweeper.labels(finding).inc(count)

    def suppressed(self, channel: str, mode: str) -> None:
        self.suppressed_total.labels(channel, mode).inc()

    def receipts(self, provider: str, effect: str, count: int) -> None:
        self.receipts_total.labels(provider, effect).inc(count)

    def moved(self, moved: Moved) -> None:
        change = moved.change
        if change.new.value == "delivered" and moved.sent_at is not None:
            seconds = (moved.occurred_at - moved.sent_at).total_seconds()
            # Provider clocks differ from ours by a little: a receipt "before" the send took no time.
            self.sent_to_delivered_seconds.labels(
                change.channel or "none", change.provider or "none"
            ).observe(max(seconds, 0.0))

    def rate_limited(self, limit: str, wait: float) -> None:
        self.rate_limit_waits.labels(limit).inc()
        self.rate_limit_wait_seconds.labels(limit).observe(wait)


def build_observer(settings: Settings) -> PrometheusObserver | NullObserver:
    """The process's observer: Prometheus when ``NOTIFY_METRICS_PORT`` is set, else nothing."""
    if not settings.metrics_port:
        return NullObserver()
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)  # CPU and memory of the main process (threads pool)
    return PrometheusObserver(registry)


def multiprocess_dir(settings: Settings) -> tuple[Path, bool]:
    """Where this worker keeps per-process metric files, and whether the folder is ours to remove."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        return Path(configured), False
    return (settings.state_dir / "prometheus" / str(os.getpid())).resolve(), True


def enable_multiprocess(directory: Path) -> None:
    """Put prometheus-client into multiprocess mode; call in the main process before the pool forks.

    prometheus-client chooses its value class when first imported, from ``PROMETHEUS_MULTIPROC_DIR``.
    Our metric objects are all labelled, so no value exists until a first event; switching the class
    here, before any task ran, is what setting the variable before the import would have done. (An
    unlabelled metric would hold its value from construction and stay out of the files: keep labels.)
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        # Files of an earlier run would be summed into this one's counters.
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


class MetricsEndpoint:
    """The worker's HTTP endpoint for Prometheus; lives in the main process only."""

    def __init__(self, observer: PrometheusObserver, settings: Settings) -> None:
        self.observer = observer
        self.port = settings.metrics_port
        self.host = settings.metrics_host
        self._settings = settings
        self._directory: Path | None = None
        self._owned = False
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def prepare(self, pool: str) -> None:
        """Before the pool starts: multiprocess mode when the pool forks."""
        if pool in FORKING_POOLS:
            self._directory, self._owned = multiprocess_dir(self._settings)
            enable_multiprocess(self._directory)

    def registry(self) -> CollectorRegistry:
        if self._directory is not None:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=str(self._directory))
            return merged
        return self.observer.registry or CollectorRegistry()

    def start(self) -> None:
        if self._server is not None:
            return
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry())

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._directory is not None and self._owned:
            # Our own per-run folder only; one the operator named is theirs to keep.
            shutil.rmtree(self._directory, ignore_errors=True)


def endpoint_for(observer: Observer, settings: Settings) -> MetricsEndpoint | None:
    """The endpoint to serve, when metrics are on (``observer`` is a PrometheusObserver)."""
    if isinstance(observer, PrometheusObserver) and settings.metrics_port:
        return MetricsEndpoint(observer, settings)
    return None
