"""Operations with a real worker: Flower shows tasks but no personal data, logs hold none either,
metrics agree with the ledger (threads and prefork), and two workers share one rate limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RABBITMQ_URL, REDIS_URL, ROOT
from tests.fakes.http_base import Drop
from tests.fakes.http_base import Status as HttpStatus
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from tests.ops.stack import Personal, as_messages, eventually, free_port, provider_env
from workers.ledger import make_engine
from workers.ledger.queries import count_by_status
from workers.messages import Status

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]


@pytest.fixture
def providers() -> Iterator[tuple[MandrillServer, TwilioServer]]:
    with MandrillServer(["test-key"]) as mandrill, TwilioServer() as twilio:
        yield mandrill, twilio  # type: ignore[misc]


def mixed_events(
    people: Personal, mandrill: MandrillServer, twilio: TwilioServer
) -> tuple[list[dict[str, Any]], dict[str, Status]]:
    """Deliveries, permanent refusals, transient failures and an invalid event; expected end states."""
    emails = [people.email(n) for n in range(1, 5)]
    texts = [people.text(n) for n in range(1, 4)]
    bounced = emails[-1]["data"]["toAddress"]
    refused = texts[-1]["data"]["toNumber"]
    mandrill.reject_address(bounced, "hard-bounce")
    twilio.refuse_number(refused, 21610)
    # The first two Mandrill requests fail transiently (a 500, then a dropped connection): retried.
    mandrill.fail_next(HttpStatus(500), Drop())
    invalid = people.email(9, fromAddress="not an address")
    expected = {e["core"]["id"]: Status.SENT for e in emails[:-1] + texts[:-1]}
    expected[emails[-1]["core"]["id"]] = Status.FAILED
    expected[texts[-1]["core"]["id"]] = Status.FAILED
    expected[invalid["core"]["id"]] = Status.REJECTED
    return [*emails, *texts, invalid], expected


def worker_args(*extra: str) -> tuple[str, ...]:
    """Worker options with a node name of its own: two workers on one name lock each other out."""
    return ("--concurrency", "4", f"--hostname=ops-{uuid.uuid4().hex[:8]}@%h", *extra)


def statuses(rows: dict[str, Any]) -> dict[str, Status | None]:
    return {key: (row.status if row is not None else None) for key, row in rows.items()}


# -- Flower -------------------------------------------------------------------------------------


class Flower:
    """`notify flower` as a child process on a free port, with basic auth."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.auth = ("ops", "flower-secret")
        self.env = env | {"NOTIFY_FLOWER_USER": self.auth[0], "NOTIFY_FLOWER_PASSWORD": self.auth[1]}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Flower:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workers", "flower", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        eventually(lambda: httpx.get(f"{self.url}/healthcheck", timeout=2).status_code == 200, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, auth=self.auth, timeout=10)

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.url + path, auth=self.auth, json=body, timeout=10)


def submit_with_our_helper(env: dict[str, str], event: dict[str, Any]) -> None:
    """`workers.tasks.submit_event`, the producer helper, run as a producer process would."""
    code = "import json, sys; from workers.tasks import submit_event; submit_event(json.load(sys.stdin))"
    subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(event).encode(),
        env=env,
        cwd=ROOT,
        check=True,
        timeout=60,
    )


