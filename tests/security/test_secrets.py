"""Secrets, from the attacker's side: plant one in every secret setting, then look for it everywhere
a worker answers (remote control, Flower, logs at DEBUG, `notify health`, the ledger, reprs, errors)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy.engine import make_url

from tests.conftest import RABBITMQ_URL, ROOT
from tests.fakes.http_base import Status as HttpStatus
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import DEFAULT_SID, TwilioServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, settings_for, wait_for
from tests.ops.stack import Personal, as_messages, eventually, free_port
from workers.errors import ConfigurationError
from workers.messages import Status
from workers.settings import load_settings, mask_url

# RabbitMQ here only knows guest/guest, so the broker's password cannot be made distinctive: what
# must never appear is the URL's user:password pair in clear.
BROKER_CREDENTIALS = "guest:guest"


@dataclass
class Planted:
    """A distinctive value in every secret setting, and the environment that carries them."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def values(self) -> dict[str, str]:
        return {
            "MANDRILL_API_KEY": f"mdkey-{self.tag}-planted",
            "TWILIO_AUTH_TOKEN": f"twtoken-{self.tag}-planted",
            "SMTP_PASSWORD": f"smtppw-{self.tag}-planted",
            "NOTIFY_FLOWER_PASSWORD": f"flowerpw-{self.tag}-planted",
            "database password": f"dbpw-{self.tag}-planted",
            "redis password": f"redispw-{self.tag}-planted",
            # Not settings of ours today; planted so that a future one is searched for too.
            "MANDRILL_WEBHOOK_KEY": f"webhook-{self.tag}-planted",
            "NOTIFY_SUPPRESSION_KEY": f"suppress-{self.tag}-planted",
        }

    def env(self, database_url: str) -> dict[str, str]:
        v = self.values
        with_password = make_url(database_url).set(password=v["database password"])
        return {
            "MANDRILL_API_KEY": v["MANDRILL_API_KEY"],
            "TWILIO_ACCOUNT_SID": DEFAULT_SID,
            "TWILIO_AUTH_TOKEN": v["TWILIO_AUTH_TOKEN"],
            "SMTP_USERNAME": "mailer",
            "SMTP_PASSWORD": v["SMTP_PASSWORD"],
            "NOTIFY_FLOWER_USER": "ops",
            "NOTIFY_FLOWER_PASSWORD": v["NOTIFY_FLOWER_PASSWORD"],
            # PostgreSQL here trusts local connections, so the password is carried but never checked.
            "NOTIFY_DATABASE_URL": with_password.render_as_string(hide_password=False),
            # No NOTIFY_RATE_LIMITS: the limiter never connects, but the URL is still a setting.
            "NOTIFY_REDIS_URL": f"redis://:{v['redis password']}@127.0.0.1:6379/0",
            "MANDRILL_WEBHOOK_KEY": v["MANDRILL_WEBHOOK_KEY"],
            "NOTIFY_SUPPRESSION_KEY": v["NOTIFY_SUPPRESSION_KEY"],
        }

    def around(self, text: str) -> list[str]:
        """Each planted value found, with what surrounds it, for the failure message."""
        needles = [*self.values.values(), BROKER_CREDENTIALS]
        return [text[max(0, i - 150) : i + 80] for n in needles if (i := text.find(n)) >= 0]

    def found_in(self, text: str) -> list[str]:
        found = [name for name, value in self.values.items() if value in text]
        if BROKER_CREDENTIALS in text:
            found.append("NOTIFY_BROKER_URL password")
        return found


