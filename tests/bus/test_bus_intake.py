"""The bus consumer's handler on a real kombu channel (in-memory transport), and the log context.

The handler gets a real ``Dispatcher`` over a real SQLite ledger; "the database is down" is a ledger
whose file cannot be opened, and the scheduler is a list the test fires by hand, so no test here
waits on a clock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message
from kombu.messaging import Consumer, Producer
from sqlalchemy import create_engine
from structlog.testing import capture_logs

from tests.driver_log import driver_statements
from tests.factories import basic_email, parsed, sms
from tests.test_dispatch import ScriptedProvider, make
from workers.dispatch import MAX_LOG_BAGGAGE_CHARS, MAX_LOG_BAGGAGE_ITEMS, Dispatcher, Intake, correlation
from workers.events import DEFAULT_TEMPLATES
from workers.ingest import Backoff, EventHandler, _raw_body
from workers.ledger import Ledger
from workers.ledger.queries import get_notification
from workers.messages import Status


@pytest.fixture
def down(tmp_path: Path) -> Iterator[Dispatcher]:
    """A dispatcher whose database cannot be reached (its file lives under a regular file)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    engine = create_engine(f"sqlite:///{blocker / 'ledger.db'}")
    dispatcher, _ = make(Ledger(engine), ScriptedProvider())
    yield dispatcher
    engine.dispose()


