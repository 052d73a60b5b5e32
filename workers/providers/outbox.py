"""The outbox provider: writes each message to a file instead of sending it (demo, staging, tests)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from workers.errors import GiveUp
from workers.ids import safe_name
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.addresses import with_ascii_domains
from workers.providers.base import Probe
from workers.providers.mime import build_mime
from workers.providers.redact import redact

# The flags and mode tempfile.mkstemp used here before, without its per-call setup: never an
# existing file or a symlink (O_EXCL, O_NOFOLLOW), not inherited by a child process (O_CLOEXEC), and
# readable by the worker's user only.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_MODE = 0o600
# A taken temporary name (another writer drew the same suffix) is drawn again, as mkstemp did.
_TEMP_ATTEMPTS = 100


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file beside it and a rename, so a reader
    (or a crash) never sees half a message; a failed write leaves no temporary file behind."""
    for _ in range(_TEMP_ATTEMPTS):
        # 64 random bits: two threads or processes writing the same name never share a temporary
        # file (random's shared instance is reseeded in a forked child, so workers draw apart).
        tmp = f"{path.parent}/.tmp-{path.name}-{random.getrandbits(64):016x}"
        try:
            fd = os.open(tmp, _CREATE, _MODE)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"outbox: no free temporary name beside {path.name}")
    try:
        # os.write rather than a file object: no fstat, lseek or buffer around one write (each call
        # into the kernel is also a turn of the GIL for the worker's other threads).
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutboxProvider:
    """Email as ``<dir>/email/<name>.eml`` and SMS as ``<dir>/sms/<name>.json``.

    ``<name>`` is the notification id when it follows the id rule (``workers.ids``), otherwise a
    digest of it; either way the name is checked to be one entry of its folder before anything is
    written, so no id, however it got here (the bus, ``notifications.accept``, an old row), writes
    anywhere else.
    """

    name = "outbox"

    def __init__(self, directory: Path, *, message_id_domain: str = "") -> None:
        self.directory = Path(directory)
        self._domain = message_id_domain  # empty: the sender's domain
        # Each kind's folder, resolved and made on its first send rather than on every send (a
        # realpath walk and a mkdir each time were a visible part of the worker's CPU).
        self._folders: dict[str, Path] = {}

    def send_email(self, message: EmailMessage) -> Receipt:
        path = self._path("email", message.notification_id, ".eml")
        # An encoded word is no way to write an IDN domain in To (RFC 2047 section 5): punycode is.
        message = with_ascii_domains(message, provider=self.name)
        try:
            data = build_mime(message, domain=self._domain).as_bytes()
        except (ValueError, TypeError) as exc:
            # Retrying cannot make an unencodable header encodable (intake refuses these now).
            raise GiveUp(
                f"outbox: message cannot be encoded ({redact(str(exc))})", provider=self.name, code="encoding"
            ) from None
        self._write(path, data)
        return Receipt(provider=self.name, provider_message_id=str(path))

    def send_sms(self, message: SmsMessage) -> Receipt:
        path = self._path("sms", message.notification_id, ".json")
        record = {
            "id": message.notification_id,
            "from": message.from_number,
            "to": message.to_number,
            "body": message.body,
        }
        self._write(path, json.dumps(record, ensure_ascii=False, indent=2).encode())
        return Receipt(provider=self.name, provider_message_id=str(path))

    def _folder(self, kind: str) -> Path:
        folder = self._folders.get(kind)
        if folder is None:
            # Two threads may both get here; they resolve and make the same folder.
            folder = (self.directory / kind).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            self._folders[kind] = folder
        return folder

    def _path(self, kind: str, notification_id: str, suffix: str) -> Path:
        folder = self._folder(kind)
        name = safe_name(notification_id)
        path = folder / f"{name}{suffix}"
        # Defence in depth: safe_name cannot hold a separator, but a check costs nothing. A name with
        # no separator or NUL that is not . or .. is one entry of the folder, so no resolve() is needed:
        # the temporary file is opened with O_EXCL (never through a symlink) and the rename replaces
        # whatever entry has the name (a symlink there is replaced, not followed).
        if "/" in name or "\0" in name or name in (".", "..") or path.parent != folder:
            raise GiveUp(
                f"outbox: notification id does not map to a file in {kind}/", provider=self.name, code="path"
            )
        return path

    def _write(self, path: Path, data: bytes) -> None:
        try:
            _write_atomically(path, data)
        except FileNotFoundError:
            # The folder was removed while the worker ran (an operator emptying the outbox): make it
            # again, once; a second failure is the caller's.
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)

    def probe(self, timeout: float) -> Probe:
        """The folder exists (made when missing, as a send would) and this process may write in it."""
        folder = self.directory.resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Probe.failed(exc)
        if not os.access(folder, os.W_OK):
            return Probe(False, f"{folder} is not writable")
        return Probe(True, f"writes to {folder}")

    def close(self) -> None:
        """Nothing to release: every send opens and closes its own file."""
