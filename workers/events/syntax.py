"""Syntax checks for email addresses, E.164 numbers, Messaging Service SIDs and link URLs (no network)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import idna

# RFC 5321 limits: 64 octets of local part, 255 of domain, 254 for the whole forward path mailbox.
MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 253
MAX_ADDRESS_OCTETS = 254

# RFC 5322 dot-atom local part. Quoted local parts ("john doe"@example.com) and SMTPUTF8 local parts
# are valid in theory but rejected here: providers handle them poorly and producers never send them.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# E.164: a plus, then 8 to 15 digits, the first (country code) not 0. [0-9], not \d, which takes
# any Unicode digit.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")


def _ascii_domain(domain: str) -> str | None:
    """The domain in ASCII (IDN labels as punycode), or None when it is not a valid mail domain."""
    labels = domain.split(".")
    if len(labels) < 2:  # a dotless domain (user@localhost) is not deliverable on the internet
        return None
    encoded: list[str] = []
    for label in labels:
        if label.isascii():
            ascii_label = label
        else:
            # IDNA 2008 with the UTS #46 mapping, as browsers and mail servers encode today (Python's
            # own "idna" codec is IDNA 2003, which turns straße.de into a different domain).
            try:
                ascii_label = idna.encode(label, uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError):
                return None
        if not _LDH_LABEL.fullmatch(ascii_label):
            return None
        encoded.append(ascii_label)
    if encoded[-1].isdigit():  # 192.0.2.1 is an address literal without brackets, not a domain
        return None
    result = ".".join(encoded)
    return result if len(result) <= MAX_DOMAIN_OCTETS else None


def is_email_address(value: str) -> bool:
    """A bare RFC 5322 addr-spec (local@domain) with a dot-atom local part; IDN domains are fine."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return False
    if len(local) > MAX_LOCAL_OCTETS or not _LOCAL_PART.fullmatch(local):
        return False
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        return False
    return len(local) + 1 + len(ascii_domain) <= MAX_ADDRESS_OCTETS


def ascii_email_address(value: str) -> str:
    """``value`` with its domain in ASCII (IDN labels as punycode), as every provider must send it.

    The local part is left as it is: whether a non-ASCII one can be sent depends on the provider.
    Raises ValueError when ``value`` has no local part or its domain is not a valid mail domain.
    """
    local, at, domain = value.rpartition("@")
    ascii_domain = _ascii_domain(domain) if at and local else None
    if ascii_domain is None:
        raise ValueError("not an email address with a valid domain")
    return f"{local}@{ascii_domain}"


def is_e164(value: str) -> bool:
    """A phone number in E.164 form: + then 8 to 15 digits, the first not 0, nothing else."""
    return _E164.fullmatch(value) is not None


def is_messaging_service_sid(value: str) -> bool:
    """A Twilio Messaging Service SID: MG then 32 hex digits."""
    return _MESSAGING_SERVICE_SID.fullmatch(value) is not None


# One regex pass instead of a Python loop per character (it ran for every link of every mention).
# Besides whitespace and controls: < > " and backslash, which RFC 3986 does not allow unencoded and
# which end a header's <URI> (List-Unsubscribe), an HTML attribute, or move the host in browsers.
_URL_FORBIDDEN = re.compile(r'[\s\x00-\x1f\x7f<>"\\]')
# The usual link, accepted in one regex pass: http(s), a host of letters, digits, dots and hyphens,
# maybe a port, then anything _URL_FORBIDDEN allows. Whatever this matches, the full check
# accepts too (urlsplit finds that scheme and a non-empty hostname); anything else takes the full check.
_PLAIN_WEB_URL = re.compile(
    r'[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(?::[0-9]*)?(?:[/?#][^\s\x00-\x1f\x7f<>"\\]*)?'
)


def is_web_url(value: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace, control characters, ``<>"`` or ``\\``.

    Links end up in href/src attributes, where HTML escaping does not stop a javascript: URL.
    """
    return _PLAIN_WEB_URL.fullmatch(value) is not None or _is_web_url_parsed(value)


def _is_web_url_parsed(value: str) -> bool:
    """``is_web_url`` the long way: the URL split into its parts."""
    if _URL_FORBIDDEN.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced [ in the host
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
