"""Each provider's probe(): reachable and credentials accepted, without sending; never raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CLIENT_TIMEOUT

from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.smtp_server import SmtpServer
from tests.fakes.twilio_server import TwilioServer
from workers.providers.base import Probe
from workers.providers.mandrill import MandrillProvider, parse_ping_response
from workers.providers.outbox import OutboxProvider
from workers.providers.smtp import SmtpProvider
from workers.providers.twilio import TwilioProvider


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"PING": "PONG!"}, Probe(True, "reachable, API key accepted")),
        (500, {"status": "error", "name": "Invalid_Key"}, Probe(False, "refused: Invalid_Key (HTTP 500)")),
        (200, "PONG!", Probe(False, "unexpected answer, HTTP 200")),
        (404, None, Probe(False, "unexpected answer, HTTP 404")),
    ],
)
def test_ping_replies(status: int, body: object, expected: Probe) -> None:
    assert parse_ping_response(status, json.dumps(body).encode() if body else b"") == expected


def test_an_unreadable_ping_reply_quotes_the_parser() -> None:
    found = parse_ping_response(200, b"<html>")
    assert not found.ok and found.quoted and found.detail.startswith("JSONDecodeError: ")


def test_mandrill_probe_pings_with_the_key_and_sends_nothing(mandrill_server: MandrillServer) -> None:
    good = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    bad = MandrillProvider("wrong-key", base_url=mandrill_server.api_url)
    try:
        assert good.probe(CLIENT_TIMEOUT) == Probe(True, "reachable, API key accepted")
        assert bad.probe(CLIENT_TIMEOUT) == Probe(False, "refused: Invalid_Key (HTTP 500)")
    finally:
        good.close()
        bad.close()
    assert [r.path for r in mandrill_server.received] == ["/api/1.0/users/ping2.json"] * 2
    assert [r.json["key"] for r in mandrill_server.received] == ["test-key", "wrong-key"]
    assert not mandrill_server.accepted


def test_twilio_probe_fetches_the_account(twilio_server: TwilioServer) -> None:
    sid, url = twilio_server.account_sid, twilio_server.base_url
    good = TwilioProvider(sid, twilio_server.auth_token, base_url=url)
    bad = TwilioProvider(sid, "wrong-token", base_url=url)
    try:
        assert good.probe(CLIENT_TIMEOUT) == Probe(True, "reachable, credentials accepted")
        assert bad.probe(CLIENT_TIMEOUT) == Probe(False, "credentials refused (HTTP 401)")
    finally:
        good.close()
        bad.close()
    assert [(r.request.method, r.path) for r in twilio_server.received] == [
        ("GET", f"/2010-04-01/Accounts/{sid}.json")
    ] * 2
    assert not twilio_server.accepted


def test_unreachable_http_providers_quote_the_failure() -> None:
    with MandrillServer() as mandrill, TwilioServer() as twilio:
        assert isinstance(mandrill, MandrillServer) and isinstance(twilio, TwilioServer)
        providers = [
            MandrillProvider("test-key", base_url=mandrill.api_url),
            TwilioProvider(twilio.account_sid, twilio.auth_token, base_url=twilio.base_url),
        ]
    for provider in providers:
        found = provider.probe(CLIENT_TIMEOUT)
        provider.close()
        assert not found.ok and found.quoted, found
        assert found.detail.startswith("ConnectError: "), found


def test_smtp_probe_greets_and_quits_without_mail(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False)
    where = f"{smtp_server.host}:{smtp_server.port}"
    try:
        assert provider.probe(CLIENT_TIMEOUT) == Probe(True, f"{where} answers EHLO and NOOP")
    finally:
        provider.close()
    assert not smtp_server.received


def test_smtp_probe_names_the_server_it_could_not_reach() -> None:
    with SmtpServer() as server:
        host, port = server.host, server.port
    provider = SmtpProvider(host, port, starttls=False)
    found = provider.probe(CLIENT_TIMEOUT)
    provider.close()
    assert not found.ok and found.quoted and found.where == f"{host}:{port}"
    assert found.detail.startswith("ConnectionRefusedError: ")


def test_smtp_probe_reports_a_missing_starttls(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=True)
    found = provider.probe(CLIENT_TIMEOUT)
    provider.close()
    assert not found.ok and found.detail.startswith("SMTPNotSupportedError: ")


def test_outbox_probe_makes_its_folder_or_says_why_not(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    assert OutboxProvider(folder).probe(CLIENT_TIMEOUT) == Probe(True, f"writes to {folder.resolve()}")
    assert folder.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    found = OutboxProvider(blocker / "outbox").probe(CLIENT_TIMEOUT)
    assert (
        not found.ok and found.quoted and found.detail.startswith(("FileExistsError", "NotADirectoryError"))
    )
