"""What the Kubernetes API server does with a CRD's structural schema on every write, for the
emulation in `kube.py`: prune unknown fields, apply `default:` values, validate, and check the
CEL rules it knows, with the API server's field-error wording.

Sources: Kubernetes docs, "Extend the Kubernetes API with CustomResourceDefinitions" (sections
Pruning, Defaulting, Defaulting and Nullable, Validation rules, Transition rules); the field-error
types and texts of k8s.io/apimachinery/pkg/util/validation/field (FieldValueInvalid "Invalid
value", FieldValueRequired "Required value", FieldValueNotSupported "Unsupported value",
FieldValueTooLong "Too long", FieldValueTooMany "Too many", FieldValueDuplicate "Duplicate
value") and kube-openapi's validation messages ("in body should match '…'").

Validation itself is jsonschema's (Draft 4, the dialect OpenAPI v3.0 schemas are closest to),
after converting the OpenAPI extensions: `nullable`, `x-kubernetes-int-or-string`,
`x-kubernetes-preserve-unknown-fields`, `format: date-time`. CEL (`x-kubernetes-validations`)
cannot be evaluated here; the rules in `KNOWN_RULES` are implemented by hand, and a schema with
any other rule is refused at load time rather than silently not checked.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema import Draft4Validator, FormatChecker

#: Keys the API server keeps at the top of every object whatever the schema says.
ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class FieldError:
    """One refused field, as the API server reports it in a 422 Status's `details.causes`."""

    field: str  # "spec.whatsapp.senders[0].number"
    reason: str  # "FieldValueInvalid", "FieldValueRequired", …
    detail: str  # 'Invalid value: "+1": spec.… in body should match \'^…$\''

    @property
    def message(self) -> str:
        return f"{self.field}: {self.detail}"


class UnsupportedRule(Exception):
    """The schema has a CEL rule the emulation cannot check."""


def _transition_immutable(field: str, new: object, old: object, message: str) -> FieldError | None:
    if new == old:
        return None
    return FieldError(field, "FieldValueInvalid", f'Invalid value: "{_go_type(new)}": {message}')


#: CEL rules implemented by hand: rule text → check(field, new value, old value, message).
#: Transition rules (those that read `oldSelf`) run only on updates where both values exist.
KNOWN_RULES: dict[str, Callable[[str, object, object, str], FieldError | None]] = {
    "self == oldSelf": _transition_immutable,
}


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value.upper()


FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time")(_is_date_time)


