"""A local Mandrill API server: messages/send and messages/send-template, validated and recorded.

Run in-process (``with MandrillServer(api_keys={"k"}) as server: ... server.api_url``) or as a
program: ``python -m tests.fakes.mandrill_server --port 8025 --key test-key``.

Like the real API it answers errors with HTTP 500 and ``{"status": "error", "code", "name",
"message"}``, and a 200 with one result per recipient (``sent``, ``queued``, ``rejected`` ...).

With ``configure_webhooks(url, key)`` it also behaves like Mandrill's webhooks: after each send it
posts the message's events (``send``, then what ``set_outcome`` chose for that recipient:
delivered, hard_bounce, soft_bounce then delivered, spam, reject), batched as Mandrill does (the
form field ``mandrill_events``, a JSON array of at most 1,000 events) and signed with
``X-Mandrill-Signature`` over the URL as registered.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tests.fakes.http_base import LocalHttpServer, Reply, Request
from tests.fakes.program import serve_until_stopped
from tests.fakes.webhook_poster import WebhookPoster
from workers.providers.mandrill_webhooks import EVENTS_FIELD, MAX_EVENTS, SIGNATURE_HEADER, signature

API_PREFIX = "/api/1.0/"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ERROR_CODES = {
    "Invalid_Key": -1,
    "ValidationError": -2,
    "GeneralError": -1,
    "Unknown_Template": 5,
    "ServiceUnavailable": -1,
    "PaymentRequired": -1,
}


class Outcome(StrEnum):
    """What happens to a message after Mandrill accepted it, as its webhooks will tell."""

    DELIVERED = "delivered"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE_THEN_DELIVERED = "soft_bounce_then_delivered"
    SPAM = "spam"  # delivered, then the recipient marks it as spam
    REJECT = "reject"  # refused at send time ("rejected" in the answer), and a reject event


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where the events go and how they are signed (``signed_url``: the URL as registered)."""

    url: str
    key: str
    signed_url: str
    batch_interval: float