class Later:
    """The scheduler: remembers what the handler asked to run, and when; the test runs it."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, fun: Callable[[], None]) -> None:
        self.calls.append((delay, fun))

    def fire_all(self) -> None:
        calls, self.calls = self.calls, []
        for _, fun in calls:
            fun()


class Bus:
    """One in-memory kombu broker with our kind of queue, consumed by the handler."""

    def __init__(self, handler: EventHandler) -> None:
        self.handler = handler
        self.exchange = Exchange(f"events-{uuid.uuid4().hex[:6]}", type="topic")
        self.queue = Queue(f"q-{uuid.uuid4().hex[:6]}", self.exchange, routing_key="events.#")
        self.connection = Connection("memory://")
        self.channel = self.connection.channel()
        self.seen: list[Message] = []
        self.consumer = Consumer(self.channel, [self.queue], on_message=self._on_message, accept=None)
        self.consumer.consume()

    def _on_message(self, message: Message) -> None:
        self.seen.append(message)
        self.handler(message)

    def publish(self, body: bytes, content_type: str, routing_key: str) -> None:
        Producer(self.connection.channel()).publish(
            body,
            exchange=self.exchange,
            routing_key=routing_key,
            content_type=content_type,
            content_encoding="binary",
            declare=[self.queue],
        )

    def deliver_one(self) -> None:
        self.connection.drain_events(timeout=1)

    def waiting(self) -> int:
        return int(self.channel.queue_declare(self.queue.name, passive=True).message_count)

    def unacked(self) -> int:
        """Messages handed to the handler that it has neither acked nor given back."""
        return sum(1 for m in self.seen if not m.acknowledged)

    def acked(self) -> int:
        return sum(1 for m in self.seen if m._state == "ACK")

    def close(self) -> None:
        self.connection.release()


def handler_for(dispatcher: Callable[[], Dispatcher], later: Later) -> EventHandler:
    return EventHandler(
        dispatcher, lambda: DEFAULT_TEMPLATES, schedule=later, backoff=Backoff(base=0.5, cap=4)
    )


def test_a_database_outage_leaves_the_message_unacked_then_hands_it_back(
    ledger: Ledger, down: Dispatcher
) -> None:
    up, queued = make(ledger, ScriptedProvider())
    current = {"dispatcher": down}
    later = Later()
    handler = handler_for(lambda: current["dispatcher"], later)
    bus = Bus(handler)
    event = sms()
    bus.publish(json.dumps(event).encode(), "application/json", "events.SMSNotification")
    try:
        with capture_logs() as logs:
            bus.deliver_one()
            # Not acked, not back in the queue yet, and the handler did not sleep: it asked for later.
            assert (bus.unacked(), bus.waiting()) == (1, 0)
            assert [delay for delay, _ in later.calls] == [0.5]
            later.fire_all()
            assert (bus.unacked(), bus.waiting()) == (0, 1)  # handed back to the broker

            bus.deliver_one()  # the same message again, the database still down: the wait doubles
            assert [delay for delay, _ in later.calls] == [1.0]
            later.fire_all()

            current["dispatcher"] = up  # the database is back
            bus.deliver_one()
        assert (bus.unacked(), bus.waiting(), bus.acked()) == (0, 0, 1)
        assert len(bus.seen) == 3 and later.calls == []
        assert queued == [event["core"]["id"]]
        view = get_notification(ledger.engine, event["core"]["id"])
        assert view is not None and view.status is Status.QUEUED
        assert handler.counts[Intake.ACCEPTED] == 1
        failed = [e for e in logs if e["event"] == "ingest.failed"]
        assert [e["requeue_in"] for e in failed] == [0.5, 1.0]
        assert all(e["messages"] == 1 for e in failed)
    finally:
        bus.close()


def test_backoff_doubles_up_to_its_cap_and_restarts_after_a_success(ledger: Ledger, down: Dispatcher) -> None:
    up, _ = make(ledger, ScriptedProvider())
    current = {"dispatcher": down}
    later = Later()
    bus = Bus(handler_for(lambda: current["dispatcher"], later))
    try:
        with capture_logs():
            for _ in range(5):
                bus.publish(json.dumps(sms()).encode(), "application/json", "events.SMSNotification")
                bus.deliver_one()
            assert [delay for delay, _ in later.calls] == [0.5, 1.0, 2.0, 4.0, 4.0]
            current["dispatcher"] = up
            later.fire_all()
            for _ in range(5):
                bus.deliver_one()
            assert bus.acked() == 5
            current["dispatcher"] = down
            bus.publish(json.dumps(sms()).encode(), "application/json", "events.SMSNotification")
            bus.deliver_one()
        assert [delay for delay, _ in later.calls] == [0.5]
        assert bus.unacked() == 1 and bus.waiting() == 0
    finally:
        bus.close()


def test_a_requeue_meant_for_a_closed_channel_is_dropped(down: Dispatcher) -> None:
    later = Later()
    handler = handler_for(lambda: down, later)
    bus = Bus(handler)
    try:
        with capture_logs():
            bus.publish(json.dumps(sms()).encode(), "application/json", "events.SMSNotification")
            bus.deliver_one()
            handler.channel_closed()  # what the consumer step does when its channel goes away
            later.fire_all()
        # Not requeued by us: on a real broker the closed channel already returned it, and a
        # reject with a stale delivery tag would close the new channel.
        assert (bus.unacked(), bus.waiting()) == (1, 0)
    finally:
        bus.close()


def test_a_failing_scheduler_still_hands_the_message_back(down: Dispatcher) -> None:
    def broken(delay: float, fun: Callable[[], None]) -> None:
        raise RuntimeError("timer gone")

    bus = Bus(EventHandler(lambda: down, lambda: DEFAULT_TEMPLATES, schedule=broken))
    try:
        with capture_logs() as logs:
            bus.publish(json.dumps(sms()).encode(), "application/json", "events.SMSNotification")
            bus.deliver_one()  # must not raise: that would kill the worker
        assert (bus.unacked(), bus.waiting()) == (0, 1)
        assert [e["event"] for e in logs if e["log_level"] == "error"] == [
            "ingest.failed",
            "ingest.schedule_failed",
        ]
    finally:
        bus.close()


def test_invalid_and_foreign_messages_are_acked(ledger: Ledger) -> None:
    dispatcher, _ = make(ledger, ScriptedProvider())
    later = Later()
    handler = handler_for(lambda: dispatcher, later)
    bus = Bus(handler)
    foreign = basic_email()
    foreign["data"]["@type"] = "type.googleapis.com/events.LoginFailed"
    try:
        with capture_logs():
            bus.publish(b"\xff\xfe garbage", "application/x-protobuf", "events.BasicEmail")
            bus.publish(json.dumps(sms()).encode(), "text/csv", "events.SMSNotification")
            bus.publish(json.dumps(foreign).encode(), "application/json", "events.LoginFailed")
            for _ in range(3):
                bus.deliver_one()
        assert (bus.unacked(), bus.waiting(), bus.acked()) == (0, 0, 3)
        assert (handler.counts[Intake.REJECTED], handler.counts[Intake.IGNORED]) == (2, 1)
        assert later.calls == []
        assert get_notification(ledger.engine, foreign["core"]["id"]) is None
    finally:
        bus.close()


# -- batches --------------------------------------------------------------------------------------


class Soon:
    """The ``defer`` hook: remembers the flush the handler asked for; the test runs it."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def __call__(self, fun: Callable[[], None]) -> None:
        self.calls.append(fun)

    def fire(self) -> None:
        calls, self.calls = self.calls, []
        for fun in calls:
            fun()


def inserts_into_notifications(statements: list[str]) -> int:
    return sum(1 for statement in statements if statement.upper().startswith("INSERT INTO NOTIFICATIONS"))


def test_a_batch_waits_for_its_flush_then_shares_one_ledger_write(ledger: Ledger) -> None:
    dispatcher, queued = make(ledger, ScriptedProvider())
    soon, later = Soon(), Later()
    handler = EventHandler(
        lambda: dispatcher, lambda: DEFAULT_TEMPLATES, schedule=later, defer=soon, max_batch=10
    )
    bus = Bus(handler)
    events = [sms(), basic_email(), sms()]
    # As the database driver sees them.
    statements = driver_statements(ledger.engine)
    try:
        with capture_logs():
            for payload in events:
                routing_key = "events." + payload["data"]["@type"].rsplit(".", 1)[-1]
                bus.publish(json.dumps(payload).encode(), "application/json", routing_key)
            bus.publish(b"\xff not protobuf", "application/x-protobuf", "events.BasicEmail")
            for _ in range(4):
                bus.deliver_one()
            # Nothing settled yet, and only one flush asked for, by the first message.
            assert (bus.unacked(), len(soon.calls), queued) == (4, 1, [])
            soon.fire()
        assert (bus.unacked(), bus.acked()) == (0, 4)
        assert queued == [e["core"]["id"] for e in events]
        assert (handler.counts[Intake.ACCEPTED], handler.counts[Intake.REJECTED]) == (3, 1)
        # One INSERT for the three valid events; the rejected one is recorded on its own.
        assert inserts_into_notifications(statements) == 2
    finally:
        bus.close()