class Flower:
    """`notify flower` as a child process on a free port; its password is the planted one."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = env
        self.auth = (env["NOTIFY_FLOWER_USER"], env["NOTIFY_FLOWER_PASSWORD"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Flower:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workers", "flower", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        eventually(lambda: httpx.get(f"{self.url}/healthcheck", timeout=2).status_code == 200, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, auth=self.auth, timeout=30)


@pytest.fixture
def planted() -> Planted:
    return Planted()


@pytest.fixture
def providers(planted: Planted) -> Iterator[tuple[MandrillServer, TwilioServer]]:
    v = planted.values
    with (
        MandrillServer([v["MANDRILL_API_KEY"]]) as mandrill,
        TwilioServer(DEFAULT_SID, v["TWILIO_AUTH_TOKEN"]) as twilio,
    ):
        yield mandrill, twilio  # type: ignore[misc]


def _run(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_no_secret_in_remote_control_flower_logs_health_or_ledger(
    tmp_path: Path,
    planted: Planted,
    providers: tuple[MandrillServer, TwilioServer],
    postgres_url: str,
) -> None:
    mandrill, twilio = providers
    env = isolated_env(
        tmp_path,
        broker_url=RABBITMQ_URL,
        NOTIFY_EMAIL_PROVIDER="mandrill",
        NOTIFY_SMS_PROVIDER="twilio",
        MANDRILL_BASE_URL=mandrill.api_url,
        TWILIO_BASE_URL=twilio.base_url,
        NOTIFY_RETRY_BASE="0.2",
        NOTIFY_LOG_LEVEL="DEBUG",
        **planted.env(postgres_url),
    )
    people = Personal()
    sent, bounced, text = people.email(1), people.email(2), people.text(3)
    mandrill.reject_address(bounced["data"]["toAddress"], "hard-bounce")
    mandrill.fail_next(HttpStatus(500))  # one transient failure: an attempt with an error
    expected = {sent["core"]["id"]: Status.SENT, bounced["core"]["id"]: Status.FAILED}
    expected[text["core"]["id"]] = Status.SENT
    node = f"sec-{planted.tag}"
    seen: dict[str, str] = {}
    with (
        Flower(env, tmp_path / "flower.log") as flower,
        WorkerProcess(env, tmp_path / "worker.log", args=("--concurrency", "2", "-n", f"{node}@%h")) as w,
    ):
        publish_raw(w.settings, as_messages([sent, bounced, text]))
        rows = wait_for(w.settings, expected, worker=w, timeout=90)
        assert {k: (r.status if r else None) for k, r in rows.items()} == expected, w.log()[-3000:]
        hostname = f"{node}@{socket.gethostname()}"

        # The remote-control reply itself, as any client of the broker can ask for it.
        probe = Celery("attacker", broker=RABBITMQ_URL, set_as_current=False)
        try:
            replies = eventually(
                lambda: probe.control.inspect(destination=[hostname], timeout=5).conf(with_defaults=True),
                timeout=60,
            )
        finally:
            probe.close()
        assert hostname in replies and "task_default_queue" in replies[hostname], replies
        seen["inspect().conf()"] = json.dumps(replies, default=str)
        cli = _run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "inspect",
                "conf",
                "-d",
                hostname,
            ],
            env,
        )
        assert "task_default_queue" in cli.stdout, cli.stdout + cli.stderr
        seen["celery inspect conf"] = cli.stdout + cli.stderr

        # Flower: its API and pages, as the operator it lets in sees them. Only our worker's
        # part: other workers on this shared RabbitMQ are not ours to judge.
        def our_worker() -> str | None:
            answer = flower.get(f"/api/workers?refresh=1&workername={hostname}")
            if answer.status_code != 200 or "conf" not in answer.json().get(hostname, {}):
                return None
            return answer.text

        seen["flower /api/workers"] = eventually(our_worker, timeout=60)
        for page in (f"/api/workers?workername={hostname}", f"/worker/{hostname}", "/broker"):
            seen[f"flower {page}"] = flower.get(page).text
        assert httpx.get(flower.url + "/api/workers", auth=("ops", "x"), timeout=10).status_code == 401

        health = _run([sys.executable, "-m", "workers", "health"], env)
        assert "database: reachable" in health.stdout, health.stdout + health.stderr
        seen["notify health"] = health.stdout + health.stderr
        listing = _run([sys.executable, "-m", "workers", "deliveries", "list", "--json"], env)
        seen["notify deliveries list"] = listing.stdout + listing.stderr
        for notification_id in expected:
            shown = _run(
                [sys.executable, "-m", "workers", "deliveries", "show", notification_id, "--json"], env
            )
            seen[f"notify deliveries show {notification_id}"] = shown.stdout + shown.stderr
        ledger = [r.as_json() for r in wait_for(w.settings, expected).values() if r is not None]
        assert any(row["error"] for row in ledger), ledger  # the ledger errors were really looked at
        seen["ledger rows"] = json.dumps(ledger, default=str)
    seen["worker log (DEBUG)"] = w.log()
    seen["flower log"] = (tmp_path / "flower.log").read_text(errors="replace")
    assert '"level": "debug"' in seen["worker log (DEBUG)"]
    leaks = {where: planted.around(text) for where, text in seen.items() if planted.found_in(text)}
    assert leaks == {}


def test_settings_repr_str_and_errors_hold_no_secret(planted: Planted, tmp_path: Path) -> None:
    env = isolated_env(
        tmp_path,
        broker_url="amqp://guest:guest@127.0.0.1:5672//",
        **planted.env("postgresql://notify@127.0.0.1:5432/ledger"),
    )
    settings = settings_for(env)
    assert settings.mandrill_api_key.get_secret_value() == planted.values["MANDRILL_API_KEY"]
    shown = [repr(settings), str(settings)]
    shown += [mask_url(settings.resolved_database_url), mask_url(settings.broker_url)]
    # A bad value next to the secrets: the error names the variable and quotes no secret.
    with pytest.raises(ConfigurationError) as bad:
        settings_for(env | {"NOTIFY_STUCK_AFTER": "never"})
    assert "NOTIFY_STUCK_AFTER" in str(bad.value)
    shown.append(str(bad.value))
    assert planted.found_in("\n".join(shown)) == []


def test_a_url_nobody_can_parse_is_not_shown_at_all() -> None:
    assert mask_url("postgresql://u:p@[::1") == "postgresql://***"
    assert mask_url("amqp://guest:guest@rabbit:5672//") == "amqp://guest:***@rabbit:5672//"
    assert mask_url("sqlite:////tmp/notify.db") == "sqlite:////tmp/notify.db"
    assert (
        load_settings(redis_url="redis://:pw-long@r:6379/0").scrub("at redis://:pw-long@r")
        == "at redis://:***@r"
    )


# -- Flower's basic auth ------------------------------------------------------------------------


def test_flower_password_with_a_comma_does_not_let_its_tail_in(tmp_path: Path) -> None:
    """Flower splits FLOWER_BASIC_AUTH on commas: `Long-Secret-Part,x` must not make `x` a password."""
    port = free_port()
    env = isolated_env(tmp_path, NOTIFY_FLOWER_USER="ops", NOTIFY_FLOWER_PASSWORD="Long-Secret-Part,x")
    process = subprocess.Popen(
        [sys.executable, "-m", "workers", "flower", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Still running: Flower started. Then `x` must not get in: neither as ops's password
            # nor as the whole credential (Flower compares the decoded "user:password" string).
            def answer(header: str) -> Any:
                try:
                    url = f"http://127.0.0.1:{port}/api/workers"
                    return httpx.get(url, headers={"Authorization": header}, timeout=5)
                except httpx.HTTPError:
                    return None

            for credential in ("ops:x", "x"):
                header = "Basic " + base64.b64encode(credential.encode()).decode()
                response = eventually(lambda header=header: answer(header), timeout=60)
                assert response.status_code == 401, f"{credential!r} opened Flower"
            return
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "NOTIFY_FLOWER_PASSWORD" in lines[0] and "comma" in lines[0], stderr
    assert "Long-Secret-Part" not in stderr
