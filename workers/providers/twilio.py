"""Twilio SMS through the official SDK, with an httpx transport that can point at TWILIO_BASE_URL.

Pure parts: ``segments`` (GSM-7 or UCS-2 segment count), ``build_create_params`` (the Messages
create arguments) and ``classify`` (the one error table). ``TwilioProvider`` does the I/O and maps
every SDK and transport exception onto our errors at this boundary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from workers.errors import ConfigurationError, GiveUp, MaybeDelivered, ProviderMisconfigured, RetryLater
from workers.messages import Receipt, SmsMessage
from workers.providers.direct import environment_names_a_proxy, send_direct
from workers.providers.redact import redact

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

RETRY, GIVE_UP, MISCONFIGURED = "retry", "give_up", "misconfigured"


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    why: str


# The one table of Twilio error codes; sources are https://www.twilio.com/docs/api/errors/<code>.
ERROR_CODES: Mapping[int, Rule] = {
    20003: Rule(MISCONFIGURED, "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
    20404: Rule(MISCONFIGURED, "resource not found: check TWILIO_ACCOUNT_SID and TWILIO_BASE_URL"),
    20429: Rule(RETRY, "too many requests"),
    21211: Rule(GIVE_UP, "the 'To' number is not a valid phone number"),
    21408: Rule(GIVE_UP, "sending to the destination region is not enabled (geo permissions)"),
    21602: Rule(GIVE_UP, "the message body is required"),
    21604: Rule(GIVE_UP, "the 'To' number is required"),
    21606: Rule(GIVE_UP, "the 'From' number is not a message-capable number of this account"),
    21610: Rule(GIVE_UP, "the recipient has opted out (STOP)"),
    21612: Rule(GIVE_UP, "the 'To'/'From' combination cannot be routed"),
    21614: Rule(GIVE_UP, "the 'To' number is not a valid mobile number"),
    21617: Rule(GIVE_UP, "the body exceeds 1,600 characters"),
}


def classify(status: int, code: int | None) -> Rule:
    """What to do about a Twilio error reply with HTTP ``status`` and Twilio ``code``."""
    if code is not None and code in ERROR_CODES:
        return ERROR_CODES[code]
    if status in (401, 403):
        return Rule(MISCONFIGURED, f"HTTP {status}: credentials refused")
    if status == 429:
        return Rule(RETRY, "rate limited (HTTP 429)")
    if status >= 500:
        return Rule(RETRY, f"server error (HTTP {status})")
    # Unknown codes retry; the retry budget (attempts and age) bounds how often.
    return Rule(RETRY, f"unclassified Twilio error {code} (HTTP {status})")


def _raise(rule: Rule, *, code: str, detail: str = "", retry_after: float | None = None) -> NoReturn:
    message = f"twilio: {rule.why}" + (f" ({detail})" if detail else "")
    if rule.action == RETRY:
        raise RetryLater(message, provider=NAME, code=code, retry_after=retry_after)
    if rule.action == MISCONFIGURED:
        raise ProviderMisconfigured(message, provider=NAME, code=code)
    raise GiveUp(message, provider=NAME, code=code)


# --- transport -----------------------------------------------------------------------------------


class _Transport(TwilioException):  # type: ignore[misc]  # the SDK ships no type hints
    """A transport failure carried through the SDK to the provider, which maps it."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind}: {name}")


# The SDK sends a handful of distinct header sets and one auth pair; the caches below stay tiny,
# and are emptied past this size rather than grow with something unexpected.
_CACHE_LIMIT = 64


