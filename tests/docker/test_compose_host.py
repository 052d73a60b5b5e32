"""The compose files: both pass `config`, and compose.host.yaml runs our services on the host's network."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.docker.conftest import (
    IMAGE,
    bus_env,
    compose_command,
    host_env,
    notify_publish,
    unique_tag,
    writable_dir,
    write_events,
)
from tests.factories import basic_email, sms
from tests.integration.harness import settings_for, wait_for
from tests.ops.stack import eventually, free_port
from workers.messages import Status

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCKER = ROOT / "docker"
FULL_STACK_SECRETS = {
    "NOTIFY_FLOWER_USER": "ops",
    "NOTIFY_FLOWER_PASSWORD": "secret",
    "POSTGRES_PASSWORD": "secret",
    "RABBITMQ_DEFAULT_PASS": "secret",
}


def compose(
    files: Sequence[Path], env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    where = [arg for path in files for arg in ("-f", str(path))]
    return subprocess.run(
        [*compose_command(), *where, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = ("PATH", "DOCKER_HOST", "DOCKER_CONFIG")
    return {**{k: v for k, v in os.environ.items() if k in keep}, "HOME": str(tmp_path), **extra}


def test_both_compose_files_pass_config(_needs_docker: None, tmp_path: Path) -> None:
    for files, env in (
        ([DOCKER / "compose.yaml"], FULL_STACK_SECRETS),
        ([DOCKER / "compose.host.yaml"], {**FULL_STACK_SECRETS, "NOTIFY_DATABASE_URL": "postgresql://n@h/d"}),
    ):
        done = compose(files, base_env(tmp_path, **env), "config", "-q", timeout=60)
        assert done.returncode == 0, (files, done.stderr)
    # A required secret left out is refused with its name, not run with an empty password.
    missing = compose([DOCKER / "compose.host.yaml"], base_env(tmp_path), "config", "-q", timeout=60)
    assert missing.returncode != 0 and "NOTIFY_DATABASE_URL" in missing.stderr


@pytest.fixture
def host_stack(image: str, postgres_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """`docker-compose -f docker/compose.host.yaml up -d` under a project name of its own; down after."""
    tag = unique_tag()
    outbox = writable_dir(tmp_path / "outbox")
    env = bus_env(
        postgres_url,
        tag,
        NOTIFY_IMAGE_TAG=image.rsplit(":", 1)[1],
        NOTIFY_WORKER_NAME=f"compose-{tag}",
        NOTIFY_METRICS_PORT=str(free_port()),
        NOTIFY_FLOWER_PORT=str(free_port()),
        NOTIFY_FLOWER_USER="ops",
        NOTIFY_FLOWER_PASSWORD=f"pw-{tag}",
        NOTIFY_OUTBOX_VOLUME=str(outbox),
    )
    assert image.rsplit(":", 1)[0] == IMAGE.rsplit(":", 1)[0] == "notify-workers"
    files = [DOCKER / "compose.host.yaml"]
    run_env = base_env(tmp_path, **env)
    project = ["-p", f"notifytest{tag}"]
    up = compose(files, run_env, *project, "up", "-d", "--no-build")
    try:
        assert up.returncode == 0, up.stderr
        yield env, outbox
    finally:
        logs = compose(files, run_env, *project, "logs", "--no-color", "--tail", "50")
        down = compose(files, run_env, *project, "down", "-v", "--remove-orphans", "-t", "30")
        print(logs.stdout[-6000:])
        assert down.returncode == 0, down.stderr


def test_the_host_stack_delivers_and_flower_answers_only_with_auth(
    host_stack: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, outbox = host_stack
    events = [basic_email(), sms()]
    notify_publish(host_env(env, tmp_path), write_events(tmp_path / "events", events))
    rows = wait_for(settings_for(env), [e["core"]["id"] for e in events], timeout=180)
    for row in rows.values():
        assert row is not None and row.status is Status.SENT and row.provider == "outbox", row
    assert len(list(outbox.glob("email/*.eml"))) == 1 and len(list(outbox.glob("sms/*.json"))) == 1

    flower = f"http://127.0.0.1:{env['NOTIFY_FLOWER_PORT']}"
    auth = ("ops", env["NOTIFY_FLOWER_PASSWORD"])
    workers = eventually(
        lambda: (
            (r := httpx.get(f"{flower}/api/workers?refresh=1", auth=auth, timeout=10)).status_code == 200
            and r.json()
        ),
        timeout=120,
    )
    assert any(name.startswith(env["NOTIFY_WORKER_NAME"] + "@") for name in workers), workers
    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401
    assert httpx.get(f"{flower}/api/workers", auth=("ops", "wrong"), timeout=10).status_code == 401
