"""After `imctl failover` writes `failovers` back, the next deploy must keep the new roles.

What an operator would notice if this were wrong: the deploy after a failover points traffic
back at the old region, replaces the promoted database (losing it), re-addresses a VPC, or
deletes the old writer that may hold the only copy of some writes.
"""

from __future__ import annotations

import functools

import pytest

from stacks.config import ConfigError, load
from stacks.plan import PlanRun, Registration, run_program
from tests.stacks.helpers import REGIONS, TODAY, args, config, run

DB_TYPE = {
    "aws": "aws:rds/instance:Instance",
    "gcp": "gcp:sql/databaseInstance:DatabaseInstance",
    "alicloud": "alicloud:rds/instance:Instance",
}
NETWORK_TYPE = {
    "aws": "aws:ec2/vpc:Vpc",
    "gcp": "gcp:compute/subnetwork:Subnetwork",
    "alicloud": "alicloud:vpc/network:Network",
}
CLOUDS = ("aws", "gcp", "alicloud")


@functools.cache
def after(cloud: str, failovers: int) -> PlanRun:
    if failovers == 0:
        return run(cloud)
    return run_program(config(cloud, failovers=str(failovers)), today=TODAY)


def dbs(plan: PlanRun) -> dict[str, Registration]:
    """Each region's one database instance."""
    found: dict[str, Registration] = {}
    for reg in plan.find(DB_TYPE[plan.config.cloud]):
        region = plan.region_of(reg.urn)
        assert region not in found, f"two database instances in {region}"
        found[region] = reg
    return found


@pytest.mark.parametrize("cloud", CLOUDS)
def test_one_failover_moves_the_writer_and_keeps_the_promoted_instance(cloud: str) -> None:
    site_a, site_b = REGIONS[cloud]
    before, now = dbs(after(cloud, 0)), dbs(after(cloud, 1))
    outputs = after(cloud, 1).outputs
    assert (outputs["primary_region"], outputs["standby_region"]) == (site_b, site_a)
    assert outputs["failovers"] == 1
    assert outputs["regions"][site_b]["role"] == "primary"
    assert outputs["regions"][site_a]["role"] == "standby"
    # The promoted replica is the same resource: the deploy updates it, never replaces it.
    assert now[site_b].urn == before[site_b].urn
    # The old writer is gone from the program (retained, see below); a new replica replaces it.
    assert now[site_a].urn != before[site_a].urn
    assert outputs["regions"][site_a]["db_instance_id"] == now[site_a].id
    assert outputs["regions"][site_b]["db_instance_id"] == now[site_b].id


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_database_instance_is_retained_when_dropped(cloud: str) -> None:
    for failovers in (0, 1):
        for region, reg in dbs(after(cloud, failovers)).items():
            assert reg.retain_on_delete, f"{cloud} {region} after {failovers} would be deleted"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_sites_keep_their_networks_across_failovers(cloud: str) -> None:
    def nets(plan: PlanRun) -> dict[str, object]:
        return {r.urn: args(r) for r in plan.find(NETWORK_TYPE[cloud])}

    assert nets(after(cloud, 0)) == nets(after(cloud, 1)) == nets(after(cloud, 2))


def test_aws_replica_follows_the_new_writer_and_the_promoted_one_ignores_its_source() -> None:
    site_a, site_b = REGIONS["aws"]
    plan = after("aws", 1)
    db = dbs(plan)
    new_replica, promoted = args(db[site_a]), args(db[site_b])
    assert new_replica["replicateSourceDb"] == db[site_b].state["arn"]
    assert "replicateSourceDb" not in promoted
    assert promoted["engine"] == "postgres"
    # Creation-only fields came from the old writer; declaring them must not replace it.
    assert {"replicateSourceDb", "username", "dbName", "engine"} <= set(db[site_b].ignore_changes)
    assert not db[site_a].ignore_changes
    alarms = plan.find("aws:cloudwatch/metricAlarm:MetricAlarm")
    lag = [a for a in alarms if args(a).get("metricName") == "ReplicaLag"]
    assert [plan.region_of(a.urn) for a in lag] == [site_a]
    records = {
        args(r)["failoverRoutingPolicies"][0]["type"]: args(r)
        for r in plan.find("aws:route53/record:Record")
    }
    endpoints = plan.outputs["regions"]
    by_fqdn = {args(c)["fqdn"]: c.id for c in plan.find("aws:route53/healthCheck:HealthCheck")}
    checks = {site: by_fqdn[endpoints[site]["endpoint"]] for site in (site_a, site_b)}
    # What imctl failover left: roles stay with their SetIdentifiers (flipping them takes two
    # UPSERTs, and Route 53 refuses two PRIMARYs), endpoints and health checks moved.
    assert records["PRIMARY"]["setIdentifier"] == site_a
    assert records["PRIMARY"]["records"] == [endpoints[site_b]["endpoint"]]
    assert records["PRIMARY"]["healthCheckId"] == checks[site_b]
    assert records["SECONDARY"]["setIdentifier"] == site_b
    assert records["SECONDARY"]["records"] == [endpoints[site_a]["endpoint"]]
    assert records["SECONDARY"]["healthCheckId"] == checks[site_a]
    before = {r.urn for r in after("aws", 0).find("aws:route53/record:Record")}
    assert {r.urn for r in plan.find("aws:route53/record:Record")} == before


