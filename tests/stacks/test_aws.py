"""AWS: what the program asks for, asserted on the recorded inputs (and resolved outputs)."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.plan import PlanRun, Registration, is_secret
from tests.stacks.helpers import args, in_region, only, provider_of, run

PRIMARY, STANDBY = "us-east-1", "us-west-2"
RDS = "aws:rds/instance:Instance"


@pytest.fixture(scope="module")
def plan() -> PlanRun:
    return run("aws")


def _rds(plan: PlanRun, region: str) -> tuple[Registration, dict[str, Any]]:
    reg = only(plan, RDS, region)
    return reg, args(reg)


def _key_arn(plan: PlanRun, key_arn: str) -> Registration:
    keys = [k for k in plan.find("aws:kms/key:Key") if k.state.get("arn") == key_arn]
    assert len(keys) == 1
    return keys[0]


def test_vpc_spans_three_zones_with_private_subnets(plan: PlanRun) -> None:
    for region in (PRIMARY, STANDBY):
        subnets = [args(s) for s in in_region(plan, "aws:ec2/subnet:Subnet", region)]
        private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s["tags"]]
        assert len({s["availabilityZone"] for s in private}) == 3
        assert not any(s["mapPublicIpOnLaunch"] for s in subnets)
        # One NAT gateway per zone: a zone outage does not cut the others off.
        assert len(in_region(plan, "aws:ec2/natGateway:NatGateway", region)) == 3


def test_nodes_and_database_live_in_the_private_subnets(plan: PlanRun) -> None:
    for region in (PRIMARY, STANDBY):
        private_ids = {
            s.id
            for s in in_region(plan, "aws:ec2/subnet:Subnet", region)
            if "kubernetes.io/role/internal-elb" in args(s)["tags"]
        }
        nodes = args(only(plan, "aws:eks/nodeGroup:NodeGroup", region))
        assert set(nodes["subnetIds"]) == private_ids
        db_subnets = args(only(plan, "aws:rds/subnetGroup:SubnetGroup", region))
        assert set(db_subnets["subnetIds"]) == private_ids


def test_eks_in_both_regions_with_node_group_bounds_from_config(plan: PlanRun) -> None:
    cfg = plan.config
    for region in (PRIMARY, STANDBY):
        cluster = args(only(plan, "aws:eks/cluster:Cluster", region))
        assert cluster["encryptionConfig"]["resources"] == ["secrets"]
        assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
        scaling = args(only(plan, "aws:eks/nodeGroup:NodeGroup", region))["scalingConfig"]
        assert scaling == {
            "minSize": cfg.node_min,
            "maxSize": cfg.node_max,
            "desiredSize": cfg.node_desired,
        }
        [cni] = [
            a
            for r in in_region(plan, "aws:eks/addon:Addon", region)
            if (a := args(r))["addonName"] == "vpc-cni"
        ]
        assert '"enableNetworkPolicy": "true"' in cni["configurationValues"]
    assert plan.outputs["regions"][STANDBY]["cluster_name"].endswith(STANDBY)


def test_primary_database_is_multi_az_encrypted_private_and_protected(plan: PlanRun) -> None:
    reg, db = _rds(plan, PRIMARY)
    assert db["engine"] == "postgres"
    assert db["multiAz"] is True
    assert db["storageEncrypted"] is True
    key = _key_arn(plan, db["kmsKeyId"])
    assert plan.region_of(key.urn) == PRIMARY
    assert db["publiclyAccessible"] is False
    assert db["deletionProtection"] is True
    assert db["backupRetentionPeriod"] == plan.config.db_backup_retention_days >= 7
    assert db["skipFinalSnapshot"] is False
    assert is_secret(reg.inputs["password"])
    params = args(only(plan, "aws:rds/parameterGroup:ParameterGroup", PRIMARY))["parameters"]
    assert {p["name"]: p["value"] for p in params}["rds.force_ssl"] == "1"
    sg = args(only(plan, "aws:ec2/securityGroup:SecurityGroup", PRIMARY))
    assert [rule["cidrBlocks"] for rule in sg["ingress"]] == [["10.10.0.0/16"]]


def test_replica_is_wired_to_the_primary_through_the_standby_provider(plan: PlanRun) -> None:
    primary, _ = _rds(plan, PRIMARY)
    replica_reg, replica = _rds(plan, STANDBY)
    assert replica["replicateSourceDb"] == primary.state["arn"]
    assert primary.state["arn"].startswith(f"arn:aws:rds:{PRIMARY}:")
    provider = provider_of(plan, replica_reg)
    assert provider.name == f"aws-{STANDBY}"
    assert args(provider)["region"] == STANDBY
    # Its own key, in its own region: KMS keys do not cross regions.
    key = _key_arn(plan, replica["kmsKeyId"])
    assert plan.region_of(key.urn) == STANDBY
    assert replica["kmsKeyId"] != args(primary)["kmsKeyId"]
    assert replica["storageEncrypted"] is True
    assert replica["publiclyAccessible"] is False
    assert replica["deletionProtection"] is True
    assert replica["backupRetentionPeriod"] >= 7
    assert "password" not in replica and "engine" not in replica
    alarm = args(only(plan, "aws:cloudwatch/metricAlarm:MetricAlarm", STANDBY))
    assert alarm["metricName"] == "ReplicaLag"
    assert alarm["dimensions"] == {"DBInstanceIdentifier": replica_reg.state["identifier"]}
    assert plan.outputs["regions"][STANDBY]["db_instance_id"] == replica_reg.state["identifier"]


def test_backup_bucket_is_versioned_encrypted_private_and_aged(plan: PlanRun) -> None:
    bucket = only(plan, "aws:s3/bucket:Bucket")
    name = bucket.state["bucket"]
    assert plan.outputs["backup_bucket"] == name
    versioning = args(only(plan, "aws:s3/bucketVersioning:BucketVersioning"))
    assert versioning["bucket"] == name
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = args(
        only(
            plan,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        )
    )
    default = sse["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default["sseAlgorithm"] == "aws:kms" and default["kmsMasterKeyId"]
    block = args(only(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))
    assert all(
        block[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    lifecycle = args(only(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"))
    rule = lifecycle["rules"][0]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] > 0
    policy = args(only(plan, "aws:s3/bucketPolicy:BucketPolicy"))["policy"]
    assert '"aws:SecureTransport": "false"' in policy and name in policy


def test_route53_failover_records_follow_the_health_checks(plan: PlanRun) -> None:
    endpoints = {r: plan.outputs["regions"][r]["endpoint"] for r in (PRIMARY, STANDBY)}
    zone = only(plan, "aws:route53/zone:Zone")
    assert args(zone)["name"] == plan.config.domain
    assert plan.outputs["hosted_zone_id"] == zone.state["zoneId"]
    checks = {args(c)["fqdn"]: c for c in plan.find("aws:route53/healthCheck:HealthCheck")}
    assert set(checks) == set(endpoints.values())
    records = [args(r) for r in plan.find("aws:route53/record:Record")]
    by_role = {r["failoverRoutingPolicies"][0]["type"]: r for r in records}
    assert set(by_role) == {"PRIMARY", "SECONDARY"}
    for role, region in (("PRIMARY", PRIMARY), ("SECONDARY", STANDBY)):
        record = by_role[role]
        assert record["name"] == plan.config.dns_name
        assert record["records"] == [endpoints[region]]
        assert record["setIdentifier"] == region
        assert record["healthCheckId"] == checks[endpoints[region]].id
        check = args(checks[endpoints[region]])
        assert (check["type"], check["resourcePath"], check["port"]) == ("HTTPS", "/readyz", 443)
