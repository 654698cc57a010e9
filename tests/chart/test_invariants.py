"""Properties every rendering of the chart must have, whatever the values: pod security, no secret
outside a Secret, selectors that select the right pods, one source for rules and dashboards,
settings the application knows, and the operator's exact permissions."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from hotelchat.config import Settings
from tests.chart.contract import (
    CHART_SETTINGS,
    OTEL_PREFIX,
    OTHER_VARIABLES,
    SECRET_SETTINGS,
    setting_names,
)
from tests.chart.rendering import (
    CHART,
    CI_NAMES,
    ROOT,
    Obj,
    Rendering,
    ci_rendering,
    component_of,
    containers,
    dns_label,
    load_values,
    merged,
    pod_template,
    render,
)

WORKLOADS = ("Deployment", "Job")


# The chart's defaults with the dev values over them: every key present, ready to change.
DEV = merged(load_values(CHART / "values.yaml"), load_values(CHART / "ci" / "dev-values.yaml"))


def pods(rendering: Rendering) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod template) of every workload."""
    for obj in rendering.objects:
        template = pod_template(obj) if obj["kind"] in WORKLOADS else None
        if template is not None:
            yield obj, template


def all_containers(rendering: Rendering) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(workload, pod spec, container) of every container and init container."""
    for obj, template in pods(rendering):
        for _, container in containers(template["spec"]):
            yield obj, template["spec"], container


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def with_values(**changes: Any) -> dict[str, Any]:
    """The dev values (over the defaults) with `changes` merged in."""
    return merged(DEV, changes)


# --- Pod security -------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_every_container_meets_the_restricted_pod_security_standard(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    checked = 0
    for workload, spec, container in all_containers(rendering):
        where = f"{workload['metadata']['name']}/{container['name']}"
        pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert sc.get("runAsNonRoot") is True, where
        assert sc.get("runAsUser") == 10001 and sc.get("runAsGroup") == 10001, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities") == {"drop": ["ALL"]}, where
        assert sc.get("privileged") is not True, where
        profile = sc.get("seccompProfile") or pod_sc.get("seccompProfile")
        assert profile == {"type": "RuntimeDefault"}, where
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), where
        assert all(set(v) <= {"name", "emptyDir"} for v in spec["volumes"]), where
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] == "tmp", f"{where}: /tmp must be the writable emptyDir"
        checked += 1
    assert checked >= 4  # web, worker, migrate (+ operator) and their init containers


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_every_container_has_requests_limits_and_home_on_tmp(values_file: str) -> None:
    for workload, _, container in all_containers(ci_rendering(values_file)):
        where = f"{workload['metadata']['name']}/{container['name']}"
        for part in ("requests", "limits"):
            assert set(container["resources"][part]) >= {"cpu", "memory"}, where
        assert {"name": "HOME", "value": "/tmp"} in container["env"], where


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_long_running_containers_have_liveness_and_readiness(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    for workload, template in pods(rendering):
        if workload["kind"] != "Deployment":
            continue
        for container in template["spec"]["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container
    web = rendering.one("Deployment", "web")["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = rendering.one("Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_only_the_operator_gets_a_service_account_token(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    for workload, template in pods(rendering):
        expected = component_of(workload) == "operator"
        assert template["spec"]["automountServiceAccountToken"] is expected, workload
    for account in rendering.of_kind("ServiceAccount"):
        if component_of(account) != "operator":
            assert account["automountServiceAccountToken"] is False


# --- Secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_secrets_come_only_from_secret_key_refs(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    assert rendering.of_kind("Secret") == []  # the chart never holds a secret itself
    for config_map in rendering.of_kind("ConfigMap"):
        data = config_map.get("data") or {}
        assert not SECRET_SETTINGS & set(data), config_map["metadata"]["name"]
        for value in data.values():
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), "a URL with a password"
    for workload, _, container in all_containers(rendering):
        for var in container["env"]:
            if var["name"] in SECRET_SETTINGS:
                assert "value" not in var, f"{workload['metadata']['name']}: {var['name']}"
                assert set(var["valueFrom"]) == {"secretKeyRef"}
            else:
                assert "secretKeyRef" not in var.get("valueFrom", {}), var["name"]


def test_each_secret_is_read_the_same_way_everywhere() -> None:
    rendering = ci_rendering("everything-values.yaml")
    refs: dict[str, set[tuple[str, str]]] = {}
    for workload, _, container in all_containers(rendering):
        if component_of(workload) == "operator" and container["name"] == "wait-for-schema":
            continue  # DATABASE_URL there is the operator's own URL, on purpose
        for var in container["env"]:
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and var["name"] in SECRET_SETTINGS:
                refs.setdefault(var["name"], set()).add((ref["name"], ref["key"]))
    assert all(len(ways) == 1 for ways in refs.values()), refs
    assert refs["DATABASE_URL"] != refs["DATABASE_ADMIN_URL"]


def test_the_schema_owner_url_reaches_only_the_migration() -> None:
    for values_file in CI_NAMES:
        for workload, _, container in all_containers(ci_rendering(values_file)):
            names = {v["name"] for v in container["env"]}
            if component_of(workload) != "migrations":
                assert "DATABASE_ADMIN_URL" not in names, workload["metadata"]["name"]


REQUIRED_SECRETS = ["DATABASE_URL", "DATABASE_ADMIN_URL", "DATABASE_OPERATOR_URL", "REDIS_URL",
                    "SECRET_KEY", "ENCRYPTION_KEYS"]  # fmt: skip


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_a_missing_required_secret_fails_the_render_naming_it(secret: str) -> None:
    values = with_values()
    values["secrets"][secret]["existingSecret"] = ""
    with pytest.raises(
        helm.HelmRenderError, match=rf"secrets\.{secret}\.existingSecret is required"
    ):
        render(values)


def test_the_operators_database_secret_is_optional_without_the_operator() -> None:
    values = with_values(operator={"enabled": False})
    values["secrets"]["DATABASE_OPERATOR_URL"]["existingSecret"] = ""
    assert render(values).of_kind("Deployment", "operator") == []


@pytest.mark.parametrize("secret", ["OPENAI_API_KEY", "EMBEDDINGS_API_KEY", "METRICS_TOKEN"])
def test_optional_secrets_are_set_only_when_named(secret: str) -> None:
    def names(values: dict[str, Any]) -> set[str]:
        web = render(values).one("Deployment", "web")["spec"]["template"]["spec"]
        return {v["name"] for v in web["containers"][0]["env"]}

    values = with_values()
    assert secret not in names(values)
    values["secrets"][secret]["existingSecret"] = "extra"
    assert secret in names(values)


def test_a_missing_public_base_url_fails_the_render() -> None:
    with pytest.raises(helm.HelmRenderError, match="publicBaseUrl is required"):
        render(with_values(publicBaseUrl=""))


# --- Settings -----------------------------------------------------------------------------------


def readme_settings() -> list[str]:
    """The variables of the README's configuration table, in order (repeats kept)."""
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    return re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.MULTILINE)