def test_aws_second_failover_promotes_the_replica_made_by_the_first() -> None:
    site_a, site_b = REGIONS["aws"]
    one, two = dbs(after("aws", 1)), dbs(after("aws", 2))
    assert two[site_a].urn == one[site_a].urn  # promoted in place
    assert two[site_b].urn not in {r.urn for r in one.values()}  # a fresh replica
    assert args(two[site_b])["replicateSourceDb"] == two[site_a].state["arn"]
    assert after("aws", 2).outputs["primary_region"] == site_a


def test_gcp_promoted_instance_is_a_writer_without_a_second_user() -> None:
    site_a, site_b = REGIONS["gcp"]
    plan = after("gcp", 1)
    db = dbs(plan)
    promoted, new_replica = args(db[site_b]), args(db[site_a])
    assert "masterInstanceName" not in promoted
    assert promoted["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert promoted["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
    assert "masterInstanceName" in db[site_b].ignore_changes
    assert new_replica["masterInstanceName"] == db[site_b].state["name"]
    # The user and database arrived with replication; creating them again would fail.
    assert plan.find("gcp:sql/user:User") == []
    policy = args(next(iter(plan.find("gcp:dns/recordSet:RecordSet"))))["routingPolicy"]
    assert policy["primaryBackup"]["primary"]["externalEndpoints"] == [
        plan.outputs["regions"][site_b]["endpoint"]
    ]


def test_alicloud_dts_runs_from_the_new_writer_into_a_fresh_instance() -> None:
    site_a, site_b = REGIONS["alicloud"]
    plan = after("alicloud", 1)
    db = dbs(plan)
    [job] = plan.find("alicloud:dts/synchronizationJob:SynchronizationJob")
    job_args = args(job)
    assert (job_args["sourceEndpointInstanceId"], job_args["sourceEndpointRegion"]) == (
        db[site_b].id,
        site_b,
    )
    assert job_args["destinationEndpointInstanceId"] == db[site_a].id
    # Both sites decode WAL from the start, so the new writer is not restarted to change it.
    for reg in db.values():
        assert {"name": "wal_level", "value": "logical"} in args(reg)["parameters"]
    [cross] = plan.find("alicloud:rds/rdsInstanceCrossBackupPolicy:RdsInstanceCrossBackupPolicy")
    assert args(cross)["instanceId"] == db[site_b].id
    assert args(cross)["crossBackupRegion"] == site_a


def test_an_odd_failover_count_needs_a_standby_region() -> None:
    with pytest.raises(ConfigError, match="no standbyRegion"):
        load("aws", "us-east-1", None, {"failovers": "1"})


def test_a_deploy_after_a_restore_to_a_new_instance_is_refused() -> None:
    """The workload was repointed outside Pulumi; a deploy would point it back and lose what
    was written since the restore, so the program stops before touching anything."""
    from stacks.config import check_deployable
    from stacks.plan import PlanError

    restored = config("aws", restoredInstance="imctl-db-r20261126")
    with pytest.raises(ConfigError, match="imctl-db-r20261126") as info:
        check_deployable(restored)
    assert "restoredInstance=" in info.value.hint
    with pytest.raises(PlanError, match="does not manage it"):
        run_program(restored, today=TODAY)
    check_deployable(config("aws", restoredInstance=""))  # cleared: deployable again


@pytest.mark.parametrize("cloud", CLOUDS)
def test_teardown_lifts_protection_so_destroy_can_delete_the_databases(cloud: str) -> None:
    """imctl destroy deploys teardown=true first: pulumi destroy honours retain_on_delete and
    the clouds' deletion protection, and would otherwise leave every database behind."""
    plan = run_program(config(cloud, teardown="true"), today=TODAY)
    for region, reg in dbs(plan).items():
        assert not reg.retain_on_delete, f"{cloud} {region}"
        assert args(reg)["deletionProtection"] in (False, "Disabled"), f"{cloud} {region}"
    if cloud == "aws":
        writer = args(dbs(plan)[REGIONS["aws"][0]])
        assert writer["skipFinalSnapshot"] is False and writer["finalSnapshotIdentifier"]
    for region, reg in dbs(after(cloud, 0)).items():
        assert args(reg)["deletionProtection"] in (True, "Enabled"), f"{cloud} {region}"
