"""Structural invariants of the Kubernetes manifests under deploy/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from plenary_kit import topics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUSTOMIZATIONS = [path.parent for path in DEPLOY.rglob("kustomization.yaml")]
PORTS = {"registration": 8001, "ticketing": 8002, "notifications": 8003, "checkin": 8004}
CONSUMING = {"ticketing", "notifications", "checkin"}
CONFIG_KEYS = {"KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI", "SMTP_HOST", "SMTP_PORT"}


def manifests() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(DEPLOY.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_each_service_has_api_and_relay_and_consumers_where_it_consumes() -> None:
    expected = {f"{svc}-{role}" for svc in PORTS for role in ("api", "relay")}
    expected |= {f"{svc}-consumer" for svc in CONSUMING}
    assert set(DEPLOYMENTS) == expected


# Background loops (offer expiry and import resumption; the mail sender) run with the worker role.
ROLES = {"registration-relay": "relay,worker", "notifications-consumer": "consumer,worker"}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_runs_its_role_with_probes_resources_and_matching_selector(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    service, role = name.rsplit("-", 1)
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/name"] == service
    assert labels["app.kubernetes.io/component"] == role

    main = container(deployment)
    assert {"name": "PLENARY_ROLES", "value": ROLES.get(name, role)} in main["env"]
    assert main["ports"] == [{"name": "http", "containerPort": PORTS[service]}]
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}
    sources = [next(iter(source.values()))["name"] for source in main["envFrom"]]
    assert sources == ["plenary-config", "plenary-admin"]
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("service", sorted(PORTS))
def test_one_relay_per_service_and_never_two_during_a_rollout(service: str) -> None:
    spec = DEPLOYMENTS[f"{service}-relay"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_autoscalers_own_api_and_consumer_counts_and_consumers_stop_at_the_partition_count() -> None:
    autoscalers = of_kind("HorizontalPodAutoscaler")
    scaled = {name for name in DEPLOYMENTS if not name.endswith("-relay")}
    assert set(autoscalers) == scaled
    for name, hpa in autoscalers.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in DEPLOYMENTS[name]["spec"], "the autoscaler, not the manifest, sets the count"
        assert hpa["spec"]["minReplicas"] >= 2
    for service in CONSUMING:
        assert autoscalers[f"{service}-consumer"]["spec"]["maxReplicas"] == topics.PARTITIONS


@pytest.mark.parametrize("service", sorted(PORTS))
def test_service_routes_its_port_to_the_api_pods_only(service: str) -> None:
    route = of_kind("Service")[service]
    api_labels = DEPLOYMENTS[f"{service}-api"]["spec"]["template"]["metadata"]["labels"]
    assert route["spec"]["selector"].items() <= api_labels.items()
    assert route["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    assert route["spec"]["ports"] == [{"name": "http", "port": PORTS[service], "targetPort": "http"}]


def test_config_names_the_contract_settings() -> None:
    config = of_kind("ConfigMap")["plenary-config"]
    assert CONFIG_KEYS <= set(config["data"])


def test_admin_token_is_only_a_placeholder_template_outside_every_kustomization() -> None:
    secret = of_kind("Secret")["plenary-admin"]
    assert "REPLACE-ME" in secret["stringData"]["PLENARY_ADMIN_TOKEN"]
    for folder in KUSTOMIZATIONS:
        listed = yaml.safe_load((folder / "kustomization.yaml").read_text()).get("resources", [])
        assert not any("secret" in entry for entry in listed)


def test_topic_job_creates_every_topic_and_dead_letter_topic_with_the_kit_partition_count() -> None:
    job = of_kind("Job")["kafka-topics"]
    main = job["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in main["env"]}
    assert env["TOPICS"].split() == list(topics.ALL)
    assert env["PARTITIONS"] == str(topics.PARTITIONS)
    assert ".dlq" in main["command"][-1]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda folder: str(folder.relative_to(DEPLOY)))
def test_kustomization_lists_only_resources_that_exist(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"]
    for entry in kustomization["resources"]:
        assert (folder / entry).exists(), entry


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_production_overlay_renders_into_the_plenary_namespace_with_tagged_images() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / "production")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert all(doc["metadata"].get("namespace") == "plenary" for doc in documents if doc["kind"] != "Namespace")
    images = {
        doc["spec"]["template"]["spec"]["containers"][0]["image"] for doc in documents if doc["kind"] == "Deployment"
    }
    assert {image.rsplit("/", 1)[-1].split(":")[0] for image in images} == set(PORTS)
    assert all(":" in image.rsplit("/", 1)[-1] for image in images)


# The oldest Kubernetes minor release still supported upstream when these manifests were last revised.
KUBERNETES_VERSION = "1.32"


def _validate(document: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
        raise AssertionError(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}") from exc


@pytest.mark.parametrize("document", manifests(), ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_every_manifest_is_valid_against_the_kubernetes_schema(document: dict[str, Any]) -> None:
    # Strict: a misspelt or misplaced field is an error, not silently ignored by the API server.
    _validate(document)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda folder: str(folder.relative_to(DEPLOY)))
def test_every_rendered_kustomization_is_valid_against_the_kubernetes_schema(folder: Path) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert {doc["kind"] for doc in documents} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}
    for document in documents:
        _validate(document)
