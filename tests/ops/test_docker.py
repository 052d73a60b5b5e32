"""docker/: the compose file's structure and environment names, and the image's non-root health-checked shape.

These read the files only, with no Docker engine; tests/docker build and run the image and check both
compose files with docker-compose itself.
"""

from __future__ import annotations

import re
from typing import Any

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
    # Debian's engine has the classic builder only: no BuildKit-only syntax.
    code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert not text.startswith("# syntax=") and "--mount" not in code and "<<" not in code
    assert "ARG PYTHON=python:3.11-slim-bookworm" in text
    assert "COPY --from=build /opt/notify /opt/notify" in text
    for copied in re.findall(r"^COPY (\S+)", text, flags=re.MULTILINE):
        if not copied.startswith("--"):
            assert (ROOT / copied).exists(), copied
