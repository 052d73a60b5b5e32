"""Property tests: whatever arrives, the decoder answers with a ParsedEvent, InvalidEvent or NotOurEvent."""

from __future__ import annotations

import json
from typing import Any

from events_samples import basic_email, event, mention, sms
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from workers.errors import InvalidEvent, NotOurEvent
from workers.events import (
    OUR_EVENT_TYPES,
    ParsedEvent,
    event_to_dict,
    parse_event,
    parse_event_dict,
    to_binary,
    to_json_bytes,
)
from workers.events.notification_pb2 import BasicEmail, SMSNotification

# No deadline: tests never assert on wall-clock time.
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

VALID_EVENTS = [event(basic_email()), event(sms()), event(mention(mentions=3))]
VALID_BINARY = [to_binary(m) for m in VALID_EVENTS]
VALID_JSON = [json.loads(to_json_bytes(m, camel_case=camel)) for m in VALID_EVENTS for camel in (False, True)]

CONTENT_TYPES = st.sampled_from(
    [None, "", "application/json", "application/x-protobuf", "application/json; charset=utf-8",
     "application/octet-stream", "text/plain", "application/json; charset=latin-1"]
)  # fmt: skip
ROUTING_KEYS = st.sampled_from([None, "", "#", "events.LoginFailed", *sorted(OUR_EVENT_TYPES)])

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", "+12", "a@b", "\r\n", "\x00", "x" * 5000, "handlers", "mention_email_generated"])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def outcome(body: bytes, content_type: str | None, routing_key: str | None) -> ParsedEvent | Exception:
    try:
        return parse_event(body, content_type, routing_key=routing_key)
    except (InvalidEvent, NotOurEvent) as exc:
        return exc


def dict_outcome(doc: Any) -> ParsedEvent | Exception:
    try:
        return parse_event_dict(doc)
    except (InvalidEvent, NotOurEvent) as exc:
        return exc


def check_error(result: ParsedEvent | Exception, routing_key: str | None) -> None:
    if isinstance(result, InvalidEvent):
        assert result.notification_id, "a rejection must carry an id to record"
        if routing_key in OUR_EVENT_TYPES:
            assert result.event_type == routing_key
    if isinstance(result, NotOurEvent):
        assert routing_key not in OUR_EVENT_TYPES, "a claimed event is rejected, never disowned"
    if isinstance(result, ParsedEvent):
        json.dumps(result.payload)
        assert result.event_type in OUR_EVENT_TYPES


@FUZZ
@given(body=st.binary(max_size=400), content_type=CONTENT_TYPES, routing_key=ROUTING_KEYS)
@example(body=b"\n{", content_type=None, routing_key=None)
@example(body=b"{" * 5000, content_type=None, routing_key="events.BasicEmail")
@example(body=b"[" * 100000, content_type="application/json", routing_key=None)
@example(body=b'{"a": 1' + b"0" * 5000 + b"}", content_type=None, routing_key=None)
def test_random_bytes(body: bytes, content_type: str | None, routing_key: str | None) -> None:
    check_error(outcome(body, content_type, routing_key), routing_key)


@FUZZ
@given(
    index=st.integers(0, len(VALID_BINARY) - 1),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "truncate"]),
            st.integers(0, 10**6),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=6,
    ),
    content_type=st.sampled_from([None, "application/x-protobuf"]),
    routing_key=ROUTING_KEYS,
)
def test_mutated_binary_events(
    index: int, edits: list[tuple[str, int, int]], content_type: str | None, routing_key: str | None
) -> None:
    body = bytearray(VALID_BINARY[index])
    for kind, position, value in edits:
        if not body:
            break
        at = position % len(body)
        if kind == "flip":
            body[at] ^= value or 1
        elif kind == "insert":
            body.insert(at, value)
        elif kind == "delete":
            del body[at]
        else:
            del body[at:]
    check_error(outcome(bytes(body), content_type, routing_key), routing_key)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replaced(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(doc))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


