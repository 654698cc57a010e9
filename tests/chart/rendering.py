"""The chart rendered offline by Helm's own engine (helm-python-sdk embeds Helm v4: no helm binary),
and every rendered object checked against the schema the API server would apply.

Built-in kinds are validated by kubernetes-validate in strict mode (unknown fields rejected);
custom kinds against their published CRD schemas, kept in tests/chart/schemas/ (the Hotel one is
read from its one source, operator/crds/), made strict the same way the API server's strict field
validation is: an object schema without `x-kubernetes-preserve-unknown-fields` admits no other
field. `kubernetes-validate` itself only warns on a kind it has no schema for; here that fails.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hotelchat"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HOTEL_CRD = ROOT / "operator" / "crds" / "hotels.hotelchat.io.yaml"
SCHEMAS = Path(__file__).parent / "schemas"

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: the Hotel CRD's CEL rules are
# GA from 1.29) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.29.0", "1.37.0")
RELEASE = "hotelchat"
NAMESPACE = "hotelchat"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Rendering:
    """What `helm template` would print: the objects, by template, and the NOTES."""

    manifests: dict[str, list[Obj]]
    notes: str
    texts: dict[str, str]  # each template's rendered text, comments and all

    @property
    def objects(self) -> list[Obj]:
        return [obj for objs in self.manifests.values() for obj in objs]

    def of_kind(self, kind: str, component: str | None = None) -> list[Obj]:
        """Objects of `kind`, only those of `component` (its app.kubernetes.io/component) if
        given."""
        return [
            obj
            for obj in self.objects
            if obj["kind"] == kind and (component is None or component_of(obj) == component)
        ]

    def one(self, kind: str, component: str | None = None) -> Obj:
        (found,) = self.of_kind(kind, component)
        return found


def component_of(obj: Mapping[str, Any]) -> str | None:
    labels = obj.get("metadata", {}).get("labels") or {}
    value = labels.get("app.kubernetes.io/component")
    return str(value) if value is not None else None


def load_values(path: Path) -> Obj:
    values: Obj = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), path
    return values


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> Obj:
    """`over` merged into a copy of `base`, maps key by key (as Helm merges values files)."""
    out: Obj = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(
    values: Mapping[str, Any] | None = None,
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
    revision: int = 1,
) -> Rendering:
    """Render the chart as `helm install` (revision 1) or `helm upgrade` (later revisions) would.

    Raises `helm_python.HelmValuesError` (schema) or `helm_python.HelmRenderError` (a `fail`)."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(
            dict(values or {}),
            name=name,
            namespace=namespace,
            revision=revision,
            is_install=revision == 1,
            is_upgrade=revision > 1,
        )
    notes = ""
    manifests: dict[str, list[Obj]] = {}
    texts: dict[str, str] = {}
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        manifests[template] = [doc for doc in yaml.safe_load_all(text) if doc]
        if manifests[template]:
            texts[template] = text
    return Rendering(manifests, notes, texts)


def chart_crds() -> list[Obj]:
    """The CRDs Helm installs from the chart's crds/."""
    with helm.Chart.load(CHART) as chart:
        return [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]


def containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Obj]]:
    """('init' or 'main', container) for every container of a pod spec."""
    for container in pod_spec.get("initContainers") or []:
        yield "init", container
    for container in pod_spec.get("containers") or []:
        yield "main", container


def pod_template(obj: Mapping[str, Any]) -> Obj | None:
    """The pod template of a workload (Deployment, Job…), or None."""
    template = obj.get("spec", {}).get("template")
    return template if isinstance(template, dict) else None


# --- Schemas ------------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD's structural schema as a JSON schema that rejects unknown fields, like the API
    server's strict field validation: `additionalProperties: false` on every object schema that
    lists properties and neither preserves unknown fields nor says otherwise;
    x-kubernetes-int-or-string as integer or string; `nullable` as a null alternative."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def object_schema(openapi: Obj, api_version: str, kind: str) -> Obj:
    """The whole object's JSON schema from a CRD version's openAPIV3Schema."""
    schema: Obj = strict(copy.deepcopy(openapi))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": api_version}
    props["kind"] = {"const": kind}
    props["metadata"] = {"type": "object"}  # checked against ObjectMeta separately
    schema["additionalProperties"] = False
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


@cache
def custom_schemas() -> dict[tuple[str, str], Obj]:
    """JSON schemas of the custom kinds the chart and k8s/ render, by (apiVersion, kind)."""
    found: dict[tuple[str, str], Obj] = {}
    for path in sorted(SCHEMAS.glob("*-*.json")):
        data = json.loads(path.read_text())
        if "openAPIV3Schema" not in data:
            continue  # skaffold's schema
        api_version = f"{data['group']}/{data['version']}"
        found[api_version, data["kind"]] = object_schema(
            data["openAPIV3Schema"], api_version, data["kind"]
        )
    crd = yaml.safe_load(HOTEL_CRD.read_text())
    for version in crd["spec"]["versions"]:
        api_version = f"{crd['spec']['group']}/{version['name']}"
        kind = crd["spec"]["names"]["kind"]
        found[api_version, kind] = object_schema(
            version["schema"]["openAPIV3Schema"], api_version, kind
        )
    return found


@cache
def _object_meta_validator(kube_version: str) -> jsonschema.Draft202012Validator:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads(
        (folder / f"v{kube_version}-local-strict" / "_definitions.json").read_text()
    )
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    ref = f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)


class InvalidObject(AssertionError):
    """An object the API server would reject."""


def name_of(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(obj: Obj, kube_version: str) -> None:
    """Raise `InvalidObject` unless `obj` is valid, with no unknown field, for `kube_version`."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in custom_schemas():
        errors = [
            f"{e.json_path}: {e.message}"
            for e in jsonschema.Draft202012Validator(custom_schemas()[key]).iter_errors(obj)
        ]
        errors += [
            f"$.metadata{e.json_path[1:]}: {e.message}"
            for e in _object_meta_validator(kube_version).iter_errors(obj.get("metadata"))
        ]
        if errors:
            raise InvalidObject(f"{name_of(obj)}: " + "; ".join(errors[:5]))
        return
    try:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise InvalidObject(f"{name_of(obj)} ({kube_version}): {path}: {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise InvalidObject(f"{name_of(obj)}: no schema for {key} in {kube_version}") from exc


def validate_all(objects: Iterable[Obj], kube_version: str) -> list[str]:
    """Every object's problems, one line each (empty when all are valid)."""
    problems = []
    for obj in objects:
        try:
            validate(obj, kube_version)
        except InvalidObject as exc:
            problems.append(str(exc))
    return problems


def dns_label(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name))


@cache
def ci_rendering(filename: str) -> Rendering:
    """The rendering of ci/`filename`, shared by the tests (which must not change it)."""
    return render(load_values(CHART / "ci" / filename))


CI_NAMES = [path.name for path in CI_VALUES]
