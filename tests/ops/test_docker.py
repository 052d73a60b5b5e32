"""docker/: the compose file's structure and environment names, and the image's non-root health-checked shape.

Docker's engine is not on the development machines; `docker compose config` runs only where the
compose plugin is installed, and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from workers.settings import Settings

DOCKER = ROOT / "docker"
OUR_SERVICES = {"migrate", "worker", "beat", "flower"}
INTERPOLATION = re.compile(r"^\$\{[A-Z_]+(:?[-?][^}]*)?\}$")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def known_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(field.alias if field.alias else f"NOTIFY_{name.upper()}")
    return names


def test_the_stack_has_every_part() -> None:
    services = compose()["services"]
    assert {"rabbitmq", "redis", "postgres", "mailpit"} | OUR_SERVICES <= set(services)
    for name in OUR_SERVICES:
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == ("..", "docker/Dockerfile")
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"


def test_our_services_are_configured_only_through_known_environment_variables() -> None:
    services = compose()["services"]
    known = known_variables()
    for name in OUR_SERVICES:
        service = services[name]
        assert "env_file" not in service
        # No configuration files mounted in: named volumes for data only.
        for volume in service.get("volumes", []):
            assert not volume.startswith((".", "/")), volume
        environment = service["environment"]
        assert isinstance(environment, dict)
        unknown = {key for key in environment if key not in known}
        assert not unknown, f"{name}: not a setting: {unknown}"
        for key, value in environment.items():
            if any(secret in key for secret in ("PASSWORD", "TOKEN", "API_KEY")):
                assert INTERPOLATION.match(str(value)), f"{name}.{key} must come from the environment"
    worker = services["worker"]["environment"]
    assert worker["NOTIFY_METRICS_PORT"] == "9100" and worker["NOTIFY_METRICS_HOST"] == "0.0.0.0"
    assert worker["NOTIFY_DATABASE_URL"].startswith("postgresql://")
    assert worker["NOTIFY_BROKER_URL"].startswith("amqp://")
    assert worker["NOTIFY_AUTO_MIGRATE"] == "0"
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_flower_and_mailpit_are_published_on_loopback_only() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host"
    flower = services["flower"]
    assert flower["command"][0] == "flower"
    assert "NOTIFY_FLOWER_PASSWORD" in flower["environment"]
    assert services["worker"]["command"] == ["worker", "--no-beat"]  # one beat, in its own service
    assert services["beat"]["entrypoint"][-1] == "beat"


def test_the_image_is_multi_stage_non_root_and_health_checked() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line and not line.startswith(("#", " "))
    ]
    keywords = [parts[0] for parts in instructions]
    assert keywords.count("FROM") == 2
    user = [parts[1] for parts in instructions if parts[0] == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    assert "HEALTHCHECK" in keywords and 'CMD ["notify", "health", "--no-providers"]' in text
    assert 'ENTRYPOINT ["notify"]' in text
    assert "pip wheel" in text and "--no-index" in text
    for copied in re.findall(r"^COPY (\S+)", text, flags=re.MULTILINE):
        if not copied.startswith("--"):
            assert (ROOT / copied).exists(), copied


def _compose_plugin() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return docker if probe.returncode == 0 else None


@pytest.mark.skipif(
    _compose_plugin() is None, reason="docker compose is not installed here (no compose plugin)"
)
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "NOTIFY_FLOWER_USER": "ops",
        "NOTIFY_FLOWER_PASSWORD": "secret",
        "POSTGRES_PASSWORD": "secret",
        "RABBITMQ_DEFAULT_PASS": "secret",
    }
    done = subprocess.run(
        ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
