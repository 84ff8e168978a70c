"""Requirements the providers document but a mock accepts either way: each would fail a first
real deploy (or the first deploy after an imctl operation), so each is pinned on the recorded
inputs here. The source of each rule is named in the module that follows it."""

from __future__ import annotations

import pytest

from stacks.gcp.apis import APIS
from stacks.plan import PlanRun
from tests.stacks.helpers import REGIONS, args, in_region, k8s, only, provider_of, run


@pytest.fixture(scope="module")
def gcp() -> PlanRun:
    return run("gcp")


def test_the_gcp_health_check_with_probe_regions_runs_at_most_every_30_seconds(
    gcp: PlanRun,
) -> None:
    check = args(only(gcp, "gcp:compute/healthCheck:HealthCheck"))
    assert len(check["sourceRegions"]) == 3
    assert check["checkIntervalSec"] >= 30  # the API's floor once sourceRegions is set
    assert check["timeoutSec"] <= check["checkIntervalSec"]


def test_every_api_the_gcp_program_uses_is_enabled_first_and_left_on(gcp: PlanRun) -> None:
    services = gcp.find("gcp:projects/service:Service")
    enabled = {args(s)["service"]: s for s in services}
    for api in (
        "compute.googleapis.com",
        "container.googleapis.com",
        "sqladmin.googleapis.com",
        "servicenetworking.googleapis.com",
        "dns.googleapis.com",
        "storage.googleapis.com",
        "artifactregistry.googleapis.com",
    ):
        assert api in enabled, api
    assert set(enabled) == set(APIS.values())
    for service in services:
        # Other workloads in the project may use the same API.
        assert args(service)["disableOnDestroy"] is False
    service_urns = {s.urn for s in services}
    others = [
        r
        for r in gcp.registrations
        if r.custom and r.type.startswith("gcp:") and r.urn not in service_urns
    ]
    assert {r.type.split(":")[1].split("/")[0] for r in others} >= {
        "compute",
        "container",
        "sql",
        "servicenetworking",
        "dns",
        "storage",
    }
    for reg in others:
        # Through its provider: a resource is created only after its provider, which waits
        # for the services.
        provider = provider_of(gcp, reg)
        assert service_urns <= set(provider.dependencies), f"{reg.type} {reg.name}"


def test_scaling_gke_nodes_does_not_rebuild_the_node_pool(gcp: PlanRun) -> None:
    """imctl scale --nodes resizes the pool and writes nodeDesired back; initialNodeCount
    changes replace a pool, so the next deploy must not carry the new value to it."""
    for region in REGIONS["gcp"]:
        pool = only(gcp, "gcp:container/nodePool:NodePool", region)
        assert "initialNodeCount" in pool.ignore_changes
        assert args(pool)["autoscaling"]["totalMaxNodeCount"] == gcp.config.node_max


def test_eks_adopts_the_vpc_cni_it_installed_itself() -> None:
    plan = run("aws")
    for region in REGIONS["aws"]:
        [cni] = [
            r
            for r in in_region(plan, "aws:eks/addon:Addon", region)
            if args(r)["addonName"] == "vpc-cni"
        ]
        assert args(cni)["resolveConflictsOnCreate"] == "OVERWRITE"
        assert args(cni)["resolveConflictsOnUpdate"] == "OVERWRITE"


def test_apsaradb_serves_tls_because_the_workload_requires_it() -> None:
    plan = run("alicloud")
    for region in REGIONS["alicloud"]:
        secret = k8s(plan, "kubernetes:core/v1:Secret", "im-server", region)
        # sslmode=require: the client refuses a server that does not offer TLS.
        assert args(secret)["stringData"]["database-url"].endswith("?sslmode=require")
        for db in in_region(plan, "alicloud:rds/instance:Instance", region):
            assert args(db)["sslAction"] == "Open"
            assert args(db)["caType"] == "aliyun"


def test_ack_secrets_are_encrypted_with_the_clusters_key() -> None:
    """The provider turns secrets encryption on only with the key and
    disable_encryption=false both set."""
    plan = run("alicloud")
    keys = {k.id: k for k in plan.find("alicloud:kms/key:Key")}
    for region in REGIONS["alicloud"]:
        cluster = args(only(plan, "alicloud:cs/managedKubernetes:ManagedKubernetes", region))
        assert cluster["disableEncryption"] is False
        key = keys[cluster["encryptionProviderKey"]]
        assert plan.region_of(key.urn) == region
