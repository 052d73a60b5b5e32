"""Provider wrappers that ask the shared rate limiter first, and say ``RateLimited`` instead of waiting."""

from __future__ import annotations

from workers.errors import RateLimited
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.base import EmailProvider, SmsProvider
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


class RateLimitedEmailProvider:
    """``inner`` behind the limit named after it (``mandrill``, ``smtp``, ...)."""

    def __init__(self, inner: EmailProvider, limiter: Limiter) -> None:
        self.inner = inner
        self.name = inner.name
        self._limiter = limiter

    def send_email(self, message: EmailMessage) -> Receipt:
        verdict = self._limiter.acquire([(self.name, None)])
        if not verdict.allowed:
            raise _refuse(self.name, verdict)
        return self.inner.send_email(message)

    def close(self) -> None:
        self.inner.close()


class RateLimitedSmsProvider:
    """``inner`` behind its provider limit and the per-sender limit, taken together or not at all."""

    def __init__(self, inner: SmsProvider, limiter: Limiter) -> None:
        self.inner = inner
        self.name = inner.name
        self._limiter = limiter

    def send_sms(self, message: SmsMessage) -> Receipt:
        verdict = self._limiter.acquire([(self.name, None), (SMS_SENDER, message.from_number)])
        if not verdict.allowed:
            raise _refuse(self.name, verdict)
        return self.inner.send_sms(message)

    def close(self) -> None:
        self.inner.close()
