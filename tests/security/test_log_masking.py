"""Log masking, from the attacker's side: every address the intake accepts is masked whole, wherever
it sits in a line, and no id (UUID, hex id, Twilio SID, Celery task id) is ever touched."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import logs
from workers.events.syntax import is_email_address

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
# What may stand right before or after an address in a log line without being part of it.
SEPARATORS = [" ", "<", ">", "(", ")", ",", ";", ":", '"', "[", "]", "\n", "\t", ""]

atoms = st.text(alphabet=ATEXT, min_size=1, max_size=12)
local_parts = st.lists(atoms, min_size=1, max_size=3).map(".".join)
labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
idn_labels = st.sampled_from(["münchen", "bücher", "παράδειγμα", "пример", "例え", "हिन्दी"])
domains = st.lists(labels | idn_labels, min_size=1, max_size=3).map(lambda parts: ".".join([*parts, "org"]))
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains).filter(
    is_email_address
)
uuids = st.uuids().map(str)
ids = st.one_of(
    uuids,
    uuids.map(str.upper),
    st.uuids().map(lambda u: u.hex),  # hex ids
    st.uuids().map(lambda u: "SM" + u.hex),  # Twilio message SIDs
    st.uuids().map(lambda u: "MG" + u.hex.upper()),  # messaging service SIDs
)
# Text around ids that would tempt a phone matcher: digits, spaces, dashes, a real phone number.
noise = st.text(alphabet="0123456789 -().+", max_size=12)
phones = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)


@pytest.mark.parametrize(
    "address", ["x#@example.org", "ana!@example.org", "{weird}@example.org", "o'brien@example.org"]
)
def test_the_reported_addresses_are_masked_whole(address: str) -> None:
    assert logs.mask(f"to {address} failed") == "to <email> failed"


def test_the_reported_uuid_keeps_its_digits() -> None:
    notification_id = "ade0dce7-a6f2-4613-8472-2f48a17f5ca9"
    assert (
        logs.mask(f"deliver {notification_id} to +4915112345678") == f"deliver {notification_id} to <phone>"
    )


@settings(max_examples=300, deadline=None)
@given(address=addresses, before=st.sampled_from(SEPARATORS), after=st.sampled_from(SEPARATORS))
def test_every_accepted_address_is_masked_whole(address: str, before: str, after: str) -> None:
    line = f"send{before}{address}{after}done" if before and after else f"{before}{address}{after}"
    expected = line.replace(address, "<email>")
    assert logs.mask(line) == expected


@settings(max_examples=300, deadline=None)
@given(an_id=ids, before=noise, after=noise)
def test_ids_are_never_touched(an_id: str, before: str, after: str) -> None:
    masked = logs.mask(f"{before} {an_id} {after}")
    assert an_id in masked


@settings(max_examples=200, deadline=None)
@given(an_id=uuids, phone=phones, address=addresses)
def test_ids_stay_while_their_neighbours_are_masked(an_id: str, phone: str, address: str) -> None:
    masked = logs.mask(f"notification {an_id} to {phone} and {address}; task_id={an_id}")
    assert masked == f"notification {an_id} to <phone> and <email>; task_id={an_id}"


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield capsys
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_through_the_configured_pipeline(json_logs: pytest.CaptureFixture[str]) -> None:
    """The real renderer: stdlib (Celery, kombu) and structlog lines, exceptions included."""
    logs.configure(level="DEBUG", fmt="json", secrets=("planted-secret-value",))
    task_id = str(uuid.uuid4())
    logging.getLogger("celery.worker").info(
        "Task %s to o'brien@example.org with key planted-secret-value", task_id
    )
    structlog.get_logger("workers").warning("deliver.failed", detail="ana!@example.org said no", task=task_id)
    try:
        raise ValueError("refused {weird}@example.org")
    except ValueError:
        logging.getLogger("workers").exception("boom %s", task_id)
    lines = [json.loads(line) for line in json_logs.readouterr().err.splitlines()]
    text = json.dumps(lines)
    for leaked in ("brien", "ana!", "weird}", "planted-secret-value"):
        assert leaked not in text
    assert text.count(task_id) == 3


@pytest.mark.parametrize(
    "planted",
    ["\u2028", "\u2029", "\u202e", "\u0085", "\x1b[31m", "\r\n", "\ud800", "ok é ü 例"],
    ids=[
        "line-separator",
        "paragraph-separator",
        "bidi-override",
        "nel",
        "ansi",
        "crlf",
        "surrogate",
        "text",
    ],
)
def test_a_field_never_puts_a_raw_control_or_line_break_into_the_json_line(
    json_logs: pytest.CaptureFixture[str], planted: str
) -> None:
    """Each line is one line of ASCII: what a field holds arrives escaped (and reads back whole), as
    json.dumps writes it; a faster serializer that writes non-ASCII raw must not slip in."""
    logs.configure(level="INFO", fmt="json")
    structlog.get_logger("workers").info("event.rejected", field=f"a{planted}b", n=2**70)
    logging.getLogger("celery.worker").info("received %s", f"c{planted}d")
    lines = json_logs.readouterr().err.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.isascii() and line.isprintable()
    ours, celery = (json.loads(line) for line in lines)
    assert (ours["field"], ours["n"], celery["event"]) == (f"a{planted}b", 2**70, f"received c{planted}d")
