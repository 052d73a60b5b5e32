"""The outbox provider: writes each message to a file instead of sending it (demo, staging, tests)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.addresses import with_ascii_domains
from workers.providers.mime import build_mime


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
    """Email as ``<dir>/email/<id>.eml`` and SMS as ``<dir>/sms/<id>.json``."""

    name = "outbox"

    def __init__(self, directory: Path, *, message_id_domain: str = "") -> None:
        self.directory = Path(directory)
        self._domain = message_id_domain  # empty: the sender's domain

    def send_email(self, message: EmailMessage) -> Receipt:
        path = self.directory / "email" / f"{message.notification_id}.eml"
        # An encoded word is no way to write an IDN domain in To (RFC 2047 section 5): punycode is.
        message = with_ascii_domains(message, provider=self.name)
        _write_atomically(path, build_mime(message, domain=self._domain).as_bytes())
        return Receipt(provider=self.name, provider_message_id=str(path))

    def send_sms(self, message: SmsMessage) -> Receipt:
        path = self.directory / "sms" / f"{message.notification_id}.json"
        record = {
            "id": message.notification_id,
            "from": message.from_number,
            "to": message.to_number,
            "body": message.body,
        }
        _write_atomically(path, json.dumps(record, ensure_ascii=False, indent=2).encode())
        return Receipt(provider=self.name, provider_message_id=str(path))

    def close(self) -> None:
        """Nothing to release: every send opens and closes its own file."""
