"""The chart lints, renders for every ci/*-values.yaml, and every object it renders (and the CRD
it installs) is valid, with no unknown field, for the oldest and the newest Kubernetes it
supports."""

from __future__ import annotations

import copy
import os
import tarfile
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from tests.chart.rendering import (
    CHART,
    CI_NAMES,
    HOTEL_CRD,
    KUBE_VERSIONS,
    ROOT,
    InvalidObject,
    chart_crds,
    ci_rendering,
    custom_schemas,
    load_values,
    validate,
    validate_all,
)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", CI_NAMES)
def test_chart_lints_cleanly(values_file: str, kube_version: str) -> None:
    report = helm.lint(
        CHART,
        load_values(CHART / "ci" / values_file),
        strict=True,
        namespace="hotelchat",
        kube_version=f"v{kube_version}",
    )
    # Severity 1 is information (only "icon is recommended" here); 2 warnings, 3 errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["errors"] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", CI_NAMES)
def test_every_rendered_object_is_valid(values_file: str, kube_version: str) -> None:
    rendering = ci_rendering(values_file)
    assert rendering.objects
    assert validate_all([*rendering.objects, *chart_crds()], kube_version) == []


def test_everything_values_render_every_custom_kind() -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in ci_rendering("everything-values.yaml").objects}
    custom = {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    }
    assert custom <= kinds
    assert custom | {("hotelchat.io/v1alpha1", "Hotel")} == set(custom_schemas())


@pytest.mark.parametrize(
    "kind", ["Deployment", "ScaledObject", "ServiceMonitor", "PrometheusRule", "HTTPRoute"]
)
def test_validation_rejects_an_unknown_field(kind: str) -> None:
    rendered = ci_rendering("everything-values.yaml").of_kind(kind)[0]
    in_spec = copy.deepcopy(rendered)
    in_spec["spec"]["replicaCuont"] = 2
    in_metadata = copy.deepcopy(rendered)
    in_metadata["metadata"]["lables"] = {}
    for broken in (in_spec, in_metadata):
        with pytest.raises(InvalidObject, match="unexpected"):
            validate(broken, KUBE_VERSIONS[0])


def test_validation_rejects_a_kind_without_schema() -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(InvalidObject, match="no schema"):
        validate(unknown, KUBE_VERSIONS[-1])


def test_validation_rejects_a_hotel_the_crd_refuses() -> None:
    hotel = {
        "apiVersion": "hotelchat.io/v1alpha1",
        "kind": "Hotel",
        "metadata": {"name": "lisbon", "namespace": "sunrise"},
        "spec": {"displayName": "Lisbon", "languages": ["english"]},
    }
    with pytest.raises(InvalidObject, match="languages"):
        validate(hotel, KUBE_VERSIONS[0])


def test_the_crd_comes_from_its_one_source_through_a_link() -> None:
    link = CHART / "crds" / "hotels.hotelchat.io.yaml"
    assert link.is_symlink()
    assert link.resolve() == HOTEL_CRD.resolve()
    assert chart_crds() == [yaml.safe_load(HOTEL_CRD.read_text())]


def test_dashboards_come_from_their_one_source_through_a_link() -> None:
    link = CHART / "files" / "dashboards"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "dashboards").resolve()
    assert Path(os.readlink(link)) == Path("../../../dashboards")


def test_chart_kube_version_is_the_oldest_validated() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"


def test_a_packaged_chart_holds_the_linked_files(tmp_path: Path) -> None:
    """`helm package` stores the content behind crds/ and files/dashboards (not links), and
    leaves out the rules' unit tests (.helmignore)."""
    archive = helm.package(CHART, destination=tmp_path)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["hotelchat/crds/hotels.hotelchat.io.yaml"].isfile()
    assert members["hotelchat/files/dashboards/alerts.yml"].isfile()
    assert not [name for name in members if "/files/dashboards/tests" in name]
    values = load_values(CHART / "ci" / "everything-values.yaml")
    with helm.Chart.load(archive) as packaged, helm.Chart.load(CHART) as source:
        assert packaged.render(values, name="hotelchat", namespace="hotelchat") == source.render(
            values, name="hotelchat", namespace="hotelchat"
        )
