"""SMTP specifics: TLS modes, AUTH, connection reuse across sends and threads, and reconnection."""

from __future__ import annotations

import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import make_email, self_signed_context

from tests.fakes.smtp_server import DropAt, SmtpServer
from workers.errors import GiveUp, ProviderMisconfigured, RetryLater
from workers.messages import StoredTemplate
from workers.providers.smtp import SmtpProvider, classify_reply


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (421, RetryLater),
        (450, RetryLater),
        (451, RetryLater),
        (452, RetryLater),
        (550, GiveUp),
        (552, GiveUp),
        (553, GiveUp),
        (554, GiveUp),
        (530, ProviderMisconfigured),
        (535, ProviderMisconfigured),
    ],
)
def test_reply_codes(code: int, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        classify_reply(code, b"5.1.1 <person@example.org> said no", stage="RCPT")
    assert "person@example.org" not in str(caught.value)


def test_starttls_with_auth(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed_context(tmp_path)
    with SmtpServer(username="notify", password="s3cret", starttls_context=server_ctx) as server:
        provider = SmtpProvider(
            server.host,
            server.port,
            username="notify",
            password="s3cret",
            starttls=True,
            ssl_context=client_ctx,
            timeout=5,
        )
        provider.send_email(make_email())
        provider.close()
        assert len(server.received) == 1


def test_implicit_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed_context(tmp_path)
    with SmtpServer(implicit_tls_context=server_ctx) as server:
        provider = SmtpProvider(
            server.host, server.port, implicit_tls=True, ssl_context=client_ctx, timeout=5
        )
        provider.send_email(make_email())
        provider.close()
        assert len(server.received) == 1


def test_untrusted_certificate_is_misconfiguration(tmp_path: Path) -> None:
    server_ctx, _ = self_signed_context(tmp_path)
    with SmtpServer(starttls_context=server_ctx) as server:
        provider = SmtpProvider(
            server.host, server.port, starttls=True, ssl_context=ssl.create_default_context(), timeout=5
        )
        with pytest.raises(ProviderMisconfigured) as caught:
            provider.send_email(make_email())
        provider.close()
    assert caught.value.code == "tls"


def test_server_without_starttls_is_misconfiguration(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=True, timeout=5)
    with pytest.raises(ProviderMisconfigured):
        provider.send_email(make_email())
    provider.close()


def test_one_connection_serves_many_sends(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False, timeout=5)
    for n in range(5):
        provider.send_email(make_email(f"00000000-0000-4000-8000-00000000000{n}"))
    provider.close()
    assert len(smtp_server.received) == 5
    assert smtp_server.connections_opened == 1


def test_threads_share_a_small_pool(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False, timeout=5, max_idle=8)
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        receipts = list(pool.map(lambda i: provider.send_email(make_email(i)), ids))
    provider.close()
    assert [r.provider_message_id for r in receipts] == [f"<{i}@notify.example.com>" for i in ids]
    assert sorted(m.message["X-Notification-Id"] for m in smtp_server.received) == ids
    # With room to keep every sender's connection idle: at most one per concurrent sender.
    assert smtp_server.connections_opened <= 8


def test_drop_on_a_reused_connection_reconnects_once(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False, timeout=5)
    provider.send_email(make_email("00000000-0000-4000-8000-000000000001"))
    smtp_server.fail_next(DropAt("DATA"))
    provider.send_email(make_email("00000000-0000-4000-8000-000000000002"))
    # Dropped twice in a row: the one reconnection is spent, so the caller retries later.
    smtp_server.fail_next(DropAt("MAIL"), DropAt("MAIL"))
    with pytest.raises(RetryLater):
        provider.send_email(make_email("00000000-0000-4000-8000-000000000003"))
    provider.close()
    assert [m.message["X-Notification-Id"] for m in smtp_server.received] == [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
    ]
    # 1: sends 1 and 2 (dropped); 2: send 2 again, then send 3 (dropped); 3: send 3 again (dropped).
    assert smtp_server.connections_opened == 3


def test_stored_template_without_a_body_is_misconfiguration(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False)
    template = StoredTemplate("mention-notification", "handlebars", {})
    with pytest.raises(ProviderMisconfigured):
        provider.send_email(make_email(text=None, html=None, template=template))
    provider.close()
    assert smtp_server.received == []


def test_header_injection_is_refused(smtp_server: SmtpServer) -> None:
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False)
    with pytest.raises(GiveUp):
        provider.send_email(make_email(subject="hi\r\nBcc: victim@example.org"))
    provider.close()
    assert smtp_server.received == []


def test_unreachable_server_is_transient() -> None:
    with SmtpServer() as server:
        host, port = server.host, server.port
    provider = SmtpProvider(host, port, starttls=False, timeout=1)
    with pytest.raises(RetryLater) as caught:
        provider.send_email(make_email())
    provider.close()
    assert caught.value.code == "connection"


def test_long_messages_go_out_with_crlf_line_ends(smtp_server: SmtpServer) -> None:
    # Regression: bytes sent with LF-only line ends read as one line over the 1,000-octet limit.
    html = "<p>" + "<br>\n".join(f"line {n} of a long mention digest" for n in range(400)) + "</p>"
    provider = SmtpProvider(smtp_server.host, smtp_server.port, starttls=False)
    try:
        provider.send_email(make_email(html=html, text="x\n" * 600))
    finally:
        provider.close()
    (mail,) = smtp_server.received
    assert "line 399 of a long mention digest" in mail.message.get_body(("html",)).get_content()
