"""Mandrill (Mailchimp Transactional): the JSON API over one kept-alive httpx client per provider.

Request building (``build_send_request``) and response parsing (``parse_send_response``) are pure
functions; ``MandrillProvider`` only moves bytes and maps transport failures onto our errors.

Classification, with sources (tests/providers/test_mandrill.py holds a case for each rule):

* Error replies ``{"status": "error", "name": ...}`` arrive with HTTP 500 for every name, so the
  name decides, never the status (https://mandrillapp.com/api/docs/messages.html, "Errors").
* Per-recipient ``status`` in a 200 reply: ``sent``/``queued``/``scheduled`` mean Mandrill holds the
  message. ``queued`` includes the hourly-quota backlog, which Mandrill drains by itself
  (https://mailchimp.com/developer/transactional/docs/outbound-email/, "The backlog"); sending again
  would deliver twice, so ``queued`` is an acceptance and ``queued_reason`` is kept in the receipt.
* ``rejected`` with ``reject_reason``: the address is on the account's rejection denylist. A soft
  bounce puts it there only for a while and "quota errors and other temporary problems are treated
  as soft bounces" (https://mandrill.zendesk.com/hc/en-us/articles/205582937-About-Bounces), so
  ``soft-bounce`` retries; the other reasons are permanent for this message, except ``unsigned``
  and ``test-mode-limit``, which are account set-up problems.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from workers.errors import (
    ConfigurationError,
    DeliveryError,
    GiveUp,
    MaybeDelivered,
    ProviderMisconfigured,
    RetryLater,
)
from workers.messages import EmailMessage, Receipt
from workers.providers.addresses import has_ascii_local_parts, with_ascii_domains
from workers.providers.direct import environment_names_a_proxy, send_direct
from workers.providers.mime import ascii_address, extra_headers
from workers.providers.redact import redact

NAME = "mandrill"
SEND_PATH = "messages/send"
SEND_TEMPLATE_PATH = "messages/send-template"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rule:
    """What to do about one Mandrill answer: ``retry``, ``give_up`` or ``misconfigured``."""

    action: str
    why: str


RETRY, GIVE_UP, MISCONFIGURED = "retry", "give_up", "misconfigured"

# Error ``name`` values of messages/send and messages/send-template
# (https://mandrillapp.com/api/docs/messages.html; descriptions from the official client's
# exception list, e.g. https://lesjoursfr.github.io/mandrill-api-php/namespaces/mandrill-exceptions.html).
ERROR_NAMES: Mapping[str, Rule] = {
    "Invalid_Key": Rule(MISCONFIGURED, "the API key is not a valid Mandrill API key"),
    "PaymentRequired": Rule(MISCONFIGURED, "the requested feature requires payment"),
    "Unknown_Subaccount": Rule(MISCONFIGURED, "the subaccount does not exist"),
    "PoorReputation": Rule(MISCONFIGURED, "the account's reputation is too low to continue"),
    "ValidationError": Rule(GIVE_UP, "the request was refused as invalid"),
    "Unknown_Template": Rule(GIVE_UP, "the stored template does not exist"),
    "Invalid_Template": Rule(GIVE_UP, "the stored template name is invalid"),
    "Unknown_Sender": Rule(GIVE_UP, "the sender does not exist"),
    "GeneralError": Rule(RETRY, "an unexpected error occurred at Mandrill"),
    "ServiceUnavailable": Rule(RETRY, "the subsystem is down for maintenance"),
}

# ``reject_reason`` of a ``rejected`` recipient (https://mandrillapp.com/api/docs/messages.html,
# "reject_reason"; meanings from the Mandrill knowledge base on bounces and rejections).
REJECT_REASONS: Mapping[str, Rule] = {
    "hard-bounce": Rule(GIVE_UP, "the address hard-bounced before"),
    "soft-bounce": Rule(RETRY, "the address soft-bounced recently; the rejection expires"),
    "spam": Rule(GIVE_UP, "the recipient marked earlier mail as spam"),
    "unsub": Rule(GIVE_UP, "the recipient unsubscribed"),
    "custom": Rule(GIVE_UP, "the address is on the account's own denylist"),
    "invalid-sender": Rule(GIVE_UP, "the sender address is invalid"),
    "invalid": Rule(GIVE_UP, "the recipient address is invalid"),
    "rule": Rule(GIVE_UP, "a rejection rule of the account matched"),
    "unsigned": Rule(MISCONFIGURED, "the sending domain is not verified (SPF/DKIM)"),
    "test-mode-limit": Rule(MISCONFIGURED, "a test-mode key reached its limit"),
}

ACCEPTED_STATUSES = frozenset({"sent", "queued", "scheduled"})

# The body exactly as httpx encodes ``json=`` (UTF-8, compact separators, NaN refused); one encoder
# for every send instead of one per ``json.dumps`` call.
JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_CONTENT_TYPE = (b"Content-Type", b"application/json")


def _raise(rule: Rule, detail: str, *, code: str, retry_after: float | None = None) -> NoReturn:
    message = f"mandrill: {rule.why}" + (f" ({detail})" if detail else "")
    if rule.action == RETRY:
        raise RetryLater(message, provider=NAME, code=code, retry_after=retry_after)
    if rule.action == MISCONFIGURED:
        raise ProviderMisconfigured(message, provider=NAME, code=code)
    raise GiveUp(message, provider=NAME, code=code)


MAILCHIMP = "mailchimp"


def _mailchimp_content(value: Any) -> str | None:
    """A merge var's ``content`` for ``merge_language=mailchimp``: a string, or None to leave it out.

    The API types ``global_merge_vars[].content`` as a string, and merge tags print text only: a
    list or an object means nothing to them, so those are left out (the templates read the
    flattened ``mention_*`` fields and the pre-rendered ``mentions_html``/``mentions_text``). A
    false or null value becomes "" so that ``*|IF:NAME|*`` is false, as it is when rendered here.
    """
    if isinstance(value, list | tuple | dict | Mapping):
        return None
    if value is None or value is False:
        return ""
    if value is True:
        return "true"
    # As the local renderer prints a number (JavaScript's String(value)): 3.0 is "3".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _merge_vars(values: Mapping[str, Any], merge_language: str) -> list[dict[str, Any]]:
    """``global_merge_vars``: strings only for mailchimp; for handlebars arrays and objects stay,
    which Mandrill's Handlebars documentation allows (``{{#each}}`` over a list of objects)."""
    if merge_language != MAILCHIMP:
        return [{"name": name, "content": content} for name, content in values.items()]
    merged: list[dict[str, Any]] = []
    for name, value in values.items():
        content = _mailchimp_content(value)
        if content is not None:
            merged.append({"name": name, "content": content})
    return merged


