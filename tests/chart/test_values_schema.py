"""values.schema.json is strict: a typo'd key at any level and a value of the wrong type are
rejected, both by jsonschema and by Helm's own render; its settings part is what the application
accepts; and every value in values.yaml is described where it is set."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import jsonschema
import pytest

from tests.chart.contract import CHART_SETTINGS, SECRET_SETTINGS, VALUES_SCHEMA, config_schema
from tests.chart.rendering import CHART, CI_VALUES, load_values, merged, render

SCHEMA = json.loads(VALUES_SCHEMA.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
DEFAULTS = load_values(CHART / "values.yaml")
# Valid values to mutate: the defaults with everything the render requires.
BASE = merged(DEFAULTS, load_values(CHART / "ci" / "production-values.yaml"))

Path_ = tuple[str, ...]


def errors(values: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(values)]


def schema_at(path: Path_) -> dict[str, Any]:
    """The schema of the value at `path` (following $ref and properties)."""
    node: dict[str, Any] = SCHEMA
    for key in path:
        while "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
        node = node["properties"][key]
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def maps(values: dict[str, Any], path: Path_ = ()) -> Iterator[Path_]:
    """The path of every map in `values` whose schema admits only its listed keys."""
    if schema_at(path).get("additionalProperties") is False:
        yield path
    for key, value in values.items():
        if isinstance(value, dict):
            yield from maps(value, (*path, key))


def leaves(values: dict[str, Any], path: Path_ = ()) -> Iterator[Path_]:
    """The path of every scalar or list value under a strict map."""
    for key, value in values.items():
        if isinstance(value, dict):
            if schema_at((*path, key)).get("additionalProperties") is False:
                yield from leaves(value, (*path, key))
        else:
            yield (*path, key)


def changed(path: Path_, change: Any) -> dict[str, Any]:
    """BASE with the map at `path` given to `change(map)`."""
    values = copy.deepcopy(BASE)
    node = values
    for key in path:
        node = node[key]
    change(node)
    return values


def test_the_defaults_and_every_ci_file_are_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert errors(DEFAULTS) == []
    assert errors(BASE) == []
    for path in CI_VALUES:  # as Helm validates them: over the defaults
        assert errors(merged(DEFAULTS, load_values(path))) == [], path.name


STRICT_MAPS = list(maps(BASE))


def test_strict_maps_cover_the_whole_tree() -> None:
    assert len(STRICT_MAPS) > 40
    assert ("web", "ingress") in STRICT_MAPS and ("secrets", "DATABASE_URL") in STRICT_MAPS


@pytest.mark.parametrize("path", STRICT_MAPS, ids=lambda p: ".".join(p) or "(top)")
def test_an_unknown_key_is_rejected(path: Path_) -> None:
    values = changed(path, lambda node: node.update(tyop="x"))
    assert any("tyop" in e for e in errors(values)), path
    with pytest.raises(helm.HelmValuesError, match="'tyop' not allowed"):
        render(values)


LEAVES = list(leaves(BASE))


@pytest.mark.parametrize("path", LEAVES, ids=".".join)
def test_a_value_of_the_wrong_type_is_rejected(path: Path_) -> None:
    *parent, key = path
    # A map is the wrong type for every scalar and list the values hold.
    values = changed(tuple(parent), lambda node: node.update({key: {"wrong": "type"}}))
    assert errors(values), path
    with pytest.raises(helm.HelmValuesError):
        render(values)


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"LOG_LEVL": "DEBUG"}, "not a setting"),
        ({"DATABASE_URL": "postgresql://u:p@db/x"}, "a secret"),
        ({"PORT": 9000}, "set by the chart"),
        ({"JOB_TIMEOUT_SECONDS": 30}, "set by the chart (worker.jobTimeoutSeconds)"),
        ({"LOG_LEVEL": "TRACE"}, "not one of the levels"),
        ({"ANSWER_CACHE_SECONDS": "a day"}, "not an integer"),
        ({"WEBHOOK_MAX_BODY_BYTES": 10}, "below the minimum"),
        ({"OPENAI_TIMEOUT_SECONDS": 0}, "not positive"),
        ({"TWILIO_API_BASE_URL": "twilio-emulator:8010"}, "not a URL"),
    ],
)
def test_config_accepts_only_the_settings_the_application_accepts(
    config: dict[str, Any], why: str
) -> None:
    for where in (("config",), ("web", "config"), ("worker", "config"), ("operator", "config")):
        values = changed(where[:-1], lambda node: node.update(config=config))
        assert errors(values), (where, why)
    with pytest.raises(helm.HelmValuesError):
        render(changed((), lambda node: node.update(config=config)))


def test_config_accepts_settings_and_opentelemetry_variables() -> None:
    config = {
        "LOG_LEVEL": "DEBUG",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OPENAI_TIMEOUT_SECONDS": 12.5,
        "TWILIO_API_BASE_URL": "http://twilio:8010",
    }
    values = changed((), lambda node: node.update(config=config))
    assert errors(values) == []
    assert render(values).one("ConfigMap", "config")["data"]["OTEL_TRACES_SAMPLER"]


def test_the_settings_schema_is_derived_from_the_application() -> None:
    """After a change to hotelchat.config.Settings: `python -m tests.chart.contract`."""
    assert SCHEMA["$defs"]["settings"] == config_schema()
    names = set(config_schema()["properties"])
    assert names.isdisjoint(SECRET_SETTINGS | CHART_SETTINGS)
    assert "LOG_LEVEL" in names and "OPENAI_DEFAULT_MODEL" in names


def test_every_secret_has_an_entry_and_nothing_else_does() -> None:
    assert set(SCHEMA["properties"]["secrets"]["properties"]) == SECRET_SETTINGS
    assert set(DEFAULTS["secrets"]) == SECRET_SETTINGS
    for entry in DEFAULTS["secrets"].values():
        assert entry["existingSecret"] == ""  # never a default


# --- values.yaml reads top to bottom ------------------------------------------------------------

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?P<rest>.*)$")


def undocumented(lines: list[str]) -> list[str]:
    """Keys of values.yaml with no description: each key needs a `# --` comment right above it,
    unless it is a section (a map whose keys are all documented) or lies inside a documented
    value."""
    entries = []  # (line number, indent, key, documented, opens a map)
    for number, line in enumerate(lines):
        match = KEY.match(line)
        if not match:
            continue
        above = number - 1
        while above >= 0 and re.match(r"\s*#(?! --)", lines[above]):
            above -= 1  # a plain comment between the key and its description
        documented = above >= 0 and lines[above].strip().startswith("# --")
        opens = match["rest"].strip() == ""
        entries.append((number, len(match["indent"]), match["key"], documented, opens))
    missing = []
    covered_below: int | None = None  # indent under which everything is documented
    for number, indent, key, documented, opens in entries:
        if covered_below is not None and indent > covered_below:
            continue
        covered_below = indent if documented else None
        if not documented and not opens:
            missing.append(f"line {number + 1}: {key}")
    return missing


def test_every_value_is_described_where_it_is_set() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert undocumented(lines) == []
    assert undocumented(["a:", "  # -- fine", "  b: 1", "  c: 2"]) == ["line 4: c"]
    assert undocumented(["# -- the whole map", "a:", "  b: 1"]) == []
