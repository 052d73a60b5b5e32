"""build_mime's bytes, pinned: ordinary and hostile messages give the bytes they always gave.

And the read-back of an address header that build_mime skips for a plain mailbox would have passed.

And for any text and HTML bodies, under every build setting and both line ends, the bytes are the
ones the email package's content manager and generator write (set_content, make_alternative and
add_alternative, as build_mime called them before it wrote the MIME part itself).

The files in ``tests/providers/mime_bytes/`` were written by build_mime as it was before it was made
cheaper (commit 17cdee5), with the two parts that change on every call normalised: the random MIME
boundary and the Date. A change to build_mime that alters one byte of any of them fails here. When a
change of bytes is meant, write the files again and let the review see the difference:

    .venv/bin/python -m tests.providers.test_mime_bytes --write
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.messages import EmailMessage
from workers.providers import mime
from workers.providers.addresses import with_ascii_domains
from workers.providers.mime import Mime, build_mime

FOLDER = Path(__file__).with_name("mime_bytes")
_BOUNDARY = re.compile(rb"={15}\d+==")
_DATE = re.compile(rb"^Date: [^\r\n]*$", re.MULTILINE)

ROWS = "".join(
    f'<tr><td><a href="https://app.example.com/mentions/{i}?invite=1">Program {i}</a></td>'
    f"<td>...and Acme's plant #{i} opens in spring, said the spokesperson...</td></tr>"
    for i in range(20)
)


@dataclass(frozen=True)
class Case:
    name: str
    message: EmailMessage
    options: dict[str, object] = field(default_factory=dict)


def mail(notification_id: str, **fields: object) -> EmailMessage:
    values: dict[str, object] = {
        "notification_id": notification_id,
        "from_address": "alerts@notify.example.com",
        "to_address": "reader@example.org",
        "subject": "Hello",
        "text": "plain",
    }
    values.update(fields)
    return EmailMessage(**values)  # type: ignore[arg-type]


MENTION = mail(
    "mention-1",
    from_name="Example Alerts",
    subject="You were mentioned 20 times: Q3 report",
    text="You were mentioned 20 times.\n" * 20,
    html=f"<html><body><table>{ROWS}</table></body></html>",
    reply_to="support@notify.example.com",
    headers={"List-Unsubscribe": "<https://notify.example.com/u/abc123>"},
    tags=("mention-notification-bulk",),
)

CASES = [
    Case("mention", MENTION),
    Case("mention-7bit", MENTION, {"eight_bit": False}),
    Case("mention-smtputf8", MENTION, {"utf8": True}),
    Case("mention-own-domain", MENTION, {"domain": "mail.example.net"}),
    Case("text-only", mail("3f1c2b8e-9d4a-4c1e-8f00-1a2b3c4d5e6f")),
    Case("no-body", mail("01HZX3K5T8M9Q2R7", text=None)),
    Case("html-only", mail("evt_a.b+c=d~e", text=None, html="<p>Only HTML</p>")),
    Case(
        "non-ascii",
        mail(
            "non-ascii",
            from_name="Zoë Ünïcode-Ålerts",
            subject="Grüße aus München — ваш отчёт готов ✓",
            text="Grüße, Zoë.\n\u0421\u043f\u0430\u0441\u0438\u0431\u043e!\n",  # Cyrillic "thank you"
            html="<p>Grüße, <b>Zoë</b> ✓</p>",
        ),
    ),
    Case(
        "non-ascii-7bit", mail("na7", from_name="Zoë", subject="Grüße", text="Grüße ✓"), {"eight_bit": False}
    ),
    Case("non-ascii-smtputf8", mail("nau", from_name="Zoë", subject="Grüße", text="Grüße ✓"), {"utf8": True}),
    Case(
        "idn",
        mail(
            "idn",
            from_address="alerts@bücher.example",
            to_address="ana@münchen.example",
            reply_to="antwort@straße.example",
            from_name="Bücher",
        ),
    ),
    Case("long-subject", mail("long-subject", subject="A subject that goes on " * 12)),
    Case("long-non-ascii-subject", mail("long-na", subject="Überlänge: " + "äöü ß " * 40)),
    Case(
        "long-lines", mail("long-lines", text="x" * 1200 + "\n" + "ü" * 700, html="<p>" + "y" * 1500 + "</p>")
    ),
    Case(
        "long-lines-7bit",
        mail("long-lines-7", text="x" * 1200 + "\nend", html="ü" * 600),
        {"eight_bit": False},
    ),
    Case(
        "unsubscribe-https",
        mail("unsub-https", headers={"List-Unsubscribe": "https://u.example.com/x,y?a='b'"}),
    ),
    Case("unsubscribe-mailto", mail("unsub-mailto", headers={"list-unsubscribe": "<mailto:u@example.com>"})),
    Case(
        "headers",
        mail(
            "headers",
            headers={
                "X-Campaign": "spring",
                "Bcc": "hidden@evil.example",
                "Reply-To": "evil@evil.example",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Long": "word " * 40,
            },
        ),
    ),
    Case("mapped-id", mail("../../etc/passwd")),
    Case("reply-to", mail("reply-to", reply_to="replies@example.com", from_name="Support Team")),
    Case(
        "body-with-boundary-like-lines",
        mail("bnd", text="--===============0000000000000000000==\n--x--", html="<p>=</p>"),
    ),
]

SPOOF_NAMES = (
    "Bänk <security@bank.example>",
    "security@bank.example",
    '"Support" <support@bank.example>, x',
    "a, b@evil.example",
    'Ünï "q\\" <s@evil.example>, z@evil.example',
    "Name <evil@evil.example>;group:a@evil.example;",
    "(comment) evil@evil.example",
    "\\\\<evil@evil.example>",
    "Ä" * 200 + " <evil@evil.example>",
    "security@bank.example " + "x" * 90,
    "security@bank.example, " + "y" * 120 + " <evil@evil.example>",
    "J. R. Smith",
    "O'Brien & Sons",
    "x" * 256,
    "tab\tinside",
    " leading and trailing ",
    "two  spaces",
)
CASES += [Case(f"spoof-{n}", mail(f"spoof-{n}", from_name=name)) for n, name in enumerate(SPOOF_NAMES)]
CASES += [
    Case(f"spoof-{n}-smtputf8", mail(f"spoof-{n}-u", from_name=name), {"utf8": True})
    for n, name in enumerate(SPOOF_NAMES)
]


def normalised(case: Case) -> bytes:
    # As every provider calls it: IDN domains already in punycode (the Message-ID takes the sender's).
    message = with_ascii_domains(case.message, provider="test")
    data = build_mime(message, **case.options).as_bytes()  # type: ignore[arg-type]
    return _DATE.sub(b"Date: DATE", _BOUNDARY.sub(b"BOUNDARY", data))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_bytes_are_the_ones_build_mime_always_wrote(case: Case) -> None:
    assert normalised(case) == (FOLDER / f"{case.name}.eml").read_bytes()


def test_every_pinned_file_has_its_case() -> None:
    assert sorted(path.stem for path in FOLDER.glob("*.eml")) == sorted(case.name for case in CASES)


def test_a_display_name_too_long_for_one_line_is_still_refused() -> None:
    # 998 characters is the line limit; a folded From would lose the quotes of its name (mime.py).
    # Refused every time: the sender's header is kept once made, and a refused one never is.
    for _ in range(2):
        with pytest.raises(ValueError, match="From header would not read back as one mailbox"):
            build_mime(mail("too-long", from_name="security@bank.example " + "x" * 1000))


def test_a_kept_sender_header_is_written_as_the_email_package_writes_it() -> None:
    # The second message reuses the sender's header and its folded form; both read as written.
    for name in ("first", "second"):
        built = build_mime(mail(name, from_name="Zoë, Alerts <ops>"), utf8=False)
        for linesep in ("\n", "\r\n"):
            reference = built.head.as_bytes(policy=built.head.policy.clone(linesep=linesep))
            assert built.as_bytes(linesep=linesep).startswith(reference[: -len(linesep)])


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    FOLDER.mkdir(exist_ok=True)
    for old in FOLDER.glob("*.eml"):
        old.unlink()
    for case in CASES:
        (FOLDER / f"{case.name}.eml").write_bytes(normalised(case))


# Pieces of display names and local parts: atext, the specials, spaces, encoded-word marks, non-ASCII.
_PIECES = st.sampled_from(
    [
        *("Alerts", "a", "Z9", "!#$%&'*+/^_`{|}~-", " ", "  ", "\t", ".", ",", ";", ":", '"', "\\", "<", ">"),
        *("@", "(", ")", "[", "]", "=?", "?=", "=?utf-8?q?x?=", "Ä", "ü", "x" * 40),
    ]
)

# Mostly atext, so that many names and local parts are plain, with what sits just outside it.
_ATEXT = st.sampled_from(list("Aaz09!#$%&'*+/^_`{|}~- "))
_NEAR_ATEXT = st.sampled_from(list("Aaz09!#$%&'*+/^_`{|}~- .=?\"<>@,;:()\\\tÄ"))


@settings(max_examples=400, deadline=None)
@given(
    name=st.one_of(
        st.lists(_PIECES, max_size=8).map("".join),
        st.text(_NEAR_ATEXT, max_size=60),
        st.text(_ATEXT, max_size=80),
    ),
    local=st.one_of(
        st.lists(_PIECES, min_size=1, max_size=4).map("".join),
        st.text(_NEAR_ATEXT, min_size=1),
        st.text(_ATEXT, min_size=1),
    ),
    header=st.sampled_from(["From", "To", "Reply-To"]),
    kind=st.sampled_from([(True, False), (False, False), (True, True)]),  # build_mime's eight_bit, utf8
)
def test_a_mailbox_the_read_back_skips_would_have_passed_it(
    name: str, local: str, header: str, kind: tuple[bool, bool]
) -> None:
    # The claim behind skipping the read-back (mime._plainly_one_mailbox): it never skips one that
    # the read-back (mime._one_mailbox) would refuse or read as another mailbox.
    address = Address(display_name=name, username=local, domain="notify.example.com")
    if not mime._plainly_one_mailbox(header, address):
        return
    message = MimeMessage(policy=mime.mime_policy(*kind))
    message[header] = address
    mime._one_mailbox(message, header)
    assert [a.addr_spec for a in message[header].addresses] == [address.addr_spec]


# Pieces of bodies: what picks or breaks a transfer encoding (non-ASCII, lines over 998, "=", trailing
# white space, "\x85" and the other characters that str.splitlines but not bytes.splitlines breaks
# on), every line end, lines a mail system treats specially ("From ", "."), boundary look-alikes and
# a lone surrogate, which no UTF-8 body can hold.
_BODY_PIECES = st.sampled_from(
    [
        *("a", "From ", ".", "..", " ", "\t", "=", "=3D", "==", "ü", "✓", "😀", "\x00", "\x85", "\u2028"),
        *("\x0b", "\x0c", "\x1c", "\r", "\n", "\r\n", "\n\r", "\n\n", "x" * 200, "y" * 999, "é" * 500),
        *("--===============0000000000000000000==", "<p>", "&amp;", "line\n" * 12, "\ud800"),
    ]
)
_BODIES = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.lists(_BODY_PIECES, max_size=40).map("".join),
    st.lists(st.one_of(_BODY_PIECES, st.text(max_size=5)), max_size=25).map("".join),
)


def stdlib_bytes(built: Mime, text: str, html: str | None, boundary: str, linesep: str) -> bytes:
    """The message as the email package alone writes it, with ``built``'s own top-level headers."""
    reference = MimeMessage(policy=built.head.policy)
    for name, value in built.head.raw_items():
        reference[name] = value  # the same header objects, Date included
    reference.set_content(text, subtype="plain", charset="utf-8")
    if html:
        reference.make_alternative(boundary=boundary)
        reference.add_alternative(html, subtype="html", charset="utf-8")
    return reference.as_bytes(policy=reference.policy.clone(linesep=linesep))


_BOUNDARY_PARAM = re.compile(rb'boundary="(={15}\d+==)"')


@settings(max_examples=400, deadline=None)
@given(
    text=_BODIES,
    html=_BODIES,
    eight_bit=st.booleans(),
    utf8=st.booleans(),
    linesep=st.sampled_from(["\n", "\r\n"]),  # the outbox's and SMTP's
)
def test_the_mime_part_is_the_content_managers(
    text: str | None, html: str | None, eight_bit: bool, utf8: bool, linesep: str
) -> None:
    message = mail("bodies", from_name="Zoë", text=text, html=html)
    try:
        built = build_mime(message, eight_bit=eight_bit, utf8=utf8)
    except UnicodeEncodeError:
        # A lone surrogate: the content manager refuses the body too, as build_mime did before.
        with pytest.raises(UnicodeEncodeError):
            stdlib_bytes(build_mime(mail("bodies")), text or "", html, "b", linesep)
        return
    data = built.as_bytes(linesep=linesep)
    found = _BOUNDARY_PARAM.search(data)
    boundary = found.group(1).decode() if found else ""
    assert bool(found) == bool(html)
    assert data == stdlib_bytes(built, text or "", html, boundary, linesep)
