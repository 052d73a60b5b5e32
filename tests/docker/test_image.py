"""The container image as people run it: the demo, a worker on the host's RabbitMQ and PostgreSQL, its
health check, its user and contents, and a `docker stop` under load."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docker.conftest import (
    Container,
    bus_env,
    docker,
    host_env,
    notify_publish,
    unique_tag,
    writable_dir,
    write_events,
)
from tests.factories import basic_email, mention, sms
from tests.fakes.smtp_server import SmtpServer
from tests.integration.harness import settings_for, wait_for
from tests.ops.stack import eventually
from workers.messages import Status
from workers.settings import Settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

UID = "10001"


def test_the_demo_delivers_every_sample_event_and_rejects_the_invalid_one(image: str) -> None:
    done = docker("run", "--rm", "--network", "host", image, "demo", timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    samples = sorted(
        str(path.relative_to(ROOT / "examples"))
        for path in (ROOT / "examples").rglob("*")
        if path.suffix in {".json", ".pb"}
    )
    # Columns: event file, event type, status, result.
    table = dict(re.findall(r"^(\S+\.(?:json|pb))\s+events\.\w+\s+(\w+)\s", done.stdout, flags=re.MULTILINE))
    assert sorted(table) == samples, done.stdout
    for sample, status in table.items():
        assert status == ("rejected" if sample.startswith("invalid/") else "sent"), (sample, done.stdout)
    assert "invalid/" in " ".join(table)  # the invalid sample is there to be rejected


def test_a_worker_container_delivers_what_the_host_publishes_and_turns_healthy(
    image: str, postgres_url: str, tmp_path: Path
) -> None:
    tag = unique_tag()
    env = bus_env(postgres_url, tag, NOTIFY_EMAIL_PROVIDER="outbox", NOTIFY_SMS_PROVIDER="outbox")
    migrated = docker(
        "run", "--rm", "--network", "host", *_env_args(env), image, "db", "upgrade", check=False
    )
    assert migrated.returncode == 0 and "ledger at revision" in migrated.stdout, migrated.stderr

    outbox = writable_dir(tmp_path / "outbox")
    options = ["-v", f"{outbox}:/var/lib/notify/outbox", "--health-interval", "1s", "--health-retries", "3"]
    command = ["worker", "--no-beat", "--concurrency", "4", "-n", f"docker-{tag}@%h"]
    with Container(image, env, command, options) as worker:
        worker.wait_healthy()
        events = [basic_email(), sms(), mention(mentions=2)]
        notify_publish(host_env(env, tmp_path), write_events(tmp_path / "events", events))
        rows = wait_for(settings_for(env), [e["core"]["id"] for e in events], timeout=120)
        for event in events:
            row = rows[event["core"]["id"]]
            assert row is not None and row.status is Status.SENT, (row, worker.logs())
            channel, suffix = ("sms", "json") if "SMS" in event["data"]["@type"] else ("email", "eml")
            assert (outbox / channel / f"{row.id}.{suffix}").is_file()

        # Every process in the container, the health check's included, runs as the image's user.
        top = docker("top", worker.name, "-eo", "pid,uid,comm").stdout.splitlines()[1:]
        assert top and all(line.split()[1] == UID for line in top), top
        assert worker.inspect()["State"]["Health"]["Status"] == "healthy"


def test_the_image_runs_as_its_own_user_and_holds_no_source_tests_or_tools(image: str) -> None:
    (config,) = json.loads(docker("image", "inspect", image).stdout)
    assert config["Config"]["User"] == "notify:notify"
    assert config["Config"]["Healthcheck"]["Test"] == ["CMD", "notify", "health", "--no-providers"]
    who = docker("run", "--rm", "--network", "host", "--entrypoint", "id", image).stdout
    assert who.startswith(f"uid={UID}(notify) gid={UID}(notify)"), who
    # The survey looks everywhere, /root included, so it runs as root; the worker never does.
    probe = docker(
        "run", "--rm", "--network", "host", "--user", "0", "--entrypoint", "python", image, "-c", _SURVEY
    )
    found = json.loads(probe.stdout)
    assert found["forbidden"] == [], found["forbidden"]
    assert found["modules"] == {}, f"test or build tools installed: {found['modules']}"
    assert found["tools"] == {}, f"compilers or package tools on PATH: {found['tools']}"
    assert found["code_owner"] == 0  # root's: the worker cannot change the code it runs


def test_docker_stop_on_a_busy_worker_loses_nothing(image: str, postgres_url: str, tmp_path: Path) -> None:
    tag = unique_tag()
    with SmtpServer() as smtp:
        # Every send is held 1.5 s at DATA: the stop lands while sends are in flight.
        smtp.set_failure_rate(timeout_rate=1.0, timeout_delay=1.5)
        env = bus_env(
            postgres_url,
            tag,
            NOTIFY_EMAIL_PROVIDER="smtp",
            SMTP_HOST=smtp.host,
            SMTP_PORT=str(smtp.port),
            SMTP_STARTTLS="0",
            NOTIFY_SWEEP_INTERVAL="2",
            NOTIFY_STUCK_AFTER="5",
        )
        docker("run", "--rm", "--network", "host", *_env_args(env), image, "db", "upgrade")
        events = [basic_email() for _ in range(16)]
        ids = [e["core"]["id"] for e in events]
        settings = settings_for(env)
        command = ["worker", "--no-beat", "--concurrency", "4"]
        with Container(image, env, [*command, "-n", f"first-{tag}@%h"]) as first:
            notify_publish(host_env(env, tmp_path), write_events(tmp_path / "events", events))
            eventually(lambda: _sent(settings, ids), timeout=60)
            # Some are sent; stop now, with sends in flight and more waiting.
            docker("stop", "-t", "30", first.name, timeout=90)
            state = first.inspect()["State"]
            # 0: a warm shutdown that finished in time (137 would be SIGKILL at the stop timeout).
            assert state["ExitCode"] == 0, (state, first.logs())
        sent_by_first = {m.message["Message-ID"] for m in smtp.received}
        assert 0 < len(sent_by_first) < len(ids), "the stop did not land while the worker was busy"

        # What the first worker handed back, a second one delivers.
        with Container(image, env, [*command, "-n", f"second-{tag}@%h"]) as second:
            rows = wait_for(settings, ids, timeout=120)
            unsent = {i: row for i, row in rows.items() if row is None or row.status is not Status.SENT}
            assert not unsent, (unsent, second.logs())
        time.sleep(1)  # nothing more may arrive: a duplicate would show up here
        received = [m.message["Message-ID"] for m in smtp.received]
        assert len(received) == len(ids), f"{len(received)} mails for {len(ids)} events"
        assert sorted(received) == sorted(row.provider_message_id for row in rows.values() if row)


def _sent(settings: Settings, ids: list[str]) -> int:
    rows = wait_for(settings, ids, timeout=0)  # one look at the ledger
    return sum(1 for row in rows.values() if row is not None and row.status is Status.SENT)


def _env_args(env: dict[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


# Run inside the image: who we are, and anything that should not be there.
_SURVEY = r"""
import importlib.util, json, os, shutil, sys
forbidden = []
for top in ("/src", "/opt/notify/src", "/wheels"):
    if os.path.exists(top):
        forbidden.append(top)
for root, dirs, files in os.walk("/", topdown=True):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
    for d in dirs:
        if d in (".git", ".venv", "__pypackages__") or (d == "tests" and "site-packages" in root
                                                          and root.endswith("site-packages")):
            forbidden.append(os.path.join(root, d))
        if d == ".cache" and root in ("/root", "/var/lib/notify"):
            forbidden.append(os.path.join(root, d))
    for f in files:
        if f in ("conftest.py", "harness.py", "factories.py") or f.startswith("test_docker"):
            forbidden.append(os.path.join(root, f))
def ours(name):
    spec = importlib.util.find_spec(name)
    return spec is not None and "/opt/notify/" in (spec.origin or "")
modules = {m: True for m in ("pytest", "hypothesis", "aiosmtpd", "mypy", "pip", "setuptools") if ours(m)}
tools = {t: shutil.which(t) for t in ("gcc", "cc", "g++", "make", "git") if shutil.which(t)}
import workers
print(json.dumps({"forbidden": forbidden, "modules": modules, "tools": tools,
                  "code_owner": os.stat(os.path.dirname(workers.__file__)).st_uid}))
"""
