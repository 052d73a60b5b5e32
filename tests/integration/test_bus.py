"""The event bus through a real worker: what a foreign producer publishes is delivered, or recorded.

Events go onto RabbitMQ with plain pika, as an upstream service would (the bus declaration is
done with pika too); the embedded broker is fed by the `notify publish` command. Every worker gets
its own exchange, queues, ledger, outbox and Celery node name, so these tests can run beside other
workers on the same broker.

Witnesses: the ledger (rows and statuses, read with SQL), the outbox folder (one file per id), the
local Mandrill server where a duplicate *send* must be visible (an outbox file is named after the
id, so a second send of it would overwrite the first and go unseen), the worker's JSON log, and the
broker's own message count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pytest
from google.protobuf import any_pb2, json_format
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL
from tests.factories import basic_email, mention, sms
from tests.fakes.mandrill_server import MandrillServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw
from workers.events import core_pb2, parse_event_dict, raw_id
from workers.ledger import Ledger, make_engine
from workers.ledger.models import Attempt, Notification
from workers.ledger.store import MAX_RAW_BYTES
from workers.messages import Status
from workers.settings import Settings

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
API_KEY = "bus-test-key"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


@dataclass(frozen=True, slots=True)
class Wire:
    """One message as a producer puts it on the bus."""

    body: bytes
    content_type: str
    routing_key: str
    content_encoding: str | None = None


def to_proto(event: dict[str, Any]) -> core_pb2.VtEvent:
    return json_format.ParseDict(event, core_pb2.VtEvent())


def binary(event: dict[str, Any], routing_key: str) -> Wire:
    return Wire(to_proto(event).SerializeToString(), PROTOBUF, routing_key)


def camel_json(event: dict[str, Any], routing_key: str, **extra: Any) -> Wire:
    return Wire(json.dumps(event).encode(), JSON, routing_key, **extra)


def snake_json(event: dict[str, Any], routing_key: str, **extra: Any) -> Wire:
    # The canonical mapping's other spelling: original proto field names, also inside the Any.
    snake = json_format.MessageToDict(to_proto(event), preserving_proto_field_name=True)
    text_form = json.dumps(snake)
    assert any(name in text_form for name in ("from_address", "to_number", "to_email")), text_form
    return Wire(json.dumps(snake).encode(), JSON, routing_key, **extra)


# -- the bus, spoken with pika --------------------------------------------------------------------


def pika_parameters(url: str) -> pika.ConnectionParameters:
    """pika's parameters for a kombu-style AMQP URL (where ``//`` at the end names the vhost ``/``)."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return pika.ConnectionParameters(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5672,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(
            unquote(parts.username or "guest"), unquote(parts.password or "guest")
        ),
    )


