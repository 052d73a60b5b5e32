"""The image under test, built once per session from a clean copy of the checkout, and containers of it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, ROOT

IMAGE = os.environ.get("NOTIFY_TEST_IMAGE", "notify-workers:test")
# This machine reaches no registry: docker-local.sh builds a stand-in for the official base image.
LOCAL_BASE = "local/python:3.11-slim-bookworm"
BUILD_TIMEOUT = 1200


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


def base_image() -> str | None:
    """The PYTHON build argument: NOTIFY_TEST_DOCKER_PYTHON, else the local stand-in when built."""
    chosen = os.environ.get("NOTIFY_TEST_DOCKER_PYTHON")
    if chosen:
        return chosen
    if docker("image", "inspect", LOCAL_BASE, check=False).returncode == 0:
        return LOCAL_BASE
    return None  # the Dockerfile's default, python:3.11-slim-bookworm, from the registry


def clean_checkout(target: Path) -> Path:
    """Copy the files git tracks (as they are in the working tree): what a fresh clone would hold."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False, timeout=60
    )
    if listed.returncode != 0:
        return ROOT  # not a git checkout (an unpacked release): build from it as it is
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_symlink():  # templates/ and examples/ link into the package, as in git
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).symlink_to(source.readlink())
        elif name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="session")
def image(_needs_docker: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`docker build` of docker/Dockerfile from a clean checkout, once; every test reuses the tag."""
    context = clean_checkout(tmp_path_factory.mktemp("checkout"))
    args = ["build", "--network", "host", "-f", str(context / "docker" / "Dockerfile"), "-t", IMAGE]
    base = base_image()
    if base:
        args += ["--build-arg", f"PYTHON={base}"]
    started = time.monotonic()
    built = docker(*args, str(context), timeout=BUILD_TIMEOUT, check=False)
    assert built.returncode == 0, f"the image does not build:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    # A figure for the log, never a pass/fail.
    print(f"\nbuilt {IMAGE} in {time.monotonic() - started:.1f} s from {context}", file=sys.stderr)
    return IMAGE


def compose_command() -> list[str]:
    """docker-compose (v1, Debian's) or the compose plugin; skipped (failed under CI) when neither."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    message = "neither docker-compose nor the docker compose plugin is installed"
    if IN_CI:
        pytest.fail(f"{message}; CI checks the compose files", pytrace=False)
    pytest.skip(message)


def writable_dir(path: Path) -> Path:
    """A host folder the container's user (uid 10001) can write into, whoever runs the tests."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    return path


def write_events(folder: Path, events: Sequence[Mapping[str, Any]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for event in events:
        path = folder / f"{event['core']['id']}.json"
        path.write_text(json.dumps(event))
        paths.append(path)
    return paths


def notify_publish(env: Mapping[str, str], paths: Sequence[Path]) -> str:
    """`notify publish FILE...` on the host, as a producer would put events on the bus."""
    done = subprocess.run(
        [sys.executable, "-m", "workers", "publish", *map(str, paths)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("published ") == len(paths), done.stdout
    return done.stdout


def unique_tag() -> str:
    return uuid.uuid4().hex[:8]


def bus_env(database_url: str, tag: str, **extra: str) -> dict[str, str]:
    """Settings for one container and for the host processes that talk to it: its own queues and exchange."""
    from tests.conftest import RABBITMQ_URL

    return {
        "NOTIFY_BROKER_URL": RABBITMQ_URL,
        "NOTIFY_DATABASE_URL": database_url,
        "NOTIFY_TASK_QUEUE": f"notify-docker-{tag}",
        "NOTIFY_EVENT_EXCHANGE": f"events-docker-{tag}",
        "NOTIFY_EVENT_QUEUE": f"notify-events-docker-{tag}",
        "NOTIFY_AUTO_MIGRATE": "0",
        **extra,
    }


def host_env(env: Mapping[str, str], tmp_path: Path) -> dict[str, str]:
    """The test process's environment with ``env`` on top, minus any NOTIFY_* of the developer's."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFY_")}
    return {**clean, "NOTIFY_STATE_DIR": str(tmp_path / "host-state"), "PYTHONPATH": str(ROOT), **env}


@dataclass
class Container:
    """A detached container of the image; removed (with its anonymous volumes) on exit."""

    image: str
    env: Mapping[str, str]
    command: Sequence[str] = ()
    options: Sequence[str] = ()
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"notify-test-{unique_tag()}"

    def __enter__(self) -> Container:
        env_args = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        docker(
            "run", "-d", "--name", self.name, "--network", "host",
            *env_args, *self.options, self.image, *self.command,
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        docker("rm", "-f", "-v", self.name, check=False)

    def inspect(self) -> dict[str, Any]:
        (state,) = json.loads(docker("inspect", self.name).stdout)
        assert isinstance(state, dict)
        return state

    def logs(self) -> str:
        done = docker("logs", "--tail", "200", self.name, check=False)
        return done.stdout + done.stderr

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return state
            assert state["Running"], f"the container exited ({state['ExitCode']}):\n{self.logs()}"
            time.sleep(0.5)
        raise AssertionError(f"never healthy: {state.get('Health')}\n{self.logs()}")
