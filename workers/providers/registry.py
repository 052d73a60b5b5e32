"""The one place that turns settings into concrete providers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workers.providers.base import ChannelProvider, EmailProvider, Probed, SmsProvider
from workers.providers.fallback import FallbackEmailProvider, FallbackSmsProvider
from workers.providers.limited import RateLimitedEmailProvider, RateLimitedSmsProvider
from workers.providers.mandrill import MandrillProvider
from workers.providers.outbox import OutboxProvider
from workers.providers.smtp import SmtpProvider
from workers.providers.twilio import TwilioProvider
from workers.ratelimit import Limiter
from workers.settings import EMAIL_PROVIDERS, Settings


def build_email_provider(settings: Settings, *, limiter: Limiter | None = None) -> EmailProvider:
    """The email provider (or fallback chain) that ``NOTIFY_EMAIL_PROVIDER`` names.

    With a ``limiter`` each provider of the chain sits behind its own shared rate limit, so a
    chain moves on to the next provider when the first one's limit is reached.
    Raises ConfigurationError when a named provider lacks its settings (e.g. no MANDRILL_API_KEY).
    """
    chain: list[EmailProvider] = [_email(name, settings) for name in settings.email_provider]
    return _assemble(chain, limiter, RateLimitedEmailProvider, FallbackEmailProvider)


def build_sms_provider(settings: Settings, *, limiter: Limiter | None = None) -> SmsProvider:
    """The SMS provider (or fallback chain) that ``NOTIFY_SMS_PROVIDER`` names, rate-limited as above
    and also per sender number (limit ``sms-sender``)."""
    chain: list[SmsProvider] = [_sms(name, settings) for name in settings.sms_provider]
    return _assemble(chain, limiter, RateLimitedSmsProvider, FallbackSmsProvider)


def _assemble(
    chain: Sequence[ChannelProvider],
    limiter: Limiter | None,
    limited: Callable[[ChannelProvider, Limiter], ChannelProvider],
    fallback: Callable[[Sequence[ChannelProvider]], ChannelProvider],
) -> ChannelProvider:
    # Each provider behind its own limit first, so a chain moves on when one provider's limit says no.
    if limiter is not None:
        chain = [limited(provider, limiter) for provider in chain]
    return chain[0] if len(chain) == 1 else fallback(chain)


def build_named_provider(name: str, settings: Settings) -> Probed:
    """The one provider ``name`` alone, as the chains hold it (no limiter, no fallback): what
    `notify health` probes. Raises ConfigurationError as the chains do."""
    return _email(name, settings) if name in EMAIL_PROVIDERS else _sms(name, settings)


def _email(name: str, settings: Settings) -> MandrillProvider | SmtpProvider | OutboxProvider:
    if name == "outbox":
        return OutboxProvider(settings.outbox_dir, message_id_domain=settings.message_id_domain)
    if name == "mandrill":
        return MandrillProvider(
            settings.mandrill_api_key.get_secret_value(),
            base_url=settings.mandrill_base_url,
            timeout=settings.mandrill_timeout,
            max_connections=settings.http_max_connections,
        )
    if name == "smtp":
        return SmtpProvider(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls,
            implicit_tls=settings.smtp_ssl,
            timeout=settings.smtp_timeout,
            message_id_domain=settings.message_id_domain,
        )
    raise ValueError(f"unknown email provider {name!r}")  # settings validation makes this unreachable


def _sms(name: str, settings: Settings) -> TwilioProvider | OutboxProvider:
    if name == "outbox":
        return OutboxProvider(settings.outbox_dir)
    if name == "twilio":
        return TwilioProvider(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            base_url=settings.twilio_base_url,
            timeout=settings.twilio_timeout,
            # Twilio posts each status change of the message to our webhook receiver.
            status_callback=f"{settings.public_url.rstrip('/')}/webhooks/twilio"
            if settings.public_url
            else None,
            max_connections=settings.http_max_connections,
        )
    raise ValueError(f"unknown SMS provider {name!r}")  # settings validation makes this unreachable
