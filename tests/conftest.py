"""Shared fixtures: real services when present (skipped with a reason when not, failed under CI=true)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

# The service addresses live with the benchmarks, which use them too; tests import them from here.
from bench.services import POSTGRES_ADMIN_URL as POSTGRES_ADMIN_URL
from bench.services import RABBITMQ_URL as RABBITMQ_URL
from bench.services import REDIS_URL as REDIS_URL
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

SERVICES = {
    "rabbitmq": ("127.0.0.1", 5672),
    "redis": ("127.0.0.1", 6379),
    "postgres": ("127.0.0.1", 5432),
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str) -> None:
    """Skip (or, under CI=true, fail) when a service the test needs is not running."""
    host, port = SERVICES[name]
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}; CI must run every service-backed test", pytrace=False)
    pytest.skip(f"{message} (start it to run this test)")


def require_docker() -> None:
    """Skip (or, under CI=true, fail) when no Docker daemon answers: tests/docker run the image."""
    docker = shutil.which("docker")
    if docker is None:
        reason = "the docker command is not installed"
    else:
        probe = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return
        reason = "no Docker daemon answers `docker info`"
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the image tests (.ci/run starts one)", pytrace=False)
    pytest.skip(f"{reason} (../shared/tools/docker-local.sh up, or -m 'not docker')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Service markers double as requirements, checked before the test body runs.
    for item in items:
        for name in (*SERVICES, "docker"):
            if item.get_closest_marker(name):
                item.fixturenames.insert(0, f"_needs_{name}")


@pytest.fixture
def _needs_rabbitmq() -> None:
    require_service("rabbitmq")


@pytest.fixture
def _needs_redis() -> None:
    require_service("redis")


@pytest.fixture
def _needs_postgres() -> None:
    require_service("postgres")


@pytest.fixture(scope="session")
def _needs_docker() -> None:
    require_docker()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema-isolated database for one test."""
    require_service("postgres")
    from sqlalchemy import create_engine, text

    name = f"notify_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A migrated SQLite ledger for tests of the use case; tests/ledger brings its own on both databases."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    upgrade(engine)
    yield Ledger(engine)
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test against both ledgers the project supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _migrated(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on each supported database, migrated to the newest revision."""
    yield from _migrated(database_url)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """An engine on a fresh PostgreSQL database, migrated to the newest revision."""
    yield from _migrated(postgres_url)


# The local Mandrill and Twilio servers, for every suite that drives a provider over HTTP.
@pytest.fixture
def mandrill_server() -> Iterator[MandrillServer]:
    with MandrillServer(api_keys={"test-key"}) as server:
        assert isinstance(server, MandrillServer)
        yield server


@pytest.fixture
def twilio_server() -> Iterator[TwilioServer]:
    with TwilioServer() as server:
        assert isinstance(server, TwilioServer)
        yield server
