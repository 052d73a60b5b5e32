"""The addresses of an EmailMessage as providers put them on the wire: IDN domains in ASCII (punycode).

Intake accepts internationalised domains (``ana@münchen.example``); SMTP commands and headers, and
Mandrill's ``email`` fields, take the ASCII form (``ana@xn--mnchen-3ya.example``), which names the
same mailbox. Local parts are left alone: intake accepts ASCII ones only, and a provider that meets
another one decides for itself (SMTP with SMTPUTF8, Mandrill refuses).
"""

from __future__ import annotations

from dataclasses import replace

from workers.errors import GiveUp
from workers.events.syntax import ascii_email_address
from workers.messages import EmailMessage


def _ascii(value: str, field: str, provider: str) -> str:
    try:
        return ascii_email_address(value)
    except ValueError:
        # Our own check failed on a value intake let through: a refusal of this message, named.
        raise GiveUp(
            f"{provider}: {field} is not an address that can be sent (bad domain)",
            provider=provider,
            code="address",
        ) from None


def with_ascii_domains(message: EmailMessage, *, provider: str) -> EmailMessage:
    """``message`` with the domains of from, to and reply-to in ASCII; raises GiveUp if one is invalid."""
    from_address = _ascii(message.from_address, "from address", provider)
    to_address = _ascii(message.to_address, "to address", provider)
    reply_to = _ascii(message.reply_to, "reply-to address", provider) if message.reply_to else None
    if (from_address, to_address, reply_to) == (message.from_address, message.to_address, message.reply_to):
        return message
    return replace(message, from_address=from_address, to_address=to_address, reply_to=reply_to)


def has_ascii_local_parts(message: EmailMessage) -> bool:
    """Whether every address of ``message`` has an ASCII local part (all that Mandrill, or SMTP
    without SMTPUTF8, can carry)."""
    return all(
        address.rpartition("@")[0].isascii()
        for address in (message.from_address, message.to_address, message.reply_to or "")
    )
