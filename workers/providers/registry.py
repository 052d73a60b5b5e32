"""The one place that turns settings into concrete providers."""

from __future__ import annotations

from workers.providers.base import EmailProvider, SmsProvider
from workers.providers.outbox import OutboxProvider
from workers.settings import Settings


def build_email_provider(settings: Settings) -> EmailProvider:
    """The email provider (or fallback chain) that ``NOTIFY_EMAIL_PROVIDER`` names."""
    chain = [_email(name, settings) for name in settings.email_provider]
    if len(chain) == 1:
        return chain[0]
    raise NotImplementedError("fallback chains arrive with the providers issue")


def build_sms_provider(settings: Settings) -> SmsProvider:
    """The SMS provider (or fallback chain) that ``NOTIFY_SMS_PROVIDER`` names."""
    chain = [_sms(name, settings) for name in settings.sms_provider]
    if len(chain) == 1:
        return chain[0]
    raise NotImplementedError("fallback chains arrive with the providers issue")


def _email(name: str, settings: Settings) -> EmailProvider:
    if name == "outbox":
        return OutboxProvider(settings.outbox_dir)
    raise NotImplementedError(f"email provider {name!r} arrives with the providers issue")


def _sms(name: str, settings: Settings) -> SmsProvider:
    if name == "outbox":
        return OutboxProvider(settings.outbox_dir)
    raise NotImplementedError(f"SMS provider {name!r} arrives with the providers issue")
