"""Twilio sends get StatusCallback (our webhook receiver) when NOTIFY_PUBLIC_URL is set, and the SID back."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_sms

from tests.fakes.twilio_server import TwilioServer
from workers.providers.registry import build_sms_provider
from workers.settings import load_settings


@pytest.mark.parametrize(
    ("public_url", "callback"),
    [
        ("https://hooks.example.net/notify/", "https://hooks.example.net/notify/webhooks/twilio"),
        ("", None),
    ],
)
def test_status_callback_follows_the_public_url(
    public_url: str, callback: str | None, twilio_server: TwilioServer, tmp_path: Path
) -> None:
    settings = load_settings(
        sms_provider="twilio",
        public_url=public_url,
        state_dir=tmp_path,
        TWILIO_ACCOUNT_SID=twilio_server.account_sid,
        TWILIO_AUTH_TOKEN=twilio_server.auth_token,
        TWILIO_BASE_URL=twilio_server.base_url,
    )
    provider = build_sms_provider(settings)
    receipt = provider.send_sms(make_sms())
    provider.close()
    [received] = twilio_server.accepted
    assert received.form.get("StatusCallback") == callback
    # The SID is what the status callbacks will name: it is the row's provider_message_id.
    assert receipt.provider == "twilio"
    assert receipt.provider_message_id is not None and receipt.provider_message_id.startswith("SM")
