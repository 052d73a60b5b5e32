"""Hostile event fields on the bus, through one real worker: nothing escapes the outbox or a header.

One `notify worker` process (embedded broker, SQLite ledger, outbox provider) takes every hostile
event of tests/security/hostile.py at once; the assertions read what it left behind: the ledger,
the outbox files (parsed as a mail client would), the log, and every file under the test's folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.factories import sms
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from tests.security.hostile import (
    ENCODED_INJECTIONS,
    GOOD_IDS,
    HEADER_FIELDS,
    LINE_BREAKS,
    MENTION_LINKS_INERT,
    MENTION_LINKS_REFUSED,
    ONE_URI,
    SPOOF_NAMES,
    UNSUBSCRIBE_ENCODED,
    UNSUBSCRIBE_REFUSED,
    as_bus_message,
    build,
    from_mailboxes,
    parse_email,
    path_ids,
    put,
    unsafe_attributes,
)
from workers.errors import InvalidEvent
from workers.events import parse_event
from workers.ledger.queries import NotificationView
from workers.messages import Status

pytestmark = pytest.mark.slow

SENDER = "alerts@example.com"


@dataclass
class Expect:
    """What the worker must make of one published event."""

    notification_id: str
    status: Status
    field: str = ""  # for a rejection: the field its reason must name
    check: str = ""  # for a delivery: which check reads its outbox file
    value: Any = None


@dataclass
class Run:
    root: Path
    outside: Path
    tag: str
    rows: dict[str, NotificationView | None]
    expected: list[Expect]
    log: str
    messages: list[tuple[bytes, str, str]] = field(default_factory=list)

    def of(self, kind: str) -> Iterator[tuple[Expect, NotificationView]]:
        for item in self.expected:
            if item.check == kind:
                row = self.rows[item.notification_id]
                assert row is not None
                yield item, row


def _expect(
    event: dict[str, Any], status: Status, *, field: str = "", check: str = "", value: Any = None
) -> Expect:
    """What must become of ``event``; its id is whatever the intake keys it by (a derived one if refused)."""
    body, content_type, key = as_bus_message(event)
    try:
        notification_id = parse_event(body, content_type, routing_key=key).notification_id
    except InvalidEvent as exc:
        assert exc.notification_id
        notification_id = exc.notification_id
    return Expect(notification_id, status, field=field, check=check, value=value)


REJECTED, SENT = Status.REJECTED, Status.SENT


def _catalogue(tag: str, outside: Path) -> tuple[list[tuple[bytes, str, str]], list[Expect]]:
    messages: list[tuple[bytes, str, str]] = []
    expected: list[Expect] = []

    def add(event: dict[str, Any], expect: Expect) -> None:
        messages.append(as_bus_message(event))
        expected.append(expect)

    # 1. ids that name a place, as email and as SMS; and ids that must keep working.
    for index, hostile in enumerate(path_ids(tag, str(outside))):
        for event in (build("basic", hostile), sms(hostile)):
            # Each payload differs, so each rejection gets its own derived id (its own row).
            put(event, ("data", "body" if "body" in event["data"] else "message"), f"id case {index}")
            add(event, _expect(event, REJECTED, field="core.id", check="id"))
    for good in GOOD_IDS:
        event = build("basic", good)
        add(event, _expect(event, SENT, check="good-id"))
    # 2. every header field with every line-breaking character.
    for kind, path, name in HEADER_FIELDS:
        for char in LINE_BREAKS:
            event = build(kind)
            put(event, path, f"x{char}Bcc: victim@evil.example")
            add(event, _expect(event, REJECTED, field=name, check="line-break"))
        for encoded in ENCODED_INJECTIONS:
            event = put(build(kind), path, encoded)
            add(event, _expect(event, REJECTED, field=name, check="encoded-word"))
    # 3. display names built to inject a mailbox.
    for name in SPOOF_NAMES:
        event = put(build("mention"), ("data", "fromName"), name)
        put(event, ("data", "fromEmail"), SENDER)
        status = REJECTED if "=?" in name else SENT  # readers decode encoded words: refused
        add(event, _expect(event, status, field="data.from_name", check="spoof", value=name))
    # 4. unsubscribe links: refused, or accepted with one URI in the header.
    link_path = ("data", "placeHolders", "mentions", 0, "unsubscribeLink")
    for link in UNSUBSCRIBE_REFUSED:
        event = put(build("mention"), link_path, link)
        field = "data.place_holders.mentions[0].unsubscribe_link"
        add(event, _expect(event, REJECTED, field=field, check="unsub"))
    for link in UNSUBSCRIBE_ENCODED:
        event = put(build("mention"), link_path, link)
        add(event, _expect(event, SENT, check="unsub", value=link))
    # 5. mention links in HTML: refused, or inert.
    for name in ("inviteLink", "programImage"):
        snake = "invite_link" if name == "inviteLink" else "program_image"
        for link in MENTION_LINKS_REFUSED:
            event = put(build("mention"), ("data", "placeHolders", "mentions", 0, name), link)
            add(
                event, _expect(event, REJECTED, field=f"data.place_holders.mentions[0].{snake}", check="link")
            )
        for link in MENTION_LINKS_INERT:
            event = put(build("mention"), ("data", "placeHolders", "mentions", 0, name), link)
            add(event, _expect(event, SENT, check="link", value=link))
    return messages, expected


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("hostile")
    work = root / "deep" / "er" / "worker"  # room for ../.. to land inside root, where we look
    work.mkdir(parents=True)
    outside = root / "absolute-target"
    tag = "pwn" + uuid.uuid4().hex[:8]
    messages, expected = _catalogue(tag, outside)
    env = isolated_env(work, NOTIFY_LOG_LEVEL="DEBUG")
    with WorkerProcess(env, work / "worker.log", args=("--concurrency", "8")) as worker:
        publish_raw(worker.settings, messages)
        # Settled means final, or retrying: nothing here may retry, so a retry is already a failure.
        rows = wait_for(
            worker.settings,
            [item.notification_id for item in expected],
            worker=worker,
            timeout=240,
            done=lambda view: view is not None and (view.status.terminal or view.status is Status.RETRYING),
        )
    return Run(root, outside, tag, rows, expected, worker.log(), messages)


def test_every_hostile_event_reaches_its_final_status_and_is_never_lost(run: Run) -> None:
    # One row each: a refused event is keyed by a digest of its content, so none collapse together.
    assert len({item.notification_id for item in run.expected}) == len(run.expected)
    wrong = {
        item.notification_id: (row.status if row else None, item.status)
        for item in run.expected
        if (row := run.rows[item.notification_id]) is None or row.status is not item.status
    }
    assert not wrong, (
        f"{len(wrong)} of {len(run.expected)} wrong: {list(wrong.items())[:10]}\n{run.log[-3000:]}"
    )
    for item in run.expected:
        row = run.rows[item.notification_id]
        assert row is not None
        if item.status is Status.REJECTED:
            assert row.error and row.error.startswith(f"{item.field}:"), (item, row.error)
        else:
            assert row.attempts == 1


def test_no_id_writes_outside_the_outbox_folders(run: Run) -> None:
    outbox = run.root / "deep" / "er" / "worker" / "outbox"
    written = [Path(dirpath) / name for dirpath, _, names in os.walk(run.root) for name in names]
    for path in written:
        assert run.tag not in str(path), f"a hostile id created {path}"
        if outbox in path.parents:
            assert path.parent in {outbox / "email", outbox / "sms"}, path
    assert not run.outside.exists()
    assert not any(run.tag in name for name in os.listdir("/tmp"))
    for item in run.of("id"):
        assert item[1].error and "core.id: is not a usable id" in item[1].error


def test_good_ids_keep_their_names(run: Run) -> None:
    outbox = run.root / "deep" / "er" / "worker" / "outbox" / "email"
    for item, row in run.of("good-id"):
        assert (outbox / f"{item.notification_id}.eml").is_file()
        message = parse_email((outbox / f"{item.notification_id}.eml").read_bytes())
        # The Message-ID domain is the sender's (NOTIFY_MESSAGE_ID_DOMAIN unset).
        sender_domain = message["From"].addresses[0].domain
        assert message["Message-ID"] == f"<{item.notification_id}@{sender_domain}>"
        assert message["X-Notification-Id"] == item.notification_id
        assert row.provider_message_id == str(outbox / f"{item.notification_id}.eml")


def test_line_breaking_characters_are_refused_naming_field_and_character(run: Run) -> None:
    seen = set()
    for item, row in run.of("line-break"):
        assert row.error and "a line break (U+" in row.error, row.error
        seen.add(item.field)
    assert len(seen) == 10  # every header field


def test_encoded_words_are_refused_in_every_header_field(run: Run) -> None:
    # The email package decodes =?...?= even in plain text and writes the result out raw.
    fields = set()
    for item, row in run.of("encoded-word"):
        assert item.status is Status.REJECTED, item
        assert row.error and "encoded-word" in row.error, row.error
        fields.add(item.field)
    assert len(fields) == 10


def test_a_display_name_never_adds_or_replaces_a_mailbox(run: Run) -> None:
    for item, row in run.of("spoof"):
        if "=?" in item.value:  # refused at intake: readers would decode it
            assert row.status is Status.REJECTED and row.error, item.value
            assert row.error.startswith("data.from_name:") and "encoded-word" in row.error
            continue
        assert row.status is Status.SENT and row.provider_message_id, item.value
        message = parse_email(Path(row.provider_message_id).read_bytes())
        assert from_mailboxes(message) == [SENDER], (item.value, str(message["From"]))
        # The name comes back whole; a long one may gain spaces where the email package folded it.
        shown = message["From"].addresses[0].display_name
        assert "".join(shown.split()) == "".join(item.value.split()), (shown, item.value)
        assert [a.addr_spec for a in message["To"].addresses] == ["watcher@example.org"]
        assert message["Reply-To"] is None and message["Sender"] is None and message["Cc"] is None


def test_list_unsubscribe_holds_exactly_one_uri(run: Run) -> None:
    for item, row in run.of("unsub"):
        if item.status is Status.REJECTED:
            assert row.error and "not an absolute http(s) URL" in row.error
            continue
        assert row.provider_message_id
        message = parse_email(Path(row.provider_message_id).read_bytes())
        (header,) = message.get_all("List-Unsubscribe") or [None]
        assert header is not None and ONE_URI.fullmatch(str(header)), str(header)
        assert str(header).startswith("<https://u.example.com/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mention_links_are_refused_or_inert_in_html(run: Run) -> None:
    checked = 0
    for item, row in run.of("link"):
        if item.status is Status.REJECTED:
            assert row.error and "not an absolute http(s) URL" in row.error
            continue
        assert row.provider_message_id
        message = parse_email(Path(row.provider_message_id).read_bytes())
        html_part = message.get_body(("html",))
        assert html_part is not None
        markup = html_part.get_content()
        assert unsafe_attributes(markup) == [], item.value
        assert "<script" not in markup.lower()
        checked += 1
    assert checked == len(MENTION_LINKS_INERT) * 2


def test_the_log_never_repeats_a_hostile_value(run: Run) -> None:
    assert run.tag not in run.log  # ids with the tag were all refused; their values stay out of the log
    assert "victim@evil.example" not in run.log
    assert "attacker.example" not in run.log
    assert "Traceback" not in run.log
