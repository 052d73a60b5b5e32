"""Building signed webhook requests and Mandrill events the way the providers do, for the webhook tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx
from pydantic import SecretStr
from starlette.types import ASGIApp
from twilio.request_validator import RequestValidator

from workers.providers import mandrill_webhooks
from workers.webhooks import ReceiverConfig

PUBLIC_URL = "https://hooks.example.com"
MANDRILL_KEY = "whk-test-key-0123"
TWILIO_TOKEN = "twilio-test-token-0123"
SUPPRESSION_KEY = b"suppression-test-key-0123456789"
MESSAGE_ID = "0123456789abcdef0123456789abcdef"
MESSAGE_SID = "SM" + "ab" * 16
TS = 1_760_000_000


def receiver_config() -> ReceiverConfig:
    return ReceiverConfig(
        public_url=PUBLIC_URL,
        suppression_key=SUPPRESSION_KEY,
        mandrill_webhook_key=SecretStr(MANDRILL_KEY),
        twilio_auth_token=SecretStr(TWILIO_TOKEN),
    )


def mandrill_event(
    kind: str, *, email: str = "ana@example.com", message_id: str = MESSAGE_ID, ts: int = TS, **msg: Any
) -> dict[str, Any]:
    return {"event": kind, "_id": message_id, "ts": ts, "msg": {"_id": message_id, "email": email, **msg}}


def mandrill_form(
    events: Sequence[Any] | str, *, url: str = PUBLIC_URL + "/webhooks/mandrill", key: str = MANDRILL_KEY
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of a signed Mandrill POST of ``events`` (a list, or raw text)."""
    raw = events if isinstance(events, str) else json.dumps(events)
    form = {mandrill_webhooks.EVENTS_FIELD: raw}
    signature = mandrill_webhooks.signature(key.encode(), url, form.items())
    return form, {mandrill_webhooks.SIGNATURE_HEADER: signature}


def twilio_form(
    fields: Mapping[str, str], *, url: str = PUBLIC_URL + "/webhooks/twilio", token: str = TWILIO_TOKEN
) -> tuple[dict[str, str], dict[str, str]]:
    form = dict(fields)
    return form, {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def twilio_fields(status: str, *, code: str | None = None, to: str = "+447700900123") -> dict[str, str]:
    fields = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "MessageSid": MESSAGE_SID,
        "SmsSid": MESSAGE_SID,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": to,
        "From": "+15005550006",
    }
    if code is not None:
        fields["ErrorCode"] = code
    return fields


class AsgiClient:
    """Blocking calls into an ASGI app; its base URL is not the public one, as behind a proxy."""

    def __init__(self, app: ASGIApp, base_url: str = "http://10.0.0.7:8025") -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                return await client.request(method, path, **kwargs)

        return anyio.run(call)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)
