"""Kill the worker with SIGKILL while it delivers through flaky providers: nothing lost, nothing sent twice.

A real `notify worker` (threads pool) consumes raw events from RabbitMQ and keeps its ledger in
PostgreSQL; email goes to the local Mandrill server and SMS to the local Twilio server, both
failing 10% of calls with a 5xx and hanging on 2% (longer than the client's timeout, then closing
without delivering). The worker is killed at least three times while it works and restarted.

What the provider servers *accepted* is the ground truth of what was sent: a request the server
hung on and never answered was received, not delivered, and the retry after it is legitimate.
Each notification is identified at the server by the id we send: Mandrill's
``message.metadata.notification_id``; Twilio's API carries no such field, so each SMS body holds
its id (the bodies are unique).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from sqlalchemy import Engine, func, select

from tests.conftest import RABBITMQ_URL
from tests.factories import basic_email, mention, sms
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import DEFAULT_SID, TwilioServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw
from workers.events import core_pb2, to_binary
from workers.ledger import make_engine
from workers.ledger.models import Attempt, Notification
from workers.messages import TERMINAL, Status

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres]

PER_KIND = 200  # events of each of the three kinds
BOUNCING = 4  # emails to a hard-bouncing address, SMS to an opted-out number: `failed`
DUPLICATES = 80  # the same core.id published again, some in the other encoding
KILLS = 3
PROGRESS_BETWEEN_KILLS = 40  # finished rows the worker must add before the next kill
SMS_MARK = "crash-test "
API_KEY = "crash-key"
AUTH_TOKEN = "crash-token"
OPTED_OUT = "+14155559999"  # outside the +1415555{n:04d} range of the others

Message = tuple[bytes, str, str]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_events(rng: random.Random) -> list[tuple[dict[str, Any], str]]:
    """(proto3-JSON event, routing key) for every kind, a few of them bound to fail for good."""
    events: list[tuple[dict[str, Any], str]] = []
    for n in range(PER_KIND):
        event_id = _uuid(rng)
        to = f"bounce{n}@example.org" if n < BOUNCING else f"person{n}@example.org"
        events.append((basic_email(event_id, toAddress=to, subject=f"Crash test {n}"), "events.BasicEmail"))
    for n in range(PER_KIND):
        event_id = _uuid(rng)
        to = OPTED_OUT if n < BOUNCING else f"+1415555{n:04d}"
        events.append((sms(event_id, toNumber=to, message=f"{SMS_MARK}{event_id}"), "events.SMSNotification"))
    for n in range(PER_KIND):
        template = "mention-notification-bulk" if n % 3 == 0 else "mention-notification"
        events.append(
            (mention(_uuid(rng), mentions=1 + n % 3, template=template), "events.MentionEmailGenerated")
        )
    rng.shuffle(events)
    return events


def encode(event: dict[str, Any], routing_key: str, binary: bool) -> Message:
    if binary:
        message = json_format.ParseDict(event, core_pb2.VtEvent())
        return to_binary(message), "application/x-protobuf", routing_key
    import json

    return json.dumps(event).encode(), "application/json", routing_key


def build_messages(rng: random.Random, events: list[tuple[dict[str, Any], str]]) -> list[Message]:
    """Every event once (alternating encodings), plus duplicates spread over the whole run."""
    messages = [encode(event, key, binary=i % 2 == 0) for i, (event, key) in enumerate(events)]
    for i in rng.sample(range(len(events)), DUPLICATES):
        event, key = events[i]
        duplicate = encode(event, key, binary=rng.random() < 0.5)
        messages.insert(rng.randrange(i, len(messages) + 1), duplicate)
    return messages


def counts(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    return Counter({status: int(n) for status, n in rows})


def sending(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(select(Notification.id).where(Notification.status == Status.SENDING.value)).scalars()
        )


def finished(c: Counter[str]) -> int:
    return sum(n for status, n in c.items() if Status(status) in TERMINAL)


def wait_until(
    check: Callable[[], bool], *, timeout: float, worker: WorkerProcess, what: str, engine: Engine
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not worker.alive():
            raise AssertionError(f"worker exited while waiting for {what}:\n{worker.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}; ledger {dict(counts(engine))}:\n{worker.log()[-4000:]}"
            )
        time.sleep(0.05)


def accepted_by_mandrill(server: MandrillServer) -> Counter[str]:
    return Counter(r.json["message"]["metadata"]["notification_id"] for r in server.accepted)


def accepted_by_twilio(server: TwilioServer) -> Counter[str]:
    found: Counter[str] = Counter()
    for r in server.accepted:
        body = r.form["Body"]
        assert body.startswith(SMS_MARK), "an SMS the test did not write reached Twilio"
        found[body[len(SMS_MARK) :]] += 1
    return found


def test_sigkill_while_delivering_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, postgres_url: str
) -> None:
    rng = random.Random(20261125)
    events = build_events(rng)
    messages = build_messages(rng, events)
    ids = {event["core"]["id"] for event, _ in events}
    assert len(ids) == 3 * PER_KIND and len(messages) == len(ids) + DUPLICATES

    with MandrillServer(api_keys={API_KEY}) as mandrill, TwilioServer(auth_token=AUTH_TOKEN) as twilio:
        assert isinstance(mandrill, MandrillServer) and isinstance(twilio, TwilioServer)
        for n in range(BOUNCING):
            mandrill.reject_address(f"bounce{n}@example.org", "hard-bounce")
        twilio.refuse_number(OPTED_OUT, 21610)
        # Hangs outlast the client timeout (2 s), then the server closes without delivering.
        mandrill.set_failure_rate(error_rate=0.10, timeout_rate=0.02, seed=1, timeout_delay=3.0)
        twilio.set_failure_rate(error_rate=0.10, timeout_rate=0.02, seed=2, timeout_delay=3.0)
        env = isolated_env(
            tmp_path,
            broker_url=RABBITMQ_URL,
            database_url=postgres_url,
            NOTIFY_EMAIL_PROVIDER="mandrill",
            MANDRILL_BASE_URL=mandrill.api_url,
            MANDRILL_API_KEY=API_KEY,
            MANDRILL_TIMEOUT="2",
            NOTIFY_SMS_PROVIDER="twilio",
            TWILIO_BASE_URL=twilio.base_url,
            TWILIO_ACCOUNT_SID=DEFAULT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_TIMEOUT="2",
            NOTIFY_SWEEP_INTERVAL="1",
            NOTIFY_STUCK_AFTER="15",  # queued rows whose task died with the worker come back
            NOTIFY_SENDING_TIMEOUT="10",  # well above the 2 s client timeout: only the dead go silent
            NOTIFY_RETRY_BASE="0.3",
            NOTIFY_RETRY_CAP="2",
            NOTIFY_MAX_ATTEMPTS="3",
            NOTIFY_LOG_LEVEL="WARNING",
        )
        engine = make_engine(postgres_url)
        worker = WorkerProcess(env, tmp_path / "worker.log", args=("--pool", "threads", "--concurrency", "8"))
        # The bus holds what is published while the worker is down; publish in four waves, the
        # later ones while it is dead, so kills land on intake as well as on delivery.
        waves = [messages[i :: KILLS + 1] for i in range(KILLS + 1)]
        publish_raw(worker.settings, waves[0])
        worker.start()
        kills = 0
        in_flight_at_kill: list[int] = []
        orphaned: set[str] = set()
        try:
            for wave in waves[1:]:
                before = finished(counts(engine))
                wait_until(
                    lambda before=before: (  # type: ignore[misc]
                        finished(c := counts(engine)) - before >= PROGRESS_BETWEEN_KILLS
                        and c[Status.SENDING.value] > 0
                    ),
                    timeout=120,
                    worker=worker,
                    what="progress before a kill",
                    engine=engine,
                )
                worker.kill()
                # Read after the kill: these rows were orphaned mid-send, nobody will report them.
                now_sending = sending(engine)
                in_flight_at_kill.append(len(now_sending - orphaned))
                orphaned |= now_sending
                kills += 1
                publish_raw(worker.settings, wave)
                worker.start()

            def all_terminal() -> bool:
                c = counts(engine)
                return sum(c.values()) >= len(ids) and finished(c) == sum(c.values())

            wait_until(
                all_terminal, timeout=200, worker=worker, what="every row to be terminal", engine=engine
            )
        finally:
            worker.stop()

        with engine.connect() as conn:
            rows = {
                r.id: Status(r.status) for r in conn.execute(select(Notification.id, Notification.status))
            }
            sent_outcomes = Counter(
                conn.execute(select(Attempt.notification_id).where(Attempt.outcome == "sent")).scalars()
            )
        engine.dispose()
        by_mandrill, by_twilio = len(mandrill.accepted), len(twilio.accepted)
        accepted = accepted_by_mandrill(mandrill) + accepted_by_twilio(twilio)
        received = len(mandrill.received) + len(twilio.received)
        hung = sum(1 for r in mandrill.received + twilio.received if r.status is None)

    by_status = Counter(status.value for status in rows.values())
    twice = {i: n for i, n in accepted.items() if n > 1}
    unknown = [i for i, status in rows.items() if status is Status.UNKNOWN]
    unknown_delivered = sum(1 for i in unknown if accepted[i])
    print(
        f"\ncrash test: {len(messages)} messages ({len(ids)} events, {DUPLICATES} duplicates), "
        f"{kills} SIGKILLs (rows orphaned in `sending` by each: {in_flight_at_kill})\n"
        f"  ledger: {dict(sorted(by_status.items()))}\n"
        f"  providers: {received} requests received, {hung} hung, "
        f"{sum(accepted.values())} accepted (mandrill {by_mandrill}, twilio {by_twilio})\n"
        f"  in doubt: {len(unknown)} unknown, of which {unknown_delivered} reached a provider\n"
        f"  notifications accepted more than once: {len(twice)}"
    )

    assert kills >= KILLS
    # Nothing missing from the ledger, nothing extra, and every row terminal.
    assert set(rows) == ids
    assert all(status in TERMINAL for status in rows.values()), by_status
    # Every send a kill orphaned ended as `unknown` (the sweeper's doing), never resent.
    assert orphaned <= set(unknown), {i: rows[i] for i in orphaned - set(unknown)}
    # The providers accepted each notification at most once.
    assert twice == {}, f"sent twice: {twice}"
    assert set(accepted) <= ids
    # The ledger's story matches the providers': `sent` was accepted exactly once, a refusal or a
    # spent budget never was; only `unknown` rows may go either way.
    for notification_id, status in rows.items():
        if status is Status.SENT:
            assert accepted[notification_id] == 1, (notification_id, status)
            assert sent_outcomes[notification_id] == 1, notification_id
        elif status is not Status.UNKNOWN:
            assert accepted[notification_id] == 0, (notification_id, status)
    # The bounces and opt-outs were refused for good (or, killed mid-send, are in doubt).
    bouncing = [
        event["core"]["id"]
        for event, _ in events
        if event["data"].get("toAddress", "").startswith("bounce")
        or event["data"].get("toNumber") == OPTED_OUT
    ]
    assert len(bouncing) == 2 * BOUNCING
    assert all(rows[i] in {Status.FAILED, Status.DEAD, Status.UNKNOWN} for i in bouncing)
    assert by_status[Status.FAILED.value] >= 1
    assert by_status[Status.SENT.value] >= len(ids) - 2 * BOUNCING - 100  # most got through
