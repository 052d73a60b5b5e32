"""The Prometheus observer: counts what a real Dispatcher reports, agrees with the ledger, survives forks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import ROOT
from tests.factories import basic_email, parsed, sms
from workers.compose import Composer
from workers.dispatch import Dispatcher, Intake
from workers.errors import GiveUp, RateLimited, RetryLater
from workers.ledger import Ledger
from workers.ledger.queries import count_by_status
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.metrics import PrometheusObserver, build_observer, event_type_label
from workers.providers.outbox import OutboxProvider
from workers.retry import RetryPolicy
from workers.settings import load_settings


class Scripted:
    """Raises the scripted errors in order, then sends into an outbox."""

    def __init__(self, name: str, outbox: OutboxProvider, *script: BaseException) -> None:
        self.name = name
        self.outbox = outbox
        self.script = list(script)

    def _next(self) -> None:
        if self.script:
            raise self.script.pop(0)

    def send_email(self, message: EmailMessage) -> Receipt:
        self._next()
        return Receipt(self.name, self.outbox.send_email(message).provider_message_id)

    def send_sms(self, message: SmsMessage) -> Receipt:
        self._next()
        return Receipt(self.name, self.outbox.send_sms(message).provider_message_id)

    def close(self) -> None:
        pass


class NoTemplates:
    def render(self, name: str, part: str, language: str, data: Mapping[str, Any]) -> str:
        raise AssertionError("plain events need no template")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_event_type_labels_are_bounded() -> None:
    assert event_type_label("events.BasicEmail") == "BasicEmail"
    assert event_type_label("SMSNotification") == "SMSNotification"
    assert event_type_label("events.SomethingElse") == "other"
    assert event_type_label("x" * 500) == "other"
    assert event_type_label(None) == "unknown"


def test_metrics_off_by_default() -> None:
    assert not isinstance(build_observer(load_settings(metrics_port=0)), PrometheusObserver)
    assert isinstance(build_observer(load_settings(metrics_port=9999)), PrometheusObserver)


def test_counters_follow_a_real_dispatcher_and_match_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    outbox = OutboxProvider(tmp_path / "outbox")
    email = Scripted(
        "mandrill",
        outbox,
        RetryLater("mandrill: 500", provider="mandrill"),
        GiveUp("mandrill: hard-bounce", provider="mandrill"),
    )
    text = Scripted("twilio", outbox, RateLimited("twilio: limit", provider="twilio", retry_after=0.5))
    dispatcher = Dispatcher(
        ledger,
        composer=Composer(NoTemplates(), lambda *a, **k: {}),
        email=email,
        sms=text,
        policy=RetryPolicy(max_attempts=3, jitter=lambda low, high: 0.0),
        enqueue=lambda notification_id, label: None,
        observer=observer,
    )
    first, second = parsed(basic_email()), parsed(basic_email())
    message = parsed(sms())
    for event in (first, second, message, first):
        dispatcher.accept(event)
    assert dispatcher.receive(
        b"not protobuf", "application/x-protobuf", "events.BasicEmail", templates=()
    ) is (Intake.REJECTED)

    dispatcher.deliver(first.notification_id)  # 500: retrying
    dispatcher.deliver(first.notification_id)  # hard bounce: failed
    dispatcher.deliver(second.notification_id)  # sent
    dispatcher.deliver(message.notification_id)  # our own limit: retrying, uncounted
    dispatcher.deliver(message.notification_id)  # sent
    dispatcher.sweep(stuck_after=3600, sending_timeout=3600, retention_days=30)

    events = "notify_events_total"
    assert sample(registry, events, outcome="accepted", channel="email", event_type="BasicEmail") == 2
    assert sample(registry, events, outcome="accepted", channel="sms", event_type="SMSNotification") == 1
    assert sample(registry, events, outcome="duplicate", channel="email", event_type="BasicEmail") == 1
    assert (
        sum(
            sample(registry, events, outcome="rejected", channel="none", event_type=kind)
            for kind in ("BasicEmail", "other", "unknown")
        )
        == 1
    )

    deliveries = "notify_deliveries_total"
    sent = sample(
        registry, deliveries, status="sent", channel="email", provider="mandrill", event_type="BasicEmail"
    )
    sent += sample(
        registry, deliveries, status="sent", channel="sms", provider="twilio", event_type="SMSNotification"
    )
    failed = sample(
        registry, deliveries, status="failed", channel="email", provider="mandrill", event_type="BasicEmail"
    )
    retrying = sample(
        registry, deliveries, status="retrying", channel="email", provider="mandrill", event_type="BasicEmail"
    ) + sample(
        registry,
        deliveries,
        status="retrying",
        channel="sms",
        provider="twilio",
        event_type="SMSNotification",
    )

    in_ledger = count_by_status(ledger.engine)
    assert (sent, failed) == (in_ledger.get("sent", 0), in_ledger.get("failed", 0)) == (2, 1)
    assert in_ledger.get("rejected", 0) == 1
    assert retrying == 2

    latency = "notify_provider_call_seconds_count"
    assert sample(registry, latency, channel="email", provider="mandrill", status="sent") == 1
    assert sample(registry, latency, channel="email", provider="mandrill", status="failed") == 1
    e2e = "notify_end_to_end_seconds_count"
    assert sample(registry, e2e, channel="email", event_type="BasicEmail") == 1
    assert sample(registry, e2e, channel="sms", event_type="SMSNotification") == 1
    assert sample(registry, "notify_sweeps_total", found="no") == 1


def test_rate_limit_waits_and_sweeper_findings() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.rate_limited("sms-sender", 0.8)
    observer.rate_limited("sms-sender", 1.6)
    observer.swept({"requeued": 3, "unknown": 1, "purged": 0})
    assert sample(registry, "notify_rate_limit_waits_total", limit="sms-sender") == 2
    assert sample(registry, "notify_rate_limit_wait_seconds_sum", limit="sms-sender") == pytest.approx(2.4)
    assert sample(registry, "notify_sweeper_found_total", finding="requeued") == 3
    assert sample(registry, "notify_sweeper_found_total", finding="unknown") == 1
    assert sample(registry, "notify_sweeper_found_total", finding="purged") == 0


def test_every_metric_is_labelled_so_multiprocess_mode_can_be_switched_on_late() -> None:
    # enable_multiprocess runs after the observer exists; an unlabelled metric would already hold a
    # value of the in-process kind and never reach the per-process files.
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    names = list(getattr(registry, "_names_to_collectors", {}).values())
    assert names
    for collector in names:
        assert getattr(collector, "_labelnames", ()), collector


def test_multiprocess_mode_sums_forked_children(tmp_path: Path) -> None:
    """Prefork: the observer exists before the fork (as in the worker); children's counts add up."""
    script = textwrap.dedent(
        f"""
        import multiprocessing, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from prometheus_client import CollectorRegistry, generate_latest
        from workers.dispatch import Intake
        from workers.metrics import PrometheusObserver, enable_multiprocess
        from prometheus_client.multiprocess import MultiProcessCollector

        observer = PrometheusObserver(CollectorRegistry())   # created at import, like workers.tasks
        from pathlib import Path
        enable_multiprocess(Path({str(tmp_path / "mp")!r}))   # then the worker_init hook
        def child(n):
            for _ in range(n):
                observer.intake(Intake.ACCEPTED, "events.BasicEmail", "email")
            observer.rate_limited("mandrill", 0.25)
            observer.swept({{"requeued": 1, "unknown": 0, "purged": 0}})
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=child, args=(n,)) for n in (3, 4)]
        for p in procs: p.start()
        for p in procs: p.join()
        observer.intake(Intake.ACCEPTED, "events.BasicEmail", "email")   # the main process (bus consumer)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path={str(tmp_path / "mp")!r})
        print(merged.get_sample_value(
            "notify_events_total", {{"outcome": "accepted", "channel": "email", "event_type": "BasicEmail"}}))
        print(merged.get_sample_value("notify_rate_limit_waits_total", {{"limit": "mandrill"}}))
        print(merged.get_sample_value("notify_sweeps_total", {{"found": "yes"}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8.0", "2.0", "2.0"]