def test_a_full_batch_is_settled_at_once(ledger: Ledger) -> None:
    dispatcher, queued = make(ledger, ScriptedProvider())
    soon = Soon()
    handler = EventHandler(
        lambda: dispatcher, lambda: DEFAULT_TEMPLATES, schedule=Later(), defer=soon, max_batch=2
    )
    bus = Bus(handler)
    try:
        with capture_logs():
            for _ in range(3):
                bus.publish(json.dumps(sms()).encode(), "application/json", "events.SMSNotification")
                bus.deliver_one()
            assert (len(queued), bus.unacked()) == (2, 1)  # the third waits for its window
            soon.fire()  # the first batch's window: it finds the third message and settles it
        assert (len(queued), bus.unacked(), bus.acked()) == (3, 0, 3)
    finally:
        bus.close()


def test_a_failed_batch_goes_back_whole_and_a_closed_channel_drops_what_waits(
    ledger: Ledger, down: Dispatcher
) -> None:
    soon, later = Soon(), Later()
    handler = EventHandler(lambda: down, lambda: DEFAULT_TEMPLATES, schedule=later, defer=soon, max_batch=10)
    bus = Bus(handler)
    try:
        with capture_logs():
            for _ in range(3):
                bus.publish(json.dumps(sms()).encode(), "application/json", "events.SMSNotification")
                bus.deliver_one()
            soon.fire()
            assert [delay for delay, _ in later.calls] == [0.5]
            later.fire_all()
            assert (bus.unacked(), bus.waiting()) == (0, 3)
            bus.deliver_one()
            handler.channel_closed()
            soon.fire()  # the window of a batch whose channel is gone: nothing left to settle
        assert later.calls == [] and bus.unacked() == 1
    finally:
        bus.close()


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", None])
def test_a_body_the_client_decoded_is_turned_back_into_the_bytes_sent(encoding: str | None) -> None:
    sent = json.dumps({"core": {"name": "café"}}, ensure_ascii=False).encode(encoding or "utf-8")
    # py-amqp hands over str when the message names a content encoding it knows.
    message = Message(body=sent.decode(encoding or "utf-8"), content_encoding=encoding)
    assert _raw_body(message) == sent
    assert _raw_body(Message(body=sent, content_encoding="binary")) == sent


# -- the log context ------------------------------------------------------------------------------


def test_accept_and_deliver_log_core_id_name_and_baggage(ledger: Ledger) -> None:
    dispatcher, _ = make(ledger, ScriptedProvider())
    event = basic_email()
    event["core"]["name"] = "signup-welcome"
    event["baggage"] = {"tenant": "acme-eu", "flow": "signup"}
    notification_id = event["core"]["id"]
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        dispatcher.accept(parsed(event))
        dispatcher.deliver(notification_id)
    by_event = {entry["event"]: entry for entry in logs if entry.get("notification_id") == notification_id}
    assert {"event.accepted", "deliver.sent"} <= set(by_event), logs
    for name in ("event.accepted", "deliver.sent"):
        entry = by_event[name]
        assert entry["core_id"] == notification_id
        assert entry["core_name"] == "signup-welcome"
        assert entry["baggage"] == {"flow": "signup", "tenant": "acme-eu"}
    # Personal data stays out of the context: no address anywhere in what was logged.
    assert "person@example.org" not in repr(logs) and "sender@example.com" not in repr(logs)


def test_the_log_context_is_capped() -> None:
    baggage = {f"key{n:02d}": "v" * 1000 for n in range(40)}
    context = correlation({"id": "abc", "name": "n" * 500, "user_id": "u-1"}, baggage)
    assert set(context) == {"core_id", "core_name", "baggage"}  # user and org ids stay out
    assert len(context["core_name"]) <= 128
    assert len(context["baggage"]) == MAX_LOG_BAGGAGE_ITEMS
    assert all(len(v) <= MAX_LOG_BAGGAGE_CHARS for v in context["baggage"].values())
    assert list(context["baggage"]) == sorted(baggage)[:MAX_LOG_BAGGAGE_ITEMS]


def test_an_event_without_name_or_baggage_logs_empty_context() -> None:
    assert correlation({"id": "abc"}, {}) == {"core_id": "abc", "core_name": None, "baggage": {}}
