"""The provider interfaces every email and SMS provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

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


# Either channel's provider: what the fallback chain, the rate-limit wrapper and the registry are
# written once over, each channel keeping its own send method name.
ChannelProvider = TypeVar("ChannelProvider", EmailProvider, SmsProvider)


@dataclass(frozen=True, slots=True)
class Probe:
    """What a provider's probe found, in words for an operator (`notify health` prints them).

    ``quoted``: ``detail`` quotes an exception, whose text may quote a server's reply (an address,
    a URL, a secret), so whoever shows it scrubs it first. ``where``: the endpoint the probe could
    not talk to, when the check line should name it.
    """

    ok: bool
    detail: str
    where: str = ""
    quoted: bool = False

    @classmethod
    def failed(cls, exc: BaseException, *, where: str = "") -> Probe:
        """A failed probe that quotes the first line of ``exc``, its type first."""
        return cls(False, f"{type(exc).__name__}: {exc}".splitlines()[0], where, quoted=True)


class Probed(Protocol):
    """A provider that can show it is reachable and its credentials accepted, without sending."""

    name: str

    def probe(self, timeout: float) -> Probe:
        """Never raises for what it finds: an unreachable server or a refusal is a failed Probe."""
        ...

    def close(self) -> None: ...
