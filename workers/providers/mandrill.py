"""Mandrill (Mailchimp Transactional): the JSON API over the kept-alive client of ``providers.http``.

Request building (``build_send_request``) and reply parsing (``parse_send_response``,
``parse_ping_response``) are pure functions; ``MandrillProvider`` only moves bytes through the
client, and ``providers.http`` maps transport failures onto our errors.

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
from typing import Any

import httpx

from workers.errors import (
    ConfigurationError,
    DeliveryError,
    GiveUp,
    ProviderMisconfigured,
    RetryLater,
)
from workers.messages import EmailMessage, Receipt
from workers.providers.addresses import has_ascii_local_parts, with_ascii_domains
from workers.providers.base import Probe
from workers.providers.http import (
    DEFAULT_MAX_CONNECTIONS,
    make_client,
    raise_transport_failure,
    retry_after_seconds,
)
from workers.providers.mime import ascii_address, extra_headers
from workers.providers.redact import redact
from workers.providers.refusals import Rule
from workers.receipts import SuppressionReason

NAME = "mandrill"
SEND_PATH = "messages/send"
SEND_TEMPLATE_PATH = "messages/send-template"
PING_PATH = "users/ping2.json"
API_PATHS = (SEND_PATH, SEND_TEMPLATE_PATH, PING_PATH)

log = logging.getLogger(__name__)

# Error ``name`` values of messages/send and messages/send-template
# (https://mandrillapp.com/api/docs/messages.html; descriptions from the official client's
# exception list, e.g. https://lesjoursfr.github.io/mandrill-api-php/namespaces/mandrill-exceptions.html).
ERROR_NAMES: Mapping[str, Rule] = {
    "Invalid_Key": Rule(ProviderMisconfigured, "the API key is not a valid Mandrill API key"),
    "PaymentRequired": Rule(ProviderMisconfigured, "the requested feature requires payment"),
    "Unknown_Subaccount": Rule(ProviderMisconfigured, "the subaccount does not exist"),
    "PoorReputation": Rule(ProviderMisconfigured, "the account's reputation is too low to continue"),
    "ValidationError": Rule(GiveUp, "the request was refused as invalid"),
    "Unknown_Template": Rule(GiveUp, "the stored template does not exist"),
    "Invalid_Template": Rule(GiveUp, "the stored template name is invalid"),
    "Unknown_Sender": Rule(GiveUp, "the sender does not exist"),
    "GeneralError": Rule(RetryLater, "an unexpected error occurred at Mandrill"),
    "ServiceUnavailable": Rule(RetryLater, "the subsystem is down for maintenance"),
}

# ``reject_reason`` of a ``rejected`` recipient (https://mandrillapp.com/api/docs/messages.html,
# "reject_reason"; meanings from the Mandrill knowledge base on bounces and rejections). The three
# that say the recipient cannot or will not receive put them on our own list too (issue 15), as a
# `reject` webhook event with the same reason does (providers/mandrill_webhooks.py).
REJECT_REASONS: Mapping[str, Rule] = {
    "hard-bounce": Rule(GiveUp, "the address hard-bounced before", suppress=SuppressionReason.REJECT),
    "soft-bounce": Rule(RetryLater, "the address soft-bounced recently; the rejection expires"),
    "spam": Rule(GiveUp, "the recipient marked earlier mail as spam", suppress=SuppressionReason.REJECT),
    "unsub": Rule(GiveUp, "the recipient unsubscribed", suppress=SuppressionReason.REJECT),
    "custom": Rule(GiveUp, "the address is on the account's own denylist"),
    "invalid-sender": Rule(GiveUp, "the sender address is invalid"),
    "invalid": Rule(GiveUp, "the recipient address is invalid"),
    "rule": Rule(GiveUp, "a rejection rule of the account matched"),
    "unsigned": Rule(ProviderMisconfigured, "the sending domain is not verified (SPF/DKIM)"),
    "test-mode-limit": Rule(ProviderMisconfigured, "a test-mode key reached its limit"),
}

# HTTP statuses of replies that carry no error body of the API's own. 401, 403, 404 and 405 mean
# the base URL or the credentials point somewhere wrong; Mandrill itself answers errors with 500.
RATE_LIMITED = Rule(RetryLater, "rate limited (HTTP 429)")
HTTP_STATUSES: Mapping[int, Rule] = {
    429: RATE_LIMITED,
    **{
        status: Rule(ProviderMisconfigured, f"HTTP {status} from the API root; check MANDRILL_BASE_URL")
        for status in (401, 403, 404, 405)
    },
}

ACCEPTED_STATUSES = frozenset({"sent", "queued", "scheduled"})


def status_rule(status_code: int) -> Rule | None:
    """What an HTTP status without an API error body means; None for 200, the one success."""
    rule = HTTP_STATUSES.get(status_code)
    if rule is not None:
        return rule
    if status_code >= 500:
        return Rule(RetryLater, f"server error (HTTP {status_code})")
    if status_code != 200:
        return Rule(GiveUp, f"unexpected HTTP {status_code}")
    return None


def error_rule(name: str, status_code: int) -> Rule:
    """What an API error body ``{"status": "error", "name": ...}`` means: its name decides."""
    rule = ERROR_NAMES.get(name)
    if rule is not None:
        return rule
    if status_code == 429:
        return RATE_LIMITED
    # An error name we have not classified: retry, and let the retry budget bound it.
    return Rule(RetryLater, f"unclassified error {name or 'without a name'}")


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


def parse_send_response(status_code: int, headers: Mapping[str, str], body: bytes | str) -> Receipt:
    """The receipt for a messages/send(-template) reply, or our error for a refusal."""
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None

    # Retry-After is read only on the way to an error: an accepted send never needs it.
    if isinstance(payload, dict) and payload.get("status") == "error":
        name = str(payload.get("name") or "")
        error_rule(name, status_code).raise_for(
            NAME,
            code=name or f"http-{status_code}",
            detail=redact(str(payload.get("message") or "")),
            retry_after=retry_after_seconds(headers),
        )
    rule = status_rule(status_code)
    if rule is not None:
        rule.raise_for(NAME, code=f"http-{status_code}", retry_after=retry_after_seconds(headers))

    if not isinstance(payload, list) or not payload or not isinstance(payload[0], dict):
        Rule(RetryLater, "reply is not a list of recipient results").raise_for(NAME, code="bad-reply")
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
        rule = REJECT_REASONS.get(reason, Rule(GiveUp, f"recipient {status}"))
        rule.raise_for(NAME, code=reason or status, detail=f"reject_reason={reason or 'none'}")
    Rule(RetryLater, f"unknown recipient status {status!r}").raise_for(NAME, code=status or "bad-reply")


def parse_ping_response(status_code: int, body: bytes) -> Probe:
    """What a users/ping2 reply says: ``{"PING": "PONG!"}`` means reachable with the key accepted."""
    try:
        answer: Any = json.loads(body) if body else None
    except ValueError as exc:
        return Probe.failed(exc)
    if status_code == 200 and answer == {"PING": "PONG!"}:
        return Probe(True, "reachable, API key accepted")
    if isinstance(answer, dict) and answer.get("name"):
        return Probe(False, f"refused: {answer['name']} (HTTP {status_code})")
    return Probe(False, f"unexpected answer, HTTP {status_code}")


class MandrillProvider:
    """Sends email through the Mandrill JSON API; one instance per process keeps its connections alive.

    Sends go through one ``httpx.Client`` (``workers.providers.http.make_client``), or the
    caller's. The key travels in the JSON body of every request, never in a header.
    """

    name = NAME

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://mandrillapp.com/api/1.0",
        timeout: float = 10.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        client: httpx.Client | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationError("MANDRILL_API_KEY is empty but mandrill is a configured email provider")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/") + "/"
        # Parsed once: a URL object passes through the client as it is, a string is parsed per send.
        try:
            self._urls = {path: httpx.URL(self._base_url + path) for path in API_PATHS}
        except httpx.InvalidURL as exc:
            raise ConfigurationError(f"MANDRILL_BASE_URL is not a usable URL: {exc}") from None
        self._client = client or make_client(timeout=timeout, max_connections=max_connections)

    def __repr__(self) -> str:
        # Never show the key, even in a traceback's locals.
        return f"MandrillProvider(base_url={self._base_url!r})"

    def send_email(self, message: EmailMessage) -> Receipt:
        path, body = build_send_request(message, self._api_key)
        try:
            response = self._client.post(self._urls[path], json=body)
        except httpx.HTTPError as exc:
            raise_transport_failure(NAME, exc)
        try:
            receipt = parse_send_response(response.status_code, response.headers, response.content)
        except DeliveryError as exc:
            log.warning("mandrill refused notification %s: %s", message.notification_id, exc)
            raise
        log.debug(
            "mandrill accepted notification %s as %s", message.notification_id, receipt.provider_message_id
        )
        return receipt

    def probe(self, timeout: float) -> Probe:
        """``users/ping2`` with the API key: reachable and the key accepted, without sending anything.

        ``users/ping2`` answers ``{"PING": "PONG!"}`` and is the ping Mailchimp Transactional's API
        reference describes (Users, "Ping"), which the official clients call as ``users.ping2``; the
        older ``users/ping`` with its bare ``"PONG!"`` string is kept by Mandrill for old clients only.
        """
        try:
            response = self._client.post(self._urls[PING_PATH], json={"key": self._api_key}, timeout=timeout)
        except httpx.HTTPError as exc:
            return Probe.failed(exc)
        return parse_ping_response(response.status_code, response.content)

    def close(self) -> None:
        self._client.close()
