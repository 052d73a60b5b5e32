"""Event files and the shipped examples: encodings, routing keys, reproducibility, the invalid one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from events_samples import event, sms

from workers.errors import InvalidEvent
from workers.events import OUR_EVENT_TYPES, load_event_file, parse_event, to_binary, to_json_bytes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make_examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in {".json", ".pb"})


def test_examples_cover_each_type_in_each_encoding() -> None:
    seen = set()
    ids = set()
    for path in example_files(EXAMPLES):
        event = load_event_file(path)
        parsed = parse_event(event.body, event.content_type, routing_key=event.routing_key)
        assert parsed.event_type == event.routing_key
        seen.add((parsed.event_type, path.suffix))
        ids.add(parsed.notification_id)
    assert seen == {(t, s) for t in OUR_EVENT_TYPES for s in (".json", ".pb")}
    assert len(ids) == 6


def test_mention_examples_have_several_mentions_and_one_is_bulk() -> None:
    templates = []
    for path in example_files(EXAMPLES):
        event = load_event_file(path)
        parsed = parse_event(event.body, event.content_type)
        if parsed.template is not None:
            assert 2 <= len(parsed.payload["place_holders"]["mentions"]) <= 3
            templates.append(parsed.template)
    assert sorted(templates) == ["mention-notification", "mention-notification-bulk"]


def test_invalid_examples_are_rejected_with_a_named_field() -> None:
    files = example_files(EXAMPLES / "invalid")
    assert files
    for path in files:
        event = load_event_file(path)
        assert event.routing_key in OUR_EVENT_TYPES  # so the bus delivers it to the worker to reject
        with pytest.raises(InvalidEvent) as info:
            parse_event(event.body, event.content_type, routing_key=event.routing_key)
        assert info.value.field.startswith("data.")
        assert info.value.notification_id and not info.value.notification_id.startswith(("raw-", "derived-"))


def test_make_examples_reproduces_the_committed_files_byte_for_byte() -> None:
    module = make_examples()
    for name in module.EXAMPLES:
        assert (EXAMPLES / name).read_bytes() == module.render(name), name


def test_load_event_file_picks_content_type_by_suffix(tmp_path: Path) -> None:
    source = load_event_file(EXAMPLES / "sms_notification.pb")
    (tmp_path / "e.PB").write_bytes(source.body)
    loaded = load_event_file(tmp_path / "e.PB")
    assert (loaded.content_type, loaded.routing_key) == ("application/x-protobuf", "events.SMSNotification")
    json_file = load_event_file(EXAMPLES / "basic_email.json")
    assert (json_file.content_type, json_file.routing_key) == ("application/json", "events.BasicEmail")


def test_routing_key_is_read_even_when_the_rest_of_the_event_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"core": 5, "data": {"@type": "type.googleapis.com/events.BasicEmail"}}))
    assert load_event_file(path).routing_key == "events.BasicEmail"


@pytest.mark.parametrize("content", [b"", b"\xff\x00garbage", b"[1, 2]", b'{"data": 3}'])
def test_unreadable_payload_type_gives_an_empty_routing_key(tmp_path: Path, content: bytes) -> None:
    for suffix in (".json", ".pb"):
        path = tmp_path / f"e{suffix}"
        path.write_bytes(content)
        assert load_event_file(path).routing_key == ""


def test_missing_file_and_unknown_suffix_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidEvent) as missing:
        load_event_file(tmp_path / "absent.json")
    assert "cannot read" in str(missing.value)
    (tmp_path / "e.txt").write_text("{}")
    with pytest.raises(InvalidEvent) as suffix:
        load_event_file(tmp_path / "e.txt")
    assert ".json or .pb" in str(suffix.value)


def test_json_and_binary_examples_round_trip_through_the_encoders() -> None:
    module = make_examples()
    valid = [builder for name, (builder, _) in module.EXAMPLES.items() if not name.startswith("invalid/")]
    assert len(valid) == 6
    for builder in valid:
        message = builder()
        assert parse_event(to_binary(message), None) == parse_event(to_json_bytes(message), None)


def test_routing_key_of_a_binary_file_that_only_looks_like_json(tmp_path: Path) -> None:
    message = event(sms(), event_id="")
    message.core.token_id = "t" * (123 - len(message.core.SerializeToString()) - 2)
    body = to_binary(message)
    assert body.startswith(b"\n{")
    assert load_event_file(_write(tmp_path / "e.pb", body)).routing_key == "events.SMSNotification"


def _write(path: Path, body: bytes) -> Path:
    path.write_bytes(body)
    return path