class PikaBus:
    """The exchange and queues of one worker, seen from outside through pika."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.params = pika_parameters(RABBITMQ_URL)

    def declare(self) -> None:
        """What the worker declares (same arguments, or RabbitMQ refuses), so nothing is dropped."""
        s = self.settings
        with pika.BlockingConnection(self.params) as conn:
            ch = conn.channel()
            ch.exchange_declare(s.event_exchange, exchange_type="topic", durable=True)
            ch.queue_declare(s.event_queue, durable=True)
            for key in s.event_routing_keys:
                ch.queue_bind(s.event_queue, s.event_exchange, routing_key=key)

    def publish(self, messages: Sequence[Wire], *, pause: float = 0.0) -> int:
        with pika.BlockingConnection(self.params) as conn:
            ch = conn.channel()
            ch.confirm_delivery()  # every basic_publish waits for the broker to take the message
            for m in messages:
                ch.basic_publish(
                    self.settings.event_exchange,
                    m.routing_key,
                    m.body,
                    pika.BasicProperties(
                        content_type=m.content_type,
                        content_encoding=m.content_encoding,
                        delivery_mode=pika.DeliveryMode.Persistent,
                    ),
                    mandatory=True,  # an unroutable message is an error here, not silence
                )
                if pause:
                    time.sleep(pause)
        return len(messages)

    def ready(self, queue: str) -> int:
        """Messages waiting in ``queue`` (unacknowledged ones are not counted by the broker)."""
        with pika.BlockingConnection(self.params) as conn:
            return int(conn.channel().queue_declare(queue, passive=True).method.message_count)

    def take_and_die(self, count: int) -> list[bytes]:
        """A consumer that takes ``count`` messages and dies without acking: they go back, redelivered."""
        bodies = []
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        for _ in range(count):
            method, _props, body = ch.basic_get(self.settings.event_queue, auto_ack=False)
            assert method is not None, "the queue ran dry"
            bodies.append(body)
        conn.close()  # no ack: the broker requeues all of them
        return bodies

    def delete(self) -> None:
        s = self.settings
        with pika.BlockingConnection(self.params) as conn:
            ch = conn.channel()
            for queue in (s.event_queue, s.task_queue):
                ch.queue_delete(queue)
            for exchange in (s.event_exchange, s.task_queue):
                ch.exchange_delete(exchange)


# -- worker and ledger helpers --------------------------------------------------------------------


def worker(env: dict[str, str], tmp_path: Path, concurrency: int = 4) -> WorkerProcess:
    # A node name of its own: two workers named celery@host on one broker fight over the
    # exclusive remote-control queue, and one of them dies at start.
    node = f"bus-{uuid.uuid4().hex[:8]}@%h"
    return WorkerProcess(env, tmp_path / "worker.log", args=("--concurrency", str(concurrency), "-n", node))


@pytest.fixture
def rabbit(tmp_path: Path) -> Iterator[Callable[..., tuple[WorkerProcess, PikaBus]]]:
    """Makes a (not yet started) worker on RabbitMQ and its bus; removes the queues afterwards."""
    made: list[tuple[WorkerProcess, PikaBus]] = []

    def make(*, database_url: str = "", concurrency: int = 4, **extra: str) -> tuple[WorkerProcess, PikaBus]:
        env = isolated_env(tmp_path, broker_url=RABBITMQ_URL, database_url=database_url, **extra)
        w = worker(env, tmp_path, concurrency)
        bus = PikaBus(w.settings)
        bus.declare()
        made.append((w, bus))
        return w, bus

    yield make
    for w, bus in made:
        w.stop()
        bus.delete()


def statuses(engine: Engine, ids: Sequence[str]) -> dict[str, Status]:
    with engine.connect() as conn:
        rows = conn.execute(select(Notification.id, Notification.status).where(Notification.id.in_(ids)))
        return {i: Status(s) for i, s in rows}


def wait_until(check: Callable[[], bool], *, w: WorkerProcess, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not w.alive():
            raise AssertionError(f"the worker exited while waiting for {what}:\n{w.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{w.log()[-4000:]}")
        time.sleep(0.1)


def wait_status(
    engine: Engine,
    ids: Sequence[str],
    w: WorkerProcess,
    *,
    timeout: float = 60.0,
    ok: frozenset[Status] | None = None,
) -> dict[str, Status]:
    done = ok or frozenset({Status.SENT, Status.REJECTED, Status.FAILED, Status.DEAD, Status.UNKNOWN})
    wait_until(
        lambda: len(found := statuses(engine, ids)) == len(ids) and all(s in done for s in found.values()),
        w=w,
        what=f"{len(ids)} rows to finish",
        timeout=timeout,
    )
    return statuses(engine, ids)


def outbox_ids(tmp_path: Path) -> Counter[str]:
    outbox = tmp_path / "outbox"
    files = [*outbox.glob("email/*.eml"), *outbox.glob("sms/*.json")]
    return Counter(p.stem for p in files)


def log_lines(w: WorkerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in w.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


def mandrill_sends(server: MandrillServer) -> Counter[str]:
    return Counter(r.json["message"]["metadata"]["notification_id"] for r in server.accepted)


# -- delivered, in every encoding -----------------------------------------------------------------


@pytest.mark.rabbitmq
def test_events_published_with_pika_are_delivered_in_every_encoding(rabbit: Any, tmp_path: Path) -> None:
    w, bus = rabbit()
    email, email2, email3 = basic_email(), basic_email(), basic_email()
    sms1, sms2, sms3 = sms(), sms(), sms()
    mention1, mention2, mention3 = mention(mentions=2), mention(mentions=1), mention(mentions=3)
    cases: dict[str, tuple[dict[str, Any], Wire]] = {
        "protobuf email": (email, binary(email, "events.BasicEmail")),
        "protobuf sms": (sms1, binary(sms1, "events.SMSNotification")),
        "protobuf mention": (mention1, binary(mention1, "events.MentionEmailGenerated")),
        "camelCase json sms": (sms2, camel_json(sms2, "events.SMSNotification")),
        "camelCase json mention": (mention2, camel_json(mention2, "events.MentionEmailGenerated")),
        # with a content_encoding property py-amqp hands the body over as str, not bytes
        "snake_case json email, utf-8 encoding": (
            email2,
            snake_json(email2, "events.BasicEmail", content_encoding="utf-8"),
        ),
        "snake_case json sms": (sms3, snake_json(sms3, "events.SMSNotification")),
        "snake_case json mention": (mention3, snake_json(mention3, "events.MentionEmailGenerated")),
        "json with a charset parameter": (
            email3,
            Wire(json.dumps(email3).encode(), JSON + "; charset=utf-8", "events.BasicEmail"),
        ),
    }
    ids = {name: event["core"]["id"] for name, (event, _) in cases.items()}
    bus.publish([wire for _, wire in cases.values()])
    engine = make_engine(w.settings.resolved_database_url)
    with w:
        found = wait_status(engine, list(ids.values()), w)
    engine.dispose()

    assert {name: found[i] for name, i in ids.items()} == {name: Status.SENT for name in cases}, w.log()[
        -3000:
    ]
    assert outbox_ids(tmp_path) == Counter(ids.values())
    assert bus.ready(w.settings.event_queue) == 0


@pytest.mark.rabbitmq
def test_log_lines_of_a_notification_carry_core_id_name_and_baggage(rabbit: Any, tmp_path: Path) -> None:
    w, bus = rabbit()
    # A fixed id whose groups are not all digits: the log masks digit runs that look like phone
    # numbers in every field it does not know to be an id (workers/logs.py).
    event_id = "9f1c2b7e-aa4d-4c1e-9b7a-3e5f00c0ffee"
    event = basic_email(event_id)
    event["core"]["name"] = "signup-welcome"
    event["baggage"] = {"tenant": "acme-eu", "flow": "signup"}
    event["trace"] = {"traceContext": {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}}
    bus.publish([camel_json(event, "events.BasicEmail")])
    engine = make_engine(w.settings.resolved_database_url)
    with w:
        found = wait_status(engine, [event_id], w)
    engine.dispose()
    assert found == {event_id: Status.SENT}

    mine = [r for r in log_lines(w) if r.get("notification_id") == event_id]
    assert {"event.accepted", "deliver.sent"} <= {r["event"] for r in mine}, mine
    for record in mine:
        if record["event"] in {"event.accepted", "deliver.sent"}:
            assert record["core_id"] == event_id, record
            assert record["core_name"] == "signup-welcome", record
            assert record["baggage"] == {"flow": "signup", "tenant": "acme-eu"}, record
    # No personal data came along: neither address of the event is anywhere in the log.
    assert "person@example.org" not in w.log() and "sender@example.com" not in w.log()


# -- malformed, foreign ---------------------------------------------------------------------------


def login_failed() -> tuple[str, bytes]:
    """Another service's event: a well-formed VtEvent whose payload is not one of ours."""
    event = core_pb2.VtEvent()
    event.core.id = str(uuid.uuid4())
    event.core.name = "auth"
    payload = any_pb2.Any(type_url="type.googleapis.com/events.LoginFailed", value=b"\n\x04user\x10\x03")
    event.data.CopyFrom(payload)
    return event.core.id, event.SerializeToString()


