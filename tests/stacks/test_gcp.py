"""GCP: what the program asks for, asserted on the recorded inputs (and resolved outputs)."""

from __future__ import annotations

import math

import pytest

from stacks.plan import PlanRun, is_secret
from tests.stacks.helpers import args, only, provider_of, run

PRIMARY, STANDBY = "us-central1", "us-east1"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"


@pytest.fixture(scope="module")
def plan() -> PlanRun:
    return run("gcp")


def test_one_vpc_with_a_subnet_and_nat_per_region(plan: PlanRun) -> None:
    network = args(only(plan, "gcp:compute/network:Network"))
    assert network["autoCreateSubnetworks"] is False
    for region in (PRIMARY, STANDBY):
        subnet = args(only(plan, "gcp:compute/subnetwork:Subnetwork", region))
        assert subnet["region"] == region
        assert subnet["privateIpGoogleAccess"] is True
        assert {r["rangeName"] for r in subnet["secondaryIpRanges"]} == {"pods", "services"}
        only(plan, "gcp:compute/routerNat:RouterNat", region)
    psa = args(only(plan, "gcp:servicenetworking/connection:Connection"))
    assert psa["service"] == "servicenetworking.googleapis.com"


def test_regional_gke_in_both_regions_with_pool_bounds_from_config(plan: PlanRun) -> None:
    cfg = plan.config
    for region in (PRIMARY, STANDBY):
        cluster = args(only(plan, "gcp:container/cluster:Cluster", region))
        assert cluster["location"] == region  # a region, not a zone: regional cluster
        assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
        assert cluster["datapathProvider"] == "ADVANCED_DATAPATH"  # enforces NetworkPolicy
        assert cluster["removeDefaultNodePool"] is True
        assert cluster["deletionProtection"] is True
        pool = args(only(plan, "gcp:container/nodePool:NodePool", region))
        assert pool["autoscaling"]["totalMinNodeCount"] == cfg.node_min
        assert pool["autoscaling"]["totalMaxNodeCount"] == cfg.node_max
        assert pool["initialNodeCount"] == math.ceil(cfg.node_desired / 3)
        assert pool["management"] == {"autoRepair": True, "autoUpgrade": True}


def test_cloud_sql_primary_is_regional_backed_up_with_pitr_and_private(plan: PlanRun) -> None:
    reg = only(plan, SQL, PRIMARY)
    db = args(reg)
    assert db["databaseVersion"].startswith("POSTGRES_")
    assert db["deletionProtection"] is True
    settings = db["settings"]
    assert settings["availabilityType"] == "REGIONAL"
    assert settings["deletionProtectionEnabled"] is True
    backups = settings["backupConfiguration"]
    assert backups["enabled"] is True
    # Point-in-time restore (imctl restore --to-time) clones from these transaction logs.
    assert backups["pointInTimeRecoveryEnabled"] is True
    assert backups["transactionLogRetentionDays"] == 7
    assert backups["backupRetentionSettings"]["retainedBackups"] == (
        plan.config.db_backup_retention_days
    )
    # Backups outlive a destroy (Cloud SQL deletes them with the instance unless told), and a
    # final one is taken then.
    assert settings["retainBackupsOnDelete"] is True
    assert settings["finalBackupConfig"] == {"enabled": True, "retentionDays": 30}
    ip = settings["ipConfiguration"]
    assert ip["ipv4Enabled"] is False
    assert ip["privateNetwork"] == only(plan, "gcp:compute/network:Network").id
    assert ip["sslMode"] == "ENCRYPTED_ONLY"
    user = only(plan, "gcp:sql/user:User")
    assert args(user)["instance"] == reg.state["name"]
    assert is_secret(user.inputs["password"])


def test_cross_region_replica_follows_the_primary_through_the_standby_provider(
    plan: PlanRun,
) -> None:
    primary = only(plan, SQL, PRIMARY)
    replica_reg = only(plan, SQL, STANDBY)
    replica = args(replica_reg)
    assert replica["masterInstanceName"] == primary.state["name"]
    assert replica["region"] == STANDBY
    provider = provider_of(plan, replica_reg)
    assert provider.name == f"gcp-{STANDBY}" and args(provider)["region"] == STANDBY
    assert replica["settings"]["ipConfiguration"]["ipv4Enabled"] is False
    assert replica["deletionProtection"] is True
    assert plan.outputs["regions"][STANDBY]["db_instance_id"] == replica_reg.state["name"]


def test_backup_bucket_is_versioned_uniform_and_never_public(plan: PlanRun) -> None:
    bucket = only(plan, "gcp:storage/bucket:Bucket")
    b = args(bucket)
    assert b["versioning"] == {"enabled": True}
    assert b["uniformBucketLevelAccess"] is True
    assert b["publicAccessPrevention"] == "enforced"
    assert b["forceDestroy"] is False
    assert any(r["action"]["type"] == "Delete" for r in b["lifecycleRules"])
    assert plan.outputs["backup_bucket"] == bucket.state["name"]


def test_cloud_dns_fails_over_from_primary_to_standby(plan: PlanRun) -> None:
    endpoints = {r: plan.outputs["regions"][r]["endpoint"] for r in (PRIMARY, STANDBY)}
    zone = only(plan, "gcp:dns/managedZone:ManagedZone")
    assert args(zone)["dnsName"] == f"{plan.config.domain}."
    assert plan.outputs["hosted_zone_id"] == zone.state["name"]
    record = args(only(plan, "gcp:dns/recordSet:RecordSet"))
    assert record["name"] == f"{plan.config.dns_name}."
    policy = record["routingPolicy"]
    check = only(plan, "gcp:compute/healthCheck:HealthCheck")
    assert policy["healthCheck"] == check.id
    assert args(check)["httpsHealthCheck"]["requestPath"] == "/readyz"
    assert len(args(check)["sourceRegions"]) == 3
    primary_backup = policy["primaryBackup"]
    assert primary_backup["primary"]["externalEndpoints"] == [endpoints[PRIMARY]]
    [backup] = primary_backup["backupGeos"]
    assert backup["location"] == STANDBY
    assert backup["healthCheckedTargets"]["externalEndpoints"] == [endpoints[STANDBY]]
