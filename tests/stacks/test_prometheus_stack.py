"""monitoring=true installs what its objects need: the Prometheus Operator's CRDs come with the
pinned kube-prometheus-stack release, every monitoring.coreos.com object waits for it, and the
chart's Prometheus and Grafana select our objects by the labels they carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.plan import PlanRun, Registration
from stacks.workload import prometheus_stack
from tests.stacks.helpers import REGIONS, args, in_region, k8s, run, single_region_run

RELEASE = "kubernetes:helm.sh/v3:Release"
CRDS = Path(__file__).parent / "crds"
CLOUDS = ("aws", "gcp", "alicloud")


def _operator_releases(plan: PlanRun, region: str | None = None) -> list[Registration]:
    # Other Helm releases (cert-manager) share the type: tell ours by its chart.
    found = plan.find(RELEASE) if region is None else in_region(plan, RELEASE, region)
    return [r for r in found if args(r).get("chart") == prometheus_stack.CHART]


def release_in(plan: PlanRun, region: str) -> Registration:
    found = _operator_releases(plan, region)
    assert len(found) == 1, f"expected the operator release in {region}, got {len(found)}"
    return found[0]


def monitoring_objects(plan: PlanRun, region: str | None = None) -> list[Registration]:
    return [
        r
        for r in plan.registrations
        if r.type.startswith("kubernetes:monitoring.coreos.com/")
        and (region is None or plan.region_of(r.urn) == region)
    ]


def selector(values: dict[str, Any], kind: str, release_name: str) -> dict[str, Any]:
    """The selector the chart (88.x templates/prometheus/prometheus.yaml) renders into its
    Prometheus for ``kind`` ("podMonitor" or "rule")."""
    spec = values.get("prometheus", {}).get("prometheusSpec", {})
    if spec.get(f"{kind}Selector"):
        found: dict[str, Any] = spec[f"{kind}Selector"]
        return found
    if spec.get(f"{kind}SelectorNilUsesHelmValues", True):
        return {"matchLabels": {"release": release_name}}
    return {}


def matches(sel: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(sel) <= {"matchLabels"}, "only matchLabels is modelled here"
    return all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items())


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_cluster_gets_the_pinned_chart(cloud: str) -> None:
    plan = run(cloud)
    for region in REGIONS[cloud]:
        release = args(release_in(plan, region))
        assert release["chart"] == "kube-prometheus-stack"
        assert release["version"] == prometheus_stack.CHART_VERSION
        assert release["repositoryOpts"]["repo"] == prometheus_stack.CHART_REPO
        assert release["name"] == prometheus_stack.RELEASE_NAME
        assert release["namespace"] == "monitoring"
        assert release["values"]["crds"]["enabled"] is True
        assert release.get("skipCrds") in (None, False)
        ns = args(k8s(plan, "kubernetes:core/v1:Namespace", "monitoring", region))
        # node-exporter needs host access; "restricted" would keep it from starting.
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_monitoring_object_waits_for_the_release_that_installs_its_crd(cloud: str) -> None:
    plan = run(cloud)
    for region in REGIONS[cloud]:
        release = release_in(plan, region)
        objects = monitoring_objects(plan, region)
        assert {r.type.rsplit(":", 1)[1] for r in objects} == {"PodMonitor", "PrometheusRule"}
        for obj in objects:
            assert release.urn in obj.dependencies, f"{obj.name} does not wait for the CRDs"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_charts_prometheus_selects_our_podmonitor_and_rules(cloud: str) -> None:
    plan = run(cloud)
    region = REGIONS[cloud][0]
    release = args(release_in(plan, region))
    for kind, chart_kind in (("PodMonitor", "podMonitor"), ("PrometheusRule", "rule")):
        obj = args(next(r for r in monitoring_objects(plan, region) if r.type.endswith(kind)))
        sel = selector(release["values"], chart_kind, release["name"])
        assert sel, f"the {kind} selector would be empty: Prometheus would pick up everything"
        assert matches(sel, obj["metadata"]["labels"]), (kind, sel, obj["metadata"]["labels"])
        # {} namespace selector: every namespace, the workload's included.
        spec = release["values"]["prometheus"]["prometheusSpec"]
        assert spec[f"{chart_kind}NamespaceSelector"] == {}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_charts_grafana_loads_the_dashboard(cloud: str) -> None:
    plan = run(cloud)
    region = REGIONS[cloud][0]
    sidecar = args(release_in(plan, region))["values"]["grafana"]["sidecar"]["dashboards"]
    dashboard = args(k8s(plan, "kubernetes:core/v1:ConfigMap", "im-server-dashboard", region))
    assert sidecar["enabled"] is True
    assert dashboard["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
    assert sidecar["searchNamespace"] == "ALL"
    model = json.loads(dashboard["data"]["im-server.json"])
    assert model["panels"], "an empty dashboard"


def test_monitoring_false_installs_no_operator_and_no_custom_resources() -> None:
    for cloud in CLOUDS:
        plan = single_region_run(cloud)
        assert not _operator_releases(plan)
        assert not monitoring_objects(plan)
        assert not [
            r
            for r in plan.find("kubernetes:core/v1:Namespace")
            if args(r)["metadata"]["name"] == "monitoring"
        ]


def test_the_vendored_crds_are_those_of_the_pinned_chart() -> None:
    readme = (CRDS / "README.md").read_text()
    assert f"chart {prometheus_stack.CHART_VERSION}" in readme
    for kind in ("PodMonitor", "PrometheusRule"):
        crd = json.loads((CRDS / "monitoring.coreos.com" / f"{kind}.json").read_text())
        assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == "0.93.1"
