"""Our requests against what the providers publish, and against servers strict where real ones are.

Issue 13 ("test as an outsider would"): Mandrill request bodies are checked against
tests/contracts/mandrill/messages.schema.json (written here, each property citing its page of the
Mailchimp Transactional API reference); Twilio form bodies against
tests/contracts/twilio/messages-create.schema.json and, when a copy is present, against Twilio's own
OpenAPI description (twilio_api_v2010.json from github.com/twilio/twilio-oai, MIT). Validation is
``jsonschema``'s, never a hand-written checker.
"""

from __future__ import annotations

import json
from email.message import EmailMessage as MimeMessage
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource

from tests.factories import basic_email, parsed
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.smtp_server import SmtpServer
from tests.fakes.twilio_server import TwilioServer
from tests.providers.conftest import make_email, make_sms
from workers.compose import Composer
from workers.dispatch import Dispatcher
from workers.errors import GiveUp
from workers.ledger import Ledger
from workers.ledger.queries import get_notification
from workers.messages import Status, StoredTemplate
from workers.providers.mandrill import MandrillProvider
from workers.providers.registry import build_email_provider
from workers.providers.smtp import SmtpProvider
from workers.providers.twilio import TwilioProvider
from workers.rendering.mention_data import mention_template_data
from workers.retry import RetryPolicy
from workers.settings import Settings

HERE = Path(__file__).parent
IDN_ADDRESS = "ana@münchen.example"
IDN_ASCII = "ana@xn--mnchen-3ya.example"

# --- schemas -------------------------------------------------------------------------------------

MANDRILL_SCHEMA = json.loads((HERE / "mandrill" / "messages.schema.json").read_text())
TWILIO_SCHEMA = json.loads((HERE / "twilio" / "messages-create.schema.json").read_text())
Draft202012Validator.check_schema(MANDRILL_SCHEMA)
Draft202012Validator.check_schema(TWILIO_SCHEMA)
_REGISTRY = Registry().with_resource(MANDRILL_SCHEMA["$id"], Resource.from_contents(MANDRILL_SCHEMA))


def mandrill_errors(body: Any, endpoint: str) -> list[str]:
    """Every way ``body`` breaks the schema of ``endpoint`` ("send" or "send_template")."""
    validator = Draft202012Validator(
        {"$ref": f"{MANDRILL_SCHEMA['$id']}#/$defs/{endpoint}"}, registry=_REGISTRY
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def twilio_oai_schema() -> dict[str, Any]:
    """The CreateMessageRequest form schema of Twilio's OpenAPI description (kept in twilio/, MIT)."""
    spec = json.loads((HERE / "twilio" / "twilio_api_v2010.json").read_text())
    operation = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]
    schema: dict[str, Any] = form["schema"]
    return schema


# --- SMTP: IDN, 8BITMIME, SMTPUTF8, Message-ID --------------------------------------------------


def _smtp(server: SmtpServer, **options: Any) -> SmtpProvider:
    return SmtpProvider(server.host, server.port, starttls=False, timeout=5, **options)


def test_smtp_sends_an_idn_domain_as_punycode() -> None:
    with SmtpServer() as server:
        provider = _smtp(server)
        provider.send_email(make_email(to_address=IDN_ADDRESS, reply_to="help@bücher.example"))
        provider.close()
        [mail] = server.received
    assert mail.rcpt_tos == (IDN_ASCII,)
    assert str(mail.message["To"]) == IDN_ASCII
    assert str(mail.message["Reply-To"]) == "help@xn--bcher-kva.example"


def test_smtp_declares_8bitmime_when_offered() -> None:
    with SmtpServer(eight_bit_mime=True) as server:
        provider = _smtp(server)
        provider.send_email(make_email())
        provider.close()
        [mail] = server.received
    assert "BODY=8BITMIME" in mail.mail_options
    assert not mail.data.isascii()  # 8-bit bodies, as declared
    assert mail.message.get_body(("plain",)).get_content().rstrip("\r\n") == "Plain body with ünïcode"  # type: ignore[union-attr]


def test_smtp_sends_7bit_transfer_encodings_when_8bitmime_is_not_offered() -> None:
    with SmtpServer(eight_bit_mime=False) as server:
        provider = _smtp(server)
        provider.send_email(make_email())
        provider.close()
        [mail] = server.received
    assert not {"BODY=8BITMIME", "SMTPUTF8"} & set(mail.mail_options)
    assert mail.data.isascii()
    parts = [p for p in mail.message.walk() if not p.is_multipart()]
    assert {str(p["Content-Transfer-Encoding"]) for p in parts} <= {"7bit", "quoted-printable", "base64"}
    plain = mail.message.get_body(("plain",))
    html = mail.message.get_body(("html",))
    assert isinstance(plain, MimeMessage) and isinstance(html, MimeMessage)
    assert plain.get_content().rstrip("\r\n") == "Plain body with ünïcode"
    assert html.get_content().rstrip("\r\n") == "<p>HTML <b>body</b> with ünïcode</p>"


