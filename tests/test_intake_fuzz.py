"""Fuzzing the intake path: malformed messages are rejected with a reason, valid neighbours accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import basic_email, mention, sms
from tests.test_dispatch import EchoTemplates, ScriptedProvider, mention_data
from workers.compose import Composer
from workers.dispatch import Dispatcher, Intake
from workers.events import build_event, to_binary
from workers.events.notification_pb2 import BasicEmail
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.queries import get_notification
from workers.messages import Status
from workers.retry import RetryPolicy

TEMPLATES = frozenset({"mention-notification", "mention-notification-bulk"})
KEYS = ["events.BasicEmail", "events.SMSNotification", "events.MentionEmailGenerated"]


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dispatcher]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    provider = ScriptedProvider()
    yield Dispatcher(
        Ledger(engine),
        composer=Composer(EchoTemplates(), mention_data),
        email=provider,
        sms=provider,
        policy=RetryPolicy(),
        enqueue=lambda notification_id, label: None,
    )
    engine.dispose()


def _valid() -> list[tuple[bytes, str, str]]:
    return [
        (json.dumps(basic_email()).encode(), "application/json", KEYS[0]),
        (json.dumps(sms()).encode(), "application/json", KEYS[1]),
        (json.dumps(mention()).encode(), "application/json", KEYS[2]),
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _mutated_json(draw: st.DrawFn) -> bytes:
    event = draw(st.sampled_from([basic_email, sms, mention]))()
    section = draw(st.sampled_from(["core", "data"]))
    key = draw(st.sampled_from([*sorted(event[section]), "extra", "@type"]))
    event[section][key] = draw(json_values)
    return json.dumps(event).encode()


@st.composite
def malformed(draw: st.DrawFn) -> tuple[bytes, str, str]:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "utf8", "huge", "protobuf"]))
    key = draw(st.sampled_from(KEYS))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), "application/x-protobuf", key
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), "application/json", key
    if kind == "mutated":
        return _mutated_json(draw), "application/json", key
    if kind == "utf8":
        body = json.dumps(sms()).encode().replace(b"Your code", b"Your \xff\xfe code")
        return body, "application/json", key
    if kind == "huge":
        body = json.dumps(basic_email(subject="s" * draw(st.integers(1000, 200_000)))).encode()
        return body, "application/json", key
    payload = BasicEmail(to_address=draw(st.text(max_size=40)), from_address="a@example.com", subject="x")
    return to_binary(build_event(payload, core={"id": draw(st.uuids()).hex})), "application/x-protobuf", key


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(malformed(), min_size=1, max_size=4))
def test_malformed_messages_are_recorded_and_never_crash_intake(
    dispatcher: Dispatcher, batch: list[tuple[bytes, str, str]]
) -> None:
    valid = _valid()
    outcomes = []
    for body, content_type, key in [valid[0], *batch, valid[1], valid[2]]:
        outcomes.append(dispatcher.receive(body, content_type, key, templates=TEMPLATES))
    # Valid neighbours are accepted whatever came between them.
    assert outcomes[0] is Intake.ACCEPTED and outcomes[-2:] == [Intake.ACCEPTED, Intake.ACCEPTED]
    for outcome in outcomes[1:-2]:
        # Our routing keys claim every message, so a bad one is a rejection (or a valid event that
        # happened to survive mutation, maybe as another event under a known id), never an exception
        # and never silently ignored.
        assert outcome in {Intake.REJECTED, Intake.ACCEPTED, Intake.DUPLICATE, Intake.CONFLICT}


def test_a_rejection_row_names_the_field(dispatcher: Dispatcher) -> None:
    event = sms(toNumber="not-a-number")
    assert dispatcher.receive(
        json.dumps(event).encode(), "application/json", KEYS[1], templates=TEMPLATES
    ) is (Intake.REJECTED)
    view = get_notification(dispatcher.ledger.engine, event["core"]["id"])
    assert view is not None and view.status is Status.REJECTED
    assert view.error is not None and "to_number" in view.error and "not-a-number" not in view.error