@pytest.mark.rabbitmq
def test_malformed_messages_are_rejected_with_a_capped_raw_copy_and_acked(
    rabbit: Any, tmp_path: Path
) -> None:
    # A broad binding, as an operator might configure: other services' events reach the queue too.
    w, bus = rabbit(NOTIFY_EVENT_ROUTING_KEYS="events.#")
    garbage = bytes(range(256)) * 400  # 100 KiB that is no protobuf: over the raw-copy cap
    wrong_type = sms()  # an SMS under the BasicEmail routing key
    wrong_type_body = json.dumps(wrong_type).encode()
    unknown_type_body = json.dumps(basic_email()).encode()
    foreign_id, foreign_body = login_failed()
    after = basic_email()  # the worker goes on delivering after all that
    bus.publish(
        [
            Wire(garbage, PROTOBUF, "events.BasicEmail"),
            Wire(wrong_type_body, JSON, "events.BasicEmail"),
            Wire(unknown_type_body, "text/csv", "events.SMSNotification"),
            Wire(foreign_body, PROTOBUF, "events.LoginFailed"),
            camel_json(after, "events.BasicEmail"),
        ]
    )
    rejected = {
        raw_id(garbage): (garbage, "BasicEmail", "not a valid protobuf VtEvent"),
        wrong_type["core"]["id"]: (wrong_type_body, "BasicEmail", "events.SMSNotification"),
        raw_id(unknown_type_body): (unknown_type_body, "SMSNotification", "text/csv"),
    }
    engine = make_engine(w.settings.resolved_database_url)
    with w:
        found = wait_status(engine, [*rejected, after["core"]["id"]], w)
        wait_until(
            lambda: any(r.get("event") == "event.ignored" for r in log_lines(w)),
            w=w,
            what="the foreign event",
        )
    # The worker has stopped: anything it had not acked would be back in the queue now.
    assert bus.ready(w.settings.event_queue) == 0

    assert found[after["core"]["id"]] is Status.SENT
    with engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    Notification.id,
                    Notification.status,
                    Notification.event_type,
                    Notification.error,
                    Notification.raw,
                )
            )
        }
    engine.dispose()
    for notification_id, (body, event_type, reason) in rejected.items():
        row = rows[notification_id]
        assert row.status == Status.REJECTED.value
        assert row.event_type == f"events.{event_type}"
        assert reason in (row.error or ""), row.error
        assert row.raw == body[:MAX_RAW_BYTES]
    assert len(rows[raw_id(garbage)].raw) == MAX_RAW_BYTES < len(garbage)
    # The foreign event: acked, counted in the log, and no row.
    assert foreign_id not in rows
    ignored = [r for r in log_lines(w) if r.get("event") == "event.ignored"]
    assert [r["event_type"] for r in ignored] == ["events.LoginFailed"]
    assert set(rows) == {*rejected, after["core"]["id"]}