def test_a_non_ascii_local_part_uses_smtputf8_or_fails_with_the_reason() -> None:
    message = make_email(to_address="jürgen@example.org")
    with SmtpServer(smtputf8=True) as server:
        provider = _smtp(server)
        provider.send_email(message)
        provider.close()
        [mail] = server.received
    assert "SMTPUTF8" in mail.mail_options and mail.rcpt_tos == ("jürgen@example.org",)
    with SmtpServer(smtputf8=False) as server:
        provider = _smtp(server)
        with pytest.raises(GiveUp) as caught:
            provider.send_email(message)
        provider.close()
        assert server.received == []
    assert caught.value.code == "smtputf8" and "jürgen" not in str(caught.value)


def test_message_id_domain_is_the_senders_or_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpServer() as server:
        default = _smtp(server).send_email(make_email(notification_id="n-1"))
        chosen = _smtp(server, message_id_domain="mail.example.net").send_email(
            make_email(notification_id="n-2")
        )
        for name, value in {
            "NOTIFY_EMAIL_PROVIDER": "smtp",
            "SMTP_HOST": server.host,
            "SMTP_PORT": str(server.port),
            "SMTP_STARTTLS": "false",
            "NOTIFY_MESSAGE_ID_DOMAIN": "ids.example.org",
        }.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        configured = build_email_provider(settings).send_email(make_email(notification_id="n-3"))
    assert default.provider_message_id == "<n-1@notify.example.com>"
    assert chosen.provider_message_id == "<n-2@mail.example.net>"
    assert configured.provider_message_id == "<n-3@ids.example.org>"
    assert "notify.local" not in "".join(m.data.decode("ascii", "replace") for m in server.received)


def test_an_idn_address_accepted_at_intake_is_sent_not_retried_into_dead(ledger: Ledger) -> None:
    # Issue 13.5 end to end through the use case: intake accepts it, the real SMTP path sends it.
    with SmtpServer() as server:
        provider = _smtp(server)
        dispatcher = Dispatcher(
            ledger,
            composer=Composer(None, mention_template_data),  # type: ignore[arg-type]  # BasicEmail needs no templates
            email=provider,
            sms=provider,  # type: ignore[arg-type]
            policy=RetryPolicy(max_attempts=3, jitter=lambda low, high: 0.0),
            enqueue=lambda notification_id, label: None,
        )
        event = parsed(basic_email(toAddress=IDN_ADDRESS))
        dispatcher.accept(event)
        outcome = dispatcher.deliver(event.notification_id)
        provider.close()
        [mail] = server.received
    assert outcome.status is Status.SENT
    assert mail.rcpt_tos == (IDN_ASCII,)
    view = get_notification(ledger.engine, event.notification_id)
    assert view is not None and view.status == "sent"


# --- Mandrill against the schema written from its API reference ---------------------------------


def _mandrill_bodies(server: MandrillServer) -> list[dict[str, Any]]:
    return [r.json for r in server.received if "/messages/" in r.path]


def test_mandrill_send_requests_match_the_reference(mandrill_server: MandrillServer) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    corpus = [
        make_email(),
        make_email(to_address=IDN_ADDRESS, from_address="news@bücher.example", reply_to=None),
        make_email(html=None, from_name=None, tags=()),
    ]
    for message in corpus:
        provider.send_email(message)
    provider.close()
    bodies = _mandrill_bodies(mandrill_server)
    assert len(bodies) == len(corpus)
    for body in bodies:
        assert mandrill_errors(body, "send") == []
    assert bodies[1]["message"]["to"] == [{"email": IDN_ASCII, "type": "to"}]
    assert bodies[1]["message"]["from_email"] == "news@xn--bcher-kva.example"


MERGE_DATA: dict[str, Any] = {
    "tracking_unit_name": "Q3 report",
    "mention_count": 2,
    "has_mentions": True,
    "is_empty": False,
    "logouri": None,
    "score": 2.0,
    "mentions": [{"program_name": "Alpha", "position": 1}],
    "mention": {"program_name": "Alpha"},
}


