"""Dashboards and alert rules in dashboards/ use only metrics HotelChat exports, and alerts fire
when, and only when, they should.

Grafana has no server here, so dashboards are checked structurally. promtool (Debian package
`prometheus`, installed by scripts/system-packages) checks the rules, runs their unit tests in
dashboards/tests/alerts_test.yml, and parses every dashboard query. Every metric a query names must
be in `hotelchat.observability.metrics` or be a recording rule of dashboards/alerts.yml; a typo or a
metric nobody exports would otherwise show up as an empty panel or an alert that never fires.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from hotelchat.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
ALERTS = DASHBOARDS / "alerts.yml"
ALERT_TESTS = DASHBOARDS / "tests" / "alerts_test.yml"

EXPECTED_DASHBOARDS = {"slo-overview", "ai", "realtime", "queue", "database"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HOTEL_QUERY = "label_values(hotelchat_inbound_messages_total, hotel)"
# What each dashboard is for, as metrics it must show (recording rules count).
REQUIRED_METRICS = {
    "slo-overview": {
        "hotelchat_webhook_ingest_duration_seconds_bucket",
        "hotelchat_http_requests_total",
        "hotel:hotelchat_ai_failures:ratio_rate10m",
        "hotelchat_handoffs_total",
        "hotelchat_handoff_oldest_unanswered_seconds",
        "hotelchat_queue_oldest_job_age_seconds",
    },
    "ai": {
        "hotelchat_ai_time_to_first_token_seconds_bucket",
        "hotelchat_ai_request_duration_seconds_bucket",
        "hotelchat_ai_tokens_total",
        "hotelchat_ai_cost_usd_total",
        "hotelchat_ai_errors_total",
        "hotelchat_ai_replies_total",
        "hotelchat_ai_circuit_state",
        "hotelchat_ai_budget_used_ratio",
    },
    "realtime": {
        "hotelchat_socketio_connected_clients",
        "hotelchat_socketio_events_emitted_total",
        "hotelchat_socketio_events_received_total",
    },
    "queue": {
        "hotelchat_queue_depth",
        "hotelchat_queue_oldest_job_age_seconds",
        "hotelchat_job_queue_wait_seconds_bucket",
        "hotelchat_job_duration_seconds_bucket",
        "hotelchat_jobs_total",
    },
    "database": {
        "hotelchat_db_pool_connections_in_use",
        "hotelchat_db_pool_connections",
        "hotelchat_db_pool_max_connections",
        "hotelchat_db_pool_waiting",
    },
}

# --- Metric names exported by the application ---------------------------------------------------

# Series each metric type exports. `collect()` only yields samples for label sets already used
# (none, for a labelled metric nobody has touched), so the names also come from the family's
# name and type. `_created` series are left out: multiprocess mode, as deployed, has none.
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


@cache
def exported_metric_names() -> frozenset[str]:
    """Every series name the metrics module defines."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, Counter | Gauge | Histogram):
            continue
        for family in value.collect():
            names.update(sample.name for sample in family.samples)
            names.update(family.name + suffix for suffix in SERIES_SUFFIXES[family.type])
    return frozenset(name for name in names if not name.endswith("_created"))


# --- Metric names used by a PromQL expression ---------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
COMMENT = re.compile(r"#[^\n]*")
NAME_MATCHER = re.compile(r"__name__\s*=\s*\"([^\"]*)\"")
GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
RANGE = re.compile(r"\[[^\]]*\]")
GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
KEYWORDS = frozenset(
    {
        # binary operators and modifiers
        "and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right",
        # aggregations (may be followed by `by (...)` rather than `(`)
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
        # number literals
        "inf", "nan",
    }
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (Grafana variables allowed) selects."""
    names = set(NAME_MATCHER.findall(expr))
    text = COMMENT.sub(" ", STRING.sub('""', expr))
    text = GRAFANA_VARIABLE.sub(" ", text)
    text = RANGE.sub(" ", text)
    text = LABEL_MATCHERS.sub(" ", text)
    text = GROUPING.sub(" ", text)
    for match in IDENTIFIER.finditer(text):
        token = match.group()
        if token.lower() in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword or a function call
        names.add(token)
    return names


# Grafana's interval variables, as durations; any other variable only makes sense inside a label
# matcher's string, where `.*` is valid (outside one it is a syntax error, as it should be).
INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def as_promql(expr: str) -> str:
    """`expr` with Grafana's variables replaced the way Grafana would, for promtool to parse."""

    def value(match: re.Match[str]) -> str:
        name = match.group().strip("${}[]").split(":")[0]
        return INTERVALS.get(name, ".*")

    return GRAFANA_VARIABLE.sub(value, expr)


# --- Rules -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    kind: str  # "alert" or "record"
    name: str
    expr: str
    fields: dict[str, Any]  # the rule as written


def parse_rules(text: str) -> list[Rule]:
    """The rules of a Prometheus rules file."""
    document = yaml.safe_load(text)
    found = []
    for group in document["groups"]:
        for rule in group["rules"]:
            kind = "alert" if "alert" in rule else "record"
            found.append(Rule(kind, str(rule[kind]), str(rule["expr"]), rule))
    return found


def rules() -> list[Rule]:
    return parse_rules(ALERTS.read_text())


# --- Dashboards ---------------------------------------------------------------------------------


def load_dashboards(directory: Path) -> dict[str, dict[str, Any]]:
    boards: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        assert isinstance(board, dict), f"{path.name} is not a JSON object"
        boards[path.stem] = board
    return boards


def all_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "")) if isinstance(query, dict) else str(query)


