"""The decoder's fast paths give exactly what the canonical paths give, on the bench mix and on fuzz.

The fast paths (``plain_from_json`` and ``fields_from_json`` for proto3 JSON, the one-regex link
check) may decline anything, but what they accept must come out as the canonical path would have
it: the same dict with the same key order, the same message bytes, the same verdict.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bench.workload import plan
from tests.events.test_events_fuzz import paths
from workers.errors import InvalidEvent, NotOurEvent
from workers.events import ParsedEvent, parse_event, parse_event_dict, to_binary
from workers.events.core_pb2 import VtEvent
from workers.events.jsonmap import fields_from_json, message_to_plain, parse_message, plain_from_json
from workers.events.schema import KINDS
from workers.events.syntax import _PLAIN_WEB_URL, _is_web_url_parsed

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MIX = plan(600, seed=8)


def split(event: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """(envelope without data, payload without @type, payload class or None) of a proto3-JSON event."""
    envelope = {key: value for key, value in event.items() if key != "data"}
    data = event.get("data")
    type_url = data.get("@type") if isinstance(data, dict) else None
    kind = KINDS.get(type_url.rsplit("/", 1)[-1]) if isinstance(type_url, str) else None
    if not isinstance(data, dict) or kind is None:
        return envelope, data, None
    return envelope, {key: value for key, value in data.items() if key != "@type"}, kind.message_class


def assert_fast_agrees(envelope: Any, payload: Any, message_class: Any) -> None:
    """Whatever the fast paths accept, the canonical paths accept and map to the same thing."""
    plain = plain_from_json(payload, message_class) if message_class is not None else None
    if plain is not None:
        canonical = message_to_plain(parse_message(payload, message_class, "data"))
        assert plain == canonical
        assert json.dumps(plain) == json.dumps(canonical)  # same key order, same types
    fields = fields_from_json(envelope, VtEvent)
    if fields is not None:
        built = VtEvent(**fields)
        parsed = parse_message(envelope, VtEvent, "")
        assert built.SerializeToString(deterministic=True) == parsed.SerializeToString(deterministic=True)
        assert list(built.baggage.items()) == list(parsed.baggage.items())
        assert built.HasField("core") == parsed.HasField("core")
        assert built.HasField("trace") == parsed.HasField("trace")


def outcome(body: bytes, content_type: str | None, routing_key: str | None) -> Any:
    with capture_logs() as logs:
        try:
            result: ParsedEvent | Exception = parse_event(body, content_type, routing_key=routing_key)
        except (InvalidEvent, NotOurEvent) as exc:
            result = exc
    return described(result), [entry["event"] for entry in logs]


def described(result: ParsedEvent | Exception) -> Any:
    if isinstance(result, InvalidEvent):
        return ("invalid", result.field, result.reason, result.notification_id, result.event_type)
    if isinstance(result, NotOurEvent):
        return ("not ours", result.type_name)
    assert isinstance(result, ParsedEvent)
    return ("parsed", result, json.dumps(result.payload), json.dumps(result.core))


def binary(event: dict[str, Any]) -> bytes:
    return to_binary(json_format.ParseDict(event, VtEvent()))


def test_the_bench_mix_takes_the_fast_path_and_agrees() -> None:
    for item in MIX:
        envelope, payload, message_class = split(item.event)
        assert plain_from_json(payload, message_class) is not None
        assert fields_from_json(envelope, VtEvent) is not None
        assert_fast_agrees(envelope, payload, message_class)


def test_json_binary_and_dict_give_the_same_parsed_event_on_the_bench_mix() -> None:
    for item in MIX:
        as_json = outcome(json.dumps(item.event).encode(), "application/json", item.routing_key)
        assert as_json[0][0] == "parsed"
        assert outcome(binary(item.event), "application/x-protobuf", item.routing_key) == as_json
        assert described(parse_event_dict(item.event)) == as_json[0]


def test_without_core_id_json_and_binary_derive_the_same_id_on_the_bench_mix() -> None:
    # The JSON fast path has no message to digest; it must build the one the canonical path would.
    for item in MIX[:60]:
        event = copy.deepcopy(item.event)
        event["core"]["id"] = ""
        as_json = outcome(json.dumps(event).encode(), "application/json", item.routing_key)
        assert as_json[0][1].notification_id.startswith("derived-")
        assert as_json[1] == ["event.core_id_missing"]
        assert outcome(binary(event), "application/x-protobuf", item.routing_key) == as_json


# Both spellings of fields, extension-looking keys and unknown ones.
KEYS = st.sampled_from(
    ["id", "core", "trace", "baggage", "traceContext", "trace_context", "serviceName", "service_name",
     "toEmail", "to_email", "placeHolders", "place_holders", "mentions", "mentionDate", "mention_date",
     "snippets", "fromAddress", "from_address", "body", "toNumber", "[ext]", "[a.b]", "unknown"]
) | st.text(max_size=8)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(
        ["", "1764064860", "-1", "+5", " 5", "1_0", "007", "1e3", "9" * 25, "\ud800", "\ud83d\ude00", "\x00"]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@FUZZ
@given(data=st.data(), value=JSON_VALUES, add=st.booleans(), key=KEYS)
def test_a_mutated_document_is_declined_or_mapped_as_the_canonical_path_maps_it(
    data: st.DataObject, value: Any, add: bool, key: str
) -> None:
    event = copy.deepcopy(data.draw(st.sampled_from(MIX[:30])).event)
    if add:
        containers = [path for path in paths(event) if isinstance(at(event, path), dict)]
        at(event, data.draw(st.sampled_from([(), *containers])))[key] = value
    else:
        path = data.draw(st.sampled_from(paths(event)))
        at(event, path[:-1])[path[-1]] = value
    try:
        assert_fast_agrees(*split(event))
    except InvalidEvent:
        pytest.fail("the fast path accepted what the canonical path refuses")


# Values the fast path must decline or get exactly right: ParseDict's leniencies and refusals.
ODD_VALUES: list[Any] = [
    None, {}, [], [None], [{}], True, 0, -1, 2**63, 1.0, 1.5, float("inf"), "", " 5", "\t5", "+5", "1_0",
    "007", "-0", "1e3", "5.0", "9" * 19, "9" * 25, "\u0665", "\ud800", "\ud83d\ude00", "\x00", "x" * 70_000,
    {"@type": "x"}, {"[ext]": 1}, {"a": None}, {"a": 1},
]  # fmt: skip


def with_trace(event: dict[str, Any]) -> dict[str, Any]:
    """The event with baggage and a trace, so that the envelope's maps get edited too."""
    return {**event, "baggage": {"k": "v"}, "trace": {"traceContext": {"a": "b"}, "serviceName": "s"}}


