"""What a provider's refusal means for us: the Rule each provider's error table maps a key to.

Every provider keeps one table from its own error key (a Mandrill error ``name`` or
``reject_reason``, a Twilio error code, an SMTP reply code, an httpx exception) to a ``Rule``: our
error class from ``workers.errors`` and the reason in words. ``Rule.raise_for`` is the one place
that turns a rule into the exception, so every provider words and fills its errors alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from workers.errors import DeliveryError, GiveUp, ProviderMisconfigured, RetryLater
from workers.receipts import SuppressionReason

# The names tests and operators know each outcome by, per error class (most specific first:
# MaybeDelivered and RateLimited are RetryLater too).
_ACTIONS: tuple[tuple[type[DeliveryError], str], ...] = (
    (RetryLater, "retry"),
    (GiveUp, "give_up"),
    (ProviderMisconfigured, "misconfigured"),
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of an error table: raise ``error`` because ``why``.

    ``suppress`` marks a refusal that says the recipient cannot or will not receive: the ``GiveUp``
    raised carries it, so the dispatcher also puts the recipient on the suppression list.
    """

    error: type[DeliveryError]
    why: str
    suppress: SuppressionReason | None = None

    def __post_init__(self) -> None:
        if self.suppress is not None and self.error is not GiveUp:
            raise TypeError("only a give-up rule can put the recipient on the suppression list")

    @property
    def action(self) -> str:
        """``retry``, ``give_up`` or ``misconfigured``: what the caller will do about it."""
        for base, action in _ACTIONS:
            if issubclass(self.error, base):
                return action
        raise TypeError(f"{self.error.__name__} is not a retry, give-up or misconfiguration error")

    def raise_for(
        self, provider: str, *, code: str, detail: str = "", retry_after: float | None = None
    ) -> NoReturn:
        """Raise this rule's error for ``provider``; ``retry_after`` only reaches retryable errors."""
        message = f"{provider}: {self.why}" + (f" ({detail})" if detail else "")
        if issubclass(self.error, RetryLater):
            raise self.error(message, provider=provider, code=code, retry_after=retry_after)
        if self.suppress is not None:
            raise GiveUp(message, provider=provider, code=code, suppress=self.suppress.value)
        raise self.error(message, provider=provider, code=code)