def test_mailchimp_send_template_sends_strings_and_no_rendered_content(
    mandrill_server: MandrillServer,
) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    template = StoredTemplate("mention-notification", "mailchimp", MERGE_DATA)
    provider.send_email(make_email(template=template))
    provider.close()
    [body] = _mandrill_bodies(mandrill_server)
    assert mandrill_errors(body, "send_template") == []
    message = body["message"]
    assert "html" not in message and "text" not in message
    assert {v["name"]: v["content"] for v in message["global_merge_vars"]} == {
        "tracking_unit_name": "Q3 report",
        "mention_count": "2",
        "has_mentions": "true",
        "is_empty": "",  # *|IF:IS_EMPTY|* stays false, as when we render locally
        "logouri": "",
        "score": "2",
    }


def test_handlebars_send_template_keeps_arrays_and_objects(mandrill_server: MandrillServer) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    provider.send_email(make_email(template=StoredTemplate("mention-notification", "handlebars", MERGE_DATA)))
    provider.close()
    [body] = _mandrill_bodies(mandrill_server)
    assert mandrill_errors(body, "send_template") == []
    merged = {v["name"]: v["content"] for v in body["message"]["global_merge_vars"]}
    assert merged["mentions"] == [{"program_name": "Alpha", "position": 1}]
    assert merged["mention"] == {"program_name": "Alpha"} and merged["mention_count"] == 2
    assert "html" not in body["message"] and "text" not in body["message"]


def test_the_schema_refuses_what_the_old_requests_carried() -> None:
    # The schema can fail: each of these was on the wire at 12197ff.
    old_template_body = {
        "key": "k",
        "template_name": "t",
        "template_content": [],
        "message": {
            "from_email": "a@example.com",
            "to": [{"email": IDN_ADDRESS, "type": "to"}],
            "html": "<p>rendered here</p>",
            "merge_language": "mailchimp",
            "global_merge_vars": [{"name": "mentions", "content": [{"x": 1}]}],
        },
    }
    problems = "\n".join(mandrill_errors(old_template_body, "send_template"))
    assert "html" in problems and "message/to/0/email" in problems
    assert "message/global_merge_vars/0/content" in problems


def test_mandrill_refuses_a_non_ascii_local_part_before_sending(mandrill_server: MandrillServer) -> None:
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    with pytest.raises(GiveUp) as caught:
        provider.send_email(make_email(to_address="jürgen@example.org"))
    provider.close()
    assert caught.value.code == "address" and _mandrill_bodies(mandrill_server) == []


# --- Twilio against its reference and its OpenAPI description -----------------------------------

SMS_CORPUS = [
    make_sms(),
    make_sms(body="Grüße — ok 😀"),
    make_sms(from_number="MG" + "c" * 32),
    make_sms(body="a" * 1600),
    make_sms(to_number="+861012345678", body="{[|]}~€^\\"),
]


def test_twilio_requests_match_the_reference_and_the_openapi_description(twilio_server: TwilioServer) -> None:
    provider = TwilioProvider(
        twilio_server.account_sid, twilio_server.auth_token, base_url=twilio_server.base_url
    )
    for message in SMS_CORPUS:
        provider.send_sms(message)
    provider.close()
    forms = [r.form for r in twilio_server.received]
    assert len(forms) == len(SMS_CORPUS)
    ours = Draft202012Validator(TWILIO_SCHEMA)
    for form in forms:
        assert [e.message for e in ours.iter_errors(form)] == []
    oai = twilio_oai_schema()
    # OpenAPI 3.0 schemas are JSON Schema draft 4/7 objects with extra keywords jsonschema ignores.
    validator = Draft7Validator(oai)
    for form in forms:
        assert [e.message for e in validator.iter_errors(form)] == []
        assert set(form) <= set(oai["properties"]), (
            f"fields Twilio does not describe: {set(form) - set(oai['properties'])}"
        )
        assert set(oai.get("required", [])) <= set(form)


# Permanent by Twilio's documentation, one page per code:
# 21602 https://www.twilio.com/docs/api/errors/21602 (message body is required)
# 21604 https://www.twilio.com/docs/api/errors/21604 ('To' phone number is required)
# 21606 https://www.twilio.com/docs/api/errors/21606 ('From' number is not a valid message-capable number)
# 21612 https://www.twilio.com/docs/api/errors/21612 (the 'To' number is not reachable via this route)
@pytest.mark.parametrize("code", [21602, 21604, 21606, 21612])
def test_permanent_twilio_codes_give_up(twilio_server: TwilioServer, code: int) -> None:
    message = make_sms(to_number="+447700900555")
    twilio_server.refuse_number(message.to_number, code)
    provider = TwilioProvider(
        twilio_server.account_sid, twilio_server.auth_token, base_url=twilio_server.base_url
    )
    with pytest.raises(GiveUp) as caught:
        provider.send_sms(message)
    provider.close()
    assert caught.value.code == str(code)
