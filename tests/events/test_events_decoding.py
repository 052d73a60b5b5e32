"""Decoding: both encodings, both JSON name styles, content types, routing keys and ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from events_samples import EVENT_ID, basic_email, event, mention, sms
from google.protobuf.message import Message

from workers.errors import InvalidEvent, NotOurEvent
from workers.events import (
    DEFAULT_TEMPLATES,
    OUR_EVENT_TYPES,
    ParsedEvent,
    build_event,
    derived_id,
    event_to_dict,
    parse_event,
    parse_event_dict,
    parse_timestamp,
    raw_id,
    to_binary,
    to_json_bytes,
)
from workers.events.core_pb2 import Core, VtEvent
from workers.messages import Channel

PAYLOADS: dict[str, Message] = {
    "events.BasicEmail": basic_email(),
    "events.SMSNotification": sms(),
    "events.MentionEmailGenerated": mention(),
}
RECIPIENTS = {
    "events.BasicEmail": "person@example.org",
    "events.SMSNotification": "+14155550199",
    "events.MentionEmailGenerated": "reader@example.org",
}
CHANNELS = {
    "events.BasicEmail": Channel.EMAIL,
    "events.SMSNotification": Channel.SMS,
    "events.MentionEmailGenerated": Channel.EMAIL,
}


def encodings(message: VtEvent) -> dict[str, tuple[bytes, str]]:
    return {
        "binary": (to_binary(message), "application/x-protobuf"),
        "json-snake": (to_json_bytes(message), "application/json"),
        "json-camel": (to_json_bytes(message, camel_case=True), "application/json"),
    }


@pytest.mark.parametrize("encoding", ["binary", "json-snake", "json-camel"])
@pytest.mark.parametrize("type_name", sorted(PAYLOADS))
def test_each_type_decodes_from_each_encoding(type_name: str, encoding: str) -> None:
    body, content_type = encodings(event(PAYLOADS[type_name]))[encoding]
    parsed = parse_event(body, content_type, routing_key=type_name)
    assert parsed.notification_id == EVENT_ID
    assert parsed.event_type == type_name
    assert parsed.channel is CHANNELS[type_name]
    assert parsed.recipient == RECIPIENTS[type_name]
    assert parsed.baggage == {"tenant": "acme", "request-id": "r-1"}
    assert parsed.trace_context == {"uber-trace-id": "1:2:0:1"}
    assert parsed.occurred_at == datetime(2025, 11, 25, 9, 30, tzinfo=UTC)
    assert parsed.core["id"] == EVENT_ID
    assert set(parsed.core) == {
        "id", "name", "timestamp", "type", "service_name", "application_id",
        "event_id", "organization_id", "user_id", "token_id",
    }  # fmt: skip
    json.dumps(parsed.payload)  # JSON-serialisable as promised


@pytest.mark.parametrize("type_name", sorted(PAYLOADS))
def test_all_encodings_give_the_same_parsed_event(type_name: str) -> None:
    results = {
        name: parse_event(body, content_type)
        for name, (body, content_type) in encodings(event(PAYLOADS[type_name])).items()
    }
    assert results["binary"] == results["json-snake"] == results["json-camel"]


def test_payload_has_every_field_with_proto_names() -> None:
    parsed = parse_event(to_binary(event(basic_email(reply_to="", body_html=""))), None)
    assert parsed.payload == {
        "from_address": "sender@example.com",
        "to_address": "person@example.org",
        "subject": "Hello",
        "body": "Plain body",
        "reply_to": "",
        "body_html": "",
    }
    assert parsed.template is None


def test_mention_payload_is_canonical() -> None:
    parsed = parse_event(to_json_bytes(event(mention(merge_language="mandril"))), "application/json")
    assert parsed.template == "mention-notification-bulk"
    assert parsed.payload["merge_language"] == "mailchimp"
    mentions = parsed.payload["place_holders"]["mentions"]
    assert len(mentions) == 2
    assert mentions[0]["mention_date"] == 1764064800  # an int, though proto3 JSON carries it as a string
    assert set(mentions[0]) == {
        "tracking_unit_name", "program_name", "program_image", "mention_date", "snippets", "invite_link",
        "via", "logouri", "creator_email", "unsubscribe_hash", "unsubscribe_link",
    }  # fmt: skip


def hand_written_json(**data: Any) -> dict[str, Any]:
    return {
        "core": {"id": "evt-1", "serviceName": "svc", "application_id": "system"},
        "trace": {"traceContext": {"a": "1"}, "trace_tags": {"b": "2"}, "serviceName": "svc"},
        "baggage": {"k": "v"},
        "data": {"@type": "type.googleapis.com/events.SMSNotification", **data},
    }


def test_json_accepts_camel_and_snake_names_mixed_and_maps_as_objects() -> None:
    body = json.dumps(
        hand_written_json(fromNumber="+14155550100", to_number="+14155550199", message="hi")
    ).encode()
    parsed = parse_event(body, "application/json")
    assert parsed.payload == {"from_number": "+14155550100", "to_number": "+14155550199", "message": "hi"}
    assert parsed.core["service_name"] == "svc"
    assert parsed.core["application_id"] == "system"
    assert parsed.trace_context == {"a": "1"}
    assert parsed.baggage == {"k": "v"}


def test_json_ignores_unknown_fields_for_forward_compatibility() -> None:
    doc = hand_written_json(fromNumber="+14155550100", toNumber="+14155550199", message="hi", newField=1)
    doc["core"]["futureThing"] = {"x": [1, 2]}
    doc["somethingElse"] = True
    parsed = parse_event(json.dumps(doc).encode(), "application/json")
    assert parsed.payload["message"] == "hi"


def test_int64_mention_date_accepted_as_number_or_string() -> None:
    doc = json.loads(to_json_bytes(event(mention())))
    doc["data"]["place_holders"]["mentions"][0]["mention_date"] = 1764064800
    doc["data"]["place_holders"]["mentions"][1]["mentionDate"] = "1764064801"
    del doc["data"]["place_holders"]["mentions"][1]["mention_date"]
    parsed = parse_event_dict(doc)
    dates = [m["mention_date"] for m in parsed.payload["place_holders"]["mentions"]]
    assert dates == [1764064800, 1764064801]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON;charset="UTF-8"',
        "application/cloudevents+json",
        None,
        "",
        "application/octet-stream",
    ],
)
def test_json_content_types(content_type: str | None) -> None:
    assert parse_event(to_json_bytes(event(sms())), content_type).notification_id == EVENT_ID


@pytest.mark.parametrize(
    "content_type",
    ["application/x-protobuf", "application/protobuf", "application/x-protobuf; proto=events.VtEvent", None],
)
def test_binary_content_types(content_type: str | None) -> None:
    assert parse_event(to_binary(event(sms())), content_type).notification_id == EVENT_ID


def test_sniffing_tolerates_whitespace_and_bom_before_json() -> None:
    body = b"\xef\xbb\xbf \n\t" + to_json_bytes(event(sms()))
    assert parse_event(body, None).event_type == "events.SMSNotification"


def test_sniffing_falls_back_to_binary_when_bytes_only_look_like_json() -> None:
    # A core of exactly 123 bytes serializes as 0x0a 0x7b, i.e. "\n{": looks like JSON, is not.
    message = event(sms(), event_id="")
    filler = 123 - len(message.core.SerializeToString()) - 2
    message.core.token_id = "t" * filler
    assert len(message.core.SerializeToString()) == 123
    body = to_binary(message)
    assert body.startswith(b"\n{")
    assert parse_event(body, None).event_type == "events.SMSNotification"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/json; charset=latin-1"]
)
def test_unsupported_content_types_are_invalid(content_type: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(to_json_bytes(event(sms())), content_type)
    assert "content type" in str(info.value)


def test_declared_json_that_is_binary_is_invalid() -> None:
    with pytest.raises(InvalidEvent):
        parse_event(to_binary(event(sms())), "application/json")


# -- routing keys: ours, foreign, absent ----------------------------------------------------------


def foreign_event_json() -> bytes:
    doc = {
        "core": {"id": "f-1"},
        "data": {"@type": "type.googleapis.com/events.LoginFailed", "user_name": "x", "ip": "10.0.0.1"},
    }
    return json.dumps(doc).encode()


def foreign_event_binary() -> bytes:
    message = VtEvent(core=Core(id="f-1"))
    message.data.type_url = "type.googleapis.com/events.LoginFailed"
    message.data.value = b"\n\x01x"
    return to_binary(message)


@pytest.mark.parametrize("body", [foreign_event_json(), foreign_event_binary()], ids=["json", "binary"])
@pytest.mark.parametrize("routing_key", [None, "events.LoginFailed", "#"])
def test_foreign_type_is_not_our_event(body: bytes, routing_key: str | None) -> None:
    with pytest.raises(NotOurEvent) as info:
        parse_event(body, None, routing_key=routing_key)
    assert info.value.type_name == "events.LoginFailed"


@pytest.mark.parametrize("body", [foreign_event_json(), foreign_event_binary()], ids=["json", "binary"])
def test_foreign_type_under_our_routing_key_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(body, None, routing_key="events.BasicEmail")
    assert info.value.field == "data"
    assert info.value.notification_id == "f-1"
    assert info.value.event_type == "events.BasicEmail"


def test_other_of_our_types_under_a_routing_key_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(to_binary(event(basic_email())), None, routing_key="events.SMSNotification")
    assert info.value.field == "data"
    assert info.value.notification_id == EVENT_ID
    assert info.value.event_type == "events.SMSNotification"


def test_our_type_under_a_foreign_routing_key_is_still_parsed() -> None:
    # The payload's type decides; a routing key only ever claims an event, it never disowns one.
    parsed = parse_event(to_binary(event(sms())), None, routing_key="events.Other")
    assert parsed.event_type == "events.SMSNotification"


def test_undecodable_payload_of_our_type_is_invalid_with_the_envelope_id() -> None:
    message = VtEvent(core=Core(id="bad-payload-1"))
    message.data.type_url = "type.googleapis.com/events.BasicEmail"
    message.data.value = b"\xff\xff\xff"
    with pytest.raises(InvalidEvent) as info:
        parse_event(to_binary(message), "application/x-protobuf")
    assert (info.value.field, info.value.notification_id) == ("data", "bad-payload-1")
    assert info.value.event_type == "events.BasicEmail"


@pytest.mark.parametrize("routing_key", ["events.BasicEmail", None])
def test_event_without_data_is_invalid(routing_key: str | None) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(to_binary(VtEvent(core=Core(id="no-data"))), None, routing_key=routing_key)
    assert info.value.field == "data"
    assert info.value.notification_id == "no-data"
    assert info.value.event_type == routing_key


def test_json_data_without_type_is_invalid() -> None:
    body = json.dumps({"core": {"id": "x"}, "data": {"to_number": "+14155550199"}}).encode()
    with pytest.raises(InvalidEvent) as info:
        parse_event(body, "application/json", routing_key="events.SMSNotification")
    assert info.value.field == "data"
    assert "@type" in info.value.reason


@pytest.mark.parametrize("routing_key", ["events.SMSNotification", None, "events.LoginFailed"])
def test_undecodable_bytes_get_a_raw_id(routing_key: str | None) -> None:
    body = b"\xff\xfe not an event at all"
    with pytest.raises(InvalidEvent) as info:
        parse_event(body, None, routing_key=routing_key)
    assert info.value.notification_id == raw_id(body)
    assert info.value.notification_id.startswith("raw-")
    assert len(info.value.notification_id) == len("raw-") + 32
    assert info.value.event_type == (routing_key if routing_key in OUR_EVENT_TYPES else None)
    # A redelivery of the same bytes collapses onto the same id.
    with pytest.raises(InvalidEvent) as again:
        parse_event(body, None, routing_key=routing_key)
    assert again.value.notification_id == info.value.notification_id


def test_invalid_json_gets_a_raw_id() -> None:
    body = b'{"core": {"id": "x"}, "data": '
    with pytest.raises(InvalidEvent) as info:
        parse_event(body, "application/json", routing_key="events.BasicEmail")
    assert info.value.notification_id == raw_id(body)
    assert info.value.event_type == "events.BasicEmail"


def test_oversized_body_is_invalid() -> None:
    from workers.events import MAX_EVENT_BYTES

    with pytest.raises(InvalidEvent) as info:
        parse_event(b"{" + b" " * MAX_EVENT_BYTES + b"}", None)
    assert "limit" in info.value.reason


# -- ids ----------------------------------------------------------------------------------------


def test_missing_core_id_gets_a_stable_derived_id_across_encodings(caplog: pytest.LogCaptureFixture) -> None:
    message = event(sms(), event_id="")
    ids = {parse_event(body, ct).notification_id for body, ct in encodings(message).values()}
    assert len(ids) == 1
    (only,) = ids
    assert only.startswith("derived-") and len(only) == len("derived-") + 32
    assert only == derived_id("events.SMSNotification", sms())
    # Another timestamp or baggage (a redelivery by a different hop) is still the same notification...
    other = event(sms(), event_id="", timestamp="Wed, 26 Nov 2025 10:00:00 +0000")
    assert parse_event(to_binary(other), None).notification_id == only
    # ...while a different payload or type is not.
    assert parse_event(to_binary(event(sms(message="other"), event_id="")), None).notification_id != only
    assert derived_id("events.BasicEmail", sms()) != only


def test_missing_core_id_logs_a_warning_without_personal_data() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        parsed = parse_event(to_binary(event(sms(), event_id="")), None)
    warnings = [entry for entry in logs if entry["event"] == "event.core_id_missing"]
    assert warnings and warnings[0]["log_level"] == "warning"
    assert warnings[0]["notification_id"] == parsed.notification_id
    assert "+14155550199" not in repr(logs)


@pytest.mark.parametrize(
    "bad_id",
    [
        "has space",
        "x" * 129,
        "tab\there",
        "ünï",
        "/etc/cron.d/x",
        "../../x",
        "a/b",
        "..\\x",
        "..",
        ".",
        ".hidden",
        "a..b",
        "end.",
        "CON",
        "nul.eml",
        "com1",
        "a<b>@c",
        "a:b",
        "100%",
    ],
)
def test_unusable_core_id_is_invalid(bad_id: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(to_binary(event(sms(), event_id=bad_id)), None)
    assert info.value.field == "core.id"
    assert info.value.reason.startswith("is not a usable id: it ")
    assert info.value.notification_id == derived_id("events.SMSNotification", sms())


@pytest.mark.parametrize(
    "good_id",
    ["3f1c2b8e-9d4a-4c1e-8f00-1a2b3c4d5e6f", "01HZX3K5T8M9Q2R7", "0" * 128, "evt_a.b+c=d~e", "CONSOLE"],
)
def test_usual_ids_are_kept(good_id: str) -> None:
    assert parse_event(to_binary(event(sms(), event_id=good_id)), None).notification_id == good_id


# -- timestamps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 25 Nov 2025 09:30:00 +0000", datetime(2025, 11, 25, 9, 30, tzinfo=UTC)),
        ("Tue, 25 Nov 2025 11:30:00 +0200", datetime(2025, 11, 25, 9, 30, tzinfo=UTC)),
        ("Tue, 25 Nov 2025 09:30:00 GMT", datetime(2025, 11, 25, 9, 30, tzinfo=UTC)),
        ("2025-11-25T09:30:00Z", datetime(2025, 11, 25, 9, 30, tzinfo=UTC)),
        ("2025-11-25T04:30:00-05:00", datetime(2025, 11, 25, 9, 30, tzinfo=UTC)),
        ("2025-11-25T09:30:00.250Z", datetime(2025, 11, 25, 9, 30, 0, 250000, tzinfo=UTC)),
        ("", None),
        ("yesterday", None),
        ("Tue, 99 Nov 2025 09:30:00 +0000", None),
    ],
)
def test_parse_timestamp(value: str, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


def test_unparseable_timestamp_is_not_a_rejection() -> None:
    parsed = parse_event(to_binary(event(sms(), timestamp="not a time")), None)
    assert parsed.occurred_at is None


# -- dict input and helpers ---------------------------------------------------------------------


def test_parse_event_dict_matches_parse_event() -> None:
    message = event(mention())
    assert parse_event_dict(event_to_dict(message)) == parse_event(to_binary(message), None)
    assert parse_event_dict(event_to_dict(message, camel_case=True)) == parse_event(to_binary(message), None)


def test_parse_event_dict_refuses_wrong_types_with_a_raw_id() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event_dict({"core": {"id": ["a"]}, "data": {}})
    assert info.value.field == "core.id"
    assert info.value.notification_id is not None and info.value.notification_id.startswith("raw-")


def test_event_to_dict_from_bytes_round_trips() -> None:
    message = event(basic_email())
    from_binary = event_to_dict(to_binary(message), "application/x-protobuf")
    from_json = event_to_dict(to_json_bytes(message))
    assert from_binary == from_json == event_to_dict(message)
    assert from_binary["data"]["@type"] == "type.googleapis.com/events.BasicEmail"


def test_event_to_dict_passes_invalid_json_events_through_unvalidated() -> None:
    doc = json.loads(to_json_bytes(event(sms(to_number="+12"))))
    assert event_to_dict(json.dumps(doc).encode(), "application/json") == doc


def test_build_event_fills_id_and_timestamp_like_the_messaging_library() -> None:
    first, second = build_event(sms()), build_event(sms())
    assert first.core.id and second.core.id and first.core.id != second.core.id
    assert parse_timestamp(first.core.timestamp) is not None
    assert build_event(sms(), core={"id": ""}).core.id == ""


def test_templates_argument_limits_mention_templates() -> None:
    body = to_binary(event(mention(template="custom-digest")))
    with pytest.raises(InvalidEvent):
        parse_event(body, None)
    parsed = parse_event(body, None, templates=DEFAULT_TEMPLATES | {"custom-digest"})
    assert parsed.template == "custom-digest"


def test_parsed_event_is_frozen() -> None:
    parsed = parse_event(to_binary(event(sms())), None)
    assert isinstance(parsed, ParsedEvent)
    with pytest.raises(AttributeError):
        parsed.notification_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("core", "baggage", "field"),
    [
        ({"name": "a\x00b"}, {}, "core.name"),
        ({}, {"k": "v\x00"}, "baggage"),
        ({}, {"k\x00": "v"}, "baggage"),
        ({"user_id": "u" * 8193}, {}, "core.user_id"),
    ],
)
def test_stored_envelope_values_must_fit_a_text_column(
    core: dict[str, str], baggage: dict[str, str], field: str
) -> None:
    message = event(sms(), **core)
    message.baggage.update(baggage)
    with pytest.raises(InvalidEvent) as info:
        parse_event(to_binary(message), None)
    assert info.value.field == field
    assert info.value.notification_id == EVENT_ID


def test_broken_events_without_ids_do_not_collapse_onto_one_row() -> None:
    first = to_binary(VtEvent(core=Core(name="one")))
    second = to_binary(VtEvent(core=Core(name="two")))
    ids = set()
    for body in (first, second, first):
        with pytest.raises(InvalidEvent) as info:
            parse_event(body, None, routing_key="events.BasicEmail")
        assert info.value.notification_id is not None
        ids.add(info.value.notification_id)
    assert len(ids) == 2