class RedirectingHttpClient(HttpClient):  # type: ignore[misc]  # the SDK ships no type hints
    """The SDK's HTTP client over one kept-alive httpx.Client, sending to ``base_url`` instead of Twilio.

    Keeps the headers of the last response per thread, so the provider can read Retry-After
    (the SDK's exception does not carry headers). Logs only method and path, never bodies.

    Without a proxy in the environment, a request with auth and no redirects to follow (every
    request the SDK makes for us) goes straight to the httpx transport: the request is built as
    ``Client.request`` builds it (same URL, merged headers, form body, Basic auth, timeout), with
    the rewritten URLs, merged headers and auth header kept from earlier requests, and without the
    Client's INFO log line per request and its cookie jar (Basic auth authenticates every request,
    so cookies a server sets are not sent back). Anything else goes through the Client.
    """

    def __init__(self, base_url: str = "https://api.twilio.com", *, timeout: float = 10.0) -> None:
        super().__init__(log, is_async=False, timeout=timeout)
        target = urlsplit(base_url.rstrip("/"))
        self._scheme, self._netloc, self._prefix = target.scheme, target.netloc, target.path
        options: dict[str, Any] = {"timeout": httpx.Timeout(timeout, connect=min(timeout, 5.0))}
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._transport: httpx.HTTPTransport | None = None
        if environment_names_a_proxy():
            self._client = httpx.Client(limits=limits, **options)
        else:
            # The transport httpx.Client builds for itself when no proxy applies.
            self._transport = httpx.HTTPTransport(limits=limits)
            self._client = httpx.Client(transport=self._transport, **options)
        self._extensions = {"timeout": self._client.timeout.as_dict()}
        self._urls: dict[str, tuple[str, str]] = {}  # SDK uri -> (rewritten URL, its path)
        self._parsed: dict[str, httpx.URL] = {}
        self._headers: dict[tuple[tuple[str, str], ...], httpx.Headers] = {}
        self._authorizations: dict[tuple[str, str], str] = {}
        self._encodings: dict[str | None, str | None] = {}
        self._local = threading.local()

    def rewrite(self, url: str) -> str:
        """``url`` on the configured base: scheme and host replaced, base path prefixed."""
        parts = urlsplit(url)
        return urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query, ""))

    @property
    def last_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = getattr(self._local, "headers", {})
        return headers

    def _rewritten(self, uri: str) -> tuple[str, str]:
        known = self._urls.get(uri)
        if known is None:
            if len(self._urls) >= _CACHE_LIMIT:
                self._urls.clear()
            url = self.rewrite(uri)
            known = self._urls[uri] = (url, urlsplit(url).path)
        return known

    def _merged_headers(self, headers: dict[str, str] | None) -> httpx.Headers:
        """The client's default headers updated with the SDK's, as ``Client`` merges them."""
        key = tuple(headers.items()) if headers else ()
        merged = self._headers.get(key)
        if merged is None:
            if len(self._headers) >= _CACHE_LIMIT:
                self._headers.clear()
            merged = httpx.Headers(self._client.headers)
            merged.update(headers)
            self._headers[key] = merged
        return merged

    def _authorization(self, auth: tuple[str, str]) -> str:
        """The Authorization value httpx's Basic auth flow sets for ``auth``."""
        value = self._authorizations.get(auth)
        if value is None:
            if len(self._authorizations) >= _CACHE_LIMIT:
                self._authorizations.clear()
            probe = httpx.Request("GET", "http://probe.invalid/")
            next(httpx.BasicAuth(*auth).auth_flow(probe))
            value = self._authorizations[auth] = probe.headers["Authorization"]
        return value

    def _send(
        self,
        transport: httpx.HTTPTransport,
        method: str,
        url: str,
        params: dict[str, object] | None,
        data: dict[str, object] | None,
        headers: dict[str, str] | None,
        auth: tuple[str, str],
        timeout: float | None,
    ) -> httpx.Response:
        parsed = self._parsed.get(url)
        if parsed is None:
            if len(self._parsed) >= _CACHE_LIMIT:
                self._parsed.clear()
            parsed = self._parsed[url] = httpx.URL(url)
        request = httpx.Request(
            method,
            parsed,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=self._merged_headers(headers),
            extensions=(
                self._extensions if timeout is None else {"timeout": httpx.Timeout(timeout).as_dict()}
            ),
        )
        request.headers["Authorization"] = self._authorization(auth)
        return send_direct(transport, request)

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
        url, path = self._rewritten(uri)
        log.debug("twilio %s %s", method.upper(), path)
        try:
            # A closed client refuses to send (RuntimeError): the Client path says so as before.
            if (
                self._transport is not None
                and auth is not None
                and not allow_redirects
                and not self._client.is_closed
            ):
                response = self._send(
                    self._transport, method.upper(), url, params, data, headers, auth, timeout
                )
            else:
                response = self._client.request(
                    method.upper(),
                    url,
                    params=params,  # type: ignore[arg-type]
                    data=data,
                    headers=headers,
                    auth=auth,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                    follow_redirects=allow_redirects,
                )
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            raise _Transport("maybe-delivered", type(exc).__name__) from None
        except httpx.TimeoutException as exc:
            raise _Transport("timeout", type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise _Transport("connection", type(exc).__name__) from None
        # One pass over the headers (what dict(response.headers) gives, lower-cased names and
        # repeated ones joined), shared by Retry-After and the SDK, which copies them again.
        received = dict(response.headers.items())
        self._local.headers = received
        return Response(response.status_code, self._text(response, received.get("content-type")), received)

    def _text(self, response: httpx.Response, content_type: str | None) -> str:
        """``response.text``, with the charset httpx chose for this Content-Type before reused
        (it depends on nothing else here) instead of parsing the same header on every reply."""
        encoding = self._encodings.get(content_type)
        if encoding is None:
            if len(self._encodings) >= _CACHE_LIMIT:
                self._encodings.clear()
            self._encodings[content_type] = response.encoding
        else:
            response.encoding = encoding
        return response.text

    def close(self) -> None:
        self._client.close()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value.strip()), 0.0)
            except ValueError:
                return None
    return None


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
    ) -> None:
        self._status_callback = status_callback
        if not account_sid or not auth_token:
            raise ConfigurationError(
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set when twilio is the SMS provider"
            )
        self._http = RedirectingHttpClient(base_url, timeout=timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)

    def __repr__(self) -> str:
        return "TwilioProvider()"

    def send_sms(self, message: SmsMessage) -> Receipt:
        length = utf16_length(message.body)
        if length > MAX_BODY:
            _raise(ERROR_CODES[21617], code="21617", detail=f"{length} UTF-16 units, refused before sending")
        counted = segments(message.body)
        try:
            created: Any = self._client.messages.create(**build_create_params(message, self._status_callback))
        except _Transport as exc:
            if exc.kind == "maybe-delivered":
                # Twilio may have queued the message without our hearing the SID.
                raise MaybeDelivered(
                    f"twilio: no answer in time ({exc.name})", provider=NAME, code="timeout"
                ) from None
            raise RetryLater(f"twilio: {exc.kind} ({exc.name})", provider=NAME, code=exc.kind) from None
        except TwilioRestException as exc:
            status = int(exc.status)
            # Without a JSON body the SDK puts the HTTP status in ``code``: that is no Twilio code.
            code = exc.code if isinstance(exc.code, int) and exc.code != status else None
            rule = classify(status, code)
            log.warning(
                "twilio refused notification %s: code %s, HTTP %s", message.notification_id, code, status
            )
            _raise(
                rule,
                code=str(code if code is not None else f"http-{status}"),
                detail=redact(str(exc.msg)),
                retry_after=_retry_after(self._http.last_headers),
            )
        except TwilioServiceException as exc:
            status = int(exc.status)
            rule = classify(status, int(exc.code))
            _raise(
                rule,
                code=str(exc.code),
                detail=redact(str(exc.title)),
                retry_after=_retry_after(self._http.last_headers),
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

    def close(self) -> None:
        self._http.close()