def dashboard_expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's metric selector."""
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable_query(variable)
        label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        if label_values:
            yield f"variable {variable['name']}", label_values.group(1)
        elif query.startswith("query_result("):
            yield f"variable {variable['name']}", query.removeprefix("query_result(")[:-1]


def unknown_metric_problems(dashboard_dir: Path, rules_text: str) -> list[str]:
    """Every metric name a dashboard query or a rule uses that nothing exports or records."""
    parsed = parse_rules(rules_text)
    known = exported_metric_names() | {rule.name for rule in parsed if rule.kind == "record"}
    problems: list[str] = []
    for stem, board in load_dashboards(dashboard_dir).items():
        for where, expr in dashboard_expressions(board):
            problems += [f"{stem}.json, {where}: {name}" for name in metric_names(expr) - known]
    for rule in parsed:
        problems += [f"rule {rule.name}: {name}" for name in metric_names(rule.expr) - known]
    return sorted(problems)


# --- promtool -----------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs promtool; fails (never skips) where it is missing: the rules would go unchecked."""
    executable = shutil.which("promtool")
    assert executable, "promtool is missing: scripts/system-packages installs it (prometheus)"
    return subprocess.run(
        [executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout, done.stdout


def test_alerts_pass_their_promtool_unit_tests() -> None:
    done = promtool("test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query, as a recording rule of a throwaway rules file
    (JSON is YAML)."""
    checks = [
        {"record": f"dashboard_query:{stem.replace('-', '_')}:{n}", "expr": as_promql(expr)}
        for stem, board in load_dashboards(DASHBOARDS).items()
        for n, (_, expr) in enumerate(dashboard_expressions(board))
    ]
    assert len(checks) > 50
    rules_file = tmp_path / "dashboard_queries.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": checks}]}))
    done = promtool("check", "rules", str(rules_file))
    assert done.returncode == 0, done.stdout + done.stderr


# --- Alert rules --------------------------------------------------------------------------------


def test_every_alert_has_a_duration_a_severity_and_says_what_to_do() -> None:
    alerts = [rule for rule in rules() if rule.kind == "alert"]
    assert len(alerts) >= 10
    for alert in alerts:
        assert re.fullmatch(r"\d+[smhdwy]", str(alert.fields.get("for", ""))), alert.name
        assert alert.fields["labels"]["severity"] in ("page", "ticket"), alert.name
        assert str(alert.fields["annotations"]["summary"]).strip(), alert.name
        assert str(alert.fields["annotations"]["description"]).strip(), alert.name


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    stays_quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = {rule.name for rule in rules() if rule.kind == "alert"}
    assert fires == alerts
    assert stays_quiet == alerts


def test_rule_names_are_unique() -> None:
    names = [rule.name for rule in rules()]
    assert len(names) == len(set(names))


# --- Dashboards ---------------------------------------------------------------------------------


def test_dashboards_are_grafana_dashboards() -> None:
    boards = load_dashboards(DASHBOARDS)
    assert set(boards) >= EXPECTED_DASHBOARDS
    uids = [board.get("uid") for board in boards.values()]
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"
    for stem, board in boards.items():
        assert isinstance(board.get("title"), str) and board["title"], stem
        assert isinstance(board.get("uid"), str) and re.fullmatch(r"[\w-]{1,40}", board["uid"])
        assert board.get("id") is None, f"{stem}: an exported dashboard has no database id"
        assert board.get("schemaVersion", 0) >= 39, stem
        assert isinstance(board.get("panels"), list) and board["panels"], stem
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        datasource = variables.get("datasource", {})
        assert datasource.get("type") == "datasource", stem
        assert datasource.get("query") == "prometheus", stem
        check_panels(stem, board)


def check_panels(stem: str, board: dict[str, Any]) -> None:
    panels = list(all_panels(board["panels"]))
    ids = [panel.get("id") for panel in panels]
    assert len(ids) == len(set(ids)), f"{stem}: panel ids must be unique"
    for panel in panels:
        where = f"{stem}: panel {panel.get('title')!r}"
        assert panel.get("title"), where
        grid = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= set(grid), where
        assert grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where
        if panel.get("type") == "row":
            continue
        assert panel.get("datasource") == DATASOURCE, where
        assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), f"{where}: unit"
        targets = panel.get("targets", [])
        assert targets, f"{where}: no queries"
        ref_ids = [target.get("refId") for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in targets:
            assert target.get("datasource") == DATASOURCE, where
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), where


def test_hotel_variable_lists_hotels_and_filters_panels() -> None:
    boards = load_dashboards(DASHBOARDS)
    with_hotel = []
    for stem, board in boards.items():
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        hotel = variables.get("hotel")
        if hotel is None:
            continue
        with_hotel.append(stem)
        assert hotel["type"] == "query", stem
        assert variable_query(hotel) == HOTEL_QUERY, stem
        assert hotel.get("datasource") == DATASOURCE, stem
        assert hotel.get("includeAll") and hotel.get("allValue") == ".*", stem
        exprs = [expr for _, expr in dashboard_expressions(board)]
        assert any('hotel=~"$hotel"' in expr for expr in exprs), f"{stem}: $hotel unused"
    assert {"slo-overview", "ai"} <= set(with_hotel)


def test_dashboards_show_what_they_are_for() -> None:
    for stem, board in load_dashboards(DASHBOARDS).items():
        used: set[str] = set()
        for _, expr in dashboard_expressions(board):
            used |= metric_names(expr)
        assert REQUIRED_METRICS.get(stem, set()) <= used, f"{stem} lacks some metrics"


# --- Metric names -------------------------------------------------------------------------------


def test_dashboards_and_rules_use_only_exported_or_recorded_metrics() -> None:
    assert unknown_metric_problems(DASHBOARDS, ALERTS.read_text()) == []


def test_the_check_catches_a_made_up_metric(tmp_path: Path) -> None:
    for path in DASHBOARDS.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    board = json.loads((tmp_path / "realtime.json").read_text())
    target = next(p for p in all_panels(board["panels"]) if p.get("targets"))["targets"][0]
    target["expr"] = "sum(rate(hotelchat_nonexistent_total[$__rate_interval]))"
    (tmp_path / "realtime.json").write_text(json.dumps(board))
    rules_text = ALERTS.read_text() + (
        "  - name: made-up\n"
        "    rules:\n"
        "      - alert: MadeUp\n"
        "        expr: |\n"
        "          rate(hotelchat_made_up_seconds_count[5m]) > 0\n"
        "        for: 1m\n"
    )
    problems = unknown_metric_problems(tmp_path, rules_text)
    assert len(problems) == 2
    assert problems[0].startswith("realtime.json, panel ")
    assert problems[0].endswith(": hotelchat_nonexistent_total")
    assert problems[1] == "rule MadeUp: hotelchat_made_up_seconds_count"


def test_exported_names_follow_the_series_each_type_exports() -> None:
    names = exported_metric_names()
    assert {
        "hotelchat_http_requests_total",
        "hotelchat_webhook_ingest_duration_seconds_bucket",
        "hotelchat_webhook_ingest_duration_seconds_sum",
        "hotelchat_webhook_ingest_duration_seconds_count",
        "hotelchat_db_pool_waiting",
        "hotelchat_ai_budget_used_ratio",
    } <= names
    assert "hotelchat_http_requests" not in names  # counters only as _total
    assert "hotelchat_webhook_ingest_duration_seconds" not in names
    assert not any(name.endswith("_created") for name in names)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'histogram_quantile(0.95, sum by (le, hotel) (rate(x_seconds_bucket{hotel=~"$hotel",'
            ' le="0.25"}[$__rate_interval])))',
            {"x_seconds_bucket"},
        ),
        ("sum(rate(a_total[5m])) by (job, instance) / ignoring (x) sum(b)", {"a_total", "b"}),
        ("a / on (hotel) group_left (model) b", {"a", "b"}),
        (
            '(sum(rate(a_total{status=~"5.."}[5m])) or vector(0)) / sum(rate(a_total[5m]))',
            {"a_total"},
        ),
        ("max_over_time(a[1h:5m] offset 1d) > bool 0.5 and b unless c", {"a", "b", "c"}),
        ('{__name__="a_total", route="/x"} * 1e3 > Inf', {"a_total"}),
        ('hotel:x:ratio_rate10m{hotel="by (z) rate(q)"} >= 0.8 < 1', {"hotel:x:ratio_rate10m"}),
        ("sum without (instance) (a) - min(b) + count_values('v', c)", {"a", "b", "c"}),
        ("topk(5, sum by (hotel) (increase(a_total[$__range])))", {"a_total"}),
        ("vector(1) + time()", set()),
        ('a_total # per "hotel" and model\n+ b_total', {"a_total", "b_total"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_grafana_variables_become_promql() -> None:
    assert (
        as_promql('rate(a{hotel=~"$hotel", x="${x:regex}"}[$__rate_interval])')
        == 'rate(a{hotel=~".*", x=".*"}[5m])'
    )
    assert as_promql("increase(a[$__range])") == "increase(a[1h])"