def test_flower_lists_our_tasks_and_no_personal_data(
    tmp_path: Path, providers: tuple[MandrillServer, TwilioServer]
) -> None:
    mandrill, twilio = providers
    env = isolated_env(tmp_path, broker_url=RABBITMQ_URL, **provider_env(mandrill.api_url, twilio.base_url))
    people = Personal()
    events, expected = mixed_events(people, mandrill, twilio)
    from_producer = people.email(7)
    expected[from_producer["core"]["id"]] = Status.SENT
    with Flower(env, tmp_path / "flower.log") as flower:
        assert httpx.get(flower.url + "/api/tasks", timeout=10).status_code == 401  # no auth, no API
        with WorkerProcess(env, tmp_path / "worker.log", args=worker_args()) as worker:
            publish_raw(worker.settings, as_messages(events))
            submit_with_our_helper(env, from_producer)
            rows = wait_for(worker.settings, expected, worker=worker, timeout=90)
            assert statuses(rows) == expected, worker.log()[-3000:]

            # An operator resends the bounced one from Flower's task API, once the address is cleared.
            bounced = next(
                key
                for key, status in expected.items()
                if status is Status.FAILED and rows[key] is not None and rows[key].channel == "email"
            )  # type: ignore[union-attr]
            mandrill.reset()
            # Mandrill's hard-bounce refusal also put the address on our own suppression list (a
            # resend would end `failed: suppressed: reject`); the operator takes it off as well.
            address = next(e["data"]["toAddress"] for e in events if e["core"]["id"] == bounced)
            subprocess.run(
                [sys.executable, "-m", "workers", "suppressions", "remove", address],
                env=env,
                cwd=ROOT,
                check=True,
                timeout=60,
                capture_output=True,
            )
            answer = flower.post("/api/task/async-apply/notifications.resend", {"args": [bounced]})
            assert answer.status_code == 200, answer.text
            resent = wait_for(
                worker.settings,
                [bounced],
                worker=worker,
                done=lambda v: v is not None and v.status is Status.SENT,
            )
            assert resent[bounced] is not None and resent[bounced].status is Status.SENT

            def tasks_seen() -> dict[str, Any] | None:
                listed: dict[str, Any] = flower.get("/api/tasks").json()
                names = {task.get("name") for task in listed.values()}
                wanted = {"notifications.deliver", "notifications.accept", "notifications.resend"}
                return listed if wanted <= names else None

            listed = eventually(tasks_seen, timeout=30)
            seen = [flower.get("/api/tasks").text, flower.get("/api/workers?refresh=1").text]
            seen += [flower.get(f"/api/task/info/{task_id}").text for task_id in listed]
            seen += [flower.get(page).text for page in ("/", "/tasks", "/workers", "/broker")]
    names = {task["name"] for task in listed.values()}
    assert {"notifications.deliver", "notifications.accept", "notifications.resend"} <= names
    deliver_args = {task["args"] for task in listed.values() if task["name"] == "notifications.deliver"}
    assert any("notification" in args and "email" in args for args in deliver_args), deliver_args
    accept_args = [task["args"] for task in listed.values() if task["name"] == "notifications.accept"]
    assert accept_args == [repr(f"event {from_producer['core']['id']} events.BasicEmail")]
    everything = "\n".join(seen)
    assert people.leaks(everything) == []


# -- logs ---------------------------------------------------------------------------------------


def test_worker_logs_hold_no_personal_data_even_at_debug(
    tmp_path: Path, providers: tuple[MandrillServer, TwilioServer]
) -> None:
    mandrill, twilio = providers
    env = isolated_env(tmp_path, broker_url=RABBITMQ_URL, **provider_env(mandrill.api_url, twilio.base_url))
    people = Personal()
    events, expected = mixed_events(people, mandrill, twilio)
    from_producer = people.email(8)
    expected[from_producer["core"]["id"]] = Status.SENT
    log_path = tmp_path / "worker.log"
    with WorkerProcess(env, log_path, args=worker_args("--loglevel", "DEBUG")) as worker:
        publish_raw(worker.settings, as_messages(events))
        submit_with_our_helper(env, from_producer)  # the one task whose arguments are the event
        # A task of a name nobody registered, carrying an address: Celery logs such bodies.
        from workers.celery_app import create_app

        stray = people.email(11)
        create_app(worker.settings).send_task(
            "notifications.unknown", (stray,), queue=worker.settings.task_queue, argsrepr="'stray'"
        )
        rows = wait_for(worker.settings, expected, worker=worker, timeout=90)
        assert statuses(rows) == expected, worker.log()[-3000:]
        eventually(lambda: "unregistered task" in worker.log(), timeout=30)
    log = worker.log()
    lines = [line for line in log.splitlines() if line.strip()]
    assert len(lines) > 50
    # One JSON object per line from our code; each delivery line names notification, channel, attempt.
    ours = [json.loads(line) for line in lines if line.startswith("{")]
    sent = [entry for entry in ours if entry.get("event") == "deliver.sent"]
    assert sent and all(
        {"notification_id", "channel", "attempt", "provider"} <= entry.keys() for entry in sent
    )
    assert any(entry.get("event") == "deliver.retry" for entry in ours)
    assert any(entry.get("event") == "deliver.failed" for entry in ours)
    assert "TaskPool: Apply" in log and "<hidden>" in log
    assert people.leaks(log) == []


