"""Fallback chains with real providers against their local servers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import make_email, make_sms

from tests.fakes.http_base import Status
from tests.fakes.mandrill_server import MandrillServer, Reject
from tests.fakes.smtp_server import Reply, SmtpServer
from tests.fakes.twilio_server import TwilioServer
from workers.errors import GiveUp, ProviderMisconfigured, RetryLater
from workers.providers.fallback import FallbackEmailProvider, FallbackSmsProvider
from workers.providers.mandrill import MandrillProvider
from workers.providers.outbox import OutboxProvider
from workers.providers.smtp import SmtpProvider
from workers.providers.twilio import TwilioProvider


def _chain(mandrill: MandrillServer, smtp: SmtpServer, key: str = "test-key") -> FallbackEmailProvider:
    return FallbackEmailProvider(
        [
            MandrillProvider(key, base_url=mandrill.api_url, timeout=2),
            SmtpProvider(smtp.host, smtp.port, starttls=False, timeout=2),
        ]
    )


def test_first_provider_sends_when_it_can(mandrill_server: MandrillServer, smtp_server: SmtpServer) -> None:
    chain = _chain(mandrill_server, smtp_server)
    receipt = chain.send_email(make_email())
    chain.close()
    assert chain.name == "mandrill,smtp"
    assert receipt.provider == "mandrill"
    assert "failed_over" not in receipt.detail
    assert smtp_server.received == []


def test_transient_failure_falls_through(mandrill_server: MandrillServer, smtp_server: SmtpServer) -> None:
    mandrill_server.fail_next(Status(503))
    chain = _chain(mandrill_server, smtp_server)
    receipt = chain.send_email(make_email())
    chain.close()
    assert receipt.provider == "smtp"
    assert receipt.detail["failed_over"] == ["mandrill"]
    assert len(smtp_server.received) == 1
    assert mandrill_server.accepted == []


def test_permanent_refusal_stops_the_chain(mandrill_server: MandrillServer, smtp_server: SmtpServer) -> None:
    mandrill_server.fail_next(Reject("hard-bounce"))
    chain = _chain(mandrill_server, smtp_server)
    with pytest.raises(GiveUp):
        chain.send_email(make_email())
    chain.close()
    assert smtp_server.received == []


def test_misconfigured_provider_is_reported_and_skipped(
    mandrill_server: MandrillServer, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    chain = _chain(mandrill_server, smtp_server, key="revoked-key")
    with caplog.at_level(logging.ERROR, logger="workers.providers.fallback"):
        receipt = chain.send_email(make_email())
    chain.close()
    assert receipt.provider == "smtp"
    assert any("misconfigured" in record.getMessage() for record in caplog.records)
    assert all("revoked-key" not in record.getMessage() for record in caplog.records)


def test_all_transient_raises_retry_with_the_soonest_hint(
    mandrill_server: MandrillServer, smtp_server: SmtpServer
) -> None:
    mandrill_server.fail_next(Status(429, retry_after=30))
    smtp_server.fail_next(Reply("DATA", 451, "4.3.0 try later"))
    chain = _chain(mandrill_server, smtp_server)
    with pytest.raises(RetryLater) as caught:
        chain.send_email(make_email())
    chain.close()
    assert caught.value.retry_after == 30.0
    assert caught.value.provider == "smtp"


def test_all_misconfigured_raises_misconfigured(mandrill_server: MandrillServer) -> None:
    other = MandrillServer(api_keys={"other"})
    other.start()
    try:
        chain = FallbackEmailProvider(
            [
                MandrillProvider("bad", base_url=mandrill_server.api_url),
                MandrillProvider("bad", base_url=other.api_url),
            ]
        )
        with pytest.raises(ProviderMisconfigured):
            chain.send_email(make_email())
        chain.close()
    finally:
        other.stop()


def test_sms_chain_falls_through_to_outbox(twilio_server: TwilioServer, tmp_path: Path) -> None:
    twilio_server.fail_next(Status(500))
    chain = FallbackSmsProvider(
        [
            TwilioProvider(
                twilio_server.account_sid, twilio_server.auth_token, base_url=twilio_server.base_url
            ),
            OutboxProvider(tmp_path),
        ]
    )
    receipt = chain.send_sms(make_sms())
    chain.close()
    assert receipt.provider == "outbox"
    assert receipt.detail["failed_over"] == ["twilio"]
    assert len(list((tmp_path / "sms").glob("*.json"))) == 1
