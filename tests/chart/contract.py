"""What the chart and the application agree on, derived from `hotelchat.config.Settings`: which
settings are secrets, which the chart sets itself, and the JSON schema of the rest (the `config`
maps of values.schema.json, `$defs.settings`).

`python -m tests.chart.contract` rewrites `$defs.settings` in charts/hotelchat/values.schema.json
after a setting is added or changed; tests/chart/test_values_schema.py fails until it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hotelchat.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hotelchat"
VALUES_SCHEMA = CHART / "values.schema.json"

# Settings that are secrets: only ever from a Secret, through `secrets.<NAME>` in the values.
SECRET_SETTINGS = frozenset(
    {
        "DATABASE_URL",
        "DATABASE_ADMIN_URL",
        "DATABASE_OPERATOR_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "ENCRYPTION_KEYS",
        "OPENAI_API_KEY",
        "EMBEDDINGS_API_KEY",
        "METRICS_TOKEN",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    }
)

# Settings the chart derives from its own values or from what a pod is (addresses and ports),
# so `config` may not set them.
CHART_SETTINGS = frozenset(
    {
        "PUBLIC_BASE_URL",  # publicBaseUrl
        "HOST",  # 0.0.0.0 in a pod
        "PORT",  # the container port, 8000
        "WEB_WORKERS",  # web.workers
        "WORKER_METRICS_HOST",  # 0.0.0.0
        "WORKER_METRICS_PORT",  # the container port, 9101
        "WORKER_MAX_JOBS",  # worker.maxJobs (KEDA's default threshold)
        "JOB_TIMEOUT_SECONDS",  # worker.jobTimeoutSeconds (the grace period derives from it)
        "OPERATOR_HOST",  # 0.0.0.0
        "OPERATOR_HEALTH_PORT",  # the container port, 8081
        "OPERATOR_METRICS_PORT",  # the container port, 9102
        "OPERATOR_RESYNC_SECONDS",  # operator.resyncSeconds
        "HOTELCHAT_STATE_DIR",  # `hotelchat dev` only
    }
)

# Variables a container may get that are not settings, and why:
# HOME: POSIX; the image's root filesystem is read-only, so it points at the /tmp emptyDir.
# PROMETHEUS_MULTIPROC_DIR: prometheus_client's, for the web's several Hypercorn processes
# (docs/observability.md).
OTHER_VARIABLES = frozenset({"HOME", "PROMETHEUS_MULTIPROC_DIR"})
# OpenTelemetry's standard variables (OTEL_EXPORTER_OTLP_ENDPOINT…), read by its SDK.
OTEL_PREFIX = "OTEL_"

_KEPT = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength")


def setting_names() -> dict[str, str]:
    """Every setting's environment variable name, by field name."""
    names = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        names[field] = alias.upper() if isinstance(alias, str) else field.upper()
    return names


def config_schema() -> dict[str, Any]:
    """The JSON schema of a `config` map: each setting neither secret nor the chart's, with the
    type and bounds the application checks; OpenTelemetry's variables as strings."""
    fields = Settings.model_json_schema(by_alias=True)["properties"]
    properties: dict[str, Any] = {}
    for field, name in sorted(setting_names().items(), key=lambda item: item[1]):
        if name in SECRET_SETTINGS or name in CHART_SETTINGS:
            continue
        spec = fields[field] if field in fields else fields[name]  # by alias when it has one
        options = [o for o in spec.get("anyOf", [spec]) if o.get("type") != "null"]
        (chosen,) = options
        prop: dict[str, Any] = {"description": Settings.model_fields[field].description}
        prop.update({key: chosen[key] for key in _KEPT if key in chosen})
        if chosen.get("format") == "uri":
            prop["pattern"] = "^https?://"
        if chosen.get("type") == "object":  # a JSON document in the environment
            prop = {"description": str(prop["description"]) + " As a JSON string."}
            prop["type"] = "string"
        properties[name] = prop
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "patternProperties": {
            f"^{OTEL_PREFIX}[A-Z0-9_]+$": {
                "description": "An OpenTelemetry SDK variable (docs/observability.md).",
                "type": "string",
            }
        },
    }


def write_schema() -> None:
    """Rewrite `$defs.settings` of values.schema.json from `config_schema()`."""
    schema = json.loads(VALUES_SCHEMA.read_text())
    schema["$defs"]["settings"] = config_schema()
    VALUES_SCHEMA.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_schema()
    sys.stdout.write(f"updated $defs.settings in {VALUES_SCHEMA.relative_to(ROOT)}\n")
