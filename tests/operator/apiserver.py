"""The Kubernetes API server the operator's tests talk to: kmock's scaffold (discovery, Status
errors, the request log and its reaction DSL) with an object store that behaves like an API
server wherever kopf, lightkube or kubectl can tell the difference.

What the store does as the API server does: uid, creationTimestamp and a cluster-wide
resourceVersion on every write (and none for a no-op write); metadata.generation for custom
resources, bumped only when something outside metadata and status changes; the /status
subresource (a write to it changes only status, a write to the object never changes status);
JSON merge patch and JSON patch (a failed `test` op is a 422, as kopf expects), strategic merge
patch taken as a merge patch for built-in kinds only; PUT with optimistic concurrency;
finalizers and deletionTimestamp; generateName; watch streams from a resourceVersion; label and
field selectors; Secret stringData; namespaces that must exist, and that take their objects with
them when deleted; admission of custom resources against their CRD's structural schema (pruning,
defaulting, validation and the CEL rules schema.py implements), refused with 422 Status objects
worded like the API server's; fieldValidation=Strict (kubectl's default); server-side printing
(Table) with a CRD's additionalPrinterColumns; the OpenAPI v3 documents kubectl reads before it
applies; CRDs created through the API become discoverable.

What it does not do: no garbage collector (ownerReferences are stored and checked for shape,
never acted on), no server-side apply, no admission webhooks, no RBAC (one bearer token, or
none), no /openapi/v2, no pagination (`limit` is ignored), no watch bookmarks, no 410 Gone (every
change since the start can be replayed), no Warning headers, Table columns for built-in kinds
limited to Name and Age.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import datetime
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from typing_extensions import override

from tests.operator.schema import FieldError, StructuralSchema, check_object_name

Body = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
HOTEL_CRD_PATH = REPO / "operator" / "crds" / "hotels.hotelchat.io.yaml"

NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")
CONFIGMAPS = kmock.resource("", "v1", "configmaps")
EVENTS = kmock.resource("", "v1", "events")
EVENTS_K8S = kmock.resource("events.k8s.io", "v1", "events")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
HOTELS = kmock.resource("hotelchat.io", "v1alpha1", "hotels")

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
JSON_STREAM: kmock.headers[None] = kmock.headers(
    {"Content-Type": "application/json"}
)  # watch streams are JSON lines
NOT_ALLOWED = "the server does not allow this method on the requested resource"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
OBJECT_META_REF = f"#/components/schemas/{OBJECT_META}"
JSON_PATCH, MERGE_PATCH = "application/json-patch+json", "application/merge-patch+json"
UNKNOWN_FORMAT = "the body of the request was in an unknown format - accepted media types include"


# Resource types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """What the store knows of one resource: discovery names, scope, and write semantics."""

    resource: kmock.resource
    kind: str
    singular: str
    namespaced: bool
    shortnames: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    status_subresource: bool = False
    generation: bool = False  # metadata.generation is kept (custom resources, CRDs)
    schema: StructuralSchema | None = None  # admission by a CRD's structural schema
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    crd: str | None = None  # the CRD that defines it, for custom resources

    @property
    def group(self) -> str:
        return self.resource.group or ""

    @property
    def version(self) -> str:
        return self.resource.version or ""

    @property
    def plural(self) -> str:
        return self.resource.plural or ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_path(self) -> str:
        """The discovery path of its group version: "api/v1" or "apis/<group>/<version>"."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    @property
    def qualified(self) -> str:
        """The name the API server uses in messages: "hotels.hotelchat.io", "secrets"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """The kind, group-qualified as in the API server's 422 messages: Hotel.hotelchat.io."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def info(self) -> kmock.ResourceInfo:
        return kmock.ResourceInfo(
            kind=self.kind,
            singular=self.singular,
            namespaced=self.namespaced,
            verbs=VERBS,
            shortnames=self.shortnames,
            categories=self.categories,
            subresources={"status"} if self.status_subresource else set(),
        )


BUILTIN_TYPES = (
    ResourceType(
        NAMESPACES, "Namespace", "namespace", False, frozenset({"ns"}), status_subresource=True
    ),
    ResourceType(SECRETS, "Secret", "secret", True),
    ResourceType(CONFIGMAPS, "ConfigMap", "configmap", True, frozenset({"cm"})),
    ResourceType(EVENTS, "Event", "event", True, frozenset({"ev"})),
    ResourceType(EVENTS_K8S, "Event", "event", True, frozenset({"ev"})),
    ResourceType(
        CRDS,
        "CustomResourceDefinition",
        "customresourcedefinition",
        False,
        frozenset({"crd", "crds"}),
        status_subresource=True,
        generation=True,
    ),
)


