"""Alibaba Cloud: what the program asks for, asserted on the recorded inputs."""

from __future__ import annotations

import json

import pytest

from stacks.plan import PlanRun, is_secret
from tests.stacks.helpers import args, in_region, only, provider_of, run, single_region_run

PRIMARY, STANDBY = "cn-hangzhou", "cn-shanghai"
RDS = "alicloud:rds/instance:Instance"


@pytest.fixture(scope="module")
def plan() -> PlanRun:
    return run("alicloud")


def test_vswitches_span_at_least_two_zones(plan: PlanRun) -> None:
    for region in (PRIMARY, STANDBY):
        switches = [args(s) for s in in_region(plan, "alicloud:vpc/switch:Switch", region)]
        assert len({s["zoneId"] for s in switches}) >= 2


def test_ack_and_node_pool_in_both_regions(plan: PlanRun) -> None:
    cfg = plan.config
    for region in (PRIMARY, STANDBY):
        cluster = args(only(plan, "alicloud:cs/managedKubernetes:ManagedKubernetes", region))
        assert cluster["clusterSpec"].startswith("ack.pro")
        assert cluster["deletionProtection"] is True
        assert cluster["encryptionProviderKey"]
        terway = [a for a in cluster["addons"] if a["name"] == "terway-eniip"]
        assert json.loads(terway[0]["config"]) == {"NetworkPolicy": "true"}
        pool = args(only(plan, "alicloud:cs/nodePool:NodePool", region))
        assert pool["scalingConfig"]["minSize"] == cfg.node_min
        assert pool["scalingConfig"]["maxSize"] == cfg.node_max
        assert pool["systemDiskEncrypted"] is True
        assert len(pool["vswitchIds"]) >= 2


def test_rds_primary_is_ha_encrypted_private_and_backed_up(plan: PlanRun) -> None:
    reg = only(plan, RDS, PRIMARY)
    db = args(reg)
    assert db["engine"] == "PostgreSQL"
    assert db["category"] == "HighAvailability"
    assert db["zoneId"] != db["zoneIdSlaveA"]  # primary and secondary node in two zones
    keys = {k.id: k for k in plan.find("alicloud:kms/key:Key")}
    assert plan.region_of(keys[db["encryptionKey"]].urn) == PRIMARY
    assert db["deletionProtection"] is True
    assert db["securityIps"] == ["10.10.0.0/16"]  # the VPC only
    assert not plan.find("alicloud:rds/connection:Connection")  # no public endpoint
    assert {"name": "wal_level", "value": "logical"} in db["parameters"]
    policies = [args(p) for p in in_region(plan, "alicloud:rds/backupPolicy:BackupPolicy", PRIMARY)]
    assert [p["backupRetentionPeriod"] for p in policies] == [plan.config.db_backup_retention_days]
    # Kept after the instance is released (a destroy): every backup set, snapshots included.
    assert [p["releasedKeepPolicy"] for p in policies] == ["All"]
    # Point-in-time restore (imctl restore --to-time) needs the log backups, kept as long as
    # the data backups.
    assert policies[0]["enableBackupLog"] is True
    assert policies[0]["logBackupRetentionPeriod"] == plan.config.db_backup_retention_days
    cross = args(
        only(plan, "alicloud:rds/rdsInstanceCrossBackupPolicy:RdsInstanceCrossBackupPolicy")
    )
    assert cross["crossBackupRegion"] == STANDBY and cross["instanceId"] == reg.id
    account = only(plan, "alicloud:rds/rdsAccount:RdsAccount", PRIMARY)
    assert is_secret(account.inputs["accountPassword"])


