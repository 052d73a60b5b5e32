"""The outbox provider: writes each message to a file instead of sending it (demo, staging, tests)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from workers.errors import GiveUp
from workers.ids import safe_name
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.addresses import with_ascii_domains
from workers.providers.base import Probe
from workers.providers.mime import build_mime
from workers.providers.redact import redact


def _write_atomically(path: Path, data: bytes) -> None:
    # Write then rename, so a reader (or a crash) never sees half a message.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutboxProvider:
    """Email as ``<dir>/email/<name>.eml`` and SMS as ``<dir>/sms/<name>.json``.

    ``<name>`` is the notification id when it follows the id rule (``workers.ids``), otherwise a
    digest of it; either way the path is checked to resolve inside its folder before anything is
    written, so no id, however it got here (the bus, ``notifications.accept``, an old row), writes
    anywhere else.
    """

    name = "outbox"

    def __init__(self, directory: Path, *, message_id_domain: str = "") -> None:
        self.directory = Path(directory)
        self._domain = message_id_domain  # empty: the sender's domain

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
        _write_atomically(path, data)
        return Receipt(provider=self.name, provider_message_id=str(path))

    def send_sms(self, message: SmsMessage) -> Receipt:
        path = self._path("sms", message.notification_id, ".json")
        record = {
            "id": message.notification_id,
            "from": message.from_number,
            "to": message.to_number,
            "body": message.body,
        }
        _write_atomically(path, json.dumps(record, ensure_ascii=False, indent=2).encode())
        return Receipt(provider=self.name, provider_message_id=str(path))

    def _path(self, kind: str, notification_id: str, suffix: str) -> Path:
        folder = (self.directory / kind).resolve()
        path = folder / f"{safe_name(notification_id)}{suffix}"
        # Defence in depth: safe_name cannot hold a separator, but a check costs nothing.
        if path.resolve().parent != folder:
            raise GiveUp(
                f"outbox: notification id does not map to a file in {kind}/", provider=self.name, code="path"
            )
        return path

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