def load_crd(path: Path = HOTEL_CRD_PATH) -> Body:
    """A CRD manifest as a dict (the Hotel CRD by default: the one file the chart installs)."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict) and loaded.get("kind") == "CustomResourceDefinition", path
    return loaded


def crd_types(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves: one per served version, with its schema and columns."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = version.get("schema", {}).get("openAPIV3Schema")
        columns = tuple(version.get("additionalPrinterColumns", ()))
        for column in columns:
            jsonpath(column["jsonPath"], {})  # refuse, now, a path the Table code cannot read
        types.append(
            ResourceType(
                kmock.resource(spec["group"], version["name"], names["plural"]),
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                shortnames=frozenset(names.get("shortNames", ())),
                categories=frozenset(names.get("categories", ())),
                status_subresource="status" in version.get("subresources", {}),
                generation=True,
                schema=StructuralSchema(schema) if schema else None,
                printer_columns=columns,
                crd=crd["metadata"]["name"],
            )
        )
    return types


# Small protocol pieces ----------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: object, patch: object) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: Body = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_JSONPATH_TOKEN = re.compile(
    r"\.(?P<key>[A-Za-z0-9_-]+)"
    r"|\[(?P<index>\d+)\]"
    r"|(?P<all>\[\*\])"
    r"|\[\?\(@\.(?P<field>[A-Za-z0-9_.-]+)\s*==\s*[\"'](?P<value>[^\"']*)[\"']\)\]"
)


def jsonpath(expression: str, obj: object) -> list[Any]:
    """The values a printer column's JSONPath selects (`.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`,
    the subset CRD authors use); raises ValueError for anything else."""
    values = [obj]
    position = 0
    while position < len(expression):
        match = _JSONPATH_TOKEN.match(expression, position)
        if match is None:
            raise ValueError(f"JSONPath {expression!r} is beyond the emulation's subset")
        position = match.end()
        selected: list[Any] = []
        for value in values:
            if match["key"] is not None and isinstance(value, dict) and match["key"] in value:
                selected.append(value[match["key"]])
            elif match["index"] is not None and isinstance(value, list):
                selected.extend(value[int(match["index"]) : int(match["index"]) + 1])
            elif match["all"] is not None and isinstance(value, list):
                selected.extend(value)
            elif match["field"] is not None and isinstance(value, list):
                selected.extend(i for i in value if _dig(i, match["field"]) == match["value"])
        values = selected
    return values


def _dig(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def human_age(timestamp: str) -> str:
    """k8s.io/apimachinery's duration.HumanDuration of the time since `timestamp`."""
    try:
        then = datetime.datetime.fromisoformat(timestamp)
    except ValueError:
        return "<invalid>"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<set>in|notin)\s+\((?P<values>[^)]*)\))?)\s*$"
)


def selector_matches(selector: str | None, labels: Mapping[str, str], *, fields: bool) -> bool:
    """A label selector (`a=b,c!=d,e in (f,g),!h,i`) against labels, or a field selector
    (`metadata.name=x`) against the object's fields flattened to `labels`."""
    if not selector:
        return True
    depth = 0
    parts, current = [], ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    for part in parts:
        match = _REQUIREMENT.match(part)
        if match is None or (fields and not match["op"]):
            raise api_error(400, "BadRequest", f"unable to parse requirement: {part!r}")
        if match["absent"] is not None:
            ok = match["absent"] not in labels
        elif match["op"] is not None:
            equal = labels.get(match["key"]) == match["value"]
            ok = not equal if match["op"] == "!=" else equal
        elif match["set"] is not None:
            values = {v.strip() for v in match["values"].split(",")}
            inside = labels.get(match["key"]) in values
            ok = inside if match["set"] == "in" else (match["key"] not in labels or not inside)
        else:
            ok = match["key"] in labels
        if not ok:
            return False
    return True


def _flatten(obj: object, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, bool):
        flat[prefix[:-1]] = str(obj).lower()
    elif obj is not None and not isinstance(obj, list):
        flat[prefix[:-1]] = str(obj)
    return flat


def header(request: kmock.Request, name: str) -> str:
    """A request header by its lower-case name (kmock keeps them as the client spelled them)."""
    return {key.lower(): value for key, value in request.headers.items()}.get(name, "")