def env_names(rendering: Rendering) -> set[str]:
    """Every variable any container gets, from `env` and from the ConfigMaps of its `envFrom`."""
    config_maps = {
        c["metadata"]["name"]: c.get("data") or {} for c in rendering.of_kind("ConfigMap")
    }
    names: set[str] = set()
    for _, _, container in all_containers(rendering):
        names |= {var["name"] for var in container["env"]}
        for source in container.get("envFrom", []):
            names |= set(config_maps[source["configMapRef"]["name"]])
    return names


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_every_variable_is_a_known_setting_or_a_standard_one(values_file: str) -> None:
    known = set(setting_names().values())
    for name in env_names(ci_rendering(values_file)):
        assert name in known or name in OTHER_VARIABLES or name.startswith(OTEL_PREFIX), name


def test_every_setting_the_chart_sets_is_in_the_readme_table_exactly_once() -> None:
    table = readme_settings()
    rendered = set().union(*(env_names(ci_rendering(name)) for name in CI_NAMES))
    for name in rendered - OTHER_VARIABLES:
        if not name.startswith(OTEL_PREFIX):
            assert table.count(name) == 1, name
    assert set(setting_names().values()) == set(table)  # and the table is the settings


def test_the_contract_names_only_real_settings() -> None:
    known = set(setting_names().values())
    assert known >= SECRET_SETTINGS | CHART_SETTINGS
    secret_fields = {
        n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
    }
    assert {n.upper() for n in secret_fields} == SECRET_SETTINGS


