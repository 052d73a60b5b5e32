"""Secret keys the ledger signs and hashes with: from the environment, or made once and kept in the state dir.

Two keys live this way: the page-token signing key (``NOTIFY_PAGE_TOKEN_KEY``) and the suppression
key (``NOTIFY_SUPPRESSION_KEY``) that turns recipients into HMACs. Unset, each is a random key kept
in ``NOTIFY_STATE_DIR/<file>`` (mode 0600), created on first use, so one host's processes agree;
processes on several hosts must be given the key in the environment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from workers.errors import ConfigurationError

KEY_BYTES = 32
MIN_KEY_CHARS = 16


class KeyUnavailable(ConfigurationError):
    """Fix the key's setting or NOTIFY_STATE_DIR: no key can be had."""


@dataclass(frozen=True, slots=True)
class KeptKey:
    """Which key: the environment variable that sets it and the file that keeps it otherwise."""

    setting: str
    file_name: str
    purpose: str  # in error messages: "a page token key"


PAGE_TOKEN_KEY = KeptKey("NOTIFY_PAGE_TOKEN_KEY", "page-token.key", "a page token key")
SUPPRESSION_KEY = KeptKey("NOTIFY_SUPPRESSION_KEY", "suppression.key", "a suppression key")


def load_key(kept: KeptKey, configured: str, state_dir: Path) -> bytes:
    """The key: ``configured`` when set, else the one kept under ``state_dir`` (made on first use)."""
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise KeyUnavailable(f"{kept.setting} must be at least {MIN_KEY_CHARS} characters")
        return configured.encode()
    path = state_dir / kept.file_name
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a concurrent reader never
        # sees a half-written key, and of two racing creators the second adopts the first's key.
        temp = state_dir / f".{kept.file_name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return _read_key_file(path)
    except OSError as exc:
        raise KeyUnavailable(
            f"cannot keep {kept.purpose} in {state_dir} ({exc.strerror or type(exc).__name__}); "
            f"set {kept.setting} or a writable NOTIFY_STATE_DIR"
        ) from None


def _read_key_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyUnavailable(f"{path} is readable or writable by others; chmod 600 it")
        key = handle.read().strip()
    if len(key) < MIN_KEY_CHARS:
        raise KeyUnavailable(f"{path} holds no usable key; remove it to have a new one made")
    return key