# The smallest event of each kind in the mix (a mention email with one mention), with a trace.
SMALLEST = {
    kind: with_trace(min((item.event for item in MIX if item.kind == kind), key=lambda e: len(json.dumps(e))))
    for kind in ("BasicEmail", "SMSNotification", "MentionEmailGenerated")
}
# The second spelling of a field (ParseDict takes both, merging or overwriting), and an extension key.
SPELLINGS = [
    "to_email",
    "place_holders",
    "mention_date",
    "from_address",
    "to_number",
    "trace_context",
    "[ext]",
]


def odd_edits() -> list[tuple[str, tuple[Any, ...], Any]]:
    """(kind, path, value): every field of each kind's smallest event set to each odd value, or added."""
    edits = []
    for kind, event in SMALLEST.items():
        targets = [path for path in paths(event) if path[-1] != "@type"]
        containers = [path for path in paths(event) if isinstance(at(event, path), dict)]
        for value in ODD_VALUES:
            edits += [(kind, path, value) for path in targets]
            edits += [(kind, (*path, key), value) for path in containers for key in SPELLINGS]
    return edits


def test_odd_values_anywhere_are_declined_or_mapped_as_the_canonical_path_maps_them() -> None:
    for kind, path, value in odd_edits():
        event = copy.deepcopy(SMALLEST[kind])
        at(event, path[:-1])[path[-1]] = copy.deepcopy(value)
        try:
            assert_fast_agrees(*split(event))
        except InvalidEvent:
            pytest.fail(
                f"the fast path accepted what the canonical path refuses: {kind} {path} {value!r:.40}"
            )


@FUZZ
@given(url=st.from_regex(_PLAIN_WEB_URL, fullmatch=True))
def test_what_the_link_regex_accepts_the_full_check_accepts(url: str) -> None:
    assert _is_web_url_parsed(url)
