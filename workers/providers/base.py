"""The provider interfaces every email and SMS provider implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from workers.messages import EmailMessage, Receipt, SmsMessage


@runtime_checkable
class EmailProvider(Protocol):
    """Sends one email; raises ``RetryLater``, ``GiveUp`` or ``ProviderMisconfigured`` on failure."""

    name: str

    def send_email(self, message: EmailMessage) -> Receipt: ...

    def close(self) -> None: ...


@runtime_checkable
class SmsProvider(Protocol):
    """Sends one SMS; raises ``RetryLater``, ``GiveUp`` or ``ProviderMisconfigured`` on failure."""

    name: str

    def send_sms(self, message: SmsMessage) -> Receipt: ...

    def close(self) -> None: ...
