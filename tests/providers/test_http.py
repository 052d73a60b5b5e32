"""The shared HTTP path: Retry-After, the transport failure table, the one client and what it honours."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from conftest import CLIENT_TIMEOUT, make_email, make_sms

from tests.fakes.http_base import LocalHttpServer, Reply, Request
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer
from workers.errors import ConfigurationError, GiveUp, MaybeDelivered, ProviderMisconfigured, RetryLater
from workers.providers.http import (
    RETRY_AFTER_CAP,
    make_client,
    raise_transport_failure,
    retry_after_seconds,
)
from workers.providers.mandrill import MandrillProvider
from workers.providers.refusals import Rule
from workers.providers.twilio import RedirectingHttpClient, TwilioProvider, rewrite_url, sdk_response
from workers.settings import load_settings

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"RETRY-AFTER": "-3"}, 0.0),
        ({"Retry-After": "Wed, 25 Nov 2026 09:31:00 GMT"}, 60.0),
        ({"Retry-After": "Wed, 25 Nov 2026 09:29:00 GMT"}, 0.0),  # already past
        ({"Retry-After": "Wed, 25 Nov 2026 09:31:00 -0000"}, 60.0),
        ({"Retry-After": "99999999"}, RETRY_AFTER_CAP),
        ({"Retry-After": "inf"}, RETRY_AFTER_CAP),
        ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, RETRY_AFTER_CAP),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
    ],
)
def test_retry_after_takes_seconds_or_a_date_and_is_capped(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_seconds(headers, now=NOW) == seconds


def test_retry_after_reads_httpx_headers() -> None:
    assert retry_after_seconds(httpx.Headers({"Retry-After": "7"})) == 7.0


@pytest.mark.parametrize(
    ("exc", "error", "code", "words"),
    [
        (httpx.ReadTimeout("t"), MaybeDelivered, "timeout", "no answer in time (ReadTimeout)"),
        (httpx.WriteTimeout("t"), MaybeDelivered, "timeout", "no answer in time (WriteTimeout)"),
        (httpx.ConnectTimeout("t"), RetryLater, "timeout", "timed out (ConnectTimeout)"),
        (httpx.PoolTimeout("t"), RetryLater, "timeout", "timed out (PoolTimeout)"),
        (httpx.ConnectError("t"), RetryLater, "connection", "connection failed (ConnectError)"),
        (httpx.RemoteProtocolError("t"), RetryLater, "connection", "connection failed (RemoteProtocolError)"),
        (httpx.DecodingError("t"), RetryLater, "http", "HTTP failure (DecodingError)"),
    ],
)
def test_transport_failures_follow_the_one_table(
    exc: httpx.HTTPError, error: type[RetryLater], code: str, words: str
) -> None:
    with pytest.raises(RetryLater) as caught:
        raise_transport_failure("mandrill", exc)
    assert type(caught.value) is error
    assert caught.value.code == code
    assert str(caught.value) == f"mandrill: {words}"
    assert caught.value.provider == "mandrill"


def test_a_rule_raises_its_class_and_passes_retry_after_only_to_retries() -> None:
    with pytest.raises(RetryLater) as retry:
        Rule(RetryLater, "busy").raise_for("p", code="c", detail="d", retry_after=3.0)
    assert (str(retry.value), retry.value.code, retry.value.retry_after) == ("p: busy (d)", "c", 3.0)
    with pytest.raises(GiveUp) as gave_up:
        Rule(GiveUp, "no").raise_for("p", code="c", retry_after=3.0)
    assert str(gave_up.value) == "p: no"
    assert [Rule(e, "").action for e in (RetryLater, MaybeDelivered, GiveUp, ProviderMisconfigured)] == [
        "retry",
        "retry",
        "give_up",
        "misconfigured",
    ]


def test_the_client_keeps_every_connection_the_setting_allows() -> None:
    settings = load_settings(http_max_connections=5)
    client = make_client(timeout=10.0, max_connections=settings.http_max_connections)
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]  # httpcore's pool, read only
        assert (pool._max_connections, pool._max_keepalive_connections) == (5, 5)
        assert client.timeout == httpx.Timeout(10.0, connect=5.0)
    finally:
        client.close()


def test_requests_carry_only_the_headers_the_providers_use() -> None:
    client = make_client(timeout=10.0)
    try:
        sent = client.build_request("POST", "https://api.example.com/send", json={"a": 1}).headers
        assert "accept-encoding" not in sent and "connection" not in sent
        assert sent["user-agent"].startswith("notify-workers/")
        assert sent["content-type"] == "application/json"
    finally:
        client.close()


def test_sdk_response_carries_status_text_and_headers() -> None:
    reply = httpx.Response(
        201,
        content='{"sid": "SMé"}'.encode("latin-1"),
        headers=[("Content-Type", "application/json; charset=latin-1"), ("X-A", "1"), ("x-a", "2")],
    )
    converted = sdk_response(reply)
    assert converted.status_code == 201
    assert converted.text == '{"sid": "SMé"}'
    assert converted.headers["content-type"] == "application/json; charset=latin-1"
    assert converted.headers["x-a"] == "1, 2"  # repeated headers joined, names lower-cased


def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


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


def test_no_proxy_lets_a_provider_reach_its_server_directly(
    monkeypatch: pytest.MonkeyPatch, mandrill_server: MandrillServer
) -> None:
    no_proxy(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never reached: NO_PROXY covers the server
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    provider = MandrillProvider("test-key", base_url=mandrill_server.api_url, timeout=CLIENT_TIMEOUT)
    try:
        assert provider.send_email(make_email()).provider_message_id
    finally:
        provider.close()


class _Latin1Server(LocalHttpServer):
    """Answers every request with a Latin-1 body that says so in its Content-Type."""

    def handle(self, request: Request, fault: object) -> tuple[Reply, bool]:
        body = '{"sid": "SMé"}'.encode("latin-1")
        return Reply(201, body, {"Content-Type": "application/json; charset=latin-1"}), True

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        return Reply(status)


def test_twilio_replies_are_decoded_with_their_charset(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy(monkeypatch)
    with _Latin1Server() as server:
        client = RedirectingHttpClient(server.root_url, timeout=CLIENT_TIMEOUT)
        try:
            texts = [
                client.request("POST", "https://api.twilio.com/x.json", data={"a": "b"}, auth=("u", "p")).text
                for _ in range(2)
            ]
        finally:
            client.close()
    assert texts == ['{"sid": "SMé"}', '{"sid": "SMé"}']


def test_a_closed_provider_refuses_to_send_as_httpx_does(
    mandrill_server: MandrillServer, twilio_server: TwilioServer
) -> None:
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


class _CookieServer(LocalHttpServer):
    """Sets a cookie on every reply and records what each request carried."""

    def handle(self, request: Request, fault: object) -> tuple[Reply, bool]:
        return Reply(200, b"{}", {"Set-Cookie": "session=abc; Path=/"}), True

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        return Reply(status)


def test_a_cookie_a_server_sets_is_never_sent_back(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy(monkeypatch)
    with _CookieServer() as server:
        client = make_client(timeout=CLIENT_TIMEOUT)
        try:
            for _ in range(2):
                client.post(server.root_url + "/x", json={})
        finally:
            client.close()
        assert [item.request.headers.get("cookie") for item in server.received] == [None, None]
        assert len(client.cookies) == 0


def test_rewrite_url_moves_an_sdk_url_onto_the_base() -> None:
    url = rewrite_url("http://127.0.0.1:9999/prefix/", "https://api.twilio.com/2010-04-01/A.json?x=1#f")
    assert url == httpx.URL("http://127.0.0.1:9999/prefix/2010-04-01/A.json?x=1")


def test_an_unusable_mandrill_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="MANDRILL_BASE_URL"):
        MandrillProvider("k", base_url="https://mandrill.example/api\x00/1.0")
