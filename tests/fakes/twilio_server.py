"""A local Twilio REST server: ``POST /2010-04-01/Accounts/{sid}/Messages.json``, validated and recorded.

Run in-process (``with TwilioServer() as server: ... server.base_url``) or as a program:
``python -m tests.fakes.twilio_server --port 8026 --sid AC... --token secret``.

Checks what the real endpoint checks first: Basic auth ``sid:token`` (20003), the form fields
``To`` (21604 missing, 21211 not E.164), ``From`` or ``MessagingServiceSid`` (21603), ``Body``
(21602 missing, 21617 over 1,600 characters); errors use Twilio's JSON
``{"code", "message", "more_info", "status"}``.

A message created with a ``StatusCallback`` URL gets Twilio's status callbacks there: ``queued``,
``sent``, then ``delivered`` or what ``set_callback_outcome`` chose for the number (``undelivered``
or ``failed`` with an ``ErrorCode``), each a form POST signed with ``X-Twilio-Signature`` (the
SDK's own algorithm, keyed by the auth token). ``configure_callbacks`` switches on duplicates
(every callback twice), reordering (the final status first) and a delay before each message's
callbacks.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from twilio.request_validator import RequestValidator

from tests.fakes.http_base import LocalHttpServer, Reply, Request
from tests.fakes.program import serve_until_stopped
from tests.fakes.webhook_poster import WebhookPoster

DEFAULT_SID = "AC" + "0" * 32
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_ACCOUNT = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)\.json$")
MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "The 'To' number {to} is not a valid phone number.",
    21212: "The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


@dataclass(frozen=True, slots=True)
class TwilioError:
    """Answer with Twilio error ``code`` and HTTP ``status``."""

    code: int
    status: int = 400
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """The final status callback for a number: ``delivered``, or ``undelivered``/``failed`` with a code."""

    status: str = "delivered"
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class CallbackSwitches:
    """How callbacks misbehave: each sent twice, the final one first, or held back ``delay`` seconds."""

    duplicates: bool = False
    reorder: bool = False
    delay: float = 0.0


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TwilioServer(LocalHttpServer):
    """Speaks the Twilio Messages API on 127.0.0.1; ``base_url`` is the value for TWILIO_BASE_URL."""

    def __init__(
        self,
        account_sid: str = DEFAULT_SID,
        auth_token: str = "test-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._refusals: dict[str, int] = {}
        self._callback_outcomes: dict[str, CallbackOutcome] = {}
        self._switches = CallbackSwitches()
        self._poster: WebhookPoster | None = None

    @property
    def base_url(self) -> str:
        return self.root_url

    def refuse_number(self, number: str, code: int = 21610) -> None:
        """Every message to ``number`` fails with ``code`` (21610: the recipient replied STOP)."""
        with self._lock:
            self._refusals[number] = code

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._refusals.clear()
            self._callback_outcomes.clear()
            self._switches = CallbackSwitches()

    # --- status callbacks ----------------------------------------------------------------------

    def set_callback_outcome(
        self, number: str, status: str = "delivered", error_code: int | None = None
    ) -> None:
        """The final callback for messages to ``number``: e.g. ``("undelivered", 30005)``."""
        with self._lock:
            self._callback_outcomes[number] = CallbackOutcome(status, error_code)

    def configure_callbacks(
        self, *, duplicates: bool = False, reorder: bool = False, delay: float = 0.0
    ) -> None:
        with self._lock:
            self._switches = CallbackSwitches(duplicates, reorder, delay)

    @property
    def callback_posts(self) -> list[Any]:
        """Every status callback POST as it ended (``Posted``: form, last status, attempts)."""
        return self._poster.posted if self._poster is not None else []

    def wait_callbacks(self, timeout: float = 30.0) -> bool:
        """Whether every status callback queued so far has been posted (or given up) in time."""
        return self._poster is None or self._poster.wait_idle(timeout)

    def stop(self) -> None:
        super().stop()
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    def _queue_callbacks(self, url: str, resource: Mapping[str, Any]) -> None:
        with self._lock:
            outcome = self._callback_outcomes.get(str(resource["to"]), CallbackOutcome())
            switches = self._switches
            if self._poster is None:
                self._poster = WebhookPoster()
            poster = self._poster
        common = {
            "AccountSid": str(resource["account_sid"]),
            "ApiVersion": "2010-04-01",
            "MessageSid": str(resource["sid"]),
            "SmsSid": str(resource["sid"]),
            "To": str(resource["to"]),
            "From": str(resource["from"] or ""),
        }
        forms: list[dict[str, str]] = []
        for status in ("queued", "sent", outcome.status):
            form = {**common, "MessageStatus": status, "SmsStatus": status}
            if status == outcome.status and outcome.error_code is not None:
                form["ErrorCode"] = str(outcome.error_code)
            if status in ("delivered", "undelivered"):
                form["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
            forms.append(form)
        if switches.reorder:
            forms.reverse()
        if switches.duplicates:
            forms = [form for form in forms for _ in range(2)]
        validator = RequestValidator(self.auth_token)
        for index, form in enumerate(forms):
            headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
            poster.post(url, list(form.items()), headers, delay=switches.delay if index == 0 else 0.0)

    # --- protocol ------------------------------------------------------------------------------

    @staticmethod
    def _error(code: int, status: int, retry_after: float | None = None, **fields: str) -> Reply:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        message = MESSAGES.get(code, "Error").format(**fields) if fields else MESSAGES.get(code, "Error")
        return Reply.of_json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        if status == 429:
            return self._error(20429, 429, retry_after)
        if status >= 500:
            return self._error(20500, status, retry_after)
        return self._error(status, status, retry_after)

    def fault_from_json(self, spec: Mapping[str, Any]) -> Any:
        if spec.get("kind") == "error":
            retry_after = spec.get("retry_after")
            return TwilioError(
                int(spec["code"]),
                int(spec.get("status", 400)),
                float(retry_after) if retry_after is not None else None,
            )
        return super().fault_from_json(spec)

    def _authenticated(self, request: Request, sid: str) -> bool:
        header = request.headers.get("Authorization") or request.headers.get("authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == sid == self.account_sid and password == self.auth_token

    def handle(self, request: Request, fault: Any) -> tuple[Reply, bool]:
        account = _ACCOUNT.match(request.path.split("?")[0])
        if account and request.method == "GET":
            # Account fetch, as a health check does: proves the credentials without sending.
            if not self._authenticated(request, account["sid"]):
                return self._error(20003, 401), False
            return Reply.of_json(200, {"sid": account["sid"], "status": "active", "type": "Full"}), False
        match = _PATH.match(request.path.split("?")[0])
        if not match:
            return self._error(20404, 404), False
        if request.method != "POST":
            return Reply.of_json(405, {"code": 20004, "message": "Method not allowed", "status": 405}), False
        sid = match["sid"]
        if not self._authenticated(request, sid):
            return self._error(20003, 401), False
        form = request.form
        to = form.get("To", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        body = form.get("Body", "")
        if not to:
            return self._error(21604, 400), False
        if not E164.match(to):
            return self._error(21211, 400, to=to), False
        if not sender and not service:
            return self._error(21603, 400), False
        if sender and not E164.match(sender):
            return self._error(21212, 400, from_=sender), False
        if service and not MESSAGING_SERVICE.match(service):
            return self._error(20404, 404), False
        if not body:
            return self._error(21602, 400), False
        if _utf16_length(body) > 1600:
            return self._error(21617, 400), False
        if isinstance(fault, TwilioError):
            return self._error(fault.code, fault.status, fault.retry_after), False
        with self._lock:
            refusal = self._refusals.get(to)
        if refusal is not None:
            return self._error(refusal, 400), False
        message_sid = "SM" + uuid.uuid4().hex
        now = formatdate(usegmt=True)
        resource = {
            "sid": message_sid,
            "account_sid": sid,
            "to": to,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "body": body,
            "status": "accepted" if service else "queued",
            "num_segments": "1",
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}/Media.json"},
        }
        callback = form.get("StatusCallback", "")
        if callback.startswith(("http://", "https://")):
            self._queue_callbacks(callback, resource)
        return Reply.of_json(201, resource), True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Twilio Messages API server for tests and demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sid", default=DEFAULT_SID)
    parser.add_argument("--token", default="test-token")
    args = parser.parse_args(argv)
    server = TwilioServer(args.sid, args.token, host=args.host, port=args.port)
    serve_until_stopped(server, lambda: f"TWILIO_BASE_URL={server.base_url}")


if __name__ == "__main__":
    main()
