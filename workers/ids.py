"""What a notification id may hold, and the one safe name any id becomes in files and headers.

An id comes from the producer (``core.id``), so it is hostile input until checked. The rule is
one for every place an id becomes a name (outbox file, Message-ID, log value, task label): 1 to
128 characters from ``A-Z a-z 0-9 - _ + = ~`` and dots, never a dot first or last or two dots in
a row (so never ``.``, ``..`` or a hidden file, and always a valid RFC 5322 dot-atom), and never a
device name Windows reserves (CON, NUL, COM1, ...), which open a device instead of a file there.
The usual ids (UUIDs, ULIDs, ``derived-``/``raw-`` digests) pass unchanged.

Ids that break the rule are refused at intake; ``safe_name`` still maps them (rows written before
the rule, or any caller that skipped intake) to a name that cannot leave a folder or a header.
"""

from __future__ import annotations

import hashlib
import re

MAX_ID_CHARS = 128

_ID_CHARS = re.compile(r"[A-Za-z0-9_+=~-]+(?:\.[A-Za-z0-9_+=~-]+)*")
_CHARACTER = re.compile(r"[A-Za-z0-9_+=~.-]")
# Windows opens these as devices whatever the extension (CON.eml is the console); case-insensitive.
_RESERVED = re.compile(r"(?:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(?:\..*)?", re.IGNORECASE)
# Not an id character: a mapped name can never equal a valid id.
_MAPPED_PREFIX = "%"

ID_RULE = (
    f"1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 - _ + = ~ and single dots inside, "
    "not a reserved device name"
)


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a usable id, without quoting it; None when it is one."""
    if not value:
        return "is empty"
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters; the limit is {MAX_ID_CHARS}"
    if _ID_CHARS.fullmatch(value) is None:
        for char in value:
            if _CHARACTER.fullmatch(char) is None:
                return f"holds the character {_describe(char)}, which an id cannot hold ({ID_RULE})"
        return f"starts or ends with a dot or holds two dots in a row ({ID_RULE})"
    if _RESERVED.fullmatch(value):
        return f"is a reserved device name ({ID_RULE})"
    return None


def is_usable_id(value: str) -> bool:
    """True when ``value`` follows the id rule (see the module docstring)."""
    return (
        len(value) <= MAX_ID_CHARS
        and _ID_CHARS.fullmatch(value) is not None
        and _RESERVED.fullmatch(value) is None
    )


def safe_name(notification_id: str) -> str:
    """The id itself when it follows the rule; otherwise ``%`` and a digest of it.

    Deterministic, so a resent notification writes the same file and carries the same Message-ID.
    """
    if is_usable_id(notification_id):
        return notification_id
    digest = hashlib.sha256(notification_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return _MAPPED_PREFIX + digest


def _describe(char: str) -> str:
    # A code point, not the character: it may be a control or a line break that would garble a log.
    return (
        f"U+{ord(char):04X}" if not char.isprintable() or char.isspace() else f"{char!r} (U+{ord(char):04X})"
    )
