"""The hostile classes of test_hostile_fields.py, widened with hypothesis, in process.

The path is the real one minus the broker: intake (``parse_event`` on the bytes a producer
publishes), the real Composer with the shipped templates, and the real outbox provider, MIME
builder and Mandrill request builder. Every property holds for every generated input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.factories import sms
from tests.security.hostile import (
    HEADER_FIELDS,
    ONE_URI,
    as_bus_message,
    build,
    display_names,
    from_mailboxes,
    line_breaking,
    link_tails,
    parse_email,
    path_like_ids,
    put,
    unsafe_attributes,
)
from workers.compose import Composer
from workers.errors import InvalidEvent
from workers.events import ParsedEvent, parse_event
from workers.ids import ID_RULE, is_usable_id, safe_name
from workers.messages import EmailMessage, SmsMessage
from workers.providers.mandrill import build_send_request
from workers.providers.mime import ADDRESS_HEADERS, build_mime
from workers.providers.outbox import OutboxProvider
from workers.rendering import TemplateStore, default_templates_dir, mention_template_data

SENDER = "alerts@example.com"
COMPOSER = Composer(TemplateStore(default_templates_dir()), mention_template_data)
CHECKS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _intake(event: dict[str, Any]) -> ParsedEvent | InvalidEvent:
    body, content_type, key = as_bus_message(event)
    try:
        return parse_event(body, content_type, routing_key=key)
    except InvalidEvent as exc:
        return exc


def _email(parsed: ParsedEvent) -> EmailMessage:
    return COMPOSER.email(parsed.notification_id, parsed.event_type, parsed.payload)


# -- ids ------------------------------------------------------------------------------------------


@CHECKS
@given(path_like_ids)
def test_an_id_is_either_refused_naming_core_id_or_safe_as_a_file_name(hostile: str) -> None:
    assume(hostile)  # an empty id gets a derived one (tests/events); the factory fills in a uuid
    result = _intake(sms(hostile))
    if isinstance(result, InvalidEvent):
        if result.field == "core.id":
            assert result.notification_id and result.notification_id.startswith("derived-")
            # The reason names the offending character, never the id itself.
            assert len(hostile) < 8 or hostile not in result.reason.replace(ID_RULE, "")
        return
    assert result.notification_id == hostile and is_usable_id(hostile)
    assert "/" not in hostile and "\\" not in hostile and not hostile.startswith(".")


@CHECKS
@given(st.text(min_size=1, max_size=300))
def test_the_outbox_writes_inside_its_folders_whatever_the_id(notification_id: str) -> None:
    # An id that skipped intake (an old row, a direct call) still cannot leave the outbox.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "outbox"
        provider = OutboxProvider(root)
        sms_receipt = provider.send_sms(SmsMessage(notification_id, "+14155550100", "+14155550199", "hi"))
        email_receipt = provider.send_email(
            EmailMessage(notification_id, SENDER, "person@example.org", "Hello", text="hi")
        )
        written = sorted(Path(d) / n for d, _, names in os.walk(tmp) for n in names)
        assert written == sorted(
            [
                root / "email" / f"{safe_name(notification_id)}.eml",
                root / "sms" / f"{safe_name(notification_id)}.json",
            ]
        )
        assert {email_receipt.provider_message_id, sms_receipt.provider_message_id} == {
            str(p) for p in written
        }
        message = parse_email(written[0].read_bytes())
        domain = message["From"].addresses[0].domain  # NOTIFY_MESSAGE_ID_DOMAIN unset: the sender's
        assert message["Message-ID"] == f"<{safe_name(notification_id)}@{domain}>"


# -- header fields ----------------------------------------------------------------------------------


@CHECKS
@given(st.sampled_from(HEADER_FIELDS), line_breaking, st.text(max_size=8), st.text(max_size=8))
def test_every_line_break_in_every_header_field_is_refused_naming_the_field(
    target: tuple[str, tuple[str | int, ...], str], char: str, before: str, after: str
) -> None:
    kind, path, name = target
    result = _intake(put(build(kind), path, f"{before}x{char}{after}"))
    assert isinstance(result, InvalidEvent)
    # An earlier problem in the random text (a NUL, another control) may be named first.
    assert result.field == name or (result.field.startswith("data") and "\x00" in before + after)


@CHECKS
@given(display_names)
def test_a_display_name_never_adds_a_mailbox_in_mime_or_mandrill(name: str) -> None:
    event = put(put(build("mention"), ("data", "fromName"), name), ("data", "fromEmail"), SENDER)
    result = _intake(event)
    if isinstance(result, InvalidEvent):
        assert result.field == "data.from_name", result
        return
    message = _email(result)
    mime = parse_email(build_mime(message).as_bytes())
    assert from_mailboxes(mime) == [SENDER], (name, str(mime["From"]))
    assert [a.addr_spec for a in mime["To"].addresses] == ["watcher@example.org"]
    assert all(mime.get_all(h) is None for h in ("Cc", "Bcc", "Sender"))
    _, body = build_send_request(message, "key")
    sent = body["message"]
    assert sent["from_email"] == SENDER and [r["email"] for r in sent["to"]] == ["watcher@example.org"]
    assert not ADDRESS_HEADERS & {h.lower() for h in sent["headers"]}


# -- links ----------------------------------------------------------------------------------------


@CHECKS
@given(link_tails)
def test_list_unsubscribe_holds_exactly_one_uri(tail: str) -> None:
    link = "https://u.example.com/" + tail
    event = put(build("mention"), ("data", "placeHolders", "mentions", 0, "unsubscribeLink"), link)
    result = _intake(event)
    if isinstance(result, InvalidEvent):
        assert result.field == "data.place_holders.mentions[0].unsubscribe_link"
        return
    message = _email(result)
    headers = parse_email(build_mime(message).as_bytes()).get_all("List-Unsubscribe") or []
    assert len(headers) == 1 and ONE_URI.fullmatch(str(headers[0]).strip()), headers
    _, body = build_send_request(message, "key")
    assert ONE_URI.fullmatch(body["message"]["headers"]["List-Unsubscribe"])


@CHECKS
@given(st.sampled_from(["inviteLink", "programImage", "logouri"]), st.text(max_size=12), link_tails)
def test_mention_links_are_refused_or_inert_in_the_html(field: str, scheme: str, tail: str) -> None:
    link = f"{scheme}:{tail}" if scheme else "https://x.example/" + tail
    assume(link)
    event = put(build("mention"), ("data", "placeHolders", "mentions", 0, field), link)
    result = _intake(event)
    if isinstance(result, InvalidEvent):
        return
    html = _email(result).html or ""
    assert unsafe_attributes(html) == [], link
    assert "<script" not in html.lower()


def test_the_header_rule_agrees_between_the_fast_json_path_and_binary() -> None:
    # The same hostile event as protobuf binary takes the full decoder: the verdict must not differ.
    from google.protobuf import json_format

    from workers.events import core_pb2

    for kind, path, name in HEADER_FIELDS:
        event = put(build(kind), path, "x\u2028y")
        binary = json_format.ParseDict(event, core_pb2.VtEvent()).SerializeToString()
        for body, content_type in ((as_bus_message(event)[0], "application/json"), (binary, None)):
            try:
                parse_event(body, content_type)
            except InvalidEvent as exc:
                assert exc.field == name
            else:
                raise AssertionError(f"{name} with U+2028 accepted ({content_type})")
