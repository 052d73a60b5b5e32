"""The RFC 5322 form of an EmailMessage, shared by every provider that speaks MIME or raw headers."""

from __future__ import annotations

import functools
import random
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email import contentmanager
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage as MimeMessage
from email.parser import HeaderParser
from email.policy import EmailPolicy
from email.utils import formatdate
from urllib.parse import quote

from workers.events.syntax import ascii_email_address
from workers.events.validation import header_problem
from workers.ids import safe_name
from workers.messages import EmailMessage

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"

_URI = re.compile(r"<([^>]*)>")
# What may stay as it is inside the one <URI> of List-Unsubscribe: RFC 3986's unreserved and
# reserved characters except the comma, which separates URIs there (RFC 2369), and the apostrophe.
_URI_SAFE = "-._~:/?#[]@!$&()*+;=%"
# Headers that name mailboxes are built here from validated addresses, never taken from
# ``message.headers``: a stray one there could add a sender or a recipient.
ADDRESS_HEADERS = frozenset(
    {"from", "sender", "to", "cc", "bcc", "reply-to", "return-path", "resent-from", "resent-sender"}
)


def message_id(notification_id: str, domain: str) -> str:
    """A Message-ID derived only from the notification id, so a resent copy carries the same one."""
    return f"<{safe_name(notification_id)}@{domain}>"


def sender_domain(message: EmailMessage) -> str:
    """The domain of the sender's address: the Message-ID domain unless NOTIFY_MESSAGE_ID_DOMAIN says
    otherwise (RFC 5322 3.6.4 wants a domain we control; the sender's is one by definition)."""
    return message.from_address.rpartition("@")[2].lower()


def unsubscribe_header(link: str) -> str:
    """The List-Unsubscribe value: exactly one ``<URI>``, whatever the link holds.

    Intake refuses links with spaces, quotes or angle brackets; a comma is legal in a URL but
    separates URIs in this header, so it (and anything else outside RFC 3986) is percent-encoded.
    """
    link = link.strip()
    if link.startswith("<") and link.endswith(">"):  # the dispatcher may hand us <URI> or a bare URL
        link = link[1:-1]
    return f"<{quote(link, safe=_URI_SAFE)}>"


def extra_headers(message: EmailMessage) -> dict[str, str]:
    """``message.headers`` plus the RFC 8058 one-click header when List-Unsubscribe has an https URI.

    Reply-To is not included: each provider carries it in its own way. Address headers in
    ``message.headers`` are dropped (see ADDRESS_HEADERS).
    """
    headers: dict[str, str] = {}
    for name, value in message.headers.items():
        lowered = name.lower()
        if lowered == LIST_UNSUBSCRIBE.lower():
            headers[LIST_UNSUBSCRIBE] = unsubscribe_header(value)
        elif lowered != LIST_UNSUBSCRIBE_POST.lower() and lowered not in ADDRESS_HEADERS:
            headers[name] = value
    unsubscribe = headers.get(LIST_UNSUBSCRIBE)
    # RFC 8058: one-click only makes sense for an https URI the mailbox provider can POST to.
    if unsubscribe and any(uri.strip().lower().startswith("https://") for uri in _URI.findall(unsubscribe)):
        headers[LIST_UNSUBSCRIBE_POST] = ONE_CLICK
    return headers


def ascii_address(address: str) -> Address:
    """The mailbox with its domain in ASCII: an IDN domain goes as punycode, never as an encoded word."""
    local, _, domain = ascii_email_address(address).rpartition("@")
    return Address(username=local, domain=domain)


