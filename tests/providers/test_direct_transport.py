"""Mandrill and Twilio send straight to the httpx transport: same request as through httpx.Client.

Each provider takes the Client path when the environment names a proxy. NO_PROXY=127.0.0.1 lets
such a provider reach the local server directly, so both paths can be compared on the wire.
"""

from __future__ import annotations

import logging

import pytest
from conftest import CLIENT_TIMEOUT, make_email, make_sms

from tests.fakes.http_base import LocalHttpServer, Received, Reply, Request
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioError, TwilioServer
from workers.errors import ProviderMisconfigured
from workers.messages import StoredTemplate
from workers.providers.mandrill import MandrillProvider
from workers.providers.twilio import RedirectingHttpClient, TwilioProvider

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def proxy_bypassed_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never reached: NO_PROXY covers the servers
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def wire(item: Received) -> tuple[str, str, list[tuple[str, str]], bytes]:
    request = item.request
    return request.method, request.path, list(request.headers.items()), request.body


def httpx_lines(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for record in caplog.records if record.name == "httpx")


@pytest.mark.parametrize("template", [None, StoredTemplate("mention-notification", "handlebars", {"n": 1})])
def test_mandrill_sends_the_same_request_as_through_the_client(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mandrill_server: MandrillServer,
    template: StoredTemplate | None,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    proxy_bypassed_for_loopback(monkeypatch)
    through_client = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    no_proxy(monkeypatch)
    direct = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    message = make_email(template=template)
    try:
        before = through_client.send_email(message)
        assert httpx_lines(caplog) == 1  # httpx.Client logs each request at INFO
        after = direct.send_email(message)
        assert httpx_lines(caplog) == 1  # the transport does not
    finally:
        through_client.close()
        direct.close()
    old, new = mandrill_server.received
    assert wire(new) == wire(old)
    assert after.detail == before.detail


def test_mandrill_refusals_are_the_same_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, mandrill_server: MandrillServer
) -> None:
    proxy_bypassed_for_loopback(monkeypatch)
    through_client = MandrillProvider("wrong-key", base_url=mandrill_server.api_url)
    no_proxy(monkeypatch)
    direct = MandrillProvider("wrong-key", base_url=mandrill_server.api_url)
    caught = []
    for provider in (through_client, direct):
        with pytest.raises(ProviderMisconfigured) as refused:
            provider.send_email(make_email())
        provider.close()
        caught.append((str(refused.value), refused.value.code))
    assert caught[0] == caught[1]


@pytest.mark.parametrize("sender", ["+15005550006", "MG" + "c" * 32])
def test_twilio_sends_the_same_request_as_through_the_client(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    twilio_server: TwilioServer,
    sender: str,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    sid, token, url = twilio_server.account_sid, twilio_server.auth_token, twilio_server.base_url
    proxy_bypassed_for_loopback(monkeypatch)
    through_client = TwilioProvider(sid, token, base_url=url)
    no_proxy(monkeypatch)
    direct = TwilioProvider(sid, token, base_url=url)
    message = make_sms(from_number=sender, body="Grüße 😀 {ok}")
    try:
        before = through_client.send_sms(message)
        assert httpx_lines(caplog) == 1
        after = direct.send_sms(message)
        after_again = direct.send_sms(message)  # from the cached URL, headers and auth
        assert httpx_lines(caplog) == 1
    finally:
        through_client.close()
        direct.close()
    old, new, again = twilio_server.received
    assert wire(new) == wire(old)
    assert wire(again) == wire(old)
    assert after.detail == after_again.detail == before.detail


def test_twilio_refusals_and_retry_after_are_the_same_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, twilio_server: TwilioServer
) -> None:
    sid, token, url = twilio_server.account_sid, twilio_server.auth_token, twilio_server.base_url
    proxy_bypassed_for_loopback(monkeypatch)
    through_client = TwilioProvider(sid, token, base_url=url)
    no_proxy(monkeypatch)
    direct = TwilioProvider(sid, token, base_url=url)
    caught = []
    for provider in (through_client, direct):
        twilio_server.fail_next(TwilioError(20429, 429, retry_after=7))
        with pytest.raises(Exception) as refused:
            provider.send_sms(make_sms())
        provider.close()
        error = refused.value
        caught.append(
            (type(error), str(error), getattr(error, "code", None), getattr(error, "retry_after", None))
        )
    assert caught[0] == caught[1]
    assert caught[0][3] == 7.0


def test_mandrill_goes_through_a_proxy_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with MandrillServer() as target, MandrillServer() as proxy:
        assert isinstance(target, MandrillServer)
        no_proxy(monkeypatch)
        monkeypatch.setenv("HTTP_PROXY", proxy.root_url)
        provider = MandrillProvider("test-key", base_url=target.api_url, timeout=CLIENT_TIMEOUT)
        # The proxy here is only a recorder: it answers the forwarded request with a 404.
        with pytest.raises(ProviderMisconfigured):
            provider.send_email(make_email())
        provider.close()
        [forwarded] = proxy.received
        assert forwarded.path == f"{target.api_url}/messages/send"
        assert target.received == []


def test_twilio_goes_through_a_proxy_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with TwilioServer() as target, TwilioServer() as proxy:
        assert isinstance(target, TwilioServer)
        no_proxy(monkeypatch)
        monkeypatch.setenv("HTTP_PROXY", proxy.root_url)
        provider = TwilioProvider(
            target.account_sid, target.auth_token, base_url=target.base_url, timeout=CLIENT_TIMEOUT
        )
        with pytest.raises(ProviderMisconfigured):
            provider.send_sms(make_sms())
        provider.close()
        [forwarded] = proxy.received
        assert forwarded.path == f"{target.base_url}/2010-04-01/Accounts/{target.account_sid}/Messages.json"
        assert target.received == []


class _Latin1Server(LocalHttpServer):
    """Answers every request with a Latin-1 body that says so in its Content-Type."""

    def handle(self, request: Request, fault: object) -> tuple[Reply, bool]:
        body = '{"sid": "SMé"}'.encode("latin-1")
        return Reply(201, body, {"Content-Type": "application/json; charset=latin-1"}), True

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        return Reply(status)


def test_twilio_replies_are_decoded_with_their_charset_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy(monkeypatch)
    with _Latin1Server() as server:
        client = RedirectingHttpClient(server.root_url, timeout=CLIENT_TIMEOUT)
        try:
            texts = [
                client.request("POST", "https://api.twilio.com/x.json", data={"a": "b"}, auth=("u", "p")).text
                for _ in range(2)  # the second reply reuses the charset found for the first
            ]
        finally:
            client.close()
    assert texts == ['{"sid": "SMé"}', '{"sid": "SMé"}']


def test_a_closed_provider_refuses_to_send_as_httpx_does(
    monkeypatch: pytest.MonkeyPatch, mandrill_server: MandrillServer, twilio_server: TwilioServer
) -> None:
    no_proxy(monkeypatch)
    mandrill = MandrillProvider("test-key", base_url=mandrill_server.api_url)
    twilio = TwilioProvider(
        twilio_server.account_sid, twilio_server.auth_token, base_url=twilio_server.base_url
    )
    mandrill.send_email(make_email())
    twilio.send_sms(make_sms())
    mandrill.close()
    twilio.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        mandrill.send_email(make_email())
    with pytest.raises(RuntimeError, match="client has been closed"):
        twilio.send_sms(make_sms())
    assert len(mandrill_server.received) == len(twilio_server.received) == 1