# -- crash between accepting and acking -----------------------------------------------------------


@pytest.mark.rabbitmq
def test_every_state_a_crash_leaves_between_accept_and_ack_ends_in_one_send(
    rabbit: Any, tmp_path: Path
) -> None:
    """The three moments a consumer can die after `accept` and before `ack`, recreated exactly.

    A: the row is `accepted`, no deliver task yet.  B: `accepted`, and the deliver task is on the
    broker.  C: `queued` (task on the broker, marked).  In all three the event itself was taken by
    a consumer that died without acking, so RabbitMQ hands it out again as redelivered.
    """
    with MandrillServer(api_keys={API_KEY}) as mandrill:
        assert isinstance(mandrill, MandrillServer)
        w, bus = rabbit(
            NOTIFY_EMAIL_PROVIDER="mandrill",
            MANDRILL_BASE_URL=mandrill.api_url,
            MANDRILL_API_KEY=API_KEY,
            # No sweeper: it would re-enqueue A by itself and hide whether the redelivered event does.
            NOTIFY_SWEEP_ENABLED="false",
        )
        events = {state: basic_email() for state in "ABC"}
        ids = {state: e["core"]["id"] for state, e in events.items()}
        bus.publish([camel_json(e, "events.BasicEmail") for e in events.values()])
        assert len(bus.take_and_die(3)) == 3
        assert bus.ready(w.settings.event_queue) == 3  # back in the queue, unacked by anyone

        engine = make_engine(w.settings.resolved_database_url)
        ledger = Ledger(engine)
        for event in events.values():
            assert ledger.accept(parse_event_dict(event)).created
        from workers.celery_app import create_app

        app = create_app(w.settings)
        for state in "BC":
            app.send_task("notifications.deliver", (ids[state],), queue=w.settings.task_queue)
        assert ledger.mark_queued(ids["C"])
        assert bus.ready(w.settings.task_queue) == 2
        assert statuses(engine, list(ids.values())) == {
            ids["A"]: Status.ACCEPTED,
            ids["B"]: Status.ACCEPTED,
            ids["C"]: Status.QUEUED,
        }

        with w:
            found = wait_status(engine, list(ids.values()), w)
            # B gets a second deliver task from the redelivered event; let both tasks run out.
            wait_until(lambda: bus.ready(w.settings.task_queue) == 0, w=w, what="the task queue to drain")
        with engine.connect() as conn:
            attempts = Counter(conn.execute(select(Attempt.notification_id)).scalars())
        engine.dispose()
        assert bus.ready(w.settings.event_queue) == 0
        sends = mandrill_sends(mandrill)

    assert found == {i: Status.SENT for i in ids.values()}, w.log()[-3000:]
    assert sends == Counter(ids.values()), sends  # each one sent, none twice
    assert attempts == Counter(ids.values()), attempts  # one claim each
    # The redelivered events were taken in again: A (still `accepted`) enqueued anew, C a no-op.
    intake = {
        r["notification_id"]: (r["event"], r.get("duplicate"))
        for r in log_lines(w)
        if r.get("event") in {"event.accepted", "event.duplicate"}
    }
    assert intake[ids["A"]] == ("event.accepted", True)
    assert intake[ids["C"]] == ("event.duplicate", None)
    skipped = [r["notification_id"] for r in log_lines(w) if r.get("event") == "deliver.skipped"]
    # B's first task and its redelivered event race at start-up. Either the event finds B still
    # `accepted` and enqueues a second task, which then loses the claim, or B's task ran first
    # and the event is a duplicate. Both end in the one send checked above.
    if intake[ids["B"]] == ("event.accepted", True):
        assert skipped == [ids["B"]]
    else:
        assert (intake[ids["B"]], skipped) == (("event.duplicate", None), [])


