"""Provider wrappers that ask the shared rate limiter first, and say ``RateLimited`` instead of waiting."""

from __future__ import annotations

from typing import Generic

from workers.errors import RateLimited
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.base import ChannelProvider, EmailProvider, SmsProvider
from workers.ratelimit import SMS_SENDER, Limiter, Verdict


def _refuse(provider: str, verdict: Verdict) -> RateLimited:
    # The dispatcher turns this into an uncounted retry after ``retry_after``: nobody sleeps in a
    # worker thread, and the notification's retry budget is not spent on our own throttling.
    return RateLimited(
        f"{provider}: shared rate limit {verdict.limit} reached",
        provider=provider,
        code="rate-limited",
        retry_after=verdict.wait,
    )


class _Limited(Generic[ChannelProvider]):
    """``inner`` behind its provider limit, for either channel; a subclass adds its send method."""

    def __init__(self, inner: ChannelProvider, limiter: Limiter) -> None:
        self.inner: ChannelProvider = inner
        self.name = inner.name
        self._limiter = limiter

    def _admit(self, *more: tuple[str, str | None]) -> None:
        # One acquire for every limit, so the limits are taken together or not at all.
        verdict = self._limiter.acquire([(self.name, None), *more])
        if not verdict.allowed:
            raise _refuse(self.name, verdict)

    def close(self) -> None:
        self.inner.close()


class RateLimitedEmailProvider(_Limited[EmailProvider]):
    """``inner`` behind the limit named after it (``mandrill``, ``smtp``, ...)."""

    def send_email(self, message: EmailMessage) -> Receipt:
        self._admit()
        return self.inner.send_email(message)


class RateLimitedSmsProvider(_Limited[SmsProvider]):
    """``inner`` behind its provider limit and the per-sender limit, taken together or not at all."""

    def send_sms(self, message: SmsMessage) -> Receipt:
        self._admit((SMS_SENDER, message.from_number))
        return self.inner.send_sms(message)