def test_disaster_recovery_instance_is_fed_from_the_primary(plan: PlanRun) -> None:
    primary = only(plan, RDS, PRIMARY)
    standby_reg = only(plan, RDS, STANDBY)
    standby = args(standby_reg)
    provider = provider_of(plan, standby_reg)
    assert provider.name == f"alicloud-{STANDBY}" and args(provider)["region"] == STANDBY
    assert standby["category"] == "HighAvailability"
    assert standby["deletionProtection"] is True
    keys = {k.id: k for k in plan.find("alicloud:kms/key:Key")}
    assert standby["encryptionKey"] != args(primary)["encryptionKey"]
    assert plan.region_of(keys[standby["encryptionKey"]].urn) == STANDBY
    job_reg = only(plan, "alicloud:dts/synchronizationJob:SynchronizationJob")
    job = args(job_reg)
    assert (job["sourceEndpointInstanceId"], job["sourceEndpointRegion"]) == (primary.id, PRIMARY)
    assert (job["destinationEndpointInstanceId"], job["destinationEndpointRegion"]) == (
        standby_reg.id,
        STANDBY,
    )
    assert job["dataSynchronization"] is True and job["structureInitialization"] is True
    assert is_secret(job_reg.inputs["sourceEndpointPassword"])
    assert plan.outputs["regions"][STANDBY]["db_instance_id"] == standby_reg.id


def test_oss_bucket_is_private_versioned_and_encrypted(plan: PlanRun) -> None:
    name = args(only(plan, "alicloud:oss/bucket:Bucket"))["bucket"]
    assert plan.outputs["backup_bucket"] == name
    assert args(only(plan, "alicloud:oss/bucketAcl:BucketAcl")) == {
        "bucket": name,
        "acl": "private",
    }
    block = args(only(plan, "alicloud:oss/bucketPublicAccessBlock:BucketPublicAccessBlock"))
    assert block["blockPublicAccess"] is True
    versioning = args(only(plan, "alicloud:oss/bucketVersioning:BucketVersioning"))
    assert versioning["status"] == "Enabled"
    sse = args(only(plan, "alicloud:oss/bucketServerSideEncryption:BucketServerSideEncryption"))
    assert sse["sseAlgorithm"] == "KMS"


def test_gtm_answers_with_the_primary_and_fails_over_to_the_standby(plan: PlanRun) -> None:
    endpoints = {r: plan.outputs["regions"][r]["endpoint"] for r in (PRIMARY, STANDBY)}
    pools = {
        args(p)["addressPoolName"]: p for p in plan.find("alicloud:dns/addressPool:AddressPool")
    }
    assert {n: args(p)["addresses"][0]["address"] for n, p in pools.items()} == {
        f"im-{r}": endpoints[r] for r in endpoints
    }
    strategy = args(only(plan, "alicloud:dns/accessStrategy:AccessStrategy"))
    assert [p["addrPoolId"] for p in strategy["defaultAddrPools"]] == [pools[f"im-{PRIMARY}"].id]
    assert [p["addrPoolId"] for p in strategy["failoverAddrPools"]] == [pools[f"im-{STANDBY}"].id]
    monitors = [args(m) for m in plan.find("alicloud:dns/monitorConfig:MonitorConfig")]
    assert {m["addrPoolId"] for m in monitors} == {p.id for p in pools.values()}
    assert all(json.loads(m["monitorExtendInfo"])["path"] == "/readyz" for m in monitors)
    record = args(only(plan, "alicloud:dns/alidnsRecord:AlidnsRecord"))
    assert (record["rr"], record["type"]) == (plan.config.hostname, "CNAME")


def test_single_region_has_no_standby_and_a_plain_record() -> None:
    plan = single_region_run("alicloud")
    assert plan.outputs["standby_region"] is None
    assert list(plan.outputs["regions"]) == [PRIMARY]
    assert len(plan.find(RDS)) == 1
    assert not plan.find("alicloud:dts/synchronizationJob:SynchronizationJob")
    assert not plan.find("alicloud:dns/gtmInstance:GtmInstance")
    assert not plan.find("alicloud:rds/rdsInstanceCrossBackupPolicy:RdsInstanceCrossBackupPolicy")
    record = args(only(plan, "alicloud:dns/alidnsRecord:AlidnsRecord"))
    assert (record["type"], record["value"]) == ("A", plan.outputs["regions"][PRIMARY]["endpoint"])
    assert "parameters" not in args(only(plan, RDS))  # no logical decoding without DTS