class Stream(threading.Thread):
    """A producer publishing events one after another until told to stop."""

    def __init__(self, bus: PikaBus, *, pause: float) -> None:
        super().__init__(daemon=True)
        self.bus, self.pause = bus, pause
        self.published: list[str] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with pika.BlockingConnection(self.bus.params) as conn:
                channel = conn.channel()
                channel.confirm_delivery()
                while not self.stopping.is_set():
                    event = basic_email()
                    binary_now = len(self.published) % 2 == 1
                    wire = (
                        binary(event, "events.BasicEmail")
                        if binary_now
                        else camel_json(event, "events.BasicEmail")
                    )
                    properties = pika.BasicProperties(content_type=wire.content_type, delivery_mode=2)
                    channel.basic_publish(
                        self.bus.settings.event_exchange,
                        wire.routing_key,
                        wire.body,
                        properties,
                        mandatory=True,
                    )
                    self.published.append(event["core"]["id"])
                    conn.sleep(self.pause)  # keeps the connection's heartbeats going
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_sigkill_during_a_stream_of_events_loses_none_and_sends_none_twice(
    rabbit: Any, tmp_path: Path
) -> None:
    with MandrillServer(api_keys={API_KEY}) as mandrill:
        assert isinstance(mandrill, MandrillServer)
        w, bus = rabbit(
            concurrency=8,
            NOTIFY_EMAIL_PROVIDER="mandrill",
            MANDRILL_BASE_URL=mandrill.api_url,
            MANDRILL_API_KEY=API_KEY,
            NOTIFY_SENDING_TIMEOUT="3",  # rows the kill catches mid-send become `unknown` soon
            NOTIFY_SWEEP_INTERVAL="1",
            NOTIFY_LOG_LEVEL="WARNING",
        )
        mandrill.set_reply_delay(0.02)  # a provider that takes a moment, so the kill finds work in flight
        engine = make_engine(w.settings.resolved_database_url)

        def sent_count() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        select(func.count()).select_from(Notification).where(Notification.status == "sent")
                    ).scalar_one()
                )

        # The producer streams before, across and after the kill: it stops only when told to.
        stream = Stream(bus, pause=0.03)
        w.start()
        stream.start()
        try:
            wait_until(lambda: sent_count() >= 20, w=w, what="deliveries under way")
            at_kill = Counter(s.value for s in statuses(engine, list(stream.published)).values())
            w.kill()
            w.start()
            before = sent_count()
            wait_until(lambda: sent_count() >= before + 10, w=w, what="deliveries after the restart")
            stream.stopping.set()
            stream.join(timeout=30)
            assert stream.error is None and not stream.is_alive()
            ids = list(stream.published)
            found = wait_status(engine, ids, w, timeout=90)
        finally:
            stream.stopping.set()
            w.stop()
        assert bus.ready(w.settings.event_queue) == 0
        sends = mandrill_sends(mandrill)
    engine.dispose()

    by_status = Counter(s.value for s in found.values())
    print(
        f"\n{len(ids)} events streamed; rows at the kill {dict(at_kill)}; "
        f"at the end {dict(by_status)}; provider sends {sum(sends.values())}"
    )
    assert set(found) == set(ids)  # no event lost: every one has its row
    assert all(n == 1 for n in sends.values()), {i: n for i, n in sends.items() if n > 1}  # none sent twice
    for notification_id, status in found.items():
        if status is Status.SENT:
            assert sends[notification_id] == 1
        else:
            # Only a send the kill interrupted is in doubt, and it is left to an operator.
            assert status is Status.UNKNOWN, (notification_id, status)
    assert by_status[Status.UNKNOWN.value] <= 8  # at most one per worker thread


