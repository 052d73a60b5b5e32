"""The registry builds each provider, and chains, from settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_email, make_sms

from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.smtp_server import SmtpServer
from tests.fakes.twilio_server import TwilioServer
from workers.errors import ConfigurationError
from workers.providers.fallback import FallbackEmailProvider
from workers.providers.mandrill import MandrillProvider
from workers.providers.outbox import OutboxProvider
from workers.providers.registry import build_email_provider, build_sms_provider
from workers.providers.smtp import SmtpProvider
from workers.providers.twilio import TwilioProvider
from workers.settings import load_settings


def test_environment_to_working_providers(
    monkeypatch: pytest.MonkeyPatch,
    mandrill_server: MandrillServer,
    smtp_server: SmtpServer,
    twilio_server: TwilioServer,
) -> None:
    env = {
        "NOTIFY_EMAIL_PROVIDER": "mandrill,smtp",
        "NOTIFY_SMS_PROVIDER": "twilio",
        "MANDRILL_API_KEY": "test-key",
        "MANDRILL_BASE_URL": mandrill_server.api_url,
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "SMTP_STARTTLS": "false",
        "TWILIO_ACCOUNT_SID": twilio_server.account_sid,
        "TWILIO_AUTH_TOKEN": twilio_server.auth_token,
        "TWILIO_BASE_URL": twilio_server.base_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    email = build_email_provider(settings)
    sms = build_sms_provider(settings)
    assert isinstance(email, FallbackEmailProvider)
    assert [type(p) for p in email.providers] == [MandrillProvider, SmtpProvider]
    assert isinstance(sms, TwilioProvider)
    assert email.send_email(make_email()).provider == "mandrill"
    assert sms.send_sms(make_sms()).provider == "twilio"
    email.close()
    sms.close()
    assert len(mandrill_server.accepted) == 1 and len(twilio_server.accepted) == 1


def test_single_outbox(tmp_path: Path) -> None:
    settings = load_settings(email_provider="outbox", sms_provider="outbox", outbox_dir=tmp_path)
    assert isinstance(build_email_provider(settings), OutboxProvider)
    assert isinstance(build_sms_provider(settings), OutboxProvider)


def test_missing_credentials_fail_at_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MANDRILL_API_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError):
        build_email_provider(load_settings(email_provider="mandrill"))
    with pytest.raises(ConfigurationError):
        build_sms_provider(load_settings(sms_provider="twilio"))
