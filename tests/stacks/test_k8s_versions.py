"""Clusters are created on Kubernetes versions their provider still supports, the version is a
config key, and plan/deploy refuse (doctor fails) past end of life and warn past standard
support. Every date is passed in: nothing here changes meaning when the calendar moves on."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cli.targets.cloud import prereqs
from stacks import k8s_support
from stacks.config import ConfigError, Undeployable, check_deployable, load
from stacks.plan import run_plan
from tests.stacks.helpers import REGIONS, TODAY, args, config, in_region, only, run

CLUSTER = {
    "aws": "aws:eks/cluster:Cluster",
    "gcp": "gcp:container/cluster:Cluster",
    "alicloud": "alicloud:cs/managedKubernetes:ManagedKubernetes",
}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "alicloud"])
def test_the_default_version_is_in_standard_support_today(cloud: str) -> None:
    default = k8s_support.CALENDARS[cloud].default
    assert k8s_support.status(cloud, default, TODAY) == "standard"
    assert default in k8s_support.in_standard_support(cloud, TODAY)


def test_each_cluster_is_created_on_the_configured_version() -> None:
    for region in REGIONS["aws"]:
        assert args(only(run("aws"), CLUSTER["aws"], region))["version"] == "1.35"
    for region in REGIONS["gcp"]:
        gke = args(only(run("gcp"), CLUSTER["gcp"], region))
        assert gke["releaseChannel"] == {"channel": "REGULAR"}
        assert gke["minMasterVersion"] == "1.35"
    for region in REGIONS["alicloud"]:
        ack = args(only(run("alicloud"), CLUSTER["alicloud"], region))
        assert ack["version"] == "1.36.1-aliyun.1"


def test_eks_version_1_31_is_refused_after_its_end_of_extended_support() -> None:
    cfg = config("aws", kubernetesVersion="1.31")
    with pytest.raises(Undeployable) as caught:
        check_deployable(cfg, TODAY)
    message = str(caught.value)
    assert "2026-11-26" in message and "1.35" in message
    assert caught.value.key == "kubernetesVersion"
    # The same version a day before its end of extended support: allowed, with a warning.
    check_deployable(cfg, date(2026, 11, 25))


def test_plan_refuses_a_dead_version_and_warns_about_an_extended_one() -> None:
    with pytest.raises(Undeployable, match="end of life"):
        run_plan("aws", "us-east-1", None, {"kubernetesVersion": "1.31"}, today=TODAY)
    plan = run_plan("aws", "us-east-1", None, {"kubernetesVersion": "1.34"}, today=TODAY)
    [warning] = plan["warnings"]
    assert warning["key"] == "kubernetesVersion"
    assert "2026-12-02" in warning["message"] and "extended support" in warning["message"]
    eks = next(r for r in plan["resources"] if r["type"] == CLUSTER["aws"])
    assert eks["properties"]["version"] == "1.34"
    assert run_plan("gcp", "us-central1", None, {}, today=TODAY)["warnings"] == []


@pytest.mark.parametrize(
    ("cloud", "version", "day", "expected"),
    [
        ("aws", "1.35", date(2027, 3, 26), "standard"),
        ("aws", "1.35", date(2027, 3, 27), "extended"),
        ("aws", "1.35", date(2028, 3, 27), "end_of_life"),
        ("aws", "1.20", TODAY, "end_of_life"),
        ("aws", "1.99", TODAY, "unknown"),
        ("gcp", "1.34", TODAY, "end_of_life"),
        ("alicloud", "1.34", date(2026, 9, 29), "standard"),
        ("alicloud", "1.34", date(2026, 9, 30), "end_of_life"),
    ],
)
def test_status_follows_the_date_passed_in(
    cloud: str, version: str, day: date, expected: str
) -> None:
    assert k8s_support.status(cloud, version, day) == expected


def test_an_unknown_newer_version_is_allowed_with_a_warning() -> None:
    verdict = k8s_support.verdict("aws", "1.99", TODAY)
    assert verdict.level == "warn" and "not in imctl's" in verdict.message


@pytest.mark.parametrize(
    ("cloud", "value", "fragment"),
    [
        ("aws", "1.35.2", "minor version"),
        ("gcp", "latest", "minor version"),
        ("alicloud", "1.33", "ACK patch"),
    ],
)
def test_malformed_versions_are_config_errors(cloud: str, value: str, fragment: str) -> None:
    region = REGIONS[cloud][0]
    with pytest.raises(ConfigError, match=fragment) as caught:
        load(cloud, region, None, {"kubernetesVersion": value})
    assert caught.value.key == "kubernetesVersion"


def test_every_calendar_names_its_source() -> None:
    for cal in k8s_support.CALENDARS.values():
        assert cal.source.startswith("https://")
        assert all(r.end_of_standard <= r.end_of_life for r in cal.rows)


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_reads_the_stacks_version_and_judges_it_by_the_date(tmp_path: Path) -> None:
    work = tmp_path / "pulumi" / "project"
    work.mkdir(parents=True)
    (work / "Pulumi.prod.yaml").write_text(
        'config:\n  imctl:cloud: aws\n  imctl:kubernetesVersion: "1.34"\n'
    )
    version = prereqs.stack_settings(tmp_path, {}, "prod").kubernetes_version
    assert version == "1.34"
    assert prereqs.stack_settings(tmp_path, {}, "other").kubernetes_version == ""

    extended = prereqs.check_kubernetes_version("aws", version, TODAY)
    assert not extended.ok and not extended.required  # a warning: doctor still exits 0
    assert "2026-12-02" in extended.detail and "1.35" in extended.fix

    dead = prereqs.check_kubernetes_version("aws", "1.31", TODAY)
    assert not dead.ok and dead.required  # exit 10
    fine = prereqs.check_kubernetes_version("aws", "", TODAY)
    assert fine.ok and "default" in fine.detail


def test_eks_gets_the_metrics_server_add_on_after_its_nodes() -> None:
    plan = run("aws")
    for region in REGIONS["aws"]:
        addons = [
            r
            for r in in_region(plan, "aws:eks/addon:Addon", region)
            if args(r)["addonName"] == "metrics-server"
        ]
        assert len(addons) == 1, f"no metrics-server in {region}: the HPA would never scale"
        nodes = only(plan, "aws:eks/nodeGroup:NodeGroup", region)
        assert nodes.urn in addons[0].dependencies