# -- a burst --------------------------------------------------------------------------------------


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_burst_of_1000_events_is_delivered(rabbit: Any, tmp_path: Path) -> None:
    w, bus = rabbit(concurrency=8, NOTIFY_LOG_LEVEL="WARNING")
    events = [
        (sms(), "events.SMSNotification") if n % 2 else (basic_email(), "events.BasicEmail")
        for n in range(1000)
    ]
    ids = [e["core"]["id"] for e, _ in events]
    bus.publish([binary(e, key) if n % 3 else camel_json(e, key) for n, (e, key) in enumerate(events)])
    assert bus.ready(w.settings.event_queue) == 1000
    engine = make_engine(w.settings.resolved_database_url)
    with w:
        found = wait_status(engine, ids, w, timeout=150)
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(Notification)).scalar_one()
    engine.dispose()
    assert Counter(found.values()) == {Status.SENT: 1000}
    assert rows == 1000
    files = outbox_ids(tmp_path)
    assert len(files) == 1000 and set(files) == set(ids)
    assert bus.ready(w.settings.event_queue) == 0


# -- the embedded default -------------------------------------------------------------------------


def test_notify_publish_on_the_embedded_broker_is_delivered(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)  # no broker URL: the filesystem broker under NOTIFY_STATE_DIR
    files = tmp_path / "events"
    files.mkdir()
    email_event, sms_event, mention_event = basic_email(), sms(), mention(mentions=2)
    (files / "email.pb").write_bytes(to_proto(email_event).SerializeToString())
    (files / "sms.json").write_text(json.dumps(sms_event))
    (files / "mention.json").write_bytes(snake_json(mention_event, "").body)
    (files / "garbage.pb").write_bytes(b"\xff\xfe not an event")
    w = worker(env, tmp_path)
    engine = make_engine(w.settings.resolved_database_url)
    with w:
        published = subprocess.run(
            [sys.executable, "-m", "workers", "publish", *sorted(str(p) for p in files.iterdir())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        # The garbage file has no type to route by; publish it under a key we bind.
        again = subprocess.run(
            [
                sys.executable,
                "-m",
                "workers",
                "publish",
                "--routing-key",
                "events.BasicEmail",
                str(files / "garbage.pb"),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        ids = [email_event["core"]["id"], sms_event["core"]["id"], mention_event["core"]["id"]]
        garbage_id = raw_id((files / "garbage.pb").read_bytes())
        found = wait_status(engine, [*ids, garbage_id], w)
    engine.dispose()
    assert published.stdout.count("published ") == 4, published.stdout
    assert {i: found[i] for i in ids} == {i: Status.SENT for i in ids}, w.log()[-3000:]
    assert found[garbage_id] is Status.REJECTED
    assert outbox_ids(tmp_path) == Counter(ids)


# -- the database goes away during intake ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("broker", [pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "embedded"])
def test_a_database_outage_during_intake_requeues_and_delivers_after(
    broker: str, tmp_path: Path, postgres_url: str, request: pytest.FixtureRequest
) -> None:
    if broker == "rabbitmq":
        w, bus = request.getfixturevalue("rabbit")(database_url=postgres_url, NOTIFY_SWEEP_INTERVAL="30")

        def publish(m: Wire) -> object:
            return bus.publish([m])

    else:
        env = isolated_env(tmp_path, database_url=postgres_url, NOTIFY_SWEEP_INTERVAL="30")
        w = worker(env, tmp_path)

        def publish(m: Wire) -> object:
            return publish_raw(w.settings, [(m.body, m.content_type, m.routing_key)])

    database = make_url(postgres_url).database
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    engine = make_engine(postgres_url)

    def allow_connections(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                    {"d": database},
                )

    def failures() -> int:
        return sum(1 for r in log_lines(w) if r.get("event") == "ingest.failed")

    warm_up, during = basic_email(), sms()
    try:
        with w:
            publish(camel_json(warm_up, "events.BasicEmail"))
            assert wait_status(engine, [warm_up["core"]["id"]], w) == {warm_up["core"]["id"]: Status.SENT}
            engine.dispose()
            allow_connections(False)
            publish(binary(during, "events.SMSNotification"))
            # Two failures of the same message: it was handed back and came round again.
            wait_until(lambda: failures() >= 2, w=w, what="intake to fail twice", timeout=60)
            assert w.alive()
            allow_connections(True)
            found = wait_status(engine, [during["core"]["id"]], w)
        assert found == {during["core"]["id"]: Status.SENT}, w.log()[-3000:]
        with engine.connect() as conn:
            attempts = conn.execute(
                select(func.count())
                .select_from(Attempt)
                .where(Attempt.notification_id == during["core"]["id"])
            ).scalar_one()
        assert attempts == 1
        assert outbox_ids(tmp_path) == Counter([warm_up["core"]["id"], during["core"]["id"]])
        backoffs = [r["requeue_in"] for r in log_lines(w) if r.get("event") == "ingest.failed"]
        assert backoffs == sorted(backoffs) and backoffs[0] < backoffs[-1], backoffs  # it backs off
    finally:
        allow_connections(True)
        engine.dispose()
        admin.dispose()
