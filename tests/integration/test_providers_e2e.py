"""Each real provider through a real worker process, against local servers that speak its protocol.

Events go in on the bus; we check what arrived at the server, the provider message id in the
ledger, a 429 followed by success, a permanent refusal ending `failed` with no retry, and an outage
ending `dead` once the retry budget is spent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import basic_email, mention, sms
from tests.fakes.mandrill_server import MandrillServer, RateLimit
from tests.fakes.smtp_server import Reply, SmtpServer
from tests.fakes.twilio_server import TwilioError, TwilioServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.ledger.queries import NotificationView
from workers.messages import Status

pytestmark = pytest.mark.slow

SID, TOKEN, KEY = "AC" + "1" * 32, "secret-token", "mandrill-test-key"
# Small budget and quick backoff, so an outage is declared dead within seconds.
RETRY_ENV = {
    "NOTIFY_MAX_ATTEMPTS": "3",
    "NOTIFY_RETRY_BASE": "0.2",
    "NOTIFY_RETRY_CAP": "1",
    "NOTIFY_SWEEP_INTERVAL": "1",
}


def publish(worker: WorkerProcess, *events: dict[str, Any]) -> list[str]:
    keys = {"BasicEmail", "SMSNotification", "MentionEmailGenerated"}
    messages = []
    for event in events:
        kind = event["data"]["@type"].rsplit(".", 1)[-1]
        assert kind in keys
        messages.append((json.dumps(event).encode(), "application/json", f"events.{kind}"))
    publish_raw(worker.settings, messages)
    return [event["core"]["id"] for event in events]


def settle(worker: WorkerProcess, ids: list[str]) -> dict[str, NotificationView]:
    rows = wait_for(worker.settings, ids, worker=worker, timeout=60)
    assert all(row is not None and row.status.terminal for row in rows.values()), (rows, worker.log()[-3000:])
    return {key: row for key, row in rows.items() if row is not None}


@pytest.fixture
def http_worker(tmp_path: Path) -> Iterator[tuple[WorkerProcess, MandrillServer, TwilioServer]]:
    with MandrillServer(api_keys={KEY}) as mandrill, TwilioServer(SID, TOKEN) as twilio:
        env = isolated_env(
            tmp_path,
            NOTIFY_EMAIL_PROVIDER="mandrill",
            NOTIFY_SMS_PROVIDER="twilio",
            MANDRILL_API_KEY=KEY,
            MANDRILL_BASE_URL=mandrill.api_url,
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_BASE_URL=twilio.base_url,
            **RETRY_ENV,
        )
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            yield worker, mandrill, twilio


def test_mandrill_and_twilio_end_to_end(
    http_worker: tuple[WorkerProcess, MandrillServer, TwilioServer],
) -> None:
    worker, mandrill, twilio = http_worker

    # Delivered: the server has the message, the ledger has the provider's id.
    email_event, mention_event, sms_event = basic_email(), mention(mentions=2), sms()
    rows = settle(worker, publish(worker, email_event, mention_event, sms_event))
    sent_ids = {r.json["message"]["metadata"]["notification_id"]: r for r in mandrill.accepted}
    assert set(sent_ids) == {email_event["core"]["id"], mention_event["core"]["id"]}
    for key in sent_ids:
        assert rows[key].status is Status.SENT and rows[key].provider == "mandrill"
        assert rows[key].provider_message_id
    assert "Program 1" in sent_ids[mention_event["core"]["id"]].json["message"]["html"]
    (twilio_request,) = twilio.accepted
    assert twilio_request.form["To"] == "+14155550199"
    sms_row = rows[sms_event["core"]["id"]]
    assert sms_row.status is Status.SENT and (sms_row.provider_message_id or "").startswith("SM")

    # A 429 with Retry-After, then success: two attempts, one delivery.
    mandrill.fail_next(RateLimit(retry_after=0.5))
    twilio.fail_next(TwilioError(20429, 429, retry_after=0.5))
    limited = settle(worker, publish(worker, basic_email(), sms()))
    assert {row.status for row in limited.values()} == {Status.SENT}
    assert sorted(row.attempts for row in limited.values()) == [2, 2]

    # Refused for good: failed at once with the provider's reason, never retried.
    mandrill.reject_address("bounced@example.org", "hard-bounce")
    twilio.refuse_number("+14155550123", code=21610)
    before = len(mandrill.received) + len(twilio.received)
    refused = settle(
        worker, publish(worker, basic_email(toAddress="bounced@example.org"), sms(toNumber="+14155550123"))
    )
    for row in refused.values():
        assert row.status is Status.FAILED and row.attempts == 1, row
    errors = " ".join(row.error or "" for row in refused.values())
    assert "hard-bounce" in errors and "21610" in errors
    assert "bounced@example.org" not in errors and "+14155550123" not in errors
    assert len(mandrill.received) + len(twilio.received) == before + 2

    # An outage outlives the budget: dead after NOTIFY_MAX_ATTEMPTS attempts.
    mandrill.set_failure_rate(error_rate=1.0)
    twilio.set_failure_rate(error_rate=1.0)
    dead = settle(worker, publish(worker, basic_email(), sms()))
    for row in dead.values():
        assert row.status is Status.DEAD and row.attempts == 3, row


def test_smtp_end_to_end(tmp_path: Path) -> None:
    with SmtpServer() as server:
        env = isolated_env(
            tmp_path,
            NOTIFY_EMAIL_PROVIDER="smtp",
            SMTP_HOST=server.host,
            SMTP_PORT=str(server.port),
            SMTP_STARTTLS="0",
            **RETRY_ENV,
        )
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            event = mention(mentions=1)
            rows = settle(worker, publish(worker, event))
            row = rows[event["core"]["id"]]
            assert row.status is Status.SENT and row.provider == "smtp" and row.provider_message_id
            (mail,) = server.received
            assert list(mail.rcpt_tos) == ["watcher@example.org"]
            assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert mail.message["Message-ID"] == row.provider_message_id

            server.fail_next(Reply("RCPT", 550, "5.1.1 mailbox unavailable"))
            refused = settle(worker, publish(worker, basic_email()))
            (failed,) = refused.values()
            assert failed.status is Status.FAILED and failed.attempts == 1 and "550" in (failed.error or "")

            server.fail_next(*[Reply("MAIL", 451, "4.3.0 try later")] * 3)
            dead = settle(worker, publish(worker, basic_email()))
            (gone,) = dead.values()
            assert gone.status is Status.DEAD and gone.attempts == 3
