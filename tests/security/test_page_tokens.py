"""Forged, altered and replayed page tokens, and hostile --since/--until, through the `notify` console script.

A page token must only work as it was issued: same ledger key, same filters, untampered. Every
refusal is one line on stderr naming the argument, exit status 2, and never a Python traceback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.factories import basic_email, parsed, sms
from tests.integration.harness import isolated_env
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade

NOTIFY = str(Path(sys.executable).with_name("notify"))
RECIPIENT = "+14155550199"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, 0, 654_321, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=7)
        return self.now


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A ledger with 6 SMS and 4 email rows, and the environment `notify` reads it with."""
    environment = isolated_env(tmp_path)
    engine = make_engine(environment["NOTIFY_DATABASE_URL"])
    upgrade(engine)
    ledger = Ledger(engine, clock=Clock())
    ledger.accept_many([parsed(sms(toNumber=RECIPIENT)) for _ in range(6)])
    ledger.accept_many([parsed(basic_email()) for _ in range(4)])
    engine.dispose()
    yield environment


def notify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOTIFY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(env["NOTIFY_STATE_DIR"]).parent,
    )


def first_token(env: dict[str, str], *filters: str) -> str:
    done = notify(env, "deliveries", "list", "--json", "--page-size", "2", *filters)
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.splitlines()[-1])
    return str(last["next_page_token"])


