"""The outbox's files: whole or absent, inside their folder, and written after the folder is removed."""

from __future__ import annotations

import json
import shutil
import stat
import threading
from pathlib import Path

import pytest

from workers.messages import EmailMessage, SmsMessage
from workers.providers.outbox import OutboxProvider


def mail(notification_id: str, text: str = "plain") -> EmailMessage:
    return EmailMessage(
        notification_id=notification_id,
        from_address="alerts@notify.example.com",
        to_address="reader@example.org",
        subject="Hello",
        text=text,
    )


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_removed_folder_is_made_again_on_the_next_send(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path / "outbox")
    provider.send_email(mail("first"))
    provider.send_sms(SmsMessage("first", "+14155550100", "+14155550199", "hi"))
    shutil.rmtree(tmp_path / "outbox")  # an operator empties the outbox while the worker runs
    email = provider.send_email(mail("second"))
    sms = provider.send_sms(SmsMessage("second", "+14155550100", "+14155550199", "hi"))
    assert email.provider_message_id == str(tmp_path / "outbox" / "email" / "second.eml")
    assert entries(tmp_path / "outbox" / "email") == ["second.eml"]
    assert json.loads((tmp_path / "outbox" / "sms" / "second.json").read_text())["id"] == "second"
    assert sms.provider_message_id == str(tmp_path / "outbox" / "sms" / "second.json")


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    # A directory where the file should go: the final rename fails after the data was written.
    (tmp_path / "email" / "blocked.eml").mkdir(parents=True)
    (tmp_path / "email" / "blocked.eml" / "keep").touch()
    with pytest.raises(OSError):
        provider.send_email(mail("blocked"))
    assert entries(tmp_path / "email") == ["blocked.eml"]


def test_files_keep_the_mode_the_outbox_always_gave_them(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    provider.send_email(mail("moded"))
    # mkstemp's 0o600: a message can hold personal data, so only the worker's user reads it.
    assert stat.S_IMODE((tmp_path / "email" / "moded.eml").stat().st_mode) & 0o077 == 0


def test_a_symlink_in_the_files_place_is_replaced_not_followed(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path / "outbox")
    provider.send_email(mail("warm"))
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "outbox" / "email" / "linked.eml").symlink_to(target)
    provider.send_email(mail("linked"))
    assert target.read_text() == "untouched"
    written = tmp_path / "outbox" / "email" / "linked.eml"
    assert not written.is_symlink() and b"Subject: Hello" in written.read_bytes()


def test_writers_of_the_same_name_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    texts = [f"writer {n}\n" * 2000 for n in range(8)]
    start = threading.Barrier(len(texts))

    def write(text: str) -> None:
        start.wait()
        for _ in range(20):
            provider.send_email(mail("same", text))

    threads = [threading.Thread(target=write, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert entries(tmp_path / "email") == ["same.eml"]
    body = (tmp_path / "email" / "same.eml").read_bytes()
    # One writer's text, whole: no mix of two writers, no cut.
    assert sum(body.count(text.encode()) for text in texts) == 1
