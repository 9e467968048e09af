"""docker-compose.yml as docker-compose resolves it, and the service Dockerfiles it builds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PORTS = {"registration": 8001, "ticketing": 8002, "notifications": 8003, "checkin": 8004}
CONTRACT_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "MONGODB_URI": "mongodb://mongodb:27017/?replicaSet=rs0",
    "SMTP_HOST": "mailpit",
    "SMTP_PORT": "1025",
    "PLENARY_HOST": "0.0.0.0",
}
TOPICS = ("registration.v1", "ticketing.v1", "notifications.v1", "checkin.v1")

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not on PATH (`make test` installs it)"
)


def run_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


SECRETS = {
    "PLENARY_ADMIN_TOKEN": "compose-test-token",
    "PLENARY_LINK_KEY": "compose-test-link-key",
    "PLENARY_TICKET_MASTER_KEY": "compose-test-master-key",
}


def environment_without_token() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in SECRETS}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = run_config({**environment_without_token(), **SECRETS})
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def published_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["published"]))
        else:
            ports.add(int(str(port).split(":")[-2].rsplit("/", 1)[0]))
    return ports


@needs_compose
@pytest.mark.parametrize("name", PORTS)
def test_service_builds_from_its_dockerfile_at_the_repository_root(compose: dict[str, Any], name: str) -> None:
    build = compose["services"][name]["build"]
    assert Path(build["context"]).resolve() == ROOT
    assert build["dockerfile"] == f"services/{name}/Dockerfile"


@needs_compose
@pytest.mark.parametrize("name", PORTS)
def test_service_waits_for_healthy_kafka_mongodb_and_created_topics(compose: dict[str, Any], name: str) -> None:
    depends = compose["services"][name]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["mongodb"]["condition"] == "service_healthy"
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"


@needs_compose
@pytest.mark.parametrize("name", PORTS)
def test_service_has_contract_environment_port_and_readiness_healthcheck(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = environment(service)
    assert {key: env.get(key) for key in CONTRACT_ENV} == CONTRACT_ENV
    # Every service shares the secrets: one seals manage links another opens, and any ticketing
    # replica must open the signing keys another stored.
    assert {key: env.get(key) for key in SECRETS} == SECRETS
    assert published_ports(service) == {PORTS[name]}
    check = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{PORTS[name]}/readyz" in check


@needs_compose
def test_kafka_is_the_official_image_in_kraft_mode_with_a_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "CONTROLLER" in env["KAFKA_LISTENERS"]
    assert "kafka-topics.sh" in " ".join(kafka["healthcheck"]["test"])
    assert any(volume.startswith("kafka-data:") for volume in kafka["volumes"])


@needs_compose
def test_kafka_init_creates_every_topic_and_dead_letter_topic_with_six_partitions(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["kafka-init"]["command"])
    assert all(topic in script for topic in TOPICS)
    assert ".dlq" in script
    assert "--partitions 6" in script


@needs_compose
def test_mongodb_runs_as_a_replica_set_that_initiates_itself(compose: dict[str, Any]) -> None:
    mongodb = compose["services"]["mongodb"]
    assert mongodb["image"].startswith("mongo:7")
    command = mongodb["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    check = " ".join(mongodb["healthcheck"]["test"])
    assert "rs.initiate" in check and "mongodb:27017" in check
    assert any(volume.startswith("mongo-data:") for volume in mongodb["volumes"])


@needs_compose
def test_mailpit_serves_smtp_and_its_web_ui(compose: dict[str, Any]) -> None:
    mailpit = compose["services"]["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit")
    assert published_ports(mailpit) == {1025, 8025}
    assert "healthcheck" in mailpit


@needs_compose
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_config_fails_without_each_secret(missing: str) -> None:
    given = {name: value for name, value in SECRETS.items() if name != missing}
    result = run_config({**environment_without_token(), **given})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    text = (ROOT / "services" / name / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("name", PORTS)
def test_dockerfile_runs_the_service_as_a_non_root_user(name: str) -> None:
    instructions = dockerfile_instructions(name)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [argument for keyword, argument in instructions if keyword == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert ("CMD", f'["python", "-m", "{name}"]') in instructions
    assert ("EXPOSE", str(PORTS[name])) in instructions
    assert any(keyword == "HEALTHCHECK" and "/healthz" in argument for keyword, argument in instructions)
    install = next(argument for keyword, argument in instructions if keyword == "RUN" and "pip install" in argument)
    assert "-c requirements.lock" in install and f"./services/{name}" in install