def refused(done: subprocess.CompletedProcess[str], argument: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr naming ``argument``, no traceback anywhere."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    named = [line for line in lines if argument in line]
    assert named, done.stderr
    assert len(lines) == 1, done.stderr
    return named[0]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(body: dict[str, Any]) -> str:
    """A token as 12197ff made them: base64 JSON with a public hash of the filters."""
    return b64(json.dumps(body).encode())


def public_fingerprint(*, channel: str | None = None) -> str:
    blob = json.dumps([[], channel, None, None, None, None])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def test_an_unsigned_token_forged_the_old_way_is_refused(env: dict[str, str]) -> None:
    # Old format, right fingerprint for the (empty) filter: 12197ff took it and listed from there.
    forged = unsigned({"v": 1, "c": "2030-01-01T00:00:00.000Z", "i": "~", "f": public_fingerprint()})
    refused(notify(env, "deliveries", "list", "--page-token", forged), "--page-token")


@pytest.mark.parametrize(
    "created",
    [
        "2026-11-25T12:00:00",  # a naive timestamp
        "9999-12-31T23:59:59-23:59",  # year 9999 with an offset: past datetime.max in UTC
        "0001-01-01T00:00:00+14:00",  # before datetime.min in UTC
    ],
)
def test_forged_odd_timestamps_end_in_one_line(env: dict[str, str], created: str) -> None:
    forged = unsigned({"v": 1, "c": created, "i": "x", "f": public_fingerprint()})
    refused(notify(env, "deliveries", "list", "--page-token", forged), "--page-token")


def test_a_nul_in_the_id_ends_in_one_line(env: dict[str, str]) -> None:
    forged = unsigned({"v": 1, "c": "2026-11-25T12:00:00Z", "i": "a\x00b", "f": public_fingerprint()})
    refused(notify(env, "deliveries", "list", "--page-token", forged), "--page-token")


def test_any_altered_byte_is_refused(env: dict[str, str]) -> None:
    token = first_token(env)
    body, mac = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data = json.loads(raw)
    data["c"] -= 1_000_000  # move the cursor one second back: skip rows
    moved = b64(json.dumps(data, separators=(",", ":")).encode()) + "." + mac
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (moved, flipped, body, "." + mac, token + "x", token + ".x"):
        refused(notify(env, "deliveries", "list", "--page-token", bad), "--page-token")
    assert notify(env, "deliveries", "list", "--page-token", token).returncode == 0


def test_a_token_only_works_with_the_filters_it_was_issued_for(env: dict[str, str]) -> None:
    token = first_token(env, "--channel", "sms")
    assert notify(env, "deliveries", "list", "--channel", "sms", "--page-token", token).returncode == 0
    for other in ([], ["--channel", "email"], ["--status", "queued"], ["--since", "2020-01-01T00:00:00Z"]):
        line = refused(notify(env, "deliveries", "list", *other, "--page-token", token), "--page-token")
        assert "different filter" in line
    # `failed list` is another listing with its own filters: a deliveries token is no use there.
    refused(notify(env, "failed", "list", "--channel", "sms", "--page-token", token), "--page-token")


def test_a_token_from_another_key_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    token = first_token(env)
    other = env | {"NOTIFY_PAGE_TOKEN_KEY": "another-ledger-key-0123456789"}
    refused(notify(other, "deliveries", "list", "--page-token", token), "--page-token")
    # A token made under NOTIFY_PAGE_TOKEN_KEY works wherever that key is set, in any state folder.
    shared = first_token(other)
    elsewhere = other | {"NOTIFY_STATE_DIR": str(tmp_path / "elsewhere")}
    assert notify(elsewhere, "deliveries", "list", "--page-token", shared).returncode == 0


def test_oversized_empty_and_garbage_tokens_end_in_one_line(env: dict[str, str]) -> None:
    for bad in ("", "A" * 100_000, "é.é", "..", "%00", "eyJ2IjoyfQ.AAAA", "null.null"):
        refused(notify(env, "deliveries", "list", "--page-token", bad), "--page-token")


def test_the_token_names_no_recipient_and_no_plain_filter_hash(env: dict[str, str]) -> None:
    token = first_token(env, "--recipient", RECIPIENT)
    body = base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()
    digits = RECIPIENT.lstrip("+")
    assert digits not in body and digits not in token
    plain = json.dumps([[], None, None, RECIPIENT, None, None])
    assert hashlib.sha256(plain.encode()).hexdigest()[:12] not in body


def test_the_generated_key_is_private_and_a_shared_one_is_refused(env: dict[str, str]) -> None:
    first_token(env)
    key_file = Path(env["NOTIFY_STATE_DIR"]) / "page-token.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = first_token(env)
    key_file.chmod(0o644)
    done = notify(env, "deliveries", "list", "--page-token", token)
    assert "Traceback" not in done.stderr and done.returncode == 2
    assert "page-token.key" in done.stderr and "chmod 600" in done.stderr
    key_file.chmod(0o600)
    assert notify(env, "deliveries", "list", "--page-token", token).returncode == 0


def test_a_short_configured_key_is_refused_by_name(env: dict[str, str]) -> None:
    done = notify(env | {"NOTIFY_PAGE_TOKEN_KEY": "short"}, "deliveries", "list", "--page-size", "2")
    assert "Traceback" not in done.stderr and done.returncode == 2
    assert "NOTIFY_PAGE_TOKEN_KEY" in done.stderr


@pytest.mark.parametrize("argument", ["--since", "--until"])
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "not-a-time"])
def test_hostile_since_and_until_end_in_one_line(env: dict[str, str], argument: str, value: str) -> None:
    for command in (("deliveries", "list"), ("failed", "list")):
        refused(notify(env, *command, argument, value), argument)


def test_the_edge_of_time_is_a_valid_bound(env: dict[str, str]) -> None:
    done = notify(env, "deliveries", "list", "--json", "--until", "9999-12-31T23:59:59Z")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 10
    done = notify(env, "deliveries", "list", "--json", "--since", "9999-12-31T23:59:59Z")
    assert (done.returncode, done.stdout) == (0, "")


def test_no_key_file_is_made_by_a_listing_that_needs_no_token(env: dict[str, str]) -> None:
    assert notify(env, "deliveries", "list").returncode == 0
    assert not (Path(env["NOTIFY_STATE_DIR"]) / "page-token.key").exists()
    assert os.listdir(Path(env["NOTIFY_STATE_DIR"]).parent)  # the ledger is there, untouched
