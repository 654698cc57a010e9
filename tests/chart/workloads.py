"""What each rendered container would run: its command line and its environment as the kubelet
would resolve it (ConfigMaps from the same rendering, Secrets from a dict the test provides), so
that a test can start it as a real process, on the host or in the image.

Resolution follows the pod API: `envFrom` first, then `env`, a later entry overriding an earlier
one; `secretKeyRef` / `configMapKeyRef` values looked up by name and key; a missing non-optional
reference is an error, as it would keep the container from starting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.chart.rendering import Obj, Rendering, component_of, containers, pod_template

# The image's ENTRYPOINT: a container without `command` runs `hotelchat <args>`.
ENTRYPOINT = ("hotelchat",)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

# Fake Secrets: Secret name -> key -> value.
Secrets = Mapping[str, Mapping[str, str]]


class UnresolvedReference(LookupError):
    """A container refers to a Secret or ConfigMap key that does not exist."""


@dataclass(frozen=True)
class ContainerProcess:
    """One container of a rendered workload, as a process: argv and environment."""

    workload: str  # "Deployment/hotelchat-web"
    component: str  # app.kubernetes.io/component: web, worker, migrations, operator
    container: str
    init: bool
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)
    # Variables whose value comes from a Secret, by name.
    secret_env: frozenset[str] = frozenset()

    @property
    def args(self) -> tuple[str, ...]:
        """The arguments after the executable."""
        return self.argv[1:]


def _config_maps(rendering: Rendering) -> dict[str, dict[str, str]]:
    return {
        obj["metadata"]["name"]: {k: str(v) for k, v in (obj.get("data") or {}).items()}
        for obj in rendering.of_kind("ConfigMap")
    }


def _lookup(
    source: Mapping[str, Mapping[str, str]], kind: str, ref: Mapping[str, Any]
) -> str | None:
    values = source.get(ref["name"])
    if values is None or ref["key"] not in values:
        if ref.get("optional"):
            return None
        raise UnresolvedReference(f"{kind} {ref['name']!r} has no key {ref['key']!r}")
    return values[ref["key"]]


def resolve_env(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]], secrets: Secrets
) -> tuple[dict[str, str], frozenset[str]]:
    """The environment of `container` and the names of the variables taken from Secrets."""
    env: dict[str, str] = {}
    from_secrets: set[str] = set()
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, found, kind = source["configMapRef"], config_maps, "ConfigMap"
        else:
            ref, found, kind = source["secretRef"], secrets, "Secret"
        if ref["name"] not in found:
            if ref.get("optional"):
                continue
            raise UnresolvedReference(f"{kind} {ref['name']!r} does not exist")
        for key, text in found[ref["name"]].items():
            env[prefix + key] = text
            if kind == "Secret":
                from_secrets.add(prefix + key)
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = str(var["value"])
            from_secrets.discard(name)
            continue
        value_from = var.get("valueFrom", {})
        value: str | None
        if "secretKeyRef" in value_from:
            value = _lookup(secrets, "Secret", value_from["secretKeyRef"])
            from_secrets.add(name)
        elif "configMapKeyRef" in value_from:
            value = _lookup(config_maps, "ConfigMap", value_from["configMapKeyRef"])
            from_secrets.discard(name)
        else:
            raise UnresolvedReference(f"{name}: unsupported valueFrom {sorted(value_from)}")
        if value is not None:
            env[name] = value
    return env, frozenset(from_secrets)


def container_processes(rendering: Rendering, secrets: Secrets) -> list[ContainerProcess]:
    """Every container and init container of every workload in `rendering`."""
    config_maps = _config_maps(rendering)
    found = []
    for obj in rendering.objects:
        template = pod_template(obj) if obj["kind"] in WORKLOAD_KINDS else None
        if template is None:
            continue
        for role, container in containers(template["spec"]):
            env, from_secrets = resolve_env(container, config_maps, secrets)
            command = tuple(container.get("command") or ENTRYPOINT)
            found.append(
                ContainerProcess(
                    workload=f"{obj['kind']}/{obj['metadata']['name']}",
                    component=component_of(obj) or "",
                    container=container["name"],
                    init=role == "init",
                    argv=(*command, *(str(a) for a in container.get("args") or [])),
                    env=env,
                    secret_env=from_secrets,
                )
            )
    return found


def the_process(
    processes: list[ContainerProcess], component: str, *, init: bool = False
) -> ContainerProcess:
    """The one main (or, with `init`, init) container of `component`."""
    (found,) = [p for p in processes if p.component == component and p.init == init]
    return found


def workload_of(rendering: Rendering, process: ContainerProcess) -> Obj:
    """The rendered object `process` belongs to."""
    kind, name = process.workload.split("/", 1)
    (found,) = [o for o in rendering.of_kind(kind) if o["metadata"]["name"] == name]
    return found
