"""Fallback chains: try the next provider when one fails transiently (``NOTIFY_EMAIL_PROVIDER=a,b``).

Decisions:

* ``RetryLater`` from a provider: try the next one now, before the task itself is retried.
* ``GiveUp``: stop. The refusal is about this message or recipient (hard bounce, opt-out, invalid
  number); another route would refuse it too, or worse, deliver to someone who asked us to stop.
* ``ProviderMisconfigured``: log at ERROR on every occurrence (loudly, so an operator fixes it) and
  try the next provider, so a broken key on the primary does not stop delivery while a working
  secondary exists. If every provider fails, the error raised is ``RetryLater`` when any provider
  failed transiently, else the first ``ProviderMisconfigured``.

The receipt is the sending provider's own (``Receipt.provider`` names it); ``detail["failed_over"]``
lists the providers that failed before it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Generic

from workers.errors import DeliveryError, GiveUp, ProviderMisconfigured, RateLimited, RetryLater
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.base import ChannelProvider, EmailProvider, SmsProvider

log = logging.getLogger(__name__)


def _run(
    providers: Sequence[ChannelProvider], send: Callable[[ChannelProvider], Receipt], notification_id: str
) -> Receipt:
    failures: list[DeliveryError] = []
    for provider in providers:
        try:
            receipt = send(provider)
        except GiveUp:
            raise
        except ProviderMisconfigured as exc:
            log.error(
                "provider %s is misconfigured, trying the next one for %s: %s",
                provider.name,
                notification_id,
                exc,
            )
            failures.append(exc)
            continue
        except RetryLater as exc:
            log.warning(
                "provider %s failed transiently, trying the next one for %s: %s",
                provider.name,
                notification_id,
                exc,
            )
            failures.append(exc)
            continue
        if failures:
            failed_over = [failure.provider or "?" for failure in failures]
            return dataclasses.replace(receipt, detail={**receipt.detail, "failed_over": failed_over})
        return receipt
    transient = [failure for failure in failures if isinstance(failure, RetryLater)]
    if transient:
        hints = [failure.retry_after for failure in transient if failure.retry_after is not None]
        last = transient[-1]
        summary = "; ".join(str(failure) for failure in failures)
        # The next attempt starts again at the first provider: the soonest hint is the useful one.
        # Only our own shared rate limits said no: keep that, so the retry is not counted.
        kind = RateLimited if all(isinstance(failure, RateLimited) for failure in transient) else RetryLater
        raise kind(
            f"every provider failed: {summary}",
            provider=last.provider,
            code=last.code,
            retry_after=min(hints) if hints else None,
        )
    raise failures[0]


class _Chain(Generic[ChannelProvider]):
    """What a chain is for either channel; each channel's subclass adds only its send method."""

    def __init__(self, providers: Sequence[ChannelProvider]) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers: tuple[ChannelProvider, ...] = tuple(providers)
        self.name = ",".join(provider.name for provider in self.providers)

    def close(self) -> None:
        for provider in self.providers:
            provider.close()


class FallbackEmailProvider(_Chain[EmailProvider]):
    """Email through the first provider of the chain that accepts the message."""

    def send_email(self, message: EmailMessage) -> Receipt:
        return _run(self.providers, lambda provider: provider.send_email(message), message.notification_id)


class FallbackSmsProvider(_Chain[SmsProvider]):
    """SMS through the first provider of the chain that accepts the message."""

    def send_sms(self, message: SmsMessage) -> Receipt:
        return _run(self.providers, lambda provider: provider.send_sms(message), message.notification_id)