def to_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as a Draft 4 JSON Schema (the extensions made explicit)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "description"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _path_text(parts: Iterator[str | int] | list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _go_type(value: object) -> str:
    """The type name the API server prints for a value ("string", "integer", …)."""
    match value:
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
        case _:
            return "null"


def _go_value(value: object) -> str:
    """A value as the API server quotes it in field errors."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class StructuralSchema:
    """One version's `schema.openAPIV3Schema` of a CRD, applied as the API server applies it."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema: Mapping[str, Any] = schema
        self._validator = Draft4Validator(to_json_schema(schema), format_checker=FORMATS)
        for path, rules in self._rules(schema, []):
            for rule in rules:
                if rule.get("rule") not in KNOWN_RULES:
                    raise UnsupportedRule(
                        f"CEL rule {rule.get('rule')!r} at {_path_text(path) or '<root>'} is not"
                        " emulated: implement it in tests/operator/schema.py KNOWN_RULES"
                    )

    # Pruning -------------------------------------------------------------------------------

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop fields the schema does not declare (except under
        x-kubernetes-preserve-unknown-fields), in place; returns the dropped fields' paths."""
        dropped: list[str] = []
        self._prune(self.schema, obj, [], dropped, root=True)
        return dropped

    def _prune(
        self,
        schema: Mapping[str, Any],
        value: object,
        path: list[str | int],
        dropped: list[str],
        *,
        root: bool = False,
    ) -> None:
        if isinstance(value, dict):
            properties: Mapping[str, Any] = schema.get("properties", {})
            additional = schema.get("additionalProperties")
            keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
            for key in list(value):
                if root and key in ROOT_FIELDS:
                    continue
                if key in properties:
                    self._prune(properties[key], value[key], [*path, key], dropped)
                elif isinstance(additional, Mapping):
                    self._prune(additional, value[key], [*path, key], dropped)
                elif not keep_unknown:
                    dropped.append(_path_text([*path, key]))
                    del value[key]
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for index, item in enumerate(value):
                self._prune(schema["items"], item, [*path, index], dropped)

    # Defaulting ----------------------------------------------------------------------------

    def default(self, obj: dict[str, Any]) -> None:
        """Apply `default:` values in place where a field is absent (or null but not nullable),
        inside every object that exists, as the API server does on create and update."""
        self._default(self.schema, obj)

    def _default(self, schema: Mapping[str, Any], value: object) -> None:
        if isinstance(value, dict):
            for key, sub in schema.get("properties", {}).items():
                if key in value and value[key] is None and not sub.get("nullable"):
                    del value[key]
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    self._default(sub, value[key])
            additional = schema.get("additionalProperties")
            if isinstance(additional, Mapping):
                for item in value.values():
                    self._default(additional, item)
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for item in value:
                self._default(schema["items"], item)

    # Validation ----------------------------------------------------------------------------

    def validate(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
        """Every way `obj` breaks the schema (and, on an update, the transition rules against
        `old`); empty when it is valid."""
        errors: list[FieldError] = []
        for error in sorted(self._validator.iter_errors(obj), key=lambda e: list(e.path)):
            errors.extend(self._field_errors(error))
        errors.extend(self._list_types(self.schema, obj, []))
        if old is not None:
            errors.extend(self._transitions(self.schema, obj, old, []))
        unique: dict[tuple[str, str], FieldError] = {}
        for error in errors:
            unique.setdefault((error.field, error.detail), error)
        return list(unique.values())

    def _field_errors(self, error: jsonschema.ValidationError) -> list[FieldError]:
        path = list(error.absolute_path)
        field = _path_text(path) or "<root>"
        value: Any = error.instance
        limit: Any = error.validator_value
        match error.validator:
            case "required":
                assert isinstance(value, dict)
                return [
                    FieldError(_path_text([*path, name]), "FieldValueRequired", "Required value")
                    for name in limit
                    if name not in value
                ]
            case "type":
                expected = limit
                wanted = expected if isinstance(expected, str) else expected[0]
                actual = _go_type(value)
                detail = (
                    f'Invalid value: "{actual}": {field} in body must be of type {wanted}:'
                    f' "{actual}"'
                )
                return [FieldError(field, "FieldValueTypeInvalid", detail)]
            case "enum":
                supported = ", ".join(_go_value(v) for v in limit if v is not None)
                detail = f"Unsupported value: {_go_value(value)}: supported values: {supported}"
                return [FieldError(field, "FieldValueNotSupported", detail)]
            case "maxLength":
                detail = f"Too long: may not be more than {limit} bytes"
                return [FieldError(field, "FieldValueTooLong", detail)]
            case "maxItems":
                detail = f"Too many: {len(value)}: must have at most {limit} items"
                return [FieldError(field, "FieldValueTooMany", detail)]
        phrase = {
            "pattern": f"should match '{limit}'",
            "minLength": f"should be at least {limit} chars long",
            "minimum": f"should be greater than or equal to {limit}",
            "maximum": f"should be less than or equal to {limit}",
            "minItems": f"should have at least {limit} items",
            "format": f"must be of type {limit}: {_go_value(value)}",
        }.get(str(error.validator), error.message)
        detail = f"Invalid value: {_go_value(value)}: {field} in body {phrase}"
        return [FieldError(field, "FieldValueInvalid", detail)]

    def _list_types(
        self, schema: Mapping[str, Any], value: object, path: list[str | int]
    ) -> Iterator[FieldError]:
        """x-kubernetes-list-type set/map: items (or their map keys) must be unique."""
        if isinstance(value, dict):
            for key, sub in schema.get("properties", {}).items():
                if key in value:
                    yield from self._list_types(sub, value[key], [*path, key])
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            list_type = schema.get("x-kubernetes-list-type")
            keys: list[str] = schema.get("x-kubernetes-list-map-keys", [])
            seen: list[object] = []
            for index, item in enumerate(value):
                if list_type == "set":
                    identity: object = item
                elif list_type == "map" and isinstance(item, dict):
                    identity = {k: item.get(k) for k in keys}
                else:
                    identity = None
                if identity is not None and identity in seen:
                    detail = f"Duplicate value: {_go_value(identity)}"
                    yield FieldError(_path_text([*path, index]), "FieldValueDuplicate", detail)
                seen.append(identity)
                yield from self._list_types(schema["items"], item, [*path, index])

    def _transitions(
        self, schema: Mapping[str, Any], new: object, old: object, path: list[str | int]
    ) -> Iterator[FieldError]:
        for rule in schema.get("x-kubernetes-validations", []):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            error = KNOWN_RULES[rule["rule"]](_path_text(path), new, old, message)
            if error is not None:
                yield error
        if isinstance(new, dict) and isinstance(old, dict):
            for key, sub in schema.get("properties", {}).items():
                if key in new and key in old:
                    yield from self._transitions(sub, new[key], old[key], [*path, key])

    def _rules(
        self, schema: Mapping[str, Any], path: list[str | int]
    ) -> Iterator[tuple[list[str | int], list[Mapping[str, Any]]]]:
        if schema.get("x-kubernetes-validations"):
            yield path, schema["x-kubernetes-validations"]
        for key, sub in schema.get("properties", {}).items():
            yield from self._rules(sub, [*path, key])
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), Mapping):
                yield from self._rules(schema[key], [*path, key])


DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def check_object_name(name: object, *, label: bool) -> FieldError | None:
    """metadata.name rules: an RFC 1123 label for namespaces, a subdomain for everything else."""
    if not isinstance(name, str) or not name:
        detail = "Required value: name or generateName is required"
        return FieldError("metadata.name", "FieldValueRequired", detail)
    pattern, limit, what = (
        (DNS1123_LABEL, 63, "RFC 1123 label")
        if label
        else (DNS1123_SUBDOMAIN, 253, "RFC 1123 subdomain")
    )
    if len(name) > limit or not pattern.fullmatch(name):
        detail = (
            f"Invalid value: {_go_value(name)}: a lowercase {what} must consist of lower case"
            " alphanumeric characters, '-' or '.', and must start and end with an alphanumeric"
            f" character (regex used for validation is '{pattern.pattern}')"
        )
        return FieldError("metadata.name", "FieldValueInvalid", detail)
    return None
