"""Fixtures: each provider wired to its local server, behind one harness interface per channel."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.http_base import Delay, Drop, Status
from tests.fakes.mandrill_server import ErrorName, MandrillServer, Reject
from tests.fakes.smtp_server import DropAt, Reply, SmtpServer, Stall
from tests.fakes.twilio_server import TwilioError, TwilioServer
from workers.messages import EmailMessage, SmsMessage
from workers.providers.base import EmailProvider, SmsProvider
from workers.providers.mandrill import MandrillProvider
from workers.providers.outbox import OutboxProvider
from workers.providers.smtp import SmtpProvider
from workers.providers.twilio import TwilioProvider

# Short enough that a stalled server makes the client give up quickly; the servers stall far longer.
CLIENT_TIMEOUT = 0.5
STALL = 30.0


@dataclass(frozen=True)
class WireEmail:
    """What a provider put on the wire, in one shape for every provider."""

    from_address: str
    from_name: str | None
    to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None
    reply_to: str | None
    notification_id: str | None
    headers: dict[str, str] = field(default_factory=dict)


def wire_from_mime(data: bytes) -> WireEmail:
    mime = message_from_bytes(data, policy=policy.default)
    assert isinstance(mime, MimeMessage)
    name, address = parseaddr(str(mime["From"]))
    text_part = mime.get_body(("plain",))
    html_part = mime.get_body(("html",))
    text = text_part.get_content() if isinstance(text_part, MimeMessage) else None
    html = html_part.get_content() if isinstance(html_part, MimeMessage) else None
    headers = {k: str(v) for k, v in mime.items() if k.lower().startswith("list-")}
    return WireEmail(
        from_address=address,
        from_name=name or None,
        to=(str(mime["To"]),),
        subject=str(mime["Subject"]),
        # MIME text parts end with a line break added by the encoder; compare content, not framing.
        text=text.replace("\r\n", "\n").rstrip("\n") if text is not None else None,
        html=html.replace("\r\n", "\n").rstrip("\n") if html is not None else None,
        reply_to=str(mime["Reply-To"]) if mime["Reply-To"] else None,
        notification_id=str(mime["X-Notification-Id"]) if mime["X-Notification-Id"] else None,
        headers=headers,
    )


def wire_from_mandrill(body: dict[str, Any]) -> WireEmail:
    message = body["message"]
    headers = dict(message.get("headers", {}))
    reply_to = headers.pop("Reply-To", None)
    return WireEmail(
        from_address=message.get("from_email", ""),
        from_name=message.get("from_name"),
        to=tuple(item["email"] for item in message["to"]),
        subject=message.get("subject", ""),
        text=message.get("text"),
        html=message.get("html"),
        reply_to=reply_to,
        notification_id=message.get("metadata", {}).get("notification_id"),
        headers=headers,
    )


class EmailHarness:
    """A provider and its server; ``inject`` arranges the next send to fail in a named way."""

    name: str
    provider: EmailProvider
    supports_failures = True

    def wire(self) -> list[WireEmail]:
        raise NotImplementedError

    def inject(self, failure: str) -> None:
        raise NotImplementedError

    def misconfigured(self) -> EmailProvider:
        raise NotImplementedError

    def drop_idle(self) -> None:
        raise NotImplementedError


class MandrillHarness(EmailHarness):
    name = "mandrill"

    def __init__(self, server: MandrillServer) -> None:
        self.server = server
        self.provider = MandrillProvider("test-key", base_url=server.api_url, timeout=CLIENT_TIMEOUT)

    def wire(self) -> list[WireEmail]:
        return [wire_from_mandrill(item.json) for item in self.server.accepted]

    def inject(self, failure: str) -> None:
        faults = {
            "transient": ErrorName("GeneralError"),
            "permanent": ErrorName("ValidationError"),
            "rejected-recipient": Reject("hard-bounce"),
            "throttled": Status(429, retry_after=7),
            "timeout": Delay(STALL),
            "drop": Drop(),
        }
        self.server.fail_next(faults[failure])

    def misconfigured(self) -> EmailProvider:
        return MandrillProvider("wrong-key", base_url=self.server.api_url, timeout=CLIENT_TIMEOUT)

    def drop_idle(self) -> None:
        self.server.drop_idle_connections()


class SmtpHarness(EmailHarness):
    name = "smtp"

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self.provider = SmtpProvider(server.host, server.port, starttls=False, timeout=CLIENT_TIMEOUT)
        self._extra: list[SmtpServer] = []

    def wire(self) -> list[WireEmail]:
        return [wire_from_mime(item.data) for item in self.server.received]

    def inject(self, failure: str) -> None:
        faults = {
            "transient": Reply("DATA", 451, "4.3.0 Requested action aborted: local error"),
            "permanent": Reply("MAIL", 553, "5.1.8 Sender address rejected"),
            "rejected-recipient": Reply("RCPT", 550, "5.1.1 <someone@example.org>: user unknown"),
            "throttled": Reply("MAIL", 421, "4.7.0 Too many messages, slow down"),
            "timeout": Stall(STALL),
            "drop": DropAt("DATA"),
        }
        self.server.fail_next(faults[failure])

    def misconfigured(self) -> EmailProvider:
        guarded = SmtpServer(username="notify", password="right").start()
        self._extra.append(guarded)
        return SmtpProvider(
            guarded.host,
            guarded.port,
            username="notify",
            password="wrong",
            starttls=False,
            timeout=CLIENT_TIMEOUT,
        )

    def drop_idle(self) -> None:
        self.server.drop_idle_connections()

    def stop_extra(self) -> None:
        for server in self._extra:
            server.stop()


class OutboxHarness(EmailHarness):
    name = "outbox"
    supports_failures = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.provider = OutboxProvider(directory)

    def wire(self) -> list[WireEmail]:
        return [
            wire_from_mime(path.read_bytes()) for path in sorted((self.directory / "email").glob("*.eml"))
        ]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(params=["mandrill", "smtp", "outbox"])
def email(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmailHarness]:
    harness: EmailHarness
    if request.param == "mandrill":
        with MandrillServer(api_keys={"test-key"}) as server:
            assert isinstance(server, MandrillServer)
            harness = MandrillHarness(server)
            yield harness
            harness.provider.close()
    elif request.param == "smtp":
        with SmtpServer() as smtp:
            smtp_harness = SmtpHarness(smtp)
            yield smtp_harness
            smtp_harness.provider.close()
            smtp_harness.stop_extra()
    else:
        yield OutboxHarness(tmp_path / "outbox")


# --- SMS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireSms:
    to: str
    sender: str
    body: str


class SmsHarness:
    name: str
    provider: SmsProvider
    supports_failures = True

    def wire(self) -> list[WireSms]:
        raise NotImplementedError

    def inject(self, failure: str) -> None:
        raise NotImplementedError

    def refuse(self, number: str) -> None:
        raise NotImplementedError

    def misconfigured(self) -> SmsProvider:
        raise NotImplementedError

    def drop_idle(self) -> None:
        raise NotImplementedError


class TwilioHarness(SmsHarness):
    name = "twilio"

    def __init__(self, server: TwilioServer) -> None:
        self.server = server
        self.provider = TwilioProvider(
            server.account_sid, server.auth_token, base_url=server.base_url, timeout=CLIENT_TIMEOUT
        )

    def wire(self) -> list[WireSms]:
        return [
            WireSms(
                item.form["To"], item.form.get("From") or item.form["MessagingServiceSid"], item.form["Body"]
            )
            for item in self.server.accepted
        ]

    def inject(self, failure: str) -> None:
        faults = {
            "transient": Status(503),
            "permanent": TwilioError(21211, 400),
            "throttled": TwilioError(20429, 429, retry_after=7),
            "timeout": Delay(STALL),
            "drop": Drop(),
        }
        self.server.fail_next(faults[failure])

    def refuse(self, number: str) -> None:
        self.server.refuse_number(number, 21610)

    def misconfigured(self) -> SmsProvider:
        return TwilioProvider(
            self.server.account_sid, "wrong-token", base_url=self.server.base_url, timeout=CLIENT_TIMEOUT
        )

    def drop_idle(self) -> None:
        self.server.drop_idle_connections()


class OutboxSmsHarness(SmsHarness):
    name = "outbox"
    supports_failures = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.provider = OutboxProvider(directory)

    def wire(self) -> list[WireSms]:
        records = [json.loads(path.read_text()) for path in sorted((self.directory / "sms").glob("*.json"))]
        return [WireSms(record["to"], record["from"], record["body"]) for record in records]


@pytest.fixture(params=["twilio", "outbox"])
def sms(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmsHarness]:
    if request.param == "twilio":
        with TwilioServer() as server:
            assert isinstance(server, TwilioServer)
            harness = TwilioHarness(server)
            yield harness
            harness.provider.close()
    else:
        yield OutboxSmsHarness(tmp_path / "outbox")


# --- messages ----------------------------------------------------------------------------------


def make_email(notification_id: str = "6f1c2a9e-8f57-4d5e-9a43-2d4b1f0c9e11", **changes: Any) -> EmailMessage:
    values: dict[str, Any] = {
        "notification_id": notification_id,
        "from_address": "alerts@notify.example.com",
        "from_name": "Example Alerts",
        "to_address": "reader@example.org",
        "subject": "You were mentioned: Q3 report",
        "text": "Plain body with ünïcode",
        "html": "<p>HTML <b>body</b> with ünïcode</p>",
        "reply_to": "support@notify.example.com",
        "headers": {"List-Unsubscribe": "<https://notify.example.com/u/abc123>"},
        "tags": ("mention-notification",),
    }
    values.update(changes)
    return EmailMessage(**values)


def make_sms(notification_id: str = "b1f4c1d2-0e2f-4f8e-8a9b-5c6d7e8f9a0b", **changes: Any) -> SmsMessage:
    values: dict[str, Any] = {
        "notification_id": notification_id,
        "from_number": "+15005550006",
        "to_number": "+447700900123",
        "body": "Your code is 123456",
    }
    values.update(changes)
    return SmsMessage(**values)


def self_signed_context(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed cert for 127.0.0.1, and a client context trusting it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