def build_send_request(message: EmailMessage, api_key: str) -> tuple[str, dict[str, Any]]:
    """The API path (relative to the base URL) and JSON body that send ``message``.

    Addresses go with their IDN domains as punycode: the API's ``email`` fields take ASCII only.
    A stored-template send carries no locally rendered ``html`` or ``text``: Mandrill renders the
    template itself, and messages/send-template describes its message "without the html content".
    Raises GiveUp for an address whose local part is not ASCII, which Mandrill cannot send.
    """
    message = with_ascii_domains(message, provider=NAME)
    if not has_ascii_local_parts(message):
        raise GiveUp(
            "mandrill: an address has a non-ASCII local part, which Mandrill cannot send",
            provider=NAME,
            code="address",
        )
    # No address header comes from message.headers (extra_headers drops them); Reply-To is built
    # from its parts, so it holds exactly the one validated mailbox. The sender's name goes in
    # from_name, which Mandrill quotes itself.
    headers = extra_headers(message)
    if message.reply_to:
        headers["Reply-To"] = str(ascii_address(message.reply_to))
    body: dict[str, Any] = {
        "from_email": message.from_address,
        "to": [{"email": message.to_address, "type": "to"}],
        "headers": headers,
        "metadata": {"notification_id": message.notification_id},
    }
    if message.subject:
        body["subject"] = message.subject
    if message.from_name:
        body["from_name"] = message.from_name
    if message.tags:
        body["tags"] = list(message.tags)
    if message.template is None:
        if message.text is not None:
            body["text"] = message.text
        if message.html is not None:
            body["html"] = message.html
        return SEND_PATH, {"key": api_key, "message": body, "async": False}
    body["merge"] = True
    body["merge_language"] = message.template.merge_language
    body["global_merge_vars"] = _merge_vars(
        message.template.global_merge_vars, message.template.merge_language
    )
    return SEND_TEMPLATE_PATH, {
        "key": api_key,
        "template_name": message.template.name,
        "template_content": [],
        "message": body,
        "async": False,
    }


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The Retry-After hint in seconds, when given as a number of seconds (the form APIs use)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value.strip())
            except ValueError:
                return None
            return max(seconds, 0.0)
    return None


