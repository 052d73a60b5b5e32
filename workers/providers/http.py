"""The one way providers speak HTTP: the kept-alive httpx.Client each one sends through, and what
their replies and failures have in common (Retry-After, the table of transport failures).

Mandrill sends through the client directly; Twilio's SDK sends through it from its HttpClient
subclass. Proxies named in the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) are
honoured as httpx.Client honours them, because the client is an ordinary one.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from typing import NoReturn

import httpx

from workers.errors import MaybeDelivered, RetryLater
from workers.providers.refusals import Rule
from workers.settings import Settings

USER_AGENT = "notify-workers/0.1"
# A connection that is not up in 5 s will not be; the read timeout is the provider's own setting.
CONNECT_TIMEOUT_CAP = 5.0
# The one default of NOTIFY_HTTP_MAX_CONNECTIONS, for providers built without settings (tests, bench).
DEFAULT_MAX_CONNECTIONS: int = Settings.model_fields["http_max_connections"].default
# A longer hint is a provider's mistake (or a hostile reply): the retry budget bounds waits anyway.
RETRY_AFTER_CAP = 86400.0
# httpx.Client's default request headers that the providers do without (see make_client).
UNUSED_DEFAULT_HEADERS = ("Accept-Encoding", "Connection")


def make_client(*, timeout: float, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> httpx.Client:
    """A kept-alive client for one provider: ``timeout`` per read and write, connecting in at most 5 s.

    Every connection it may open is kept alive: the worker's threads share the client, and a
    connection closed after each burst would be opened again (TCP and TLS) on the next.
    """
    client = httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_CAP)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": USER_AGENT},
        cookies=NoCookies(),
    )
    # Every request header is validated by h11 and httpcore and copied header by header into the
    # cookie jar's request view on each send (an O(headers^2) walk; httpx has no option to skip the
    # cookie step: encode/httpx#2992). These two of the Client's defaults earn nothing here:
    # HTTP/1.1 keeps connections alive without "Connection: keep-alive", and the APIs' replies are
    # a few hundred bytes of JSON, not worth compressing.
    for name in UNUSED_DEFAULT_HEADERS:
        del client.headers[name]
    return client


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing: the key in Mandrill's body and Twilio's Basic auth
    authenticate every request, so a cookie a server sets is never sent back. Reading Set-Cookie
    into the jar took about a tenth of a send's client-side CPU (cProfile of bench/providers.py sends)."""

    def extract_cookies(self, response: object, request: object) -> None:
        """Keeps nothing."""


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The Retry-After hint in seconds (RFC 9110 section 10.2.3), at most ``RETRY_AFTER_CAP``.

    Either form: a number of seconds (what APIs send) or an HTTP-date, counted from ``now`` (the
    current time when not given). None when the header is absent or unreadable; a date in the past
    is 0. ``headers`` may be any mapping: the name is matched without regard to case.
    """
    value = next((v for name, v in headers.items() if name.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000" in the date: RFC 5322 says UTC, without saying so
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


# Transport failures, most specific first. A read or write timeout means (part of) the request
# reached the provider, which may act on it without our hearing; the other failures happened
# before it could (connection refused, reset, or dropped before a reply).
TRANSPORT_ERRORS: tuple[tuple[type[httpx.HTTPError], str, Rule], ...] = (
    (httpx.ReadTimeout, "timeout", Rule(MaybeDelivered, "no answer in time")),
    (httpx.WriteTimeout, "timeout", Rule(MaybeDelivered, "no answer in time")),
    (httpx.TimeoutException, "timeout", Rule(RetryLater, "timed out")),
    (httpx.TransportError, "connection", Rule(RetryLater, "connection failed")),
    (httpx.HTTPError, "http", Rule(RetryLater, "HTTP failure")),
)


def transport_rule(exc: httpx.HTTPError) -> tuple[str, Rule]:
    """The error code and rule for a failure of the HTTP exchange itself (no reply to classify)."""
    for kind, code, rule in TRANSPORT_ERRORS:
        if isinstance(exc, kind):
            return code, rule
    raise TypeError(f"{type(exc).__name__} is not an httpx error")  # HTTPError is the last row


def raise_transport_failure(provider: str, exc: httpx.HTTPError) -> NoReturn:
    """Raise our error for ``exc``, naming only its type: its text may quote the URL."""
    code, rule = transport_rule(exc)
    rule.raise_for(provider, code=code, detail=type(exc).__name__)