def test_numbers_reach_the_environment_as_written() -> None:
    rendering = ci_rendering("everything-values.yaml")
    data = rendering.one("ConfigMap", "config")["data"]
    assert data["ANSWER_CACHE_MAX_ENTRIES"] == "1000000"
    assert data["OPENAI_TIMEOUT_SECONDS"] == "12.5"
    assert data["PUBLIC_BASE_URL"] == "https://chat.example.com"
    assert json.loads(data["OPENAI_PRICES"]) == {"my-model": {"input": 0.5, "output": 1.5}}


def test_a_settings_change_rolls_every_pod() -> None:
    def checksums(values: dict[str, Any]) -> list[str]:
        return [t["metadata"]["annotations"]["checksum/config"] for _, t in pods(render(values))]

    before = checksums(with_values())
    assert len(set(before)) == 1 and len(before) == 4  # web, worker, operator, migration
    after = checksums(with_values(config={"LOG_LEVEL": "DEBUG"}))
    assert set(after).isdisjoint(before)
    assert checksums(with_values()) == before


# --- Worker -------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [1, 90.5, 120, 300, 3600])
def test_the_workers_grace_period_exceeds_its_job_timeout(timeout: float) -> None:
    values = with_values()
    values["worker"]["jobTimeoutSeconds"] = timeout
    worker = render(values).one("Deployment", "worker")["spec"]["template"]["spec"]
    env = {v["name"]: v.get("value") for v in worker["containers"][0]["env"]}
    assert float(env["JOB_TIMEOUT_SECONDS"]) == timeout
    assert worker["terminationGracePeriodSeconds"] > math.ceil(timeout) + 20


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_never_both_an_hpa_and_keda_for_the_worker(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    scalers = rendering.of_kind("HorizontalPodAutoscaler", "worker") + rendering.of_kind(
        "ScaledObject", "worker"
    )
    assert len(scalers) <= 1
    worker = rendering.one("Deployment", "worker")
    assert ("replicas" in worker["spec"]) == (not scalers)
    for scaler in scalers:
        minimum = scaler["spec"].get("minReplicas", scaler["spec"].get("minReplicaCount"))
        assert minimum >= 1


def test_hpa_and_keda_together_are_refused_by_the_schema() -> None:
    values = with_values()
    values["worker"]["autoscaling"]["enabled"] = True
    values["worker"]["keda"] = {"enabled": True, "prometheus": {"serverAddress": "http://p:9090"}}
    with pytest.raises(helm.HelmValuesError, match="/worker/keda/enabled"):
        render(values)


def test_hpa_and_keda_together_are_refused_by_the_templates_too(tmp_path: Path) -> None:
    """For renders that skip the schema (`--skip-schema-validation`)."""
    chart = tmp_path / "hotelchat"
    shutil.copytree(CHART, chart)  # links followed
    (chart / "values.schema.json").unlink()
    values = with_values()
    values["worker"]["autoscaling"]["enabled"] = True
    values["worker"]["keda"]["enabled"] = True
    values["worker"]["keda"]["prometheus"]["serverAddress"] = "http://p:9090"
    with helm.Chart.load(chart) as loaded, pytest.raises(helm.HelmRenderError, match="both true"):
        loaded.render(values, name="hotelchat", namespace="hotelchat")


def test_keda_scales_on_this_releases_queue_depth_by_default() -> None:
    scaled = ci_rendering("production-values.yaml").one("ScaledObject", "worker")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert 'hotelchat_queue_depth{queue="arq:queue"' in query
    assert 'namespace="hotelchat"' in query and 'service="hotelchat-worker"' in query
    assert trigger["metadata"]["threshold"] == "100"  # worker.maxJobs
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_keda_needs_a_prometheus() -> None:
    values = with_values()
    values["worker"]["keda"]["enabled"] = True
    with pytest.raises(helm.HelmRenderError, match="serverAddress is required"):
        render(values)


# --- Migrations ---------------------------------------------------------------------------------


def job_name(values: dict[str, Any], revision: int) -> str:
    return str(render(values, revision=revision).one("Job", "migrations")["metadata"]["name"])


def test_the_migration_jobs_name_changes_with_every_revision_and_image() -> None:
    values = with_values()
    first, second = job_name(values, 1), job_name(values, 2)
    assert first != second
    assert job_name(values, 2) == second  # the same revision renders the same Job
    assert job_name(with_values(image={"tag": "other"}), 2) != second  # so does kubectl apply
    assert job_name(with_values(fullnameOverride="x" * 63), 99999) != ""
    for name in (first, second, job_name(with_values(fullnameOverride="x" * 63), 99999)):
        assert len(name) <= 63 and dns_label(name), name


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_nothing_is_a_helm_hook(values_file: str) -> None:
    for obj in ci_rendering(values_file).objects:
        annotations = obj["metadata"].get("annotations") or {}
        assert not any(key.startswith("helm.sh/hook") for key in annotations), obj["kind"]


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_pods_wait_for_the_schema_and_the_migration_does_not(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    database_secret = {
        "web": "DATABASE_URL",
        "worker": "DATABASE_URL",
        "operator": "DATABASE_OPERATOR_URL",
    }
    values = load_values(CHART / "ci" / values_file)
    for workload, template in pods(rendering):
        component = component_of(workload)
        init = template["spec"].get("initContainers", [])
        if component == "migrations":
            assert init == []
            assert template["spec"]["containers"][0]["args"] == ["migrate"]
            continue
        (wait,) = init
        assert wait["args"] == ["wait-for-schema", "--timeout", "600"]
        assert wait["image"] == template["spec"]["containers"][0]["image"]
        (url,) = [v for v in wait["env"] if v["name"] == "DATABASE_URL"]
        source = values["secrets"][database_secret[str(component)]]
        assert url["valueFrom"]["secretKeyRef"] == {
            "name": source["existingSecret"],
            "key": source["key"],
        }


# --- Selectors ----------------------------------------------------------------------------------


def pod_labels(rendering: Rendering) -> dict[str, dict[str, str]]:
    """Pod labels by component."""
    return {str(component_of(w)): t["metadata"]["labels"] for w, t in pods(rendering)}


def selected(rendering: Rendering, selector: Mapping[str, str]) -> set[str]:
    return {c for c, labels in pod_labels(rendering).items() if matches(selector, labels)}


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_services_pdbs_and_network_policies_select_their_components_pods(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    for service in rendering.of_kind("Service"):
        component = component_of(service)
        assert selected(rendering, service["spec"]["selector"]) == {component}
        target = rendering.one("Deployment", component)["spec"]["template"]["spec"]
        ports = {p["name"] for c in target["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in rendering.of_kind(kind):
            selector = obj["spec"].get("selector") or obj["spec"]["podSelector"]
            assert selected(rendering, selector["matchLabels"]) == {component_of(obj)}
    for workload, _ in pods(rendering):  # selectors never carry the chart's version
        selector = workload["spec"].get("selector", {}).get("matchLabels", {})
        assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(selector)


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_service_monitors_scrape_the_right_service_and_port(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    for monitor in rendering.of_kind("ServiceMonitor"):
        services = [
            s
            for s in rendering.of_kind("Service")
            if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert [component_of(s) for s in services] == [component_of(monitor)]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["hotelchat"]}


def test_the_web_monitor_sends_the_metrics_token() -> None:
    rendering = ci_rendering("everything-values.yaml")
    (endpoint,) = rendering.one("ServiceMonitor", "web")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "hc-metrics", "key": "token"},
    }


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_references_between_objects_resolve(values_file: str) -> None:
    rendering = ci_rendering(values_file)
    names = {(o["kind"], o["metadata"]["name"]) for o in rendering.objects}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for scaler in rendering.of_kind(kind):
            assert ("Deployment", scaler["spec"]["scaleTargetRef"]["name"]) in names
    web = rendering.of_kind("Service", "web")[0]
    for ingress in rendering.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"] == {
                    "name": web["metadata"]["name"],
                    "port": {"name": "http"},
                }
    for route in rendering.of_kind("HTTPRoute"):
        (backend,) = route["spec"]["rules"][0]["backendRefs"]
        assert backend == {"name": web["metadata"]["name"], "port": web["spec"]["ports"][0]["port"]}
    for workload, template in pods(rendering):
        account = template["spec"]["serviceAccountName"]
        assert ("ServiceAccount", account) in names, workload["metadata"]["name"]
        for source in template["spec"]["containers"][0]["envFrom"]:
            assert ("ConfigMap", source["configMapRef"]["name"]) in names


# --- Monitoring from dashboards/ ----------------------------------------------------------------


def test_the_prometheus_rule_is_dashboards_alerts_yml() -> None:
    rule = ci_rendering("everything-values.yaml").one("PrometheusRule")
    assert rule["spec"] == yaml.safe_load((ROOT / "dashboards" / "alerts.yml").read_text())
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_every_dashboard_is_in_a_config_map_for_the_sidecar() -> None:
    rendering = ci_rendering("everything-values.yaml")
    found = {}
    for config_map in rendering.of_kind("ConfigMap", "monitoring"):
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "HotelChat"}
        ((key, text),) = config_map["data"].items()
        found[key] = json.loads(text)
    expected = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    assert found == expected and len(found) >= 5


def test_the_sidecar_label_is_a_value() -> None:
    dashboards = {"enabled": True, "labelKey": "dashboards", "labelValue": "hotelchat"}
    values = with_values(metrics={"dashboards": dashboards})
    config_maps = render(values).of_kind("ConfigMap", "monitoring")
    assert len(config_maps) >= 5
    for config_map in config_maps:
        assert config_map["metadata"]["labels"]["dashboards"] == "hotelchat"


# --- Operator -----------------------------------------------------------------------------------

OPERATOR_RULES = {
    ("hotelchat.io", "hotels"): {"get", "list", "watch", "patch", "update"},
    ("hotelchat.io", "hotels/status"): {"get", "patch", "update"},
    ("hotelchat.io", "hotels/finalizers"): {"update"},
    ("", "secrets"): {"get", "create"},
    ("", "configmaps"): {"get"},
    ("", "namespaces"): {"get", "list", "watch"},
    ("", "events"): {"create"},
    ("events.k8s.io", "events"): {"create"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}


def test_the_operator_has_exactly_its_permissions_and_no_wildcard() -> None:
    rendering = ci_rendering("production-values.yaml")
    role = rendering.one("ClusterRole", "operator")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, no URLs
        for field in rule.values():
            assert "*" not in field
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == OPERATOR_RULES
    binding = rendering.one("ClusterRoleBinding", "operator")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = rendering.one("ServiceAccount", "operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "hotelchat"}
    ]
    assert [o for o in rendering.objects if o["kind"] in {"Role", "RoleBinding"}] == []


def test_one_operator_at_a_time() -> None:
    operator = ci_rendering("production-values.yaml").one("Deployment", "operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    spec = operator["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "hotelchat-operator"
    env = {v["name"]: v for v in spec["containers"][0]["env"]}
    assert env["OPERATOR_HOST"]["value"] == "0.0.0.0"
    assert (
        env["DATABASE_OPERATOR_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == "hotelchat-database-operator"
    )
    assert "DATABASE_URL" not in env


def test_without_the_operator_nothing_of_it_is_rendered() -> None:
    rendering = ci_rendering("worker-hpa-values.yaml")
    assert [o["kind"] for o in rendering.objects if component_of(o) == "operator"] == []


# --- Exposure -----------------------------------------------------------------------------------


def test_ingress_timeouts_are_websocket_safe_by_default() -> None:
    ingress = ci_rendering("production-values.yaml").one("Ingress", "web")
    annotations = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600


def test_the_http_route_attaches_to_the_given_gateways() -> None:
    route = ci_rendering("everything-values.yaml").one("HTTPRoute", "web")
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "gateway", "sectionName": "https"}
    ]
    assert route["spec"]["hostnames"] == ["chat.example.com"]


def test_the_web_service_has_no_session_affinity() -> None:
    for values_file in CI_NAMES:
        service = ci_rendering(values_file).one("Service", "web")
        assert service["spec"].get("sessionAffinity", "None") == "None"


def test_notes_give_twilio_the_webhook_url() -> None:
    notes = ci_rendering("production-values.yaml").notes
    assert "https://chat.example.com/webhooks/twilio/whatsapp" in notes
    assert "kubectl apply --server-side -f charts/hotelchat/crds/" in notes
    assert "METRICS_TOKEN is not set" not in notes
    host = {"host": "a.example", "paths": [{"path": "/", "pathType": "Prefix"}]}
    exposed = with_values(web={"ingress": {"enabled": True, "hosts": [host]}})
    assert "METRICS_TOKEN is not set" in render(exposed).notes


@pytest.mark.parametrize("values_file", CI_NAMES)
def test_every_object_has_the_standard_labels(values_file: str) -> None:
    for obj in ci_rendering(values_file).objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] in {"hotelchat", "chat"}
        assert labels["app.kubernetes.io/instance"] == "hotelchat"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "hotelchat"
        assert {"app.kubernetes.io/component", "app.kubernetes.io/version"} <= set(labels)
        assert "helm.sh/chart" in labels


# --- NetworkPolicies ----------------------------------------------------------------------------


def egress_ports(policy: Obj) -> dict[str, set[int]]:
    """Ports each egress rule opens, by what it reaches: a namespace's name, or CIDRs."""
    found: dict[str, set[int]] = {}
    for rule in policy["spec"]["egress"]:
        targets = []
        for peer in rule["to"]:
            if "ipBlock" in peer:
                targets.append(peer["ipBlock"]["cidr"])
            else:
                targets.append(
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                )
        found.setdefault(",".join(targets), set()).update(p["port"] for p in rule["ports"])
    return found


def test_network_policies_allow_each_component_only_what_it_needs() -> None:
    rendering = ci_rendering("production-values.yaml")
    dns, database, redis = "kube-system", "10.20.0.0/24", "10.20.1.0/28"
    expected = {
        "web": {dns: {53}, database: {5432}, redis: {6379, 6380}},
        "worker": {dns: {53}, database: {5432}, redis: {6379, 6380}, "0.0.0.0/0": {443}},
        "operator": {dns: {53}, database: {5432}, redis: {6379, 6380}, "172.16.0.2/32": {443}},
        "migrations": {dns: {53}, database: {5432}},
    }
    for component, ports in expected.items():
        policy = rendering.one("NetworkPolicy", component)
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        reached = egress_ports(policy)
        assert reached.pop("observability") == {4318}  # extraEgress: the OTLP collector
        assert reached == ports, component
    ingress = rendering.one("NetworkPolicy", "web")["spec"]["ingress"]
    sources = {
        r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for r in ingress
    }
    assert sources == {"ingress-nginx", "monitoring"}
    assert rendering.one("NetworkPolicy", "migrations")["spec"]["ingress"] == []


@pytest.mark.parametrize("target", ["postgresql", "redis", "kubernetesApi"])
def test_a_network_policy_without_an_address_fails_the_render(target: str) -> None:
    values = with_values(networkPolicy={"enabled": True})
    for name in ("postgresql", "redis", "kubernetesApi"):
        values["networkPolicy"][name]["cidrs"] = [] if name == target else ["10.0.0.0/8"]
    with pytest.raises(helm.HelmRenderError, match=rf"networkPolicy\.{target}\.cidrs is required"):
        render(values)