def parse_send_response(status_code: int, headers: Mapping[str, str], body: bytes | str) -> Receipt:
    """The receipt for a messages/send(-template) reply, or our error for a refusal."""
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None

    # Retry-After is read only on the way to an error: an accepted send never needs it.
    if isinstance(payload, dict) and payload.get("status") == "error":
        name = str(payload.get("name") or "")
        detail = redact(str(payload.get("message") or ""))
        rule = ERROR_NAMES.get(name)
        if rule is None and status_code == 429:
            rule = Rule(RETRY, "rate limited (HTTP 429)")
        elif rule is None:
            # An error name we have not classified: retry, and let the retry budget bound it.
            rule = Rule(RETRY, f"unclassified error {name or 'without a name'}")
        _raise(rule, detail, code=name or f"http-{status_code}", retry_after=retry_after_seconds(headers))

    if status_code == 429:
        _raise(
            Rule(RETRY, "rate limited (HTTP 429)"),
            "",
            code="http-429",
            retry_after=retry_after_seconds(headers),
        )
    if status_code >= 500:
        _raise(
            Rule(RETRY, f"server error (HTTP {status_code})"),
            "",
            code=f"http-{status_code}",
            retry_after=retry_after_seconds(headers),
        )
    if status_code in (401, 403, 404, 405):
        # Not an API error body: the base URL or the credentials point somewhere wrong.
        _raise(
            Rule(MISCONFIGURED, f"HTTP {status_code} from the API root; check MANDRILL_BASE_URL"),
            "",
            code=f"http-{status_code}",
        )
    if status_code != 200:
        _raise(Rule(GIVE_UP, f"unexpected HTTP {status_code}"), "", code=f"http-{status_code}")

    if not isinstance(payload, list) or not payload or not isinstance(payload[0], dict):
        _raise(Rule(RETRY, "reply is not a list of recipient results"), "", code="bad-reply")
    result: dict[str, Any] = payload[0]
    status = str(result.get("status") or "")
    message_id = result.get("_id")
    if status in ACCEPTED_STATUSES:
        facts: dict[str, Any] = {"status": status}
        if result.get("queued_reason"):
            facts["queued_reason"] = str(result["queued_reason"])
        return Receipt(
            provider=NAME, provider_message_id=str(message_id) if message_id else None, detail=facts
        )
    if status in ("rejected", "invalid"):
        reason = str(result.get("reject_reason") or ("invalid" if status == "invalid" else ""))
        rule = REJECT_REASONS.get(reason, Rule(GIVE_UP, f"recipient {status}"))
        _raise(rule, f"reject_reason={reason or 'none'}", code=reason or status)
    _raise(Rule(RETRY, f"unknown recipient status {status!r}"), "", code=status or "bad-reply")


