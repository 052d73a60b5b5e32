"""bench/providers.py finishes in quick mode and prints its figures; no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_both_providers_and_their_baselines() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "providers.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for label in ("mandrill baseline", "mandrill provider", "twilio baseline", "twilio provider"):
        assert label in done.stdout
    assert done.stdout.count("µs CPU/send") == 6