class HeaderClasses(HeaderRegistry):
    """The email package's header registry, making each header class once instead of per header.

    CPython's ``HeaderRegistry.__getitem__`` builds a new class (``type(...)``) every time a header
    is set, read or folded: about a twentieth of the worker's CPU with outbox providers (py-spy,
    bench/profile_worker.py --outbox). The classes it builds are the same every time, so one per
    registry entry is kept; the set is bounded by the registry, not by header names.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            # Two threads may both build it; either class does the same work.
            made = self._made[kind] = super().__getitem__(name)
        return made


_HEADER_CLASSES = HeaderClasses()
# The policy headers are read back with in _one_mailbox: email.policy.default with the shared classes.
_READ_BACK = email_policy.default.clone(header_factory=_HEADER_CLASSES)


@functools.lru_cache(maxsize=4)
def mime_policy(eight_bit: bool, utf8: bool) -> EmailPolicy[MimeMessage]:
    """The policy of the messages ``build_mime`` makes (policies are immutable, so one per kind)."""
    # max_line_length 998 (RFC 5322's hard limit): CPython's folder drops the quotes of a quoted
    # display name it splits across lines, so `"security@bank.example xxx…" <alerts@…>` folded at
    # 78 reads back as From: security@bank.example. Names are at most 256 characters (intake), so
    # an address header is never folded; _one_mailbox below checks that it stayed whole anyway.
    return email_policy.default.clone(
        cte_type="8bit" if eight_bit else "7bit",
        utf8=utf8,
        max_line_length=998,
        header_factory=_HEADER_CLASSES,
    )


# A display name of atext words, each separated by one space (RFC 5322 3.2.3, less "=" and "?", the
# characters of an encoded word, which CPython's parser decodes even in a local part), and an ASCII
# dot-atom address of the same characters: the wire form is ``Name <local@domain>``
# as it stands, with no quoting, encoding or folding for a reader to undo.
_PLAIN_NAME = re.compile(r"(?:[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*)?")
_PLAIN_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
# Far below max_line_length (998): such a header is never folded by any policy.
_PLAIN_LINE = 78


def _plainly_one_mailbox(header: str, address: Address) -> bool:
    """True when ``header: address`` is one short line whose only reading is that one mailbox.

    The read-back of _one_mailbox cannot fail for such a header, so it is skipped: it was about a
    third of build_mime's time for the usual ``Alerts <alerts@...>``. Anything else (quotes, dots,
    specials, non-ASCII, a long name) still reads back. tests/providers/test_mime_bytes.py checks,
    for many generated names and addresses, that every one this accepts also passes the read-back.
    """
    name, addr_spec = address.display_name, address.addr_spec
    return (
        len(header) + len(name) + len(addr_spec) + 5 <= _PLAIN_LINE
        and _PLAIN_NAME.fullmatch(name) is not None
        and _PLAIN_ADDR_SPEC.fullmatch(addr_spec) is not None
    )


def _one_mailbox(mime: MimeMessage, header: str) -> None:
    """Raise ValueError unless ``header`` as it goes on the wire reads back as the one mailbox we set."""
    wanted = [address.addr_spec for address in mime[header].addresses]
    wire = mime.policy.fold(header, mime[header])
    parsed = HeaderParser(policy=_READ_BACK).parsestr(wire)
    got = [address.addr_spec for address in parsed[header].addresses] if header in parsed else []
    if len(wanted) != 1 or got != wanted:
        raise ValueError(f"the {header} header would not read back as one mailbox")


def _sender_header(policy: EmailPolicy[MimeMessage], name: str, address: Address) -> BaseHeader:
    """The From or Reply-To header for ``address``, checked to read back as that one mailbox.

    A service sends from a handful of addresses, so the header (parsed, checked) is made once per
    address and policy; ``_folded`` keeps its wire form likewise. Recipients' headers are not kept.
    """
    return _checked_header(policy, name, address.display_name, address.username, address.domain)


@functools.lru_cache(maxsize=256)
def _checked_header(
    policy: EmailPolicy[MimeMessage], name: str, display_name: str, username: str, domain: str
) -> BaseHeader:
    address = Address(display_name=display_name, username=username, domain=domain)
    probe = MimeMessage(policy=policy)
    probe[name] = address
    if not _plainly_one_mailbox(name, address):
        _one_mailbox(probe, name)
    header = probe[name]
    assert isinstance(header, BaseHeader)
    return header


# Headers whose values repeat from message to message: the sender's (see _sender_header) and the
# one-click constant. Their folded form is kept; every other header is folded for each message.
_KEPT_FOLDS = frozenset({"from", "reply-to", LIST_UNSUBSCRIBE_POST.lower()})


@functools.lru_cache(maxsize=1024)
def _kept_fold(policy: EmailPolicy[MimeMessage], name: str, value: str) -> bytes:
    # A header's wire form depends only on the policy, its name and its text: the email package
    # parses every header value (address objects included) from its text before folding it.
    return policy.fold_binary(name, value)


@functools.lru_cache(maxsize=16)
def _with_linesep(policy: EmailPolicy[MimeMessage], linesep: str) -> EmailPolicy[MimeMessage]:
    # One clone per policy and line end (SMTP writes CRLF), so _kept_fold's entries are found again.
    return policy.clone(linesep=linesep)


def _folded(policy: EmailPolicy[MimeMessage], name: str, value: str) -> bytes:
    if name.lower() in _KEPT_FOLDS:
        return _kept_fold(policy, name, value)
    return policy.fold_binary(name, value)


# The generator's own boundary form (email.generator): 15 "=", a random 19-digit number, "==".
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


def _boundary(*bodies: str) -> str:
    """A multipart boundary in the generator's form that appears in no body part.

    The generator's own choice (after writing the parts, checked with a regular expression compiled
    for that one boundary) was a visible part of as_bytes; build_mime now writes the boundary lines
    itself, with this one, in the form the generator's would have. Absent from the text is enough:
    7bit and 8bit bodies are that text with normalised line ends, and quoted-printable and base64
    never write three "=" in a row.
    """
    while True:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):0{_BOUNDARY_DIGITS}d}=="
        if not any(boundary in body for body in bodies):
            return boundary


# email.contentmanager's own choice of transfer encoding and body for a text part: 7bit, 8bit,
# quoted-printable or base64 by the policy's cte_type, line lengths and which is shorter, with the
# line ends normalised. It is private, so typeshed does not declare it; it is called rather than
# copied so that the body bytes are the content manager's by construction. The fixtures in
# tests/providers/mime_bytes/ and the property test in tests/providers/test_mime_bytes.py (against
# set_content, make_alternative and add_alternative themselves) fail if its behaviour changes.
_encode_text: Callable[[str, str, str | None, EmailPolicy[MimeMessage]], tuple[str, str]] = (
    contentmanager._encode_text  # type: ignore[attr-defined]  # private; see the comment above
)


def _text_part(subtype: str, text: str, policy: EmailPolicy[MimeMessage]) -> tuple[str, str]:
    """The Content-Type and Content-Transfer-Encoding lines of a UTF-8 text part, and its body.

    What ``set_content(text, subtype=subtype, charset="utf-8")`` stores and the generator writes:
    the body ends with a line end, and every line end in it is "\n" (quoted-printable and base64
    write only "\n"; 7bit and 8bit bodies are the text's lines joined with "\n"). An 8bit body
    holds its UTF-8 bytes as surrogate escapes, as the email package stores them.
    """
    cte, body = _encode_text(text, "utf-8", None, policy)
    return f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: {cte}\n', body


@dataclass(frozen=True)
class Mime:
    """One built message: its top-level headers from the email package, its MIME part written here.

    ``head`` holds From, To, Subject, Reply-To, Date, Message-ID, X-Notification-Id and the extra
    headers, set and folded by the email package as before (the address checks stay theirs); the
    sender's headers are made, checked and folded once per address (``_sender_header``), which
    took build_mime(...).as_bytes() from about 500 to 370 µs for bench/providers.py's email().
    ``content`` is the rest of the message as the content manager and the generator wrote
    it: the MIME-Version, Content-Type and Content-Transfer-Encoding lines, the blank line and the
    body (one part, or multipart/alternative with text/plain then text/html), with "\n" line ends
    and 8-bit bytes as surrogate escapes. Writing it here instead of through set_content,
    make_alternative and add_alternative (sub-messages, header parsing and folding, a generator per
    part) halved the CPU of build_mime(...).as_bytes() for bench/providers.py's email(), 762 to 380
    µs, and cut a text-only one from 344 to 232 µs (process time, median of 3 x 2,000 calls, Python
    3.11.7 on the 2-core dev box). The bytes are the same: tests/providers/test_mime_bytes.py.
    ``head`` is not changed after build_mime returns.
    """

    head: MimeMessage
    content: str

    def as_bytes(self, *, linesep: str = "\n") -> bytes:
        """The message as it goes on the wire, every line ending in ``linesep``."""
        policy = self.head.policy
        assert isinstance(policy, EmailPolicy)  # build_mime's, from mime_policy
        if linesep != "\n":
            policy = _with_linesep(policy, linesep)
        # What BytesGenerator._write_headers writes: each header as the policy folds it. The blank
        # line that would end the headers is left out; the MIME lines go in its place.
        head = b"".join(_folded(policy, name, value) for name, value in self.head.raw_items())
        content = self.content if linesep == "\n" else self.content.replace("\n", linesep)
        return head + content.encode("ascii", "surrogateescape")

    @property
    def message_id(self) -> str | None:
        value = self.head["Message-ID"]
        return str(value) if value else None


def build_mime(
    message: EmailMessage, *, domain: str = "", eight_bit: bool = True, utf8: bool = False
) -> Mime:
    """The RFC 5322 message for ``message``: multipart/alternative when both text and HTML exist.

    ``domain`` is the Message-ID's (empty: the sender's). ``eight_bit=False`` gives every body part a
    7-bit transfer encoding (quoted-printable or base64), for an SMTP server that does not offer
    8BITMIME (RFC 6152); ``utf8`` writes headers as UTF-8 for SMTPUTF8 (RFC 6532) instead of as
    encoded words. Raises ValueError when a header value cannot be encoded (it holds a line break)
    or a body cannot be encoded as UTF-8 (a lone surrogate).
    """
    # Intake refuses these; a row stored before that rule must fail here, not reach a header
    # (the email package would decode an encoded word into a line break or a second mailbox).
    for what, value in (("subject", message.subject), ("sender name", message.from_name or "")):
        problem = header_problem(value)
        if problem is not None:
            raise ValueError(f"the {what} {problem}")
    policy = mime_policy(eight_bit, utf8)
    mime = MimeMessage(policy=policy)
    # Address objects, never formatted strings: the header is serialized from the parts, so a
    # display name holding quotes, commas, <...> or encoded words stays one quoted (or encoded)
    # phrase and can never add a mailbox.
    mailbox = ascii_address(message.from_address)
    sender = Address(display_name=message.from_name or "", username=mailbox.username, domain=mailbox.domain)
    recipient = ascii_address(message.to_address)
    mime["From"] = _sender_header(policy, "From", sender)
    mime["To"] = recipient
    mime["Subject"] = message.subject
    if message.reply_to:
        mime["Reply-To"] = _sender_header(policy, "Reply-To", ascii_address(message.reply_to))
    # The sender's headers were checked when made (_sender_header); the recipient's is new each time.
    if not _plainly_one_mailbox("To", recipient):
        _one_mailbox(mime, "To")
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id(message.notification_id, domain or sender_domain(message))
    mime["X-Notification-Id"] = safe_name(message.notification_id)
    headers: Mapping[str, str] = extra_headers(message)
    for name, value in headers.items():
        mime[name] = value
    text = message.text if message.text is not None else ""
    plain_headers, plain = _text_part("plain", text, policy)
    if not message.html:
        # set_content on the message itself: its Content-* lines, then the MIME-Version it adds.
        return Mime(mime, f"{plain_headers}MIME-Version: 1.0\n\n{plain}")
    html_headers, html = _text_part("html", message.html, policy)
    boundary = _boundary(text, message.html)
    # make_alternative keeps MIME-Version on the message and moves the text part's Content-* lines
    # into the first part; add_alternative's part is a whole message, so it carries a MIME-Version
    # of its own. The generator writes no preamble or epilogue, and a line end before each boundary.
    return Mime(
        mime,
        f'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="{boundary}"\n\n'
        f"--{boundary}\n{plain_headers}\n{plain}"
        f"\n--{boundary}\n{html_headers}MIME-Version: 1.0\n\n{html}"
        f"\n--{boundary}--\n",
    )
