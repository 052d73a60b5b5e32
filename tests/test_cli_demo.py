"""`notify demo` run as a user runs it: a real worker process, the embedded broker, its printed table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_prints_the_type_of_each_event(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "MANDRILL_", "SMTP_", "TWILIO_"))
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "notify"), "demo", "--dir", str(tmp_path / "demo")],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("EVENT FILE"))
    assert "EVENT TYPE" in header
    rows = {line.split()[0]: line.split()[1] for line in lines[lines.index(header) + 1 :] if line.strip()}
    # Issue 13.8: each example file's event type, not only its file name.
    assert rows["basic_email.json"] == "events.BasicEmail"
    assert rows["sms_notification.pb"] == "events.SMSNotification"
    assert rows["mention_email.json"] == "events.MentionEmailGenerated"
    assert rows["invalid/sms_bad_number.json"] == "events.SMSNotification"
