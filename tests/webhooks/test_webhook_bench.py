"""bench/webhooks.py finishes in quick mode and prints its figures; no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_webhooks_bench_prints_receipts_per_second() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "webhooks.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "receipts stored: 4000/4000; refused requests: 0" in done.stdout
    assert "receipts/s:" in done.stdout and "p95" in done.stdout


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_webhooks_bench_records_every_receipt_in_the_ledger() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "webhooks.py"),
            "--sink",
            "celery",
            "--batches",
            "10",
            "--batch-size",
            "50",
            "--concurrency",
            "4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "receipts recorded 500/500; rows now bounced 50, delivered 450" in done.stdout
    assert "receipts/s recorded in the ledger:" in done.stdout and "load average:" in done.stdout
