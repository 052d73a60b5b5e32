"""`notify health`: each configured provider's reachability against the local servers, and the exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.smtp_server import SmtpServer
from tests.fakes.twilio_server import DEFAULT_SID, TwilioServer
from tests.integration.harness import isolated_env, settings_for
from workers.health import Check, run_checks


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name.split(" (")[0]: check for check in checks}


def test_every_configured_provider_is_probed_without_sending(tmp_path: Path) -> None:
    with MandrillServer(["good-key"]) as mandrill, TwilioServer() as twilio, SmtpServer() as smtp:
        env = isolated_env(
            tmp_path,
            NOTIFY_EMAIL_PROVIDER="mandrill,smtp",
            NOTIFY_SMS_PROVIDER="twilio",
            MANDRILL_API_KEY="good-key",
            MANDRILL_BASE_URL=mandrill.api_url,
            SMTP_HOST=smtp.host,
            SMTP_PORT=str(smtp.port),
            SMTP_STARTTLS="false",
            TWILIO_ACCOUNT_SID=DEFAULT_SID,
            TWILIO_AUTH_TOKEN="test-token",
            TWILIO_BASE_URL=twilio.base_url,
        )
        checks = by_name(run_checks(settings_for(env)))
        assert [c.name for c in checks.values() if not c.ok] == ["database"]  # not migrated yet
        assert checks["email provider mandrill"].detail == "reachable, API key accepted"
        assert checks["sms provider twilio"].ok and checks["email provider smtp"].ok
        assert not mandrill.accepted and not twilio.accepted and not smtp.received
        # Issue 13.8: the ping the API reference documents, users/ping2 ({"PING": "PONG!"}).
        assert [r.path for r in mandrill.received] == ["/api/1.0/users/ping2.json"]

        wrong = settings_for(env | {"MANDRILL_API_KEY": "bad-key", "TWILIO_AUTH_TOKEN": "nope"})
        checks = by_name(run_checks(wrong))
        assert not checks["email provider mandrill"].ok
        assert "Invalid_Key" in checks["email provider mandrill"].detail
        assert checks["sms provider twilio"].detail == "credentials refused (HTTP 401)"
    # Servers stopped: nothing answers any more.
    checks = by_name(run_checks(settings_for(env)))
    for name in ("email provider mandrill", "email provider smtp", "sms provider twilio"):
        assert not checks[name].ok, checks[name]


def test_notify_health_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        env = isolated_env(
            tmp_path,
            NOTIFY_EMAIL_PROVIDER="smtp",
            SMTP_HOST=smtp.host,
            SMTP_PORT=str(smtp.port),
            SMTP_STARTTLS="0",
        )
        subprocess.run(
            [sys.executable, "-m", "workers", "db", "upgrade"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        healthy = subprocess.run(
            [sys.executable, "-m", "workers", "health"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "ok  email provider smtp" in healthy.stdout
    sick = subprocess.run(
        [sys.executable, "-m", "workers", "health"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sick.returncode == 1
    assert "FAIL email provider smtp" in sick.stdout and "ConnectionRefusedError" in sick.stdout
    # A container's liveness check leaves providers out: their outage is not the worker's fault.
    live = subprocess.run(
        [sys.executable, "-m", "workers", "health", "--no-providers"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert live.returncode == 0, live.stdout + live.stderr
    assert "smtp" not in live.stdout
