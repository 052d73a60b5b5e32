"""Pieces shared by the operations tests: personal data to look for, events carrying it, local providers."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.factories import basic_email, sms
from tests.fakes.twilio_server import DEFAULT_SID

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(probe: Callable[[], T | None], *, timeout: float = 60.0, every: float = 0.25) -> T:
    """Poll until ``probe`` returns something truthy; raise with the last value when it never does."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, OSError) as exc:
            last = exc  # not up yet: keep polling
        else:
            if value:
                return value
            last = value
        time.sleep(every)
    raise AssertionError(f"gave up waiting; last value: {last!r}")


@dataclass
class Personal:
    """Every piece of personal data the tests put into events, to search for in what we expose."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    values: list[str] = field(default_factory=list)

    def keep(self, *values: str) -> None:
        for value in values:
            self.values.append(value)
            if value.startswith("+"):
                self.values.append(value[1:])  # a number also counts without its plus sign
            if "@" in value:
                self.values.append(value.split("@")[0])  # and an address by its local part alone

    def leaks(self, text: str) -> list[str]:
        return sorted({value for value in self.values if value in text})

    def email(self, n: int, **fields: str) -> dict[str, Any]:
        data = {
            "fromAddress": f"sender-{self.tag}@example.com",
            "toAddress": f"recipient{n}-{self.tag}@example.org",
            "replyTo": f"replies-{self.tag}@example.net",
            "subject": f"Subject {self.tag} number {n} about a private matter",
            "body": f"Body words {self.tag} {n} nobody else should read",
            "bodyHtml": f"<p>Html words {self.tag} {n} nobody else should read</p>",
        }
        data.update(fields)
        self.keep(*data.values())
        return basic_email(**data)

    def text(self, n: int, **fields: str) -> dict[str, Any]:
        data = {
            "fromNumber": "+14155550100",
            "toNumber": f"+1415555{n:04d}",
            "message": f"Text {self.tag} {n}: your private code",
        }
        data.update(fields)
        self.keep(data["toNumber"], data["message"])
        return sms(**data)


def as_messages(events: Iterable[dict[str, Any]]) -> list[tuple[bytes, str, str]]:
    """Events as raw bus messages (proto3 JSON), routed by their payload type."""
    out = []
    for event in events:
        kind = event["data"]["@type"].rsplit("/", 1)[-1]
        out.append((json.dumps(event).encode(), "application/json", kind))
    return out


def provider_env(mandrill_url: str, twilio_url: str) -> dict[str, str]:
    return {
        "NOTIFY_EMAIL_PROVIDER": "mandrill",
        "NOTIFY_SMS_PROVIDER": "twilio",
        "MANDRILL_API_KEY": "test-key",
        "MANDRILL_BASE_URL": mandrill_url,
        "TWILIO_ACCOUNT_SID": DEFAULT_SID,
        "TWILIO_AUTH_TOKEN": "test-token",
        "TWILIO_BASE_URL": twilio_url,
        # Short first retry, so a transient failure is retried within the test.
        "NOTIFY_RETRY_BASE": "0.2",
    }
