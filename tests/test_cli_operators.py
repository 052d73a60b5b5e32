"""The operator commands: deliveries list/show, failed list/resend/discard, as an operator runs them.

Listing, showing and discarding run `workers.cli.main` in-process against a SQLite ledger named
in the environment. Resending goes through the `notifications.resend` task, so those tests start
a real worker on the embedded broker and run the `notify` console script as a separate process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.factories import basic_email, mention, parsed, sms
from tests.integration.harness import WorkerProcess, isolated_env, wait_for
from workers.cli import main
from workers.errors import GiveUp, RetryLater
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.models import Attempt
from workers.ledger.queries import NotificationView, get_notification
from workers.messages import Receipt, Status

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clock:
    """Each reading is one millisecond later, so rows have distinct, ordered creation times."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for key in list(os.environ):
        if key.startswith(("NOTIFY_", "MANDRILL_", "SMTP_", "TWILIO_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NOTIFY_DATABASE_URL", url)
    monkeypatch.setenv("NOTIFY_STATE_DIR", str(tmp_path / "state"))
    engine = make_engine(url)
    upgrade(engine)
    yield Ledger(engine, clock=Clock())
    engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def sent(ledger: Ledger, event: dict[str, Any], provider: str = "mandrill") -> str:
    item = parsed(event)
    ledger.accept(item)
    claim = ledger.claim(item.notification_id)
    assert claim is not None
    ledger.record_sent(claim, Receipt(provider, f"{provider}-{item.notification_id[:8]}"))
    return item.notification_id


def failed(ledger: Ledger, event: dict[str, Any], *, dead: bool = False) -> str:
    item = parsed(event)
    ledger.accept(item)
    claim = ledger.claim(item.notification_id)
    assert claim is not None
    if dead:
        ledger.record_failed(
            claim, RetryLater("twilio: server error (HTTP 500)"), provider="twilio", status=Status.DEAD
        )
    else:
        ledger.record_failed(claim, GiveUp("mandrill: the address hard-bounced before"), provider="mandrill")
    return item.notification_id


def unknown(ledger: Ledger, event: dict[str, Any]) -> str:
    item = parsed(event)
    ledger.accept(item)
    assert ledger.claim(item.notification_id) is not None
    assert ledger.expire_sending(older_than=-1) == [item.notification_id]  # its worker went silent
    return item.notification_id


# -- deliveries list ------------------------------------------------------------------------------


def test_list_prints_a_table_newest_first(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    first = sent(ledger, basic_email())
    second = failed(ledger, sms(), dead=True)
    code, out, err = run(capsys, "deliveries", "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["ID", "EVENT", "CHAN", "STATUS", "PROVIDER", "TRY"]
    assert [line.split()[0] for line in lines[1:]] == [second, first]
    assert lines[1].split()[1:6] == ["SMSNotification", "sms", "dead", "twilio", "1"]
    assert "HTTP 500" in lines[1]
    assert lines[2].split()[1:6] == ["BasicEmail", "email", "sent", "mandrill", "1"]
    # The table never shows who a message went to.
    assert "person@example.org" not in out and "+14155550199" not in out

    code, out, _ = run(capsys, "deliveries", "list", "--status", "rejected")
    assert code == 0 and "(no notifications match)" in out


def test_list_json_has_the_documented_fields(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    notification_id = sent(ledger, basic_email())
    code, out, _ = run(capsys, "deliveries", "list", "--json")
    assert code == 0
    (row,) = json_lines(out)
    for key in (
        "id",
        "channel",
        "event_type",
        "status",
        "provider",
        "provider_message_id",
        "attempts",
        "error",
        "created_at",
        "updated_at",
    ):
        assert key in row
    assert row["id"] == notification_id and row["status"] == "sent" and row["attempts"] == 1
    assert row["event_type"] == "events.BasicEmail" and row["channel"] == "email"
    assert row["provider_message_id"] == f"mandrill-{notification_id[:8]}"
    assert row["created_at"].endswith("Z") and row["updated_at"].endswith("Z")
    assert row["recipient"] == "p***@example.org"  # masked


def test_list_filters(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    email = sent(ledger, basic_email(toAddress="someone@example.net"))
    text = failed(ledger, sms())
    bulk = sent(ledger, mention())
    lost = unknown(ledger, sms(toNumber="+447700900123"))
    midpoint = ledger.clock()
    late = failed(ledger, basic_email(), dead=True)
    ledger.reject("raw-1", reason="data.to_number: not E.164")

    def ids(*flags: str) -> list[str]:
        code, out, err = run(capsys, "deliveries", "list", "--json", *flags)
        assert code == 0, err
        return [row["id"] for row in json_lines(out)]

    assert ids("--status", "sent") == [bulk, email]
    assert ids("--status", "failed", "--status", "dead") == [late, text]
    assert ids("--status", "UNKNOWN") == [lost]
    assert ids("--channel", "sms") == [lost, text]
    assert ids("--event-type", "MentionEmailGenerated") == [bulk]
    assert ids("--event-type", "events.BasicEmail") == [late, email]
    assert ids("--recipient", "someone@example.net") == [email]
    assert ids("--recipient", "+447700900123") == [lost]
    assert ids("--since", midpoint.isoformat()) == ["raw-1", late]
    assert ids("--until", midpoint.isoformat().replace("+00:00", "Z")) == [lost, bulk, text, email]
    assert ids("--channel", "email", "--status", "sent", "--until", midpoint.isoformat()) == [bulk, email]

    with pytest.raises(SystemExit) as exc:
        main(["deliveries", "list", "--status", "lost"])
    assert exc.value.code == 2
    assert "unknown status 'lost'" in capsys.readouterr().err
    code, out, err = run(capsys, "deliveries", "list", "--since", "yesterday")
    assert (code, out) == (2, "")
    assert err == "notify: --since: not an ISO 8601 timestamp: 'yesterday'\n"


def test_paging_sees_every_row_once_while_new_rows_arrive(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    original = [sent(ledger, sms(message=f"n{i}")) for i in range(23)]
    original += [failed(ledger, basic_email()) for _ in range(20)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    arrived: list[str] = []
    while True:
        flags = ["--page-token", token] if token else []
        code, out, err = run(capsys, "deliveries", "list", "--json", "--page-size", "10", *flags)
        assert code == 0, err
        lines = json_lines(out)
        pages += 1
        if "next_page_token" in lines[-1]:
            assert set(lines[-1]) == {"next_page_token"}  # the token line is last and alone
            token = lines[-1]["next_page_token"]
            lines = lines[:-1]
        else:
            token = None
        assert all("next_page_token" not in line for line in lines)
        seen.extend(line["id"] for line in lines)
        # New notifications arrive while the operator pages; earlier pages must not shift.
        arrived.append(sent(ledger, basic_email()))
        arrived.append(failed(ledger, sms()))
        if token is None:
            break
    assert pages == 5
    assert seen == list(reversed(original))
    # A fresh listing starts from the newest, including what arrived meanwhile.
    code, out, _ = run(capsys, "deliveries", "list", "--json", "--page-size", "3")
    assert [row["id"] for row in json_lines(out)[:3]] == list(reversed(arrived))[:3]


def test_table_pages_too(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [sent(ledger, sms()) for _ in range(3)]
    code, out, _ = run(capsys, "deliveries", "list", "--page-size", "2")
    assert code == 0
    token = out.rstrip().splitlines()[-1].removeprefix("more: --page-token ")
    code, out, _ = run(capsys, "deliveries", "list", "--page-size", "2", "--page-token", token)
    assert code == 0
    rows = out.splitlines()[1:]
    assert [line.split()[0] for line in rows] == [ids[0]] and "more:" not in out


def test_bad_page_tokens_and_sizes_exit_2_with_the_reason(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        sent(ledger, sms())
    code, out, _ = run(capsys, "deliveries", "list", "--json", "--page-size", "2")
    token = json_lines(out)[-1]["next_page_token"]

    code, out, err = run(capsys, "deliveries", "list", "--page-token", "not-a-token")
    assert (code, out) == (2, "")
    assert "page token is malformed" in err
    code, out, err = run(capsys, "deliveries", "list", "--page-token", token[:-6] + "AAAAAA")
    assert code == 2 and "page token" in err
    code, out, err = run(capsys, "deliveries", "list", "--channel", "sms", "--page-token", token)
    assert code == 2 and "different filter" in err
    for size in ("0", "1001"):
        code, out, err = run(capsys, "deliveries", "list", "--page-size", size)
        assert code == 2 and "page size must be between 1 and 1000" in err
    code, out, _ = run(capsys, "deliveries", "list", "--json", "--page-size", "1000")
    assert code == 0 and len(json_lines(out)) == 3


# -- deliveries show ------------------------------------------------------------------------------


def test_show_tells_the_whole_story(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    item = parsed(basic_email())
    ledger.accept(item)
    ledger.mark_queued(item.notification_id)
    first = ledger.claim(item.notification_id)
    assert first is not None
    ledger.record_retry(
        first,
        RetryLater("mandrill: server error (HTTP 500)"),
        provider="mandrill",
        next_attempt_at=ledger.clock(),
    )
    second = ledger.claim(item.notification_id)
    assert second is not None
    ledger.record_retry(
        second,
        RetryLater("mandrill: timed out (ReadTimeout)"),
        provider="mandrill",
        next_attempt_at=ledger.clock(),
    )
    third = ledger.claim(item.notification_id)
    assert third is not None
    ledger.record_sent(third, Receipt("mandrill", "abc123"))
    # A late, duplicate answer for the first attempt changes nothing.
    assert not ledger.record_sent(first, Receipt("mandrill", "late")).moved

    code, out, err = run(capsys, "deliveries", "show", item.notification_id)
    assert code == 0, err
    assert f"id: {item.notification_id}" in out
    assert "status: sent" in out and "provider_message_id: abc123" in out and "attempts: 3" in out
    history = out.split("history:")[1].strip().splitlines()
    assert len(history) == 3
    assert history[0].lstrip().startswith("#1 ") and "mandrill retry" in history[0]
    assert "RetryLater: mandrill: server error (HTTP 500)" in history[0]
    assert "#2 " in history[1] and "timed out" in history[1]
    assert "#3 " in history[2] and history[2].rstrip().endswith("mandrill sent")
    assert "person@example.org" not in out

    code, out, _ = run(capsys, "deliveries", "show", item.notification_id, "--json")
    data = json.loads(out)
    assert [a["outcome"] for a in data["history"]] == ["retry", "retry", "sent"]
    assert [a["number"] for a in data["history"]] == [1, 2, 3]
    assert data["history"][0]["error_class"] == "RetryLater" and data["history"][2]["error"] is None
    assert all(a["started_at"].endswith("Z") and a["finished_at"].endswith("Z") for a in data["history"])
    assert data["recipient"] == "p***@example.org"

    code, out, err = run(capsys, "deliveries", "show", "no-such-id")
    assert code == 1 and "no notification no-such-id" in err


def test_show_an_attempt_in_progress(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    item = parsed(sms())
    ledger.accept(item)
    assert ledger.claim(item.notification_id) is not None
    code, out, _ = run(capsys, "deliveries", "show", item.notification_id)
    assert code == 0 and "status: sending" in out and "in progress" in out


# -- failed list / discard ------------------------------------------------------------------------


def test_failed_list_shows_only_what_needs_an_operator(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    sent(ledger, basic_email())
    bounced = failed(ledger, basic_email())
    dead = failed(ledger, sms(), dead=True)
    lost = unknown(ledger, sms())
    ledger.reject("raw-2", reason="event is not a valid protobuf VtEvent", raw=b"\x00junk")
    queued = parsed(sms())
    ledger.accept(queued)

    code, out, _ = run(capsys, "failed", "list", "--json")
    assert code == 0
    rows = json_lines(out)
    assert [row["id"] for row in rows] == ["raw-2", lost, dead, bounced]
    assert [row["status"] for row in rows] == ["rejected", "unknown", "dead", "failed"]
    assert all(row["error"] for row in rows)
    code, out, _ = run(capsys, "failed", "list", "--channel", "sms")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [lost, dead]


def test_discard(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    bounced = failed(ledger, basic_email())
    lost = unknown(ledger, sms())
    delivered = sent(ledger, sms())
    code, out, err = run(capsys, "failed", "discard", bounced, lost)
    assert code == 0 and err == ""
    assert out.splitlines() == [f"{bounced}: discarded", f"{lost}: discarded"]
    for notification_id in (bounced, lost):
        view = get_notification(ledger.engine, notification_id)
        assert view is not None and view.status is Status.DISCARDED

    # A sent row cannot be discarded, an unknown id is named, and a discarded row stays discarded.
    code, out, err = run(capsys, "failed", "discard", delivered, "no-such-id", bounced)
    assert code == 1 and out == ""
    assert err.splitlines() == [f"{delivered}: refused", "no-such-id: not-found", f"{bounced}: refused"]
    view = get_notification(ledger.engine, delivered)
    assert view is not None and view.status is Status.SENT


def test_resend_refuses_locally_before_touching_the_broker(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    delivered = sent(ledger, sms())
    in_flight = parsed(sms())
    ledger.accept(in_flight)
    code, out, err = run(capsys, "failed", "resend", delivered, in_flight.notification_id, "no-such-id")
    assert code == 1
    assert f"{delivered}: already sent; use --force to send it again" in err
    assert f"{in_flight.notification_id}: cannot resend from status accepted" in err
    assert "no-such-id: not-found" in err
    assert "queued 0 resend(s), refused 3" in out
    code, out, _ = run(capsys, "failed", "resend", "--all")
    assert (code, out.strip()) == (0, "nothing to resend")
    with pytest.raises(SystemExit) as exc:
        main(["failed", "resend"])
    assert exc.value.code == 2


# -- failed resend, through the notifications.resend task and a real worker ------------------------


def notify(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("notify")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "workers"]
    return subprocess.run([*command, *argv], env=env, capture_output=True, text=True, timeout=60, check=False)


def sent_attempts(ledger: Ledger, notification_id: str) -> int:
    with ledger.engine.connect() as conn:
        return len(
            conn.execute(
                select(Attempt.id).where(
                    Attempt.notification_id == notification_id, Attempt.outcome == "sent"
                )
            ).all()
        )


def is_sent(view: NotificationView | None) -> bool:
    return view is not None and view.status is Status.SENT


@pytest.mark.slow
def test_resend_through_a_real_worker(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    engine = make_engine(worker.settings.resolved_database_url)
    ledger = Ledger(engine)
    bounced = failed(ledger, basic_email())
    dead = failed(ledger, sms(), dead=True)
    dead_too = failed(ledger, mention(), dead=True)
    lost = unknown(ledger, sms())
    delivered = sent(ledger, basic_email(), provider="outbox")
    outbox = tmp_path / "outbox"
    try:
        worker.start()
        # Named ids: a sent row is refused without --force; the same id twice is one new cycle.
        result = notify(env, "failed", "resend", bounced, bounced, delivered)
        assert result.returncode == 0, result.stderr
        assert f"{delivered}: already sent; use --force to send it again" in result.stderr
        assert "resending 3/3" in result.stderr  # progress, one line per step when not a terminal
        rows = wait_for(worker.settings, [bounced], worker=worker, done=is_sent)
        assert rows[bounced] is not None and rows[bounced].status is Status.SENT, worker.log()[-3000:]
        # `--all` takes failed and dead rows; the unknown one waits for an operator's look.
        result = notify(env, "failed", "resend", "--all")
        assert result.returncode == 0, result.stderr
        assert "queued 2 resend(s), refused 0" in result.stdout
        assert "resending 2/2" in result.stderr
        rows = wait_for(worker.settings, [dead, dead_too], worker=worker, done=is_sent)
        assert all(r is not None and r.status is Status.SENT for r in rows.values()), worker.log()[-3000:]
        view = get_notification(engine, lost)
        assert view is not None and view.status is Status.UNKNOWN
        # The operator checked the provider's log: it never arrived. Resend it by id.
        result = notify(env, "failed", "resend", lost)
        assert result.returncode == 0 and "queued 1 resend(s), refused 0" in result.stdout
        # --force sends a sent one again, on purpose.
        result = notify(env, "failed", "resend", "--force", delivered)
        assert result.returncode == 0 and "queued 1 resend(s)" in result.stdout
        rows = wait_for(
            worker.settings,
            [lost, delivered],
            worker=worker,
            done=lambda v: v is not None and v.status is Status.SENT and v.attempts == 2,
        )
        assert all(r is not None and r.status is Status.SENT and r.attempts == 2 for r in rows.values())
    finally:
        worker.stop()
    # Every resend was one new cycle with one send, even the id named twice.
    assert {i: sent_attempts(ledger, i) for i in (bounced, dead, dead_too, lost)} == dict.fromkeys(
        (bounced, dead, dead_too, lost), 1
    )
    assert sent_attempts(ledger, delivered) == 2
    assert (outbox / "email" / f"{bounced}.eml").exists() and (outbox / "sms" / f"{dead}.json").exists()
    view = get_notification(engine, bounced)
    assert view is not None and [a.outcome for a in view.history] == ["failed", "sent"]
    engine.dispose()


@pytest.mark.slow
def test_the_resend_task_itself_refuses_a_sent_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower or a Python caller reach the task without the CLI's checks: the ledger still refuses."""
    env = isolated_env(tmp_path)
    # One task at a time, in order: the second resend finishing means the first was handled.
    worker = WorkerProcess(env, tmp_path / "worker.log", args=("--concurrency", "1"))
    engine = make_engine(worker.settings.resolved_database_url)
    ledger = Ledger(engine)
    delivered = sent(ledger, sms(), provider="outbox")
    bounced = failed(ledger, sms())
    monkeypatch.setenv("NOTIFY_STATE_DIR", str(tmp_path / "state"))  # should this import build the app
    from workers.celery_app import create_app

    app = create_app(worker.settings)
    try:
        worker.start()
        app.send_task("notifications.resend", (delivered,), queue=worker.settings.task_queue)
        app.send_task("notifications.resend", (bounced,), queue=worker.settings.task_queue)
        # The second resend is the marker: once it is sent, the first has been handled.
        rows = wait_for(
            worker.settings,
            [bounced],
            worker=worker,
            done=lambda v: v is not None and v.status is Status.SENT,
        )
        assert rows[bounced] is not None and rows[bounced].status is Status.SENT
    finally:
        worker.stop()
    view = get_notification(engine, delivered)
    assert view is not None and view.status is Status.SENT and view.attempts == 1
    assert not (tmp_path / "outbox" / "sms" / f"{delivered}.json").exists()
    engine.dispose()
