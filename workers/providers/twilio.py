"""Twilio SMS through the official SDK, sending through the shared httpx.Client to TWILIO_BASE_URL.

Pure parts: ``segments`` (GSM-7 or UCS-2 segment count), ``build_create_params`` (the Messages
create arguments), ``RedirectingHttpClient.rewrite`` (the request's URL on TWILIO_BASE_URL),
``sdk_response`` (an httpx reply as the SDK's Response) and ``classify`` (the one error table).
``TwilioProvider`` does the I/O and maps every SDK and transport exception onto our errors at this
boundary: errors arrive as the SDK's TwilioRestException and never leave this module.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from workers.errors import ConfigurationError, GiveUp, ProviderMisconfigured, RetryLater
from workers.messages import Receipt, SmsMessage
from workers.providers.base import Probe
from workers.providers.http import (
    DEFAULT_MAX_CONNECTIONS,
    make_client,
    raise_transport_failure,
    retry_after_seconds,
)
from workers.providers.redact import redact
from workers.providers.refusals import Rule
from workers.receipts import SuppressionReason

NAME = "twilio"
MAX_BODY = 1600  # https://www.twilio.com/docs/api/errors/21617

log = logging.getLogger(__name__)

# --- segments ------------------------------------------------------------------------------------

# 3GPP TS 23.038 default alphabet (the escape code 0x1B itself is not a sendable character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each of these costs two septets (escape + character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION


@dataclass(frozen=True, slots=True)
class Segments:
    count: int
    encoding: str  # "GSM-7" or "UCS-2"


def _pack(units: list[int], single: int, multi: int) -> int:
    """Segments needed for ``units`` (cost of each character) without splitting a character."""
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for cost in units:
        if used + cost > multi:
            count, used = count + 1, 0
        used += cost
    return count


def _even(length: int, single: int, multi: int) -> int:
    """``_pack`` when every character costs one unit: none can straddle a boundary, so divide."""
    return 1 if length <= single else -(-length // multi)


def segments(body: str) -> Segments:
    """How many SMS segments ``body`` takes: GSM-7 160/153 septets, else UCS-2 70/67 code units."""
    # The set operations run in C; the per-character costs are only needed when some character
    # costs two units (an extension character, a surrogate pair), which most bodies have none of.
    if GSM7.issuperset(body):
        if GSM7_EXTENSION.isdisjoint(body):
            return Segments(_even(len(body), 160, 153), "GSM-7")
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in body]
        return Segments(_pack(costs, 160, 153), "GSM-7")
    # UCS-2 on the wire is UTF-16: characters outside the BMP take a surrogate pair (2 units).
    # (surrogatepass: a lone surrogate counts as the one unit it is, and does not raise here.)
    if len(body.encode("utf-16-le", "surrogatepass")) // 2 == len(body):
        return Segments(_even(len(body), 70, 67), "UCS-2")
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
    return Segments(_pack(costs, 70, 67), "UCS-2")


def utf16_length(body: str) -> int:
    """Length in UTF-16 code units: Twilio counts an emoji as more than one character toward 1,600."""
    return len(body.encode("utf-16-le")) // 2


# --- request -------------------------------------------------------------------------------------


def build_create_params(message: SmsMessage, status_callback: str | None = None) -> dict[str, str]:
    """Keyword arguments for ``client.messages.create``: ``from_`` or ``messaging_service_sid``, and
    ``status_callback`` (our webhook receiver) when ``NOTIFY_PUBLIC_URL`` is set."""
    params = {"to": message.to_number, "body": message.body}
    if status_callback:
        params["status_callback"] = status_callback
    if message.from_number.startswith("MG"):
        params["messaging_service_sid"] = message.from_number
    else:
        params["from_"] = message.from_number
    return params


# --- errors --------------------------------------------------------------------------------------

# The one table of Twilio error codes; sources are https://www.twilio.com/docs/api/errors/<code>.
ERROR_CODES: Mapping[int, Rule] = {
    20003: Rule(
        ProviderMisconfigured, "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
    ),
    20404: Rule(ProviderMisconfigured, "resource not found: check TWILIO_ACCOUNT_SID and TWILIO_BASE_URL"),
    20429: Rule(RetryLater, "too many requests"),
    21211: Rule(GiveUp, "the 'To' number is not a valid phone number"),
    21408: Rule(GiveUp, "sending to the destination region is not enabled (geo permissions)"),
    21602: Rule(GiveUp, "the message body is required"),
    21604: Rule(GiveUp, "the 'To' number is required"),
    21606: Rule(GiveUp, "the 'From' number is not a message-capable number of this account"),
    21610: Rule(GiveUp, "the recipient has opted out (STOP)", suppress=SuppressionReason.STOP),
    21612: Rule(GiveUp, "the 'To'/'From' combination cannot be routed"),
    21614: Rule(GiveUp, "the 'To' number is not a valid mobile number"),
    21617: Rule(GiveUp, "the body exceeds 1,600 characters"),
}

# HTTP statuses of a reply whose Twilio code is not in the table (or that has none).
HTTP_STATUSES: Mapping[int, Rule] = {
    401: Rule(ProviderMisconfigured, "HTTP 401: credentials refused"),
    403: Rule(ProviderMisconfigured, "HTTP 403: credentials refused"),
    429: Rule(RetryLater, "rate limited (HTTP 429)"),
}


def classify(status: int, code: int | None) -> Rule:
    """What to do about a Twilio error reply with HTTP ``status`` and Twilio ``code``."""
    rule = (ERROR_CODES.get(code) if code is not None else None) or HTTP_STATUSES.get(status)
    if rule is not None:
        return rule
    if status >= 500:
        return Rule(RetryLater, f"server error (HTTP {status})")
    # Unknown codes retry; the retry budget (attempts and age) bounds how often.
    return Rule(RetryLater, f"unclassified Twilio error {code} (HTTP {status})")


def twilio_code(exc: TwilioRestException) -> int | None:
    """The Twilio error code of a refusal: without a JSON body the SDK puts the HTTP status in
    ``code``, and that is no Twilio code."""
    return exc.code if isinstance(exc.code, int) and exc.code != int(exc.status) else None


# --- HTTP ----------------------------------------------------------------------------------------


class _Transport(TwilioException):  # type: ignore[misc]  # the SDK ships no type hints
    """A failed HTTP exchange carried through the SDK to the provider, which maps it."""

    def __init__(self, cause: httpx.HTTPError) -> None:
        self.cause = cause
        super().__init__(type(cause).__name__)


def sdk_response(response: httpx.Response) -> Response:
    """The SDK's Response for an httpx reply read in full: status, text and headers.

    Header names come lower-cased and repeated ones joined, as ``dict(response.headers)`` gives them.
    """
    return Response(response.status_code, response.text, dict(response.headers.items()))


@functools.lru_cache(maxsize=256)
def rewrite_url(base_url: str, url: str) -> httpx.URL:
    """``url`` (an SDK URL on api.twilio.com) on ``base_url``: scheme and host replaced, base path
    prefixed, fragment dropped. Remembered: the SDK asks for the same few URLs again and again, and
    a URL object passes through httpx.Client without being parsed again."""
    base, parts = urlsplit(base_url.rstrip("/")), urlsplit(url)
    return httpx.URL(urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, "")))


@functools.lru_cache(maxsize=4)
def basic_auth(username: str, password: str) -> httpx.BasicAuth:
    """The Basic auth for the SDK's (account SID, token) pair, made once: httpx builds the base64
    header when the auth object is made, and the SDK hands us the same pair on every send."""
    return httpx.BasicAuth(username, password)


class RedirectingHttpClient(HttpClient):  # type: ignore[misc]  # the SDK ships no type hints
    """The SDK's HTTP client over one kept-alive httpx.Client, sending to ``base_url`` instead of Twilio.

    Keeps the headers of the last response per thread, so the provider can read Retry-After
    (the SDK's exception does not carry headers). Logs only method and path, never bodies.
    """

    def __init__(
        self,
        base_url: str = "https://api.twilio.com",
        *,
        timeout: float = 10.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(log, is_async=False, timeout=timeout)
        self._base_url = base_url
        self._client = make_client(timeout=timeout, max_connections=max_connections)
        self._local = threading.local()

    def rewrite(self, url: str) -> str:
        """``url`` on the configured base: scheme and host replaced, base path prefixed."""
        return str(rewrite_url(self._base_url, url))

    @property
    def last_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = getattr(self._local, "headers", {})
        return headers

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self._local.headers = {}
        url = rewrite_url(self._base_url, uri)
        log.debug("twilio %s %s", method.upper(), url.path)
        try:
            response = self._client.request(
                method.upper(),
                url,
                params=params,  # type: ignore[arg-type]
                data=data,
                headers=headers,
                auth=basic_auth(*auth) if auth is not None else None,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                follow_redirects=allow_redirects,
            )
        except httpx.HTTPError as exc:
            raise _Transport(exc) from None
        received = sdk_response(response)
        self._local.headers = received.headers
        return received

    def close(self) -> None:
        self._client.close()


class TwilioProvider:
    """Sends SMS with ``twilio.rest.Client`` over a ``RedirectingHttpClient``; one per process."""

    name = NAME

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        status_callback: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._status_callback = status_callback
        if not account_sid or not auth_token:
            raise ConfigurationError(
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set when twilio is the SMS provider"
            )
        self._account_sid = account_sid
        self._http = RedirectingHttpClient(base_url, timeout=timeout, max_connections=max_connections)
        self._client = Client(account_sid, auth_token, http_client=self._http)

    def __repr__(self) -> str:
        return "TwilioProvider()"

    def send_sms(self, message: SmsMessage) -> Receipt:
        length = utf16_length(message.body)
        if length > MAX_BODY:
            ERROR_CODES[21617].raise_for(
                NAME, code="21617", detail=f"{length} UTF-16 units, refused before sending"
            )
        counted = segments(message.body)
        try:
            created: Any = self._client.messages.create(**build_create_params(message, self._status_callback))
        except _Transport as exc:
            raise_transport_failure(NAME, exc.cause)
        except TwilioRestException as exc:
            status, code = int(exc.status), twilio_code(exc)
            log.warning(
                "twilio refused notification %s: code %s, HTTP %s", message.notification_id, code, status
            )
            classify(status, code).raise_for(
                NAME,
                code=str(code if code is not None else f"http-{status}"),
                detail=redact(str(exc.msg)),
                retry_after=retry_after_seconds(self._http.last_headers),
            )
        except TwilioServiceException as exc:
            classify(int(exc.status), int(exc.code)).raise_for(
                NAME,
                code=str(exc.code),
                detail=redact(str(exc.title)),
                retry_after=retry_after_seconds(self._http.last_headers),
            )
        except (TwilioException, ValueError, KeyError) as exc:
            # A reply the SDK could not parse: treat as transient, the budget bounds it.
            raise RetryLater(
                f"twilio: unreadable reply ({type(exc).__name__})", provider=NAME, code="bad-reply"
            ) from None
        sid = getattr(created, "sid", None)
        log.debug("twilio accepted notification %s as %s", message.notification_id, sid)
        return Receipt(
            provider=NAME,
            provider_message_id=str(sid) if sid else None,
            detail={"segments": counted.count, "encoding": counted.encoding},
        )

    def probe(self, timeout: float) -> Probe:
        """Fetch the account resource: reachable and the credentials accepted, without sending anything."""
        account = f"https://api.twilio.com/2010-04-01/Accounts/{self._account_sid}.json"
        try:
            response = self._client.request("GET", account, timeout=timeout)
        except _Transport as exc:
            return Probe.failed(exc.cause)
        if response.status_code == 200:
            return Probe(True, "reachable, credentials accepted")
        if response.status_code == 401:
            return Probe(False, "credentials refused (HTTP 401)")
        return Probe(False, f"unexpected answer, HTTP {response.status_code}")

    def close(self) -> None:
        self._http.close()