def api_error(
    status: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> kmock.KubernetesError:
    """An error the API server would send, rendered as a `Status` object."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def not_found(rtype: ResourceType, name: str) -> kmock.KubernetesError:
    details = {"name": name, "group": rtype.group, "kind": rtype.plural}
    return api_error(404, "NotFound", f'{rtype.qualified} "{name}" not found', details)


def invalid(rtype: ResourceType, name: str, errors: Sequence[FieldError]) -> kmock.KubernetesError:
    """422 Invalid, worded as the API server words it (kubectl prints the causes)."""
    texts = [error.message for error in errors]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    causes = [{"reason": e.reason, "message": e.detail, "field": e.field} for e in errors]
    details = {"name": name, "group": rtype.group, "kind": rtype.kind, "causes": causes}
    message = f'{rtype.group_kind} "{name}" is invalid: {summary}'
    return api_error(422, "Invalid", message, details)


def conflict(rtype: ResourceType, name: str) -> kmock.KubernetesError:
    message = (
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been'
        " modified; please apply your changes to the latest version and try again"
    )
    return api_error(
        409, "Conflict", message, {"name": name, "group": rtype.group, "kind": rtype.plural}
    )


@dataclass(frozen=True)
class _Change:
    """One entry of the watch log: what changed, at which resourceVersion."""

    rv: int
    resource: kmock.resource
    type: str  # ADDED, MODIFIED, DELETED
    object: Body


# The emulator ---------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold with a stateful store (see the module docstring).

    kmock's own KubernetesEmulator is not extended because its write path runs before any
    reaction and cannot refuse a write, stores bodies verbatim (no uid, resourceVersion or
    generation; PATCH bodies merged by their JSON shape whatever the Content-Type; /status patches
    the whole object). Here the store is served by low-priority (`fallback`) reactions, so a test's
    own reactions (`handler['patch', HOTELS] << 500`) still come first and a refused request
    changes nothing. All state lives on the server's event loop: call its methods from there
    (`KubeEmulation.call()` does that from a test).
    """

    token: str | None = None  # the bearer token clients must send; None accepts anyone
    crds: Sequence[Mapping[str, Any]] = ()  # CRDs installed before the first request

    objects: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    _types: dict[kmock.resource, ResourceType] = attrs.field(factory=dict, init=False)
    _log: list[_Change] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _wakeup: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for rtype in BUILTIN_TYPES:
            self._register(rtype)
        for crd in self.crds:
            self.create_object(self._types[CRDS], None, crd, strict=True)
        if self.token is not None:
            self.override[self._unauthenticated] << self._refuse_unauthenticated
        self.fallback["get /openapi/v3"] << self._serve_openapi_root
        self.fallback[kmock.method.GET, re.compile(r"/openapi/v3/.+")] << self._serve_openapi_gv
        self.fallback[self._wants_watch] << JSON_STREAM << self._serve_watch
        self.fallback[self._wants_create] << 201 << self._serve_create
        self.fallback[self._wants_api] << self._serve

    # kmock 0.8 cannot parse /api/v1/namespaces (its parser takes "namespaces" as the start of
    # /namespaces/{ns}/…, and raises on the bare collection). Namespace requests are re-addressed
    # to a path it parses as resource v1/namespaces in namespace "", before kmock reads them; the
    # request log shows that path. Filter them with kmock.resource("v1/namespaces"), not by path.
    _NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(/[^/]+)?(/status|/finalize)?/?")

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self._NAMESPACE_PATH.fullmatch(raw_request.path):
            path = raw_request.path.rstrip("/").replace("/namespaces", "/namespaces//namespaces", 1)
            url = raw_request.rel_url  # with_path() alone would drop the query (?watch=true)
            raw_request = raw_request.clone(rel_url=url.with_path(path).with_query(url.query))
        return await super().__call__(raw_request)

    @override
    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        """The APIResourceList of /api/v1 or /apis/<group>/<version>. kmock's own copies short
        names and categories onto "<plural>/status" entries (kubectl then finds "ns" ambiguous
        and resolves nothing) and names the core group version "/v1"."""
        assert request.resource is not None
        wanted = (request.resource.group, request.resource.version)
        types = [rtype for rtype in self._types.values() if (rtype.group, rtype.version) == wanted]
        if not types:
            raise api_error(404, "NotFound", "the server could not find the requested resource", {})
        resources: list[Body] = []
        for rtype in types:
            common = {"namespaced": rtype.namespaced, "kind": rtype.kind}
            resources.append(
                {
                    "name": rtype.plural,
                    "singularName": rtype.singular,
                    **common,
                    "verbs": list(VERBS),
                    "shortNames": sorted(rtype.shortnames),
                    "categories": sorted(rtype.categories),
                }
            )
            if rtype.status_subresource:
                resources.append(
                    {
                        "name": f"{rtype.plural}/status",
                        "singularName": "",
                        **common,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        group_version = types[0].api_version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    @override
    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if not isinstance(exc, kmock.KubernetesError):
            return await super()._render_error(exc)  # an emulator bug: 500 with the traceback
        status = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": exc.message or "",
            "reason": exc.reason or "",
            "code": exc.status,
        }
        if exc.details:
            status["details"] = exc.details
        # Exactly "application/json", as the API server sends it: lightkube turns an error into
        # its ApiError only then (aiohttp's json_response adds "; charset=utf-8").
        body = json.dumps(status).encode()
        return aiohttp.web.Response(body=body, status=exc.status, content_type="application/json")

    # Resource types --------------------------------------------------------------------------

    def _register(self, rtype: ResourceType) -> None:
        self._types[rtype.resource] = rtype
        self.resources[rtype.resource] = rtype.info()

    def _unregister(self, crd_name: str) -> None:
        for resource, rtype in list(self._types.items()):
            if rtype.crd == crd_name:
                for key, obj in list(self.objects.items()):
                    if key[0] == resource and not obj.deleted:
                        self._drop(rtype, obj.raw)
                del self._types[resource]
                del self.resources[resource]

    def resolve(self, resource: kmock.resource | str) -> ResourceType:
        """A served resource by kmock.resource, "group/version/plural", plural, kind or short
        name ("hotels", "Hotel", "cm")."""
        if isinstance(resource, str) and "/" not in resource:
            for rtype in self._types.values():
                names = {rtype.plural, rtype.singular, rtype.kind, *rtype.shortnames}
                if resource in names and rtype.resource != EVENTS_K8S:
                    return rtype
        wanted = kmock.resource(resource)
        for rtype in self._types.values():
            if rtype.resource == wanted:
                return rtype
        raise KeyError(f"the emulation serves no resource {resource!r}")

    def type_of(self, obj: Mapping[str, Any]) -> ResourceType:
        """The resource type of a manifest, by its apiVersion and kind."""
        for rtype in self._types.values():
            if (rtype.api_version, rtype.kind) == (obj.get("apiVersion"), obj.get("kind")):
                return rtype
        raise KeyError(f"the emulation serves no {obj.get('apiVersion')} {obj.get('kind')}")

    # Reading ---------------------------------------------------------------------------------

    def current(self, rtype: ResourceType, namespace: str | None, name: str) -> Body | None:
        """The stored object (a deep copy), or None."""
        try:
            obj = self.objects[rtype.resource, namespace if rtype.namespaced else None, name]
        except KeyError:
            return None
        return None if obj.deleted else copy.deepcopy(obj.raw)

    def require(self, rtype: ResourceType, namespace: str | None, name: str) -> Body:
        obj = self.current(rtype, namespace, name)
        if obj is None:
            raise not_found(rtype, name)
        return obj

    def list_objects(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[Body]:
        """Objects of a type, in one namespace or all, matching label and field selectors."""
        found = []
        for (resource, ns, _), obj in self.objects.items():
            if resource != rtype.resource or obj.deleted:
                continue
            if rtype.namespaced and namespace is not None and ns != namespace:
                continue
            body = obj.raw
            if self._selected(body, labels, fields):
                found.append(copy.deepcopy(body))
        return found

    @staticmethod
    def _selected(body: Mapping[str, Any], labels: str | None, fields: str | None) -> bool:
        meta = body.get("metadata", {})
        return selector_matches(labels, meta.get("labels") or {}, fields=False) and (
            selector_matches(fields, _flatten(body), fields=True)
        )

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    # Writing ---------------------------------------------------------------------------------

    def _put(self, rtype: ResourceType, obj: Body, event: str) -> Body:
        """Store a new version under the next resourceVersion and tell the watchers."""
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        key = (rtype.resource, meta.get("namespace"), meta["name"])
        try:
            stored = self.objects[key]
        except KeyError:
            self.objects[key] = copy.deepcopy(obj)
        else:
            stored.history.append(copy.deepcopy(obj))
        self._record(rtype, event, obj)
        return obj

    def _drop(self, rtype: ResourceType, obj: Body) -> Body:
        """Delete for good (the object's kmock history ends with None) and tell the watchers."""
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        self.objects[rtype.resource, meta.get("namespace"), meta["name"]].delete()
        self._record(rtype, "DELETED", obj)
        if rtype.resource == CRDS:
            self._unregister(meta["name"])
        if rtype.namespaced:
            self._reap_namespace(meta["namespace"])
        return obj

    def _record(self, rtype: ResourceType, event: str, obj: Body) -> None:
        self._log.append(_Change(self._rv, rtype.resource, event, copy.deepcopy(obj)))
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def close(self) -> None:
        """End every watch stream (the server is going away)."""
        self._closing = True
        self._wakeup.set()

    def create_object(
        self, rtype: ResourceType, namespace: str | None, body: object, *, strict: bool
    ) -> Body:
        """POST: a new object, admitted and given its system fields."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise api_error(400, "BadRequest", "the body of the request is not a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise api_error(400, "BadRequest", "the namespace of the object is missing")
            if meta.get("namespace", namespace) != namespace:
                message = (
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request"
                )
                raise api_error(400, "BadRequest", message)
            meta["namespace"] = namespace
            self._check_namespace_open(namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(alphabet) for _ in range(5)
            )
        self._check_identity(rtype, obj)
        name = meta["name"]
        if self.current(rtype, namespace, name) is not None:
            message = f'{rtype.qualified} "{name}" already exists'
            details = {"name": name, "group": rtype.group, "kind": rtype.plural}
            raise api_error(409, "AlreadyExists", message, details)
        for system in (
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(system, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rtype.generation:
            meta["generation"] = 1
        if rtype.status_subresource:
            obj.pop("status", None)
        if rtype.resource == NAMESPACES:
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        self._admit(rtype, obj, None, strict=strict)
        created = self._put(rtype, obj, "ADDED")
        if rtype.resource == CRDS:
            created = self._establish(created)
        return created

    def replace_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: object,
        *,
        status: bool,
        strict: bool,
    ) -> Body:
        """PUT: the whole object (or its status), if its resourceVersion, when given, is current."""
        current = self.require(rtype, namespace, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise api_error(400, "BadRequest", "the body of the request is not a JSON object")
        given = body.get("metadata", {})
        if given.get("name", name) != name:
            message = (
                f"the name of the object ({given['name']}) does not match the name on the URL"
                f" ({name})"
            )
            raise api_error(400, "BadRequest", message)
        if given.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
            raise conflict(rtype, name)
        return self._update(rtype, current, copy.deepcopy(body), status=status, strict=strict)

    def patch_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch: object,
        content_type: str,
        *,
        status: bool,
        strict: bool,
    ) -> Body:
        """PATCH by its Content-Type: merge, JSON patch, or (built-in kinds) strategic merge."""
        current = self.require(rtype, namespace, name)
        media = content_type.split(";", maxsplit=1)[0].strip().lower()
        accepted = f"{JSON_PATCH}, {MERGE_PATCH}"
        if media == "application/apply-patch+yaml":
            message = "server-side apply is not emulated; use client-side kubectl apply"
            raise api_error(415, "UnsupportedMediaType", message)
        if media == "application/strategic-merge-patch+json" and rtype.crd is not None:
            message = f"{UNKNOWN_FORMAT}: {accepted}"
            raise api_error(415, "UnsupportedMediaType", message)
        if media in (MERGE_PATCH, "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise api_error(400, "BadRequest", "a merge patch must be a JSON object")
            patch_meta = patch.get("metadata")
            wanted = patch_meta.get("resourceVersion") if isinstance(patch_meta, dict) else None
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                raise conflict(rtype, name)
            patched = merge_patch(current, patch)
        elif media == JSON_PATCH:
            if not isinstance(patch, list):
                raise api_error(400, "BadRequest", "a JSON patch must be a JSON array")
            try:
                patched = jsonpatch.apply_patch(current, patch, in_place=False)
            except jsonpatch.InvalidJsonPatch as exc:
                raise api_error(400, "BadRequest", str(exc)) from exc
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise api_error(422, "Invalid", str(exc)) from exc
        else:
            message = f"{UNKNOWN_FORMAT}: {accepted}"
            raise api_error(415, "UnsupportedMediaType", message)
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise api_error(422, "Invalid", "the patched object is not a Kubernetes object")
        return self._update(rtype, current, patched, status=status, strict=strict)

    def _update(
        self, rtype: ResourceType, current: Body, new: Body, *, status: bool, strict: bool
    ) -> Body:
        """The common part of PUT and PATCH: keep what clients cannot change, admit, store."""
        if status:  # the status subresource: everything but status stays as it was
            candidate = copy.deepcopy(current)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
            new = candidate
        elif rtype.status_subresource:  # the object itself: status stays as it was
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        old_meta, meta = current["metadata"], new.setdefault("metadata", {})
        for system in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if system in old_meta:
                meta[system] = old_meta[system]
            else:
                meta.pop(system, None)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                detail = (
                    "Forbidden: no new finalizers can be added if the object is being deleted,"
                    f" found new finalizers {sorted(added)!r}"
                )
                error = FieldError("metadata.finalizers", "FieldValueForbidden", detail)
                raise invalid(rtype, meta["name"], [error])
        self._admit(rtype, new, current, strict=strict)
        if new == current:
            return current  # a no-op write: no new resourceVersion, no watch event
        if rtype.generation and self._essence(rtype, new) != self._essence(rtype, current):
            meta["generation"] = old_meta.get("generation", 0) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._put(rtype, new, "MODIFIED")
            return self._drop(rtype, new)
        return self._put(rtype, new, "MODIFIED")

    @staticmethod
    def _essence(rtype: ResourceType, obj: Body) -> Body:
        """What metadata.generation counts: everything but metadata (and status, when status is
        a subresource)."""
        skipped = {"metadata", "status"} if rtype.status_subresource else {"metadata"}
        return {key: value for key, value in obj.items() if key not in skipped}

    def delete_object(
        self, rtype: ResourceType, namespace: str | None, name: str, options: object = None
    ) -> Body:
        """DELETE: gone at once, or marked with deletionTimestamp while finalizers remain."""
        current = self.require(rtype, namespace, name)
        meta = current["metadata"]
        preconditions = options.get("preconditions") or {} if isinstance(options, dict) else {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) not in (None, meta.get(key)):
                raise conflict(rtype, name)
        if rtype.resource == NAMESPACES:
            return self._delete_namespace(current)
        if not meta.get("finalizers"):
            return self._drop(rtype, current)
        if meta.get("deletionTimestamp"):
            return current
        meta["deletionTimestamp"] = now_rfc3339()
        meta["deletionGracePeriodSeconds"] = 0
        return self._put(rtype, current, "MODIFIED")

    def _delete_namespace(self, namespace: Body) -> Body:
        """A namespace is marked Terminating, its objects are deleted (finalizers respected), and
        it goes once it is empty: the namespace controller's work, done at once."""
        name = namespace["metadata"]["name"]
        if not namespace["metadata"].get("deletionTimestamp"):
            namespace["metadata"]["deletionTimestamp"] = now_rfc3339()
            namespace["status"] = {"phase": "Terminating"}
            namespace = self._put(self._types[NAMESPACES], namespace, "MODIFIED")
            for (resource, ns, obj_name), obj in list(self.objects.items()):
                if ns == name and not obj.deleted and resource in self._types:
                    self.delete_object(self._types[resource], ns, obj_name)
        return self._reap_namespace(name) or namespace

    def _reap_namespace(self, name: str) -> Body | None:
        namespace = self.current(self._types[NAMESPACES], None, name)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return None
        if any(ns == name and not obj.deleted for (_, ns, _), obj in self.objects.items()):
            return None
        return self._drop(self._types[NAMESPACES], namespace)

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.current(self._types[NAMESPACES], None, namespace)
        if ns is None:
            raise not_found(self._types[NAMESPACES], namespace)
        if ns["metadata"].get("deletionTimestamp"):
            message = (
                f"unable to create new content in namespace {namespace} because it is being"
                " terminated"
            )
            raise api_error(403, "Forbidden", message)

    def _check_identity(self, rtype: ResourceType, obj: Body) -> None:
        for key, expected in (("apiVersion", rtype.api_version), ("kind", rtype.kind)):
            if obj.setdefault(key, expected) != expected:
                message = (
                    f"the API version or kind in the body ({obj['apiVersion']}, {obj['kind']})"
                    f" does not match the URL ({rtype.api_version}, {rtype.kind})"
                )
                raise api_error(400, "BadRequest", message)
        error = check_object_name(obj["metadata"].get("name"), label=rtype.resource == NAMESPACES)
        if error is not None:
            raise invalid(rtype, str(obj["metadata"].get("name") or ""), [error])

    def _admit(self, rtype: ResourceType, obj: Body, old: Body | None, *, strict: bool) -> None:
        """Admission: metadata shapes, Secret data, and a custom resource's structural schema."""
        meta = obj["metadata"]
        name = str(meta.get("name"))
        for key in ("labels", "annotations", "finalizers", "ownerReferences"):
            if key in meta and meta[key] in ({}, [], None):
                del meta[key]  # the API server omits empty ones
        errors: list[FieldError] = []
        for key in ("labels", "annotations"):
            values = meta.get(key)
            if values is not None and not (
                isinstance(values, dict) and all(isinstance(v, str) for v in values.values())
            ):
                errors.append(
                    FieldError(
                        f"metadata.{key}",
                        "FieldValueInvalid",
                        "Invalid value: must be a map of strings",
                    )
                )
        for index, owner in enumerate(meta.get("ownerReferences") or []):
            for key in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(owner, dict) or not owner.get(key):
                    field_name = f"metadata.ownerReferences[{index}].{key}"
                    errors.append(FieldError(field_name, "FieldValueRequired", "Required value"))
        if errors:
            raise invalid(rtype, name, errors)
        if rtype.resource == SECRETS:
            self._admit_secret(rtype, obj)
        if rtype.resource == CRDS:
            try:
                crd_types(obj)
            except (KeyError, TypeError, ValueError) as exc:
                error = FieldError("spec", "FieldValueInvalid", f"Invalid value: {exc}")
                raise invalid(rtype, name, [error]) from exc
        if rtype.schema is None:
            return
        dropped = rtype.schema.prune(obj)
        if dropped and strict:
            fields_text = ", ".join(f'unknown field "{path}"' for path in sorted(dropped))
            message = (
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}:'
                f" strict decoding error: {fields_text}"
            )
            raise api_error(400, "BadRequest", message)
        rtype.schema.default(obj)
        schema_errors = rtype.schema.validate(obj, old)
        if schema_errors:
            raise invalid(rtype, name, schema_errors)

    def _admit_secret(self, rtype: ResourceType, obj: Body) -> None:
        data = obj.get("data") or {}
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        for key, value in data.items():
            try:
                base64.b64decode(str(value), validate=True)
            except binascii.Error as exc:
                message = (
                    'Secret in version "v1" cannot be handled as a Secret: illegal base64 data'
                    f" in data[{key!r}]"
                )
                raise api_error(400, "BadRequest", message) from exc
        if data:
            obj["data"] = data
        obj.setdefault("type", "Opaque")

    def _establish(self, crd: Body) -> Body:
        """What the apiextensions controllers do for a new CRD: serve it, report Established."""
        for rtype in crd_types(crd):
            self._register(rtype)
        names = crd["spec"]["names"]
        crd["status"] = {
            "acceptedNames": {
                "kind": names["kind"],
                "plural": names["plural"],
                **{k: v for k, v in names.items() if k not in ("kind", "plural")},
            },
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastTransitionTime": now_rfc3339(),
                }
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        }
        return self._put(self._types[CRDS], crd, "MODIFIED")

    # Serving -----------------------------------------------------------------------------------

    def _unauthenticated(self, request: kmock.Request) -> bool:
        return header(request, "authorization") != f"Bearer {self.token}"

    def _refuse_unauthenticated(self, request: kmock.Request) -> kmock.Payload:
        raise api_error(401, "Unauthorized", "Unauthorized")

    @staticmethod
    def _is_api(request: kmock.Request) -> bool:
        resource = request.resource
        return bool(resource is not None and resource.plural and resource.version)

    def _wants_watch(self, request: kmock.Request) -> bool:
        return self._is_api(request) and request.action == kmock.action.WATCH

    def _wants_create(self, request: kmock.Request) -> bool:
        return self._is_api(request) and request.method == kmock.method.POST and not request.name

    def _wants_api(self, request: kmock.Request) -> bool:
        return self._is_api(request)

    def _address(self, request: kmock.Request) -> tuple[ResourceType, str | None]:
        assert request.resource is not None
        for resource, rtype in self._types.items():
            if resource == request.resource:
                if request.subresource not in (None, "status") or (
                    request.subresource == "status" and not rtype.status_subresource
                ):
                    break
                return rtype, (request.namespace or None) if rtype.namespaced else None
        message = "the server could not find the requested resource"
        raise api_error(404, "NotFound", message, {})

    @staticmethod
    def _strict(request: kmock.Request) -> bool:
        return request.params.get("fieldValidation", "Warn").lower() == "strict"

    @staticmethod
    def _wants_table(request: kmock.Request) -> bool:
        return "as=Table" in header(request, "accept")

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace = self._address(request)
        if rtype.namespaced and namespace is None:
            raise api_error(405, "MethodNotAllowed", NOT_ALLOWED)
        return self.create_object(rtype, namespace, request.data, strict=self._strict(request))

    async def _serve(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace = self._address(request)
        name, status, strict = request.name, request.subresource == "status", self._strict(request)
        labels, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        match request.method, name:
            case kmock.method.GET, None:
                items = self.list_objects(rtype, namespace, labels=labels, fields=fields)
                return (
                    self.table(rtype, items)
                    if self._wants_table(request)
                    else self._list(rtype, items)
                )
            case kmock.method.DELETE, None:
                doomed = self.list_objects(rtype, namespace, labels=labels, fields=fields)
                gone = [
                    self.delete_object(rtype, o["metadata"].get("namespace"), o["metadata"]["name"])
                    for o in doomed
                ]
                return self._list(rtype, gone)
            case kmock.method.GET, str():
                obj = self.require(rtype, namespace, name)
                return self.table(rtype, [obj]) if self._wants_table(request) else obj
            case kmock.method.PUT, str():
                return self.replace_object(
                    rtype, namespace, name, request.data, status=status, strict=strict
                )
            case kmock.method.PATCH, str():
                content_type = header(request, "content-type")
                return self.patch_object(
                    rtype, namespace, name, request.data, content_type, status=status, strict=strict
                )
            case kmock.method.DELETE, str():
                return self.delete_object(rtype, namespace, name, request.data)
        raise api_error(405, "MethodNotAllowed", NOT_ALLOWED)

    def _list(self, rtype: ResourceType, items: list[Body]) -> Body:
        meta = {"resourceVersion": self.resource_version}
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": meta,
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        """A watch stream: the current objects (no resourceVersion, or "0") or the changes after
        a resourceVersion, then every matching change until timeoutSeconds or the server stops."""
        rtype, namespace = self._address(request)
        params = request.params
        labels, fields = params.get("labelSelector"), params.get("fieldSelector")
        since = params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion {since!r}")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        initial = since == "0" or params.get("sendInitialEvents") == "true"

        def wanted(obj: Body) -> bool:
            meta = obj.get("metadata", {})
            if rtype.namespaced and namespace is not None and meta.get("namespace") != namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return self._selected(obj, labels, fields)

        yield b""  # the headers go now, even if nothing happens for a while
        if initial:
            position = len(self._log)
            for obj in self.list_objects(rtype, namespace, labels=labels, fields=fields):
                if wanted(obj):
                    yield {"type": "ADDED", "object": obj}
            if params.get("sendInitialEvents") == "true":
                annotations = {"k8s.io/initial-events-end": "true"}
                meta = {"resourceVersion": self.resource_version, "annotations": annotations}
                bookmark = {"apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": meta}
                yield {"type": "BOOKMARK", "object": bookmark}
        else:
            position = bisect.bisect_right([change.rv for change in self._log], int(since))
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while not self._closing:
            while position < len(self._log):
                change = self._log[position]
                position += 1
                if change.resource == rtype.resource and wanted(change.object):
                    yield {"type": change.type, "object": copy.deepcopy(change.object)}
            wakeup = self._wakeup
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return

    def table(self, rtype: ResourceType, objects: Sequence[Body]) -> Body:
        """Server-side printing (Accept: application/json;as=Table): Name, then the CRD's
        additionalPrinterColumns (or Age), cells formatted as the API server formats them."""
        columns: Sequence[Mapping[str, Any]] = rtype.printer_columns or (
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        )
        definitions = [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": "Name must be unique within a namespace.",
                "priority": 0,
            }
        ]
        for column in columns:
            definitions.append(
                {
                    "name": column["name"],
                    "type": column["type"],
                    "format": column.get("format", ""),
                    "description": column.get("description", ""),
                    "priority": column.get("priority", 0),
                }
            )
        rows = []
        for obj in objects:
            cells: list[object] = [obj["metadata"]["name"]]
            for column in columns:
                found = jsonpath(column["jsonPath"], obj)
                cells.append(self._cell(column["type"], found[0]) if found else None)
            partial = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
            rows.append({"cells": cells, "object": partial})
        meta = {"resourceVersion": self.resource_version}
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "columnDefinitions": definitions,
            "rows": rows,
        }

    @staticmethod
    def _cell(kind: str, value: object) -> object:
        if kind == "date" and isinstance(value, str):
            return human_age(value)
        if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        if kind in ("number", "boolean") or isinstance(value, str):
            return value
        return json.dumps(value)

    # OpenAPI v3: kubectl reads it to learn that the server validates fields itself
    # (fieldValidation on PATCH) and which patch types it takes; without it kubectl refuses to
    # apply unless --validate=false. /openapi/v2 is left to kmock's 404 (kubectl then falls back
    # to its built-in types to choose a patch type).

    def _serve_openapi_root(self, request: kmock.Request) -> kmock.Payload:
        paths = {}
        for api_path in sorted({rtype.api_path for rtype in self._types.values()}):
            served = sorted(str(t.resource) for t in self._types.values() if t.api_path == api_path)
            digest = hashlib.sha256(repr(served).encode()).hexdigest()[:16]
            paths[api_path] = {"serverRelativeURL": f"/openapi/v3/{api_path}?hash={digest}"}
        return {"paths": paths}

    def _serve_openapi_gv(self, request: kmock.Request) -> kmock.Payload:
        """One group version's OpenAPI v3 document: its paths (PATCH takes fieldValidation and
        JSON or merge patches, never strategic merge) and its kinds' schemas."""
        api_path = request.url.path.removeprefix("/openapi/v3/")
        types = [rtype for rtype in self._types.values() if rtype.api_path == api_path]
        if not types:
            raise api_error(404, "NotFound", "the server could not find the requested resource", {})
        paths: Body = {}
        schemas: Body = {OBJECT_META: {"type": "object"}}
        for rtype in types:
            gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
            name = _schema_name(rtype)
            whole = {
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                }
            }
            patch = {
                "content": {
                    media: {"schema": {"type": "object"}} for media in (JSON_PATCH, MERGE_PATCH)
                }
            }
            scope = "/namespaces/{namespace}" if rtype.namespaced else ""
            collection = f"/{api_path}{scope}/{rtype.plural}"
            paths[collection] = {
                "get": _operation("list", gvk),
                "post": _operation("post", gvk, whole),
            }
            item = {
                "get": _operation("get", gvk),
                "put": _operation("put", gvk, whole),
                "patch": _operation("patch", gvk, patch),
                "delete": _operation("delete", gvk),
            }
            paths[f"{collection}/{{name}}"] = item
            if rtype.status_subresource:
                paths[f"{collection}/{{name}}/status"] = {
                    k: v for k, v in item.items() if k != "delete"
                }
            schema: Body = (
                copy.deepcopy(dict(rtype.schema.schema)) if rtype.schema else {"type": "object"}
            )
            schema.setdefault("properties", {}).update(
                {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"$ref": OBJECT_META_REF},
                }
            )
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[name] = schema
        info = {"title": "Kubernetes", "version": "v1.37.0"}
        return {
            "openapi": "3.0.0",
            "info": info,
            "paths": paths,
            "components": {"schemas": schemas},
        }


def _schema_name(rtype: ResourceType) -> str:
    """The OpenAPI schema name the API server gives a kind: io.hotelchat.v1alpha1.Hotel."""
    if not rtype.group:
        return f"io.k8s.api.core.{rtype.version}.{rtype.kind}"
    return ".".join(reversed(rtype.group.split("."))) + f".{rtype.version}.{rtype.kind}"


def _operation(action: str, gvk: Body, body: Body | None = None) -> Body:
    """An OpenAPI operation as kubectl inspects it: writes declare the fieldValidation query
    parameter, which is how kubectl learns that the server validates fields itself."""
    parameters = []
    if action in ("post", "put", "patch"):
        parameters.append({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}})
    operation: Body = {
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
    }
    if body is not None:
        operation["requestBody"] = body
    return operation
