"""Hostile event fields, as an attacker would write them: the catalogue the security tests share.

Each list is the hand-picked sample that goes through a real worker; the hypothesis strategies
beside them widen the same class for the in-process property tests.
"""

from __future__ import annotations

import base64
import json
import re
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

from hypothesis import strategies as st

from tests.factories import basic_email, mention

# Everything str.splitlines() splits on: each ends a header line for the email package or a client.
LINE_BREAKS = ("\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
assert sorted(LINE_BREAKS) == sorted(
    c for c in map(chr, range(0x110000)) if len(f"a{c}b".splitlines()) > 1
), "Python's set of line breaks changed: update LINE_BREAKS"

# Every event field that ends up in a header, as (event builder, JSON path, field name in errors).
HEADER_FIELDS: tuple[tuple[str, tuple[str | int, ...], str], ...] = (
    ("basic", ("data", "subject"), "data.subject"),
    ("basic", ("data", "fromAddress"), "data.from_address"),
    ("basic", ("data", "toAddress"), "data.to_address"),
    ("basic", ("data", "replyTo"), "data.reply_to"),
    ("mention", ("data", "fromName"), "data.from_name"),
    ("mention", ("data", "fromEmail"), "data.from_email"),
    ("mention", ("data", "toEmail"), "data.to_email"),
    ("mention", ("data", "placeHolders", "trackingUnitName"), "data.place_holders.tracking_unit_name"),
    (
        "mention",
        ("data", "placeHolders", "mentions", 0, "trackingUnitName"),
        "data.place_holders.mentions[0].tracking_unit_name",
    ),
    (
        "mention",
        ("data", "placeHolders", "mentions", 0, "programName"),
        "data.place_holders.mentions[0].program_name",
    ),
)


def encoded_word(text: str) -> str:
    """``text`` as an RFC 2047 encoded word, which the email package decodes where it finds one."""
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


# Header values that only become dangerous once decoded: a line break (an added Bcc), a mailbox.
ENCODED_INJECTIONS = (
    encoded_word("x\r\nBcc: victim@evil.example"),
    encoded_word("<evil@evil.example>"),
    "=?utf-8?q?evil?= <x@evil.example>",
)


def path_ids(tag: str, outside: str) -> list[str]:
    """Ids that name a place: ``tag`` marks any file they might create, ``outside`` is an absolute folder."""
    return [
        f"{outside}/{tag}-abs",
        f"../../{tag}-up",
        f"../{tag}-one-up",
        f"a/../../../{tag}-mid",
        f"..\\..\\{tag}-win",
        f"C:\\{tag}-drive",
        f"{tag}/nested",
        "..",
        ".",
        f".{tag}-hidden",
        f"{tag}-trailing.",
        f"{tag}..double",
        "CON",
        "nul",
        "com1.eml",
        "LPT9",
        "x" * 129,
        f"%2e%2e%2f{tag}-pct",
        f"{tag}\x00nul",
        f"{tag}\ttab",
        f"{tag}\u2028ls",
        f"{tag}<inject>@x",
    ]


# Accepted as they are: the rule must not cost legitimate producers their ids.
GOOD_IDS = ("0" * 128, "3f1c2b8e-9d4a-4c1e-8f00-1a2b3c4d5e6f", "01HZX3K5T8M9Q2R7", "evt_a.b+c=d~e")

# Display names written to smuggle a second mailbox, or another sender, into From.
SPOOF_NAMES = (
    "Bänk <security@bank.example>",
    "security@bank.example",
    '"Support" <support@bank.example>, x',
    "a, b@evil.example",
    'Ünï "q\\" <s@evil.example>, z@evil.example',
    "=?utf-8?q?evil?= <x@evil.example>",
    "=?utf-8?b?PGV2aWxAZXZpbC5leGFtcGxlPg==?=",
    "=?utf-8?b?eA0KQmNjOiB2aWN0aW1AZXZpbC5leGFtcGxl?=",
    "x =?utf-8?q?=3Cevil=40evil.example=3E?= y",
    "Name <evil@evil.example>;group:a@evil.example;",
    "(comment) evil@evil.example",
    "\\\\<evil@evil.example>",
    "Ä" * 200 + " <evil@evil.example>",
    # Long enough that a 78-column folder splits the quoted name and drops its quotes (CPython).
    "security@bank.example " + "x" * 90,
    "security@bank.example, " + "y" * 120 + " <evil@evil.example>",
)

UNSUBSCRIBE_REFUSED = (
    "https://u.example.com/x>,<mailto:collect@attacker.example>",
    "https://u.example.com/x> <mailto:collect@attacker.example",
    'https://u.example.com/x"><mailto:collect@attacker.example>',
    "https://u.example.com/x <mailto:collect@attacker.example>",
    "https://u.example.com/x\\@attacker.example",
    "mailto:collect@attacker.example",
    "javascript:alert(1)",
)
# Legal URLs whose commas or apostrophes must not split the header: accepted, percent-encoded there.
UNSUBSCRIBE_ENCODED = (
    "https://u.example.com/x,mailto:collect@attacker.example",
    "https://u.example.com/u?list=a,b&who=o'brien",
)

MENTION_LINKS_REFUSED = (
    "javascript:alert(document.cookie)",
    "JaVaScRiPt:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    'https://x.example/" onmouseover="alert(1)',
    "https://x.example/><script>alert(1)</script>",
    "//evil.example/x",
)
# Legal URLs that try to break out of an attribute with what URLs may hold: they must stay inert.
MENTION_LINKS_INERT = (
    "https://x.example/'onmouseover='alert(1)'",
    "https://x.example/?q=`onerror=alert(1)`",
    "https://x.example/&quot;onclick=&quot;alert(1)",
)


def put(event: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """``event`` with the field at ``path`` set to ``value``."""
    node: Any = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return event


def build(kind: str, event_id: str | None = None) -> dict[str, Any]:
    return basic_email(event_id) if kind == "basic" else mention(event_id, mentions=1)


def routing_key(event: dict[str, Any]) -> str:
    return "events." + str(event["data"]["@type"]).rsplit(".", 1)[-1]


def as_bus_message(event: dict[str, Any]) -> tuple[bytes, str, str]:
    return json.dumps(event).encode(), "application/json", routing_key(event)


def parse_email(raw: bytes) -> MimeMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, MimeMessage)
    return message


def from_mailboxes(message: MimeMessage) -> list[str]:
    """Every mailbox a reader finds in From: the header registry's view and getaddresses' view."""
    header = message["From"]
    registry = [address.addr_spec for address in header.addresses]
    raw = [address for _, address in getaddresses([str(header)])]
    every = message.get_all("From") or []
    assert len(every) == 1, f"{len(every)} From headers"
    return registry if registry == raw else [*registry, *raw]


ONE_URI = re.compile(r"<[^<>,\s\"']+>")


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.extend((tag, name, value) for name, value in attrs)


def attributes(markup: str) -> list[tuple[str, str, str | None]]:
    """(tag, attribute, value) of every start tag, as a browser's tokenizer reads them."""
    parser = _Attributes()
    parser.feed(markup)
    parser.close()
    return parser.found


def unsafe_attributes(markup: str) -> list[tuple[str, str, str | None]]:
    """Event handlers, and href/src values that are not http(s) links."""
    bad = []
    for tag, name, value in attributes(markup):
        web_link = (value or "").lower().startswith(("https://", "http://"))
        if name.startswith("on") or (name in {"href", "src"} and not web_link):
            bad.append((tag, name, value))
    return bad


# -- hypothesis: the same classes, wider ---------------------------------------------------------

_PATHISH = st.sampled_from(["/", "\\", ".", "..", ":", "~", "%", "C:", "CON", "nul", "\x00", " ", "\n"])
path_like_ids = st.one_of(
    st.lists(st.one_of(_PATHISH, st.text(alphabet="abcXYZ019-_.", max_size=6)), min_size=1, max_size=12).map(
        "".join
    ),
    st.text(min_size=1, max_size=140),
    st.sampled_from(["CON", "PRN", "AUX", "NUL", "COM1", "LPT1", "con.eml", "Nul.json", "lpt9.txt"]),
)
line_breaking = st.sampled_from(LINE_BREAKS)
# Names made of the pieces an address header is built from.
_NAME_PIECES = st.sampled_from(
    [
        "<",
        ">",
        ",",
        ";",
        ":",
        '"',
        "\\",
        "@",
        "(",
        ")",
        "=?utf-8?q?",
        "?=",
        "evil@evil.example",
        " ",
        "Ä",
        "ü",
    ]
)
display_names = st.one_of(
    st.lists(st.one_of(_NAME_PIECES, st.text(max_size=5)), max_size=16).map("".join),
    st.text(max_size=256),
)
link_tails = st.lists(
    st.one_of(
        st.sampled_from(
            ["<", ">", ",", '"', "'", " ", "\t", "mailto:a@attacker.example", "%3E", "`", "\\", "&"]
        ),
        st.text(max_size=5),
    ),
    max_size=10,
).map("".join)
