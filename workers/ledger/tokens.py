"""Page tokens: an HMAC-signed keyset cursor, valid only with the filters it was issued for.

A token is ``<body>.<mac>``, both unpadded URL-safe base64. The body is JSON holding the cursor
(the last row's ``created_at`` as integer microseconds since the epoch, UTC, and its id) and a
keyed tag of the listing's filters; the MAC is HMAC-SHA256 over the body, so a token that was
edited or made up is refused before anything in it is used, and one replayed under other filters
is refused by its tag.

Integer microseconds, not an ISO string: both databases keep microseconds, so the cursor is the
row's exact timestamp on SQLite and PostgreSQL alike, with no precision or time zone to lose.

The key comes from ``NOTIFY_PAGE_TOKEN_KEY`` or, when that is empty, from a random key kept in
``NOTIFY_STATE_DIR/page-token.key`` (mode 0600), created on first use (see ``keys.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workers.errors import NotifyError
from workers.ledger import keys

MAX_TOKEN_CHARS = 2048
MAX_ID_CHARS = 128
FORMAT_VERSION = 2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The MAC covers a purpose label too, so no other HMAC made with the same key can pass as a token.
_PURPOSE = b"notify-page-token\x00"
_FILTER_PURPOSE = b"notify-page-filter\x00"


class BadPageToken(NotifyError, ValueError):
    """Start the listing again without --page-token: this token was not issued for this listing."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row a page showed: the next page starts strictly after ``(created_at, id)``."""

    created_at: datetime
    notification_id: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


def to_micros(value: datetime) -> int:
    delta = value.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


class PageTokens:
    """Issues and reads page tokens with one secret key.

    The key is fetched on first use: a listing that fits on one page, given no token, never
    needs one, so it never creates a key file either.
    """

    def __init__(self, key_source: Callable[[], bytes]) -> None:
        self._key_source = key_source
        self._key: bytes | None = None

    @classmethod
    def with_key(cls, key: bytes) -> PageTokens:
        return cls(lambda: key)

    def __repr__(self) -> str:
        return "PageTokens(key=<hidden>)"

    def _secret(self) -> bytes:
        if self._key is None:
            key = self._key_source()
            if len(key) < keys.MIN_KEY_CHARS:
                raise keys.KeyUnavailable(f"a page token key needs at least {keys.MIN_KEY_CHARS} bytes")
            self._key = key
        return self._key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret(), _PURPOSE + body, hashlib.sha256).digest()

    def _filter_tag(self, fingerprint: str) -> str:
        # Keyed, so a token never carries a plain hash of its filters (a recipient's number among them).
        tag = hmac.new(self._secret(), _FILTER_PURPOSE + fingerprint.encode(), hashlib.sha256)
        return tag.hexdigest()[:32]

    def issue(self, cursor: Cursor, fingerprint: str) -> str:
        payload = {
            "v": FORMAT_VERSION,
            "c": to_micros(cursor.created_at),
            "i": cursor.notification_id,
            "f": self._filter_tag(fingerprint),
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def read(self, token: str, fingerprint: str) -> Cursor:
        """The cursor in ``token``; BadPageToken unless untampered and issued for ``fingerprint``."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise BadPageToken("page token is malformed")
        body_text, mac_text = token.split(".")
        try:
            body = _b64decode(body_text)
            mac = _b64decode(mac_text)
        except (binascii.Error, ValueError):
            raise BadPageToken("page token is malformed") from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise BadPageToken(
                "page token was not issued by this ledger or was altered; start again without it"
                " (processes that share tokens must share NOTIFY_PAGE_TOKEN_KEY)"
            )
        # Signed by us, so made by issue(); still checked rather than trusted blindly.
        try:
            data = json.loads(body)
        except ValueError:
            raise BadPageToken("page token is malformed") from None
        if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
            raise BadPageToken("page token is malformed")
        if data.get("f") != self._filter_tag(fingerprint):
            raise BadPageToken("page token belongs to a different filter; start again without it")
        created = data.get("c")
        notification_id = data.get("i")
        if not isinstance(created, int) or isinstance(created, bool):
            raise BadPageToken("page token is malformed: bad timestamp")
        try:
            created_at = from_micros(created)
        except OverflowError:
            raise BadPageToken("page token is malformed: timestamp out of range") from None
        if (
            not isinstance(notification_id, str)
            or not 1 <= len(notification_id) <= MAX_ID_CHARS
            or "\x00" in notification_id
        ):
            raise BadPageToken("page token is malformed: bad notification id")
        return Cursor(created_at, notification_id)


def load_key(configured: str, state_dir: Path) -> bytes:
    """The signing key: ``configured`` when set, else the one kept under ``state_dir`` (made on first use)."""
    return keys.load_key(keys.PAGE_TOKEN_KEY, configured, state_dir)