@dataclass(frozen=True, slots=True)
class ErrorName:
    """Answer with the Mandrill error ``name`` (HTTP 500, as Mandrill does)."""

    name: str
    message: str = "simulated error"


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer 200 with the recipient ``rejected`` for ``reason`` (hard-bounce, unsub, ...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Queued:
    """Answer 200 with the recipient ``queued`` (held in Mandrill's backlog) for ``reason``."""

    reason: str = "quota"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Answer HTTP 429 with Retry-After."""

    retry_after: float = 1.0


class MandrillServer(LocalHttpServer):
    """Speaks the Mandrill JSON API on 127.0.0.1; ``api_url`` is the root to give MANDRILL_BASE_URL."""

    def __init__(
        self,
        api_keys: Collection[str] = ("test-key",),
        *,
        templates: Collection[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.api_keys = frozenset(api_keys)
        # None: every template name exists; otherwise only these (others are Unknown_Template).
        self.templates = frozenset(templates) if templates is not None else None
        self._denylist: dict[str, str] = {}
        self._outcomes: dict[str, tuple[Outcome, str]] = {}
        self._webhook: WebhookTarget | None = None
        self._events: list[dict[str, Any]] = []
        self._flush_timer: threading.Timer | None = None
        self._poster: WebhookPoster | None = None

    @property
    def api_url(self) -> str:
        return self.root_url + API_PREFIX.rstrip("/")

    @property
    def base_url(self) -> str:
        return self.api_url

    def reject_address(self, email: str, reason: str = "hard-bounce") -> None:
        """Put ``email`` on the rejection denylist: every send to it is ``rejected`` for ``reason``."""
        with self._lock:
            self._denylist[email.lower()] = reason

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._denylist.clear()
            self._outcomes.clear()
            self._events.clear()

    # --- webhooks ------------------------------------------------------------------------------

    def configure_webhooks(
        self, url: str, key: str, *, signed_url: str | None = None, batch_interval: float = 0.05
    ) -> None:
        """Post events to ``url`` signed with ``key`` over ``signed_url`` (default ``url``).

        ``batch_interval``: events gathered this long go out as one batch (Mandrill: about a minute).
        """
        with self._lock:
            self._webhook = WebhookTarget(url, key, signed_url or url, batch_interval)
            if self._poster is None:
                self._poster = WebhookPoster()

    def set_outcome(self, email: str, outcome: Outcome | str, *, reject_reason: str = "hard-bounce") -> None:
        """What sends to ``email`` lead to (default delivered); ``reject_reason`` for REJECT."""
        with self._lock:
            self._outcomes[email.lower()] = (Outcome(outcome), reject_reason)

    @property
    def webhook_posts(self) -> list[Any]:
        """Every webhook POST as it ended (``Posted``: form, last status, attempts)."""
        return self._poster.posted if self._poster is not None else []

    def wait_webhooks(self, timeout: float = 30.0) -> bool:
        """Whether every event gathered so far has been posted (answered or given up) in time."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                waiting = bool(self._events) or self._flush_timer is not None
            if not waiting:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return self._poster is None or self._poster.wait_idle(max(deadline - time.monotonic(), 0.0))

    def stop(self) -> None:
        with self._lock:
            timer, self._flush_timer = self._flush_timer, None
        if timer is not None:
            timer.cancel()
        super().stop()
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    def _events_for(self, message_id: str, message: Mapping[str, Any], email: str) -> list[dict[str, Any]]:
        outcome, reason = self._outcomes.get(email.lower(), (Outcome.DELIVERED, ""))
        now = int(time.time())
        msg = {
            "_id": message_id,
            "ts": now,
            "email": email,
            "sender": message.get("from_email"),
            "subject": message.get("subject"),
            "tags": list(message.get("tags") or []),
            "metadata": dict(message.get("metadata") or {}),
            "state": "sent",
        }

        def event(kind: str, offset: int, **fields: Any) -> dict[str, Any]:
            return {"event": kind, "_id": message_id, "ts": now + offset, "msg": {**msg, **fields}}

        if outcome is Outcome.REJECT:
            return [event("reject", 0, state="rejected", reject={"reason": reason})]
        events = [event("send", 0)]
        if outcome is Outcome.HARD_BOUNCE:
            events.append(
                event(
                    "hard_bounce",
                    1,
                    state="bounced",
                    bounce_description="bad_mailbox",
                    diag="smtp;550 5.1.1 The email account that you tried to reach does not exist.",
                )
            )
        elif outcome is Outcome.SOFT_BOUNCE_THEN_DELIVERED:
            events.append(event("soft_bounce", 1, state="soft-bounced", bounce_description="mailbox_full"))
            events.append(event("delivered", 2, state="delivered"))
        else:
            events.append(event("delivered", 1, state="delivered"))
            if outcome is Outcome.SPAM:
                events.append(event("spam", 2, state="spam"))
        return events

    def _gather(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            target = self._webhook
            if target is None or not events:
                return
            self._events.extend(events)
            if self._flush_timer is None:
                self._flush_timer = threading.Timer(target.batch_interval, self._flush)
                self._flush_timer.daemon = True
                self._flush_timer.start()

    def _flush(self) -> None:
        with self._lock:
            events, self._events = self._events, []
            self._flush_timer = None
            target, poster = self._webhook, self._poster
        if target is None or poster is None:
            return
        for start in range(0, len(events), MAX_EVENTS):
            body = json.dumps(events[start : start + MAX_EVENTS])
            form = [(EVENTS_FIELD, body)]
            headers = {SIGNATURE_HEADER: signature(target.key.encode(), target.signed_url, form)}
            poster.post(target.url, form, headers)

    # --- protocol ------------------------------------------------------------------------------

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if status == 429:
            return Reply.of_json(
                429,
                {
                    "status": "error",
                    "code": -1,
                    "name": "Too_Many_Requests",
                    "message": "rate limit exceeded",
                },
                headers,
            )
        if status >= 500:
            return Reply.of_json(
                status,
                {
                    "status": "error",
                    "code": -1,
                    "name": "GeneralError",
                    "message": "An unexpected error occurred",
                },
                headers,
            )
        return Reply(status, b"", headers)

    @staticmethod
    def _error(name: str, message: str) -> Reply:
        return Reply.of_json(
            500, {"status": "error", "code": ERROR_CODES.get(name, -1), "name": name, "message": message}
        )

    def fault_from_json(self, spec: Mapping[str, Any]) -> Any:
        kind = spec.get("kind")
        if kind == "error":
            return ErrorName(str(spec["name"]), str(spec.get("message", "simulated error")))
        if kind == "reject":
            return Reject(str(spec["reason"]))
        if kind == "queued":
            return Queued(str(spec.get("reason", "quota")))
        if kind == "rate-limit":
            return RateLimit(float(spec.get("retry_after", 1.0)))
        return super().fault_from_json(spec)

    def handle(self, request: Request, fault: Any) -> tuple[Reply, bool]:
        if request.method != "POST" or not request.path.startswith(API_PREFIX):
            return Reply(404, b"Not Found"), False
        method = request.path[len(API_PREFIX) :].split("?")[0].removesuffix(".json")
        if method in ("users/ping", "users/ping2"):
            return self._ping(request, method), False
        if method not in ("messages/send", "messages/send-template"):
            return Reply(404, b"Not Found"), False
        try:
            payload = request.json
        except ValueError:
            return self._error("ValidationError", "You must specify a key value"), False
        if not isinstance(payload, dict):
            return self._error("ValidationError", "You must specify a key value"), False
        if not payload.get("key"):
            return self._error("ValidationError", "You must specify a key value"), False
        if payload["key"] not in self.api_keys:
            return self._error("Invalid_Key", "Invalid API key"), False
        problem = self._validate(method, payload)
        if problem:
            return self._error("ValidationError", problem), False
        if (
            method == "messages/send-template"
            and self.templates is not None
            and (payload["template_name"] not in self.templates)
        ):
            return self._error("Unknown_Template", "No such template"), False
        if isinstance(fault, ErrorName):
            return self._error(fault.name, fault.message), False
        if isinstance(fault, RateLimit):
            return self.error_reply(429, fault.retry_after), False
        results = []
        accepted = False
        events: list[dict[str, Any]] = []
        for recipient in payload["message"]["to"]:
            email = recipient["email"]
            with self._lock:
                denied = self._denylist.get(email.lower())
                outcome = self._outcomes.get(email.lower())
            if outcome is not None and outcome[0] is Outcome.REJECT:
                denied = outcome[1]
            result: dict[str, Any] = {"email": email, "_id": uuid.uuid4().hex}
            if isinstance(fault, Reject) or denied:
                result.update(
                    status="rejected", reject_reason=fault.reason if isinstance(fault, Reject) else denied
                )
            elif isinstance(fault, Queued):
                result.update(status="queued", reject_reason=None, queued_reason=fault.reason)
                accepted = True
            else:
                result.update(status="sent", reject_reason=None)
                accepted = True
            if result["status"] != "rejected" or outcome is not None:
                events.extend(self._events_for(result["_id"], payload["message"], email))
            results.append(result)
        self._gather(events)
        return Reply.of_json(200, results), accepted

    def _ping(self, request: Request, method: str) -> Reply:
        """``users/ping`` answers the JSON string "PONG!", ``users/ping2`` {"PING": "PONG!"}."""
        try:
            payload = request.json
        except ValueError:
            payload = None
        key = payload.get("key") if isinstance(payload, dict) else None
        if not key:
            return self._error("ValidationError", "You must specify a key value")
        if key not in self.api_keys:
            return self._error("Invalid_Key", "Invalid API key")
        return Reply.of_json(200, "PONG!" if method == "users/ping" else {"PING": "PONG!"})

    @staticmethod
    def _validate(method: str, payload: Mapping[str, Any]) -> str:
        message = payload.get("message")
        if not isinstance(message, dict):
            return 'Validation error: {"message":"Please enter an array"}'
        recipients = message.get("to")
        if not isinstance(recipients, list) or not recipients:
            return 'Validation error: {"message":{"to":"Please enter an array"}}'
        for recipient in recipients:
            if not isinstance(recipient, dict) or not _EMAIL.match(str(recipient.get("email", ""))):
                return (
                    'Validation error: {"message":{"to":[{"email":'
                    '"An email address must contain a single @"}]}}'
                )
            if recipient.get("type", "to") not in ("to", "cc", "bcc"):
                return 'Validation error: {"message":{"to":[{"type":"must be one of to, cc, bcc"}]}}'
        if not _EMAIL.match(str(message.get("from_email", ""))) and method == "messages/send":
            return 'Validation error: {"message":{"from_email":"An email address must contain a single @"}}'
        for name in ("headers", "metadata"):
            if name in message and not isinstance(message[name], dict):
                return f'Validation error: {{"message":{{"{name}":"Please enter a struct"}}}}'
        if "global_merge_vars" in message:
            merge_vars = message["global_merge_vars"]
            if not isinstance(merge_vars, list) or not all(
                isinstance(item, dict) and isinstance(item.get("name"), str) and "content" in item
                for item in merge_vars
            ):
                return (
                    'Validation error: {"message":{"global_merge_vars":'
                    '"Please enter an array of name/content"}}'
                )
        if message.get("merge_language", "mailchimp") not in ("mailchimp", "handlebars"):
            return 'Validation error: {"message":{"merge_language":"must be mailchimp or handlebars"}}'
        if method == "messages/send-template":
            if not isinstance(payload.get("template_name"), str) or not payload["template_name"]:
                return 'Validation error: {"template_name":"Sorry, this field can\'t be left blank."}'
            if not isinstance(payload.get("template_content"), list):
                return 'Validation error: {"template_content":"Please enter an array"}'
        return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Mandrill API server for tests and demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", action="append", default=None, help="accepted API key (repeatable)")
    parser.add_argument(
        "--template",
        action="append",
        default=None,
        help="known stored template (repeatable; none given: any name exists)",
    )
    args = parser.parse_args(argv)
    server = MandrillServer(args.key or ["test-key"], templates=args.template, host=args.host, port=args.port)
    serve_until_stopped(server, lambda: f"MANDRILL_BASE_URL={server.api_url}")


if __name__ == "__main__":
    main()