# -- metrics ------------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (metric, found), value in samples.items() if metric == name and wanted <= found)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_metrics_match_the_ledger(
    pool: str, tmp_path: Path, providers: tuple[MandrillServer, TwilioServer]
) -> None:
    mandrill, twilio = providers
    port = free_port()
    env = isolated_env(
        tmp_path,
        broker_url=RABBITMQ_URL,
        NOTIFY_METRICS_PORT=str(port),
        **provider_env(mandrill.api_url, twilio.base_url),
    )
    people = Personal()
    events, expected = mixed_events(people, mandrill, twilio)
    duplicate = events[0]
    with WorkerProcess(
        env, tmp_path / "worker.log", args=worker_args("--pool", pool, "--concurrency", "3")
    ) as worker:
        publish_raw(worker.settings, as_messages([*events, duplicate]))
        rows = wait_for(worker.settings, expected, worker=worker, timeout=90)
        assert statuses(rows) == expected, worker.log()[-3000:]
        engine = make_engine(worker.settings.resolved_database_url)
        in_ledger = count_by_status(engine)
        engine.dispose()

        def agreeing() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            samples = scrape(port)
            sent = total(samples, "notify_deliveries_total", status="sent")
            failed = total(samples, "notify_deliveries_total", status="failed")
            rejected = total(samples, "notify_events_total", outcome="rejected")
            duplicates = total(samples, "notify_events_total", outcome="duplicate")
            swept = total(samples, "notify_sweeps_total") >= 1  # beat's first sweep comes after an interval
            return (
                samples
                if swept
                and (sent, failed, rejected, duplicates)
                == (in_ledger.get("sent", 0), in_ledger.get("failed", 0), in_ledger.get("rejected", 0), 1)
                else None
            )

        samples = eventually(agreeing, timeout=30)
        if pool == "prefork":
            assert (tmp_path / "state" / "prometheus").is_dir()
    assert in_ledger == {"sent": 5, "failed": 2, "rejected": 1}
    accepted = total(samples, "notify_events_total", outcome="accepted")
    assert accepted == sum(in_ledger.values()) - in_ledger["rejected"]
    assert (
        total(samples, "notify_events_total", outcome="accepted", channel="sms", event_type="SMSNotification")
        == 3
    )
    assert total(samples, "notify_deliveries_total", status="sent", channel="email", provider="mandrill") == 3
    assert total(samples, "notify_deliveries_total", status="failed", channel="sms", provider="twilio") == 1
    assert total(samples, "notify_deliveries_total", status="retrying", provider="mandrill") == 2
    assert total(samples, "notify_provider_call_seconds_count", channel="email") == 3 + 1 + 2
    assert total(samples, "notify_end_to_end_seconds_count") == 5
    # The endpoint is gone with the worker, and so is its per-run prefork folder.
    assert not list((tmp_path / "state").glob("prometheus/*"))


# -- rate limits --------------------------------------------------------------------------------


class TimedMandrill(MandrillServer):
    """Also notes when it accepted each message, to count sends per window."""

    def __init__(self) -> None:
        super().__init__(["test-key"])
        self.times: list[float] = []
        self._times_lock = threading.Lock()

    def handle(self, request: Any, fault: Any) -> tuple[Any, bool]:
        reply, accepted = super().handle(request, fault)
        if accepted:
            with self._times_lock:
                self.times.append(time.monotonic())
        return reply, accepted


@pytest.mark.redis
@pytest.mark.postgres
def test_two_workers_share_one_rate_limit(tmp_path: Path, postgres_url: str) -> None:
    limit = 5  # per second, burst 1
    count = 30
    with TimedMandrill() as mandrill, TwilioServer() as twilio:
        env = isolated_env(
            tmp_path,
            broker_url=RABBITMQ_URL,
            database_url=postgres_url,
            NOTIFY_RATE_LIMITS=f"mandrill={limit}/s",
            NOTIFY_REDIS_URL=REDIS_URL,
            **provider_env(mandrill.api_url, twilio.base_url),
        )
        people = Personal()
        events = [people.email(n) for n in range(count)]
        ids = [event["core"]["id"] for event in events]
        first = WorkerProcess(env, tmp_path / "worker-1.log", args=worker_args())
        second = WorkerProcess(env, tmp_path / "worker-2.log", args=worker_args("--no-beat"))
        with first, second:
            publish_raw(first.settings, as_messages(events))
            rows = wait_for(first.settings, ids, worker=first, timeout=120)
            assert second.alive()
        times = sorted(mandrill.times)
    assert all(row is not None and row.status is Status.SENT for row in rows.values()), first.log()[-3000:]
    assert len(times) == count
    # Burst 1 at `limit`/s: no one-second window holds more than limit + 1 sends.
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    overall = (count - 1) / (times[-1] - times[0])
    print(f"shared limit {limit}/s over two workers: busiest 1 s window {busiest}, overall {overall:.2f}/s")
    assert busiest <= limit + 1, busiest
    assert overall <= limit * 1.1
    # Both workers sent, and both were held back: the limit is shared, not per worker.
    for worker in (first, second):
        log = worker.log()
        assert '"deliver.sent"' in log, log[-2000:]
        assert "rate-limited" in log or "RateLimited" in log, log[-2000:]
