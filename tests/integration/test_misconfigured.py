"""A provider refusing our key parks notifications: never `dead`, no attempts spent, one shout, health FAIL.

A real worker sends through the local Mandrill and Twilio servers, which refuse its credentials
(Mandrill ``Invalid_Key``, Twilio 20003 with HTTP 401). The rows are tried again and again (a one
second backoff here instead of fifteen minutes), far beyond ``NOTIFY_MAX_ATTEMPTS``, and stay
`retrying` with no attempt counted; the log says so once per provider; `notify health` fails naming
the provider and its reason. Once the servers accept the credentials, the parked rows go out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.factories import basic_email, sms
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.messages import Status

pytestmark = pytest.mark.slow

SID, TOKEN, KEY = "AC" + "2" * 32, "the-right-token", "the-right-key"
TRIES = 4  # sends each row must see, beyond the budget of NOTIFY_MAX_ATTEMPTS=2


def _health(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", "health"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_refused_credentials_park_rows_without_spending_attempts(tmp_path: Path) -> None:
    with MandrillServer(api_keys={KEY}) as mandrill, TwilioServer(SID, TOKEN) as twilio:
        assert isinstance(mandrill, MandrillServer) and isinstance(twilio, TwilioServer)
        env = isolated_env(
            tmp_path,
            NOTIFY_EMAIL_PROVIDER="mandrill",
            NOTIFY_SMS_PROVIDER="twilio",
            MANDRILL_API_KEY="a-revoked-key",
            MANDRILL_BASE_URL=mandrill.api_url,
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN="a-rotated-token",
            TWILIO_BASE_URL=twilio.base_url,
            NOTIFY_MAX_ATTEMPTS="2",
            NOTIFY_RETRY_BASE="0.2",
            NOTIFY_RETRY_CAP="0.5",
            NOTIFY_MISCONFIGURED_BACKOFF="1",
            NOTIFY_SWEEP_INTERVAL="1",
        )
        events = [basic_email(), basic_email(), sms(), sms(toNumber="+14155550124")]
        ids = [event["core"]["id"] for event in events]
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            publish_raw(
                worker.settings,
                [
                    (
                        json.dumps(e).encode(),
                        "application/json",
                        f"events.{e['data']['@type'].rsplit('.', 1)[-1]}",
                    )
                    for e in events
                ],
            )
            deadline = time.monotonic() + 90
            while len(mandrill.received) < 2 * TRIES or len(twilio.received) < 2 * TRIES:
                assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
                time.sleep(0.2)
            rows = wait_for(worker.settings, ids, worker=worker, timeout=1)
            for row in rows.values():
                assert row is not None and row.status is Status.RETRYING and row.attempts == 0, row
            assert "Invalid_Key" in (rows[ids[0]].error or "") and "20003" in (rows[ids[2]].error or "")

            health = _health(env, tmp_path)
            assert health.returncode == 1, health.stdout
            failing = [line for line in health.stdout.splitlines() if line.startswith("FAIL provider ")]
            assert any("mandrill" in line and "Invalid_Key" in line for line in failing), health.stdout
            assert any("twilio" in line and "20003" in line for line in failing), health.stdout

            shouts = Counter(
                json.loads(line).get("provider")
                for line in worker.log().splitlines()
                if '"provider.misconfigured"' in line
            )
            assert shouts == {"mandrill": 1, "twilio": 1}, shouts

            # The credentials are put right: the parked rows go out on their next turn.
            mandrill.api_keys = frozenset({"a-revoked-key"})
            twilio.auth_token = "a-rotated-token"
            sent = wait_for(worker.settings, ids, worker=worker, timeout=60)
        assert {row.status for row in sent.values() if row} == {Status.SENT}, sent
        assert all(row is not None and row.attempts == 1 for row in sent.values())
        healthy = _health(env, tmp_path)
        assert not [line for line in healthy.stdout.splitlines() if line.startswith("FAIL provider ")]
