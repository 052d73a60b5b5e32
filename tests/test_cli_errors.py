"""Bad settings and bad CLI input, through the real `notify` console script: each ends at start with
exit status non-zero and one line on stderr naming the variable, never a traceback or a worker that
fails every message; `notify health` reports the same as FAIL."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, ROOT, require_service
from tests.integration.harness import isolated_env

NOTIFY = str(Path(sys.executable).with_name("notify"))
# A worker that starts has not refused its settings; it gets this long to prove it does not.
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: still running when the timeout came (the worker started)
    stdout: str
    stderr: str


def notify(args: list[str], env: dict[str, str], cwd: Path, timeout: float = START_TIMEOUT) -> Outcome:
    process = subprocess.Popen(
        [NOTIFY, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
        return Outcome(process.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return Outcome(None, out, err)


def assert_one_line_naming(outcome: Outcome, name: str, *, problem: str = "") -> str:
    assert outcome.returncode not in (None, 0), f"did not refuse at start: {outcome}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, outcome.stderr
    assert name in lines[0], lines[0]
    assert problem.lower() in lines[0].lower(), lines[0]
    return lines[0]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return isolated_env(tmp_path, **extra)


def missing_postgres_database() -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/notify_missing_{uuid.uuid4().hex[:8]}"


def empty_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "unmigrated.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


WORKER_CASES = {
    "garbage url": ({"NOTIFY_DATABASE_URL": "garbage"}, "NOTIFY_DATABASE_URL", "not a database URL"),
    "unknown scheme": ({"NOTIFY_DATABASE_URL": "nosuchdb://h/x"}, "NOTIFY_DATABASE_URL", "unknown database"),
    "closed port": (
        {"NOTIFY_DATABASE_URL": "postgresql://notify:pw-closed@127.0.0.1:1/x"},
        "NOTIFY_DATABASE_URL",
        "refused",
    ),
    "rate limits": ({"NOTIFY_RATE_LIMITS": "mandrill=lots"}, "NOTIFY_RATE_LIMITS", "cannot read"),
    "mandrill without key": ({"NOTIFY_EMAIL_PROVIDER": "mandrill"}, "MANDRILL_API_KEY", "empty"),
    "twilio without token": ({"NOTIFY_SMS_PROVIDER": "twilio"}, "TWILIO_AUTH_TOKEN", ""),
    "stuck after 1e300": ({"NOTIFY_STUCK_AFTER": "1e300"}, "NOTIFY_STUCK_AFTER", "less than"),
    "stuck after inf": ({"NOTIFY_STUCK_AFTER": "inf"}, "NOTIFY_STUCK_AFTER", ""),
    "loud log level": ({"NOTIFY_LOG_LEVEL": "LOUD"}, "NOTIFY_LOG_LEVEL", "unknown log level"),
}


@pytest.mark.parametrize("case", sorted(WORKER_CASES))
def test_worker_refuses_bad_settings_at_start_and_health_fails(tmp_path: Path, case: str) -> None:
    extra, name, problem = WORKER_CASES[case]
    env = env_for(tmp_path, **extra)
    line = assert_one_line_naming(notify(["worker"], env, tmp_path), name, problem=problem)
    assert "pw-closed" not in line
    health = notify(["health"], env, tmp_path)
    assert health.returncode == 1, health
    assert "Traceback" not in health.stdout + health.stderr
    failed = [row for row in health.stdout.splitlines() if row.startswith("FAIL")]
    assert any(name in row for row in failed), health.stdout


def test_worker_refuses_a_missing_postgres_database(tmp_path: Path) -> None:
    require_service("postgres")
    env = env_for(tmp_path, NOTIFY_DATABASE_URL=missing_postgres_database())
    assert_one_line_naming(notify(["worker"], env, tmp_path), "NOTIFY_DATABASE_URL", problem="does not exist")
    health = notify(["health"], env, tmp_path)
    assert health.returncode == 1 and "FAIL database: NOTIFY_DATABASE_URL" in health.stdout, health


def test_worker_without_auto_migrate_refuses_an_unmigrated_ledger(tmp_path: Path) -> None:
    env = env_for(tmp_path, NOTIFY_DATABASE_URL=empty_sqlite(tmp_path), NOTIFY_AUTO_MIGRATE="0")
    assert_one_line_naming(
        notify(["worker"], env, tmp_path), "NOTIFY_DATABASE_URL", problem="notify db upgrade"
    )


@pytest.mark.parametrize("command", [["deliveries", "list"], ["deliveries", "show", "x"], ["failed", "list"]])
def test_read_only_commands_never_create_a_ledger(tmp_path: Path, command: list[str]) -> None:
    ledger = tmp_path / "not" / "there" / "notify.db"
    env = env_for(tmp_path, NOTIFY_DATABASE_URL=f"sqlite:///{ledger}")
    assert_one_line_naming(notify(command, env, tmp_path), "NOTIFY_DATABASE_URL", problem="no ledger")
    assert not (tmp_path / "not").exists()
    # With the default URL too: no notify.db appears in the working directory.
    default = {k: v for k, v in env.items() if k != "NOTIFY_DATABASE_URL"}
    assert_one_line_naming(notify(command, default, tmp_path), "NOTIFY_DATABASE_URL", problem="no ledger")
    assert not (tmp_path / "notify.db").exists()


@pytest.mark.parametrize("command", [["deliveries", "list"], ["failed", "list"]])
def test_read_only_commands_on_an_unmigrated_ledger_say_so(tmp_path: Path, command: list[str]) -> None:
    env = env_for(tmp_path, NOTIFY_DATABASE_URL=empty_sqlite(tmp_path))
    assert_one_line_naming(notify(command, env, tmp_path), "NOTIFY_DATABASE_URL", problem="no ledger schema")


def test_bad_loglevel_argument_is_a_usage_error(tmp_path: Path) -> None:
    outcome = notify(["worker", "--loglevel", "LOUD"], env_for(tmp_path), tmp_path)
    assert outcome.returncode == 2 and "Traceback" not in outcome.stderr
    assert "--loglevel" in outcome.stderr and "LOUD" in outcome.stderr


@pytest.mark.slow
def test_demo_prints_the_command_that_lists_its_own_rows(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "MANDRILL_", "SMTP_", "TWILIO_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    demo = notify(["demo", "--dir", str(tmp_path / "demo")], env, tmp_path, timeout=180)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    suggested = [line for line in demo.stdout.splitlines() if "notify deliveries list" in line]
    assert len(suggested) == 1, demo.stdout
    command = shlex.split(suggested[0].split(":", 1)[1])
    assert command[0].startswith("NOTIFY_DATABASE_URL=") and command[1:] == ["notify", "deliveries", "list"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    variable, value = command[0].split("=", 1)
    listing = notify(command[2:], env | {variable: value}, elsewhere)
    assert listing.returncode == 0, listing
    ids = set(re.findall(r"^(\S{8}-\S{4}-\S{4}-\S{4}-\S{12}) ", listing.stdout, re.M))
    assert len(ids) >= 3, listing.stdout
    assert list(elsewhere.iterdir()) == []
