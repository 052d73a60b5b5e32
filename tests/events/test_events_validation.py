"""Validation: each rule with a bad input, the field it names, and what a valid payload becomes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from events_samples import EVENT_ID, basic_email, event, mention, mention_item, sms
from google.protobuf.message import Message
from structlog.testing import capture_logs

from workers.errors import InvalidEvent
from workers.events import parse_event, to_binary, to_json_bytes
from workers.events.mention_notification_pb2 import MentionEmailGenerated


def rejection(payload: Message, *, as_json: bool = False) -> InvalidEvent:
    message = event(payload)
    body = to_json_bytes(message) if as_json else to_binary(message)
    with pytest.raises(InvalidEvent) as info:
        parse_event(body, None)
    return info.value


def holders(*mentions: MentionEmailGenerated.Mention, **fields: Any) -> MentionEmailGenerated.PlaceHolders:
    return MentionEmailGenerated.PlaceHolders(
        tracking_unit_name=fields.get("tracking_unit_name", "Watchlist A"),
        logouri=fields.get("logouri", ""),
        mentions=list(mentions),
    )


LONG_LOCAL = "a" * 65 + "@example.com"
LONG_DOMAIN = "a@" + ".".join(["b" * 60] * 5) + ".com"

# (id, payload, field named in the error, personal value that must not be echoed or None)
CASES: list[tuple[str, Message, str, str | None]] = [
    # BasicEmail: required fields and address syntax
    ("email-from-missing", basic_email(from_address=""), "data.from_address", None),
    ("email-to-missing", basic_email(to_address=""), "data.to_address", None),
    ("email-to-blank", basic_email(to_address="  "), "data.to_address", None),
    ("email-to-no-at", basic_email(to_address="person.example.org"), "data.to_address", "person.example.org"),
    ("email-to-two-ats", basic_email(to_address="a@b@example.org"), "data.to_address", "a@b@example.org"),
    ("email-to-dotless", basic_email(to_address="root@localhost"), "data.to_address", "root@localhost"),
    (
        "email-to-double-dot",
        basic_email(to_address="a..b@example.org"),
        "data.to_address",
        "a..b@example.org",
    ),
    ("email-to-ip", basic_email(to_address="a@192.0.2.1"), "data.to_address", "a@192.0.2.1"),
    ("email-to-hyphen-label", basic_email(to_address="a@-x.example"), "data.to_address", "a@-x.example"),
    (
        "email-to-display-name",
        basic_email(to_address="Ana <ana@example.org>"),
        "data.to_address",
        "ana@example.org",
    ),
    (
        "email-to-space",
        basic_email(to_address="ana lima@example.org"),
        "data.to_address",
        "ana lima@example.org",
    ),
    ("email-local-too-long", basic_email(to_address=LONG_LOCAL), "data.to_address", LONG_LOCAL),
    ("email-domain-too-long", basic_email(to_address=LONG_DOMAIN), "data.to_address", LONG_DOMAIN),
    ("email-from-invalid", basic_email(from_address="sender@"), "data.from_address", "sender@"),
    ("email-reply-to-invalid", basic_email(reply_to="replies"), "data.reply_to", "replies"),
    ("email-subject-missing", basic_email(subject=""), "data.subject", None),
    ("email-subject-blank", basic_email(subject="   "), "data.subject", None),
    ("email-subject-too-long", basic_email(subject="s" * 999), "data.subject", None),
    ("email-no-body", basic_email(body="", body_html=""), "data.body", None),
    ("email-blank-bodies", basic_email(body=" \n", body_html="\t"), "data.body", None),
    ("email-body-too-long", basic_email(body="b" * (5 * 1024 * 1024 + 1)), "data.body", None),
    ("email-nul-in-body", basic_email(body="a\x00b"), "data.body", None),
    # BasicEmail: header injection
    ("email-subject-lf", basic_email(subject="Hi\nBcc: x@example.com"), "data.subject", "x@example.com"),
    ("email-subject-cr", basic_email(subject="Hi\rthere"), "data.subject", None),
    (
        "email-to-crlf",
        basic_email(to_address="a@example.org\r\nBcc: b@example.org"),
        "data.to_address",
        "b@example.org",
    ),
    ("email-from-lf", basic_email(from_address="sender@example.com\n"), "data.from_address", None),
    ("email-reply-to-lf", basic_email(reply_to="r@example.com\nX: y"), "data.reply_to", "r@example.com"),
    # SMS
    ("sms-to-short", sms(to_number="+12"), "data.to_number", "+12"),
    ("sms-to-no-plus", sms(to_number="14155550199"), "data.to_number", "14155550199"),
    ("sms-to-leading-zero", sms(to_number="+04155550199"), "data.to_number", "+04155550199"),
    ("sms-to-too-long", sms(to_number="+1234567890123456"), "data.to_number", "+1234567890123456"),
    ("sms-to-formatted", sms(to_number="+1 415 555 0199"), "data.to_number", "+1 415 555 0199"),
    ("sms-to-letters", sms(to_number="+1415555ABCD"), "data.to_number", "+1415555ABCD"),
    (
        "sms-to-arabic-digits",
        sms(to_number="+\u0661\u0664\u0661\u0665\u0665\u0665\u0660\u0661\u0669\u0669"),
        "data.to_number",
        None,
    ),
    ("sms-to-messaging-service", sms(to_number="MG" + "a" * 32), "data.to_number", None),
    ("sms-to-missing", sms(to_number=""), "data.to_number", None),
    ("sms-from-missing", sms(from_number=""), "data.from_number", None),
    ("sms-from-bad", sms(from_number="+12"), "data.from_number", "+12"),
    ("sms-from-bad-sid", sms(from_number="MG" + "z" * 32), "data.from_number", None),
    ("sms-from-short-sid", sms(from_number="MG" + "a" * 31), "data.from_number", None),
    ("sms-message-missing", sms(message=""), "data.message", None),
    ("sms-message-blank", sms(message="  "), "data.message", None),
    ("sms-message-nul", sms(message="a\x00"), "data.message", None),
    ("sms-message-absurd", sms(message="m" * (64 * 1024 + 1)), "data.message", None),
    # MentionEmailGenerated
    ("mention-event", mention(event="mention_generated"), "data.event", None),
    ("mention-event-empty", mention(event=""), "data.event", None),
    ("mention-type", mention(type="email"), "data.type", None),
    ("mention-to-missing", mention(to_email=""), "data.to_email", None),
    ("mention-to-invalid", mention(to_email="reader"), "data.to_email", "reader"),
    ("mention-to-lf", mention(to_email="reader@example.org\n"), "data.to_email", None),
    (
        "mention-from-invalid",
        mention(from_email="alerts@@example.com"),
        "data.from_email",
        "alerts@@example.com",
    ),
    (
        "mention-from-name-lf",
        mention(from_name="Alerts\r\nBcc: x@example.com"),
        "data.from_name",
        "x@example.com",
    ),
    ("mention-from-name-long", mention(from_name="n" * 257), "data.from_name", None),
    ("mention-template-missing", mention(template=""), "data.template", None),
    ("mention-template-unknown", mention(template="welcome"), "data.template", None),
    ("mention-merge-language", mention(merge_language="jinja"), "data.merge_language", None),
    ("mention-no-place-holders", mention(place_holders=None), "data.place_holders.mentions", None),
    ("mention-no-mentions", mention(mentions=0), "data.place_holders.mentions", None),
    (
        "mention-too-many",
        mention(place_holders=holders(*[mention_item()] * 1001)),
        "data.place_holders.mentions",
        None,
    ),
    (
        "mention-tracking-unit-lf",
        mention(place_holders=holders(mention_item(), tracking_unit_name="A\nB")),
        "data.place_holders.tracking_unit_name",
        None,
    ),
    (
        "mention-holders-logo-js",
        mention(place_holders=holders(mention_item(), logouri="javascript:alert(1)")),
        "data.place_holders.logouri",
        None,
    ),
    (
        "mention-date-negative",
        mention(place_holders=holders(mention_item(), mention_item(mention_date=-1))),
        "data.place_holders.mentions[1].mention_date",
        None,
    ),
    (
        "mention-date-far-future",
        mention(place_holders=holders(mention_item(mention_date=10**12))),
        "data.place_holders.mentions[0].mention_date",
        None,
    ),
    (
        "mention-invite-link-js",
        mention(place_holders=holders(mention_item(invite_link="javascript:alert(1)"))),
        "data.place_holders.mentions[0].invite_link",
        None,
    ),
    (
        "mention-image-relative",
        mention(place_holders=holders(mention_item(program_image="/img/1.png"))),
        "data.place_holders.mentions[0].program_image",
        None,
    ),
    (
        "mention-unsubscribe-no-host",
        mention(place_holders=holders(mention_item(unsubscribe_link="https:///u/1"))),
        "data.place_holders.mentions[0].unsubscribe_link",
        None,
    ),
    (
        "mention-snippet-nul",
        mention(place_holders=holders(mention_item(snippets="a\x00"))),
        "data.place_holders.mentions[0].snippets",
        None,
    ),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["binary", "json"])
@pytest.mark.parametrize(("payload", "field", "personal"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_violation_names_the_field(
    payload: Message, field: str, personal: str | None, as_json: bool
) -> None:
    error = rejection(payload, as_json=as_json)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert error.reason  # says what is wrong, not only where
    assert error.notification_id == EVENT_ID
    assert error.event_type == f"events.{type(payload).__name__}"
    if personal is not None:
        assert personal not in str(error)


def test_enum_like_values_are_echoed_for_the_operator() -> None:
    assert "'welcome'" in str(rejection(mention(template="welcome")))
    assert "'jinja'" in str(rejection(mention(merge_language="jinja")))
    assert "'mention_generated'" in str(rejection(mention(event="mention_generated")))


# -- what valid payloads become -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("", "handlebars"),
        ("handlebars", "handlebars"),
        ("handlers", "handlebars"),
        ("Handlebars ", "handlebars"),
        ("mailchimp", "mailchimp"),
        ("mandril", "mailchimp"),
        ("mandrill", "mailchimp"),
        ("MANDRIL", "mailchimp"),
    ],
)
def test_merge_language_aliases_are_stored_canonically(given: str, canonical: str) -> None:
    parsed = parse_event(to_binary(event(mention(merge_language=given))), None)
    assert parsed.payload["merge_language"] == canonical


@pytest.mark.parametrize(
    "payload",
    [
        basic_email(to_address="ana@bücher.example", reply_to=""),
        basic_email(to_address="user.name+tag@sub.example.co.uk"),
        basic_email(to_address="o'brien@example.ie"),
        basic_email(body="", body_html="<p>only html</p>"),
        basic_email(body="only text", body_html=""),
        basic_email(subject="s" * 998),
        sms(to_number="+12345678"),
        sms(to_number="+123456789012345"),
        sms(from_number="MG9752274e9e519418a7406176694466fa"),
        sms(message="m" * 1601),  # long SMS are the provider's business (segments, limits)
        mention(template="mention-notification", mentions=1),
        mention(from_name=""),
        mention(place_holders=holders(mention_item(mention_date=0, invite_link="", program_image=""))),
    ],
)
def test_valid_edge_cases_are_accepted(payload: Message) -> None:
    parse_event(to_binary(event(payload)), None)


def test_addresses_and_numbers_are_trimmed_of_spaces() -> None:
    email = parse_event(to_binary(event(basic_email(to_address=" person@example.org\t"))), None)
    assert email.payload["to_address"] == email.recipient == "person@example.org"
    text = parse_event(to_binary(event(sms(to_number=" +14155550199 "))), None)
    assert text.payload["to_number"] == text.recipient == "+14155550199"


def test_subject_and_bodies_are_kept_verbatim() -> None:
    parsed = parse_event(to_binary(event(basic_email(subject="  Spaced  ", body="  indented\n"))), None)
    assert parsed.payload["subject"] == "  Spaced  "
    assert parsed.payload["body"] == "  indented\n"


def test_long_snippets_are_truncated_not_rejected() -> None:
    long_snippet = "word " * 40  # 200 characters
    payload = mention(
        place_holders=holders(mention_item(snippets=long_snippet), mention_item(snippets="short"))
    )
    with capture_logs() as logs:
        parsed = parse_event(to_binary(event(payload)), None)
    mentions = parsed.payload["place_holders"]["mentions"]
    assert len(mentions[0]["snippets"]) == 100
    assert mentions[0]["snippets"] == long_snippet[:99] + "\u2026"
    assert mentions[1]["snippets"] == "short"
    assert [e["field"] for e in logs if e["event"] == "event.snippet_truncated"] == [
        "data.place_holders.mentions[0].snippets"
    ]
    assert long_snippet not in repr(logs)


def test_snippet_of_exactly_100_characters_is_kept() -> None:
    snippet = "x" * 100
    parsed = parse_event(
        to_binary(event(mention(place_holders=holders(mention_item(snippets=snippet))))), None
    )
    assert parsed.payload["place_holders"]["mentions"][0]["snippets"] == snippet


# -- JSON type errors name the field and do not echo the value -------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"toNumber": 4915112345678}, "data.to_number"),
        ({"to_number": ["+14155550199"]}, "data.to_number"),
        ({"message": {"text": "hi"}}, "data.message"),
        ({"message": True}, "data.message"),
    ],
)
def test_wrong_json_types_in_sms(data: dict[str, Any], field: str) -> None:
    doc = {
        "core": {"id": "j-1"},
        "data": {"@type": "type.googleapis.com/events.SMSNotification", "fromNumber": "+14155550100", **data},
    }
    with pytest.raises(InvalidEvent) as info:
        parse_event(json.dumps(doc).encode(), "application/json")
    assert info.value.field == field
    assert info.value.notification_id == "j-1"
    assert "4915112345678" not in str(info.value)


@pytest.mark.parametrize(
    ("place_holders", "field"),
    [
        ("not an object", "data.place_holders"),
        ({"mentions": {}}, "data.place_holders.mentions"),
        ({"mentions": ["x"]}, "data.place_holders.mentions[0]"),
        ({"mentions": [{"mentionDate": True}]}, "data.place_holders.mentions[0].mention_date"),
        ({"mentions": [{"mentionDate": 2**64}]}, "data.place_holders.mentions[0].mention_date"),
        ({"mentions": [{"mentionDate": "soon"}]}, "data.place_holders.mentions.mention_date"),
        ({"mentions": [{"mentionDate": 1.5}]}, "data.place_holders.mentions.mention_date"),
    ],
)
def test_wrong_json_types_in_mentions(place_holders: object, field: str) -> None:
    doc = json.loads(to_json_bytes(event(mention())))
    doc["data"]["place_holders"] = place_holders
    with pytest.raises(InvalidEvent) as info:
        parse_event(json.dumps(doc).encode(), "application/json")
    assert info.value.field == field


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"core": "x"}, "core"),
        ({"core": {"id": 5}}, "core.id"),
        ({"baggage": {"k": 1}}, "baggage"),
        ({"baggage": ["k"]}, "baggage"),
        ({"trace": {"traceContext": "x"}}, "trace.trace_context"),
    ],
)
def test_wrong_json_types_in_the_envelope(envelope: dict[str, Any], field: str) -> None:
    doc = {**envelope, "data": {"@type": "type.googleapis.com/events.SMSNotification"}}
    with pytest.raises(InvalidEvent) as info:
        parse_event(json.dumps(doc).encode(), "application/json")
    assert info.value.field == field
    assert info.value.notification_id is not None and info.value.notification_id.startswith("raw-")


def test_unknown_template_error_lists_what_we_have() -> None:
    body = to_binary(event(mention(template="digest")))
    with pytest.raises(InvalidEvent) as info:
        parse_event(body, None, templates={"b-template", "a-template"})
    assert "(a-template, b-template)" in str(info.value)
    with pytest.raises(InvalidEvent) as none:
        parse_event(body, None, templates=frozenset())
    assert "no templates are installed" in str(none.value)


# -- header-breaking characters (issue 12) ---------------------------------------------------------

_BREAKS = ["\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def test_the_break_list_is_everything_splitlines_splits_on() -> None:
    from workers.events.validation import LINE_BREAKS

    assert sorted(LINE_BREAKS) == sorted(
        c for c in map(chr, range(0x110000)) if len(f"a{c}b".splitlines()) > 1
    )


@pytest.mark.parametrize("char", _BREAKS, ids=[f"U+{ord(c):04X}" for c in _BREAKS])
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (lambda v: basic_email(subject=f"Hi{v}Bcc: x@evil.example"), "data.subject"),
        (lambda v: mention(from_name=f"A{v}B"), "data.from_name"),
        (lambda v: mention(place_holders=holders(mention_item(), tracking_unit_name=f"W{v}")), None),
        (lambda v: mention(place_holders=holders(mention_item(program_name=f"P{v}"))), None),
    ],
    ids=["subject", "from_name", "tracking_unit_name", "program_name"],
)
def test_every_line_break_is_refused_in_header_fields(char: str, payload: Any, field: str | None) -> None:
    for as_json in (False, True):  # the JSON fast path and the protobuf path agree
        error = rejection(payload(char), as_json=as_json)
        assert error.field == field or (field is None and error.field.startswith("data.place_holders"))
        assert f"a line break (U+{ord(char):04X})" in error.reason


@pytest.mark.parametrize(
    "value", ["=?utf-8?b?eA0KQmNjOiB4QGV2aWwuZXhhbXBsZQ==?=", "a =?utf-8?q?=3Cx=40e.x=3E?= b"]
)
def test_encoded_words_are_refused_in_header_fields(value: str) -> None:
    assert rejection(basic_email(subject=value)).field == "data.subject"
    assert "encoded-word" in rejection(mention(from_name=value), as_json=True).reason


def test_other_controls_are_refused_but_tabs_and_unicode_names_are_kept() -> None:
    assert "a control character (U+0007)" in rejection(basic_email(subject="bell\x07")).reason
    parse_event(to_binary(event(mention(from_name='Zoë "Z" O\'Brien, Ltd. <Ops>\t@ Acme'))), None)


@pytest.mark.parametrize(
    "link",
    [
        "https://u.example.com/x>,<mailto:collect@attacker.example>",
        'https://u.example.com/"x',
        "https://u.example.com/x\\y",
        "https://u.example.com/<x",
    ],
)
def test_links_with_angle_brackets_quotes_or_backslashes_are_refused(link: str) -> None:
    error = rejection(mention(place_holders=holders(mention_item(unsubscribe_link=link))))
    assert error.field == "data.place_holders.mentions[0].unsubscribe_link"