class MandrillProvider:
    """Sends email through the Mandrill JSON API; one instance per process keeps its connections alive.

    Without a proxy in the environment (and without a caller's client or credentials in the URL)
    each send goes straight to the httpx transport with a request whose URL and headers were built
    once: the same bytes ``Client.post(json=...)`` would send, without the Client's per-request work
    (URL and header merging, auth and redirect flows, an INFO log line per request, and the cookie
    jar: the key in the body authenticates every request, so cookies a server sets are not sent
    back). Otherwise ``Client.post`` does it all, as it always did.
    """

    name = NAME

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://mandrillapp.com/api/1.0",
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationError("MANDRILL_API_KEY is empty but mandrill is a configured email provider")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/") + "/"
        self._transport: httpx.HTTPTransport | None = None
        if client is None:
            options: dict[str, Any] = {
                "timeout": httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                "headers": {"User-Agent": "notify-workers/0.1"},
            }
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
            # Credentials in the URL become Basic auth in the Client: leave those to it as well.
            if environment_names_a_proxy() or "@" in base_url:
                client = httpx.Client(limits=limits, **options)
            else:
                # The transport httpx.Client builds for itself when no proxy applies.
                self._transport = httpx.HTTPTransport(limits=limits)
                client = httpx.Client(transport=self._transport, **options)
        self._client = client
        self._extensions = {"timeout": client.timeout.as_dict()}
        # Per API path: its URL and the headers before Content-Length, built at the first send
        # (an unusable base URL fails there, as before, not at start-up).
        self._targets: dict[str, tuple[httpx.URL, list[tuple[bytes, bytes]]]] = {}

    def __repr__(self) -> str:
        # Never show the key, even in a traceback's locals.
        return f"MandrillProvider(base_url={self._base_url!r})"

    def _target(self, path: str) -> tuple[httpx.URL, list[tuple[bytes, bytes]]]:
        target = self._targets.get(path)
        if target is None:
            url = httpx.URL(self._base_url + path)
            # Header order as httpx.Request prepares it: Host, the client's headers, then the body's.
            host = [(b"Host", url.netloc)] if url.host else []
            target = self._targets[path] = (url, [*host, *self._client.headers.raw])
        return target

    def _post(self, transport: httpx.HTTPTransport, path: str, body: bytes) -> httpx.Response:
        url, head = self._target(path)
        request = httpx.Request(
            "POST",
            url,
            headers=[*head, (b"Content-Length", str(len(body)).encode("ascii")), _CONTENT_TYPE],
            stream=httpx.ByteStream(body),
            extensions=self._extensions,
        )
        return send_direct(transport, request)

    def send_email(self, message: EmailMessage) -> Receipt:
        path, body = build_send_request(message, self._api_key)
        try:
            # A closed client refuses to send (RuntimeError): the Client path says so as before.
            if self._transport is None or self._client.is_closed:
                response = self._client.post(self._base_url + path, json=body)
            else:
                response = self._post(self._transport, path, JSON_ENCODER.encode(body).encode("utf-8"))
            content = response.content
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            # The request (or part of it) reached Mandrill; it may act on it without our hearing.
            raise MaybeDelivered(
                f"mandrill: no answer in time ({type(exc).__name__})", provider=NAME, code="timeout"
            ) from None
        except httpx.TimeoutException as exc:
            raise RetryLater(
                f"mandrill: timed out ({type(exc).__name__})", provider=NAME, code="timeout"
            ) from None
        except httpx.TransportError as exc:
            # Connection refused, reset, or dropped before a reply: the request may not have arrived.
            raise RetryLater(
                f"mandrill: connection failed ({type(exc).__name__})", provider=NAME, code="connection"
            ) from None
        except httpx.HTTPError as exc:
            raise RetryLater(
                f"mandrill: HTTP failure ({type(exc).__name__})", provider=NAME, code="http"
            ) from None
        try:
            receipt = parse_send_response(response.status_code, response.headers, content)
        except DeliveryError as exc:
            log.warning("mandrill refused notification %s: %s", message.notification_id, exc)
            raise
        log.debug(
            "mandrill accepted notification %s as %s", message.notification_id, receipt.provider_message_id
        )
        return receipt

    def close(self) -> None:
        self._client.close()