@FUZZ
@given(data=st.data(), new=JSON_VALUES, routing_key=ROUTING_KEYS)
def test_json_events_with_a_value_of_the_wrong_type(
    data: st.DataObject, new: Any, routing_key: str | None
) -> None:
    doc = data.draw(st.sampled_from(VALID_JSON))
    path = data.draw(st.sampled_from(paths(doc)))
    mutated = replaced(doc, path, new)
    body = json.dumps(mutated).encode()
    check_error(outcome(body, "application/json", routing_key), routing_key)
    check_error(dict_outcome(mutated), None)


@FUZZ
@given(
    doc=st.dictionaries(st.sampled_from(["core", "trace", "baggage", "data", "x"]), JSON_VALUES, max_size=5)
)
def test_arbitrary_json_objects(doc: dict[str, Any]) -> None:
    check_error(outcome(json.dumps(doc).encode(), None, None), None)
    check_error(dict_outcome(doc), None)


@FUZZ
@given(doc=st.sampled_from(VALID_JSON), cut=st.integers(0, 10**6), junk=st.binary(min_size=1, max_size=4))
def test_json_with_invalid_utf8(doc: dict[str, Any], cut: int, junk: bytes) -> None:
    body = json.dumps(doc, ensure_ascii=False).encode()
    at = cut % len(body)
    bad = body[:at] + b"\xc3\x28" + junk + body[at:]  # \xc3\x28 is never valid UTF-8
    result = outcome(bad, "application/json", "events.BasicEmail")
    assert isinstance(result, InvalidEvent)


@settings(FUZZ, max_examples=40)
@given(
    key=st.sampled_from(["message", "toNumber", "from_number"]),
    size=st.sampled_from([10**3, 10**5, 2 * 10**6]),
    char=st.sampled_from(["a", "\u00e9", "\U0001f600", "\ud800", "\x00", "\n"]),
)
def test_huge_and_odd_string_values(key: str, size: int, char: str) -> None:
    doc = replaced(VALID_JSON[3], ("data", key), char * size)
    result = outcome(json.dumps(doc).encode(), None, "events.SMSNotification")
    check_error(result, "events.SMSNotification")


ADDRESSISH = st.text(
    alphabet=st.sampled_from(list("abcXYZ019.+-_@ \t\r\n\u00fc\u0000<>\"'")), min_size=0, max_size=30
)


@FUZZ
@given(
    from_address=ADDRESSISH,
    to_address=ADDRESSISH,
    reply_to=ADDRESSISH,
    subject=st.text(max_size=30),
    body=st.text(max_size=30),
    body_html=st.text(max_size=30),
)
def test_binary_and_json_agree_and_rejections_never_echo_addresses(
    from_address: str, to_address: str, reply_to: str, subject: str, body: str, body_html: str
) -> None:
    payload = BasicEmail(
        from_address=from_address, to_address=to_address, reply_to=reply_to,
        subject=subject, body=body, body_html=body_html,
    )  # fmt: skip
    message = event(payload)
    binary = outcome(to_binary(message), None, "events.BasicEmail")
    as_json = outcome(to_json_bytes(message), None, "events.BasicEmail")
    as_dict: ParsedEvent | Exception
    try:
        as_dict = parse_event_dict(event_to_dict(message))
    except InvalidEvent as exc:
        as_dict = exc
    if isinstance(binary, ParsedEvent):
        assert binary == as_json == as_dict
        return
    assert isinstance(binary, InvalidEvent) and isinstance(as_json, InvalidEvent)
    assert isinstance(as_dict, InvalidEvent)
    assert binary.field == as_json.field == as_dict.field
    for value in (from_address, to_address, reply_to):
        if len(value.strip()) >= 6:
            assert value.strip() not in str(binary)


@FUZZ
@given(
    from_number=st.text(alphabet="+0123456789MGabcdef \n", max_size=36),
    to_number=st.text(alphabet="+0123456789 -()\n", max_size=20),
)
def test_sms_numbers_are_never_echoed(from_number: str, to_number: str) -> None:
    assume(len(to_number.strip()) >= 4)
    result = outcome(
        to_binary(event(SMSNotification(from_number=from_number, to_number=to_number, message="hi"))),
        None,
        None,
    )
    if isinstance(result, InvalidEvent):
        assert to_number.strip() not in str(result)
