"""The AWS world the tests run against: a real moto server (emulated AWS, not AWS), the
resources a deployed stack has, the outputs that describe them, and stubs for what moto lacks.

Each stub is named for the AWS behaviour it stands in for, and hooks botocore's event system
(``before-call`` answers instead of the server, ``after-call`` edits an answer), so everything
else goes through the moto server unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cli.targets.cloud.outputs import CloudOutputs
from tests.cloud.fake_kube import FakeKube

ACCOUNT = "123456789012"  # moto's default account
EAST, WEST = "us-east-1", "us-west-2"
NAMESPACE, DEPLOYMENT = "imctl", "im-server"
PASSWORD = "s3cret-Pass_word"
PRIMARY_REPLICAS = 3


class SecretFakeKube(FakeKube):
    """FakeKube that also records its Secret reads."""

    def get_secret(self, namespace: str, secret: str) -> dict[str, str]:
        self.calls.append(("get_secret", (namespace, secret)))
        return dict(self.secrets.get((namespace, secret), {}))


@dataclass
class World:
    """One stack's resources. Names carry a per-test ``suffix``: tests share one moto server
    without resetting it (a reset costs more than the test), and never see each other."""

    session: Any
    suffix: str
    outputs: CloudOutputs
    kubes: dict[str, FakeKube]
    health_checks: dict[str, str]
    db_hosts: dict[str, str]
    nodegroups: dict[str, tuple[str, str]] = field(default_factory=dict)
    clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def primary_db(self) -> str:
        return f"im-primary-{self.suffix}"

    @property
    def standby_db(self) -> str:
        return f"im-standby-{self.suffix}"

    @property
    def dns_name(self) -> str:
        return self.outputs.dns_name

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: r.endpoint for name, r in self.outputs.regions.items()}

    def kube(self, region: str) -> FakeKube:
        return self.kubes[region]

    def client(self, service: str, region: str = EAST) -> Any:
        if (service, region) not in self.clients:
            self.clients[service, region] = self.session.client(service, region_name=region)
        return self.clients[service, region]

    def failover_records(self) -> dict[str, dict[str, Any]]:
        zone = self.outputs.hosted_zone_id
        sets = self.client("route53").list_resource_record_sets(HostedZoneId=zone)
        return {r["Failover"]: r for r in sets["ResourceRecordSets"] if r.get("Failover")}

    def put_replica_lag(self, value: float, at: datetime | None = None) -> None:
        """What RDS publishes every minute for a replica; moto takes it from anyone."""
        self.client("cloudwatch", WEST).put_metric_data(
            Namespace="AWS/RDS",
            MetricData=[
                {
                    "MetricName": "ReplicaLag",
                    "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": self.standby_db}],
                    "Value": value,
                    "Unit": "Seconds",
                    "Timestamp": at or datetime.now(UTC),
                }
            ],
        )


def build_network(session: Any) -> dict[str, list[str]]:
    """A VPC with two subnets and an RDS subnet group ``im-<region>`` per region, shared by
    every World of a test module (moto's EC2 is the slow part of a world)."""
    subnets: dict[str, list[str]] = {}
    for region in (EAST, WEST):
        ec2 = session.client("ec2", region_name=region)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets[region] = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{z}"
            )["Subnet"]["SubnetId"]
            for i, z in enumerate("ab")
        ]
        session.client("rds", region_name=region).create_db_subnet_group(
            DBSubnetGroupName=f"im-{region}",
            DBSubnetGroupDescription="im-server database",
            SubnetIds=subnets[region],
        )
    return subnets


def build_world(
    session: Any,
    network: dict[str, list[str]],
    suffix: str,
    kube_type: type[FakeKube] = SecretFakeKube,
) -> World:
    """A deployed two-region stack, as stacks/aws creates it (minus what moto does not model)."""
    zone = f"{suffix}.imctl-test.example"
    regions: dict[str, dict[str, Any]] = {}
    nodegroups: dict[str, tuple[str, str]] = {}
    endpoints = {r: f"{r}-lb-{suffix}.elb.{r}.amazonaws.com" for r in (EAST, WEST)}
    for region in (EAST, WEST):
        subnets = network[region]
        eks = session.client("eks", region_name=region)
        cluster, ng = f"im-{region}-{suffix}", f"im-{region}-nodes"
        eks.create_cluster(
            name=cluster,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": subnets},
        )
        eks.create_nodegroup(
            clusterName=cluster,
            nodegroupName=ng,
            nodeRole=f"arn:aws:iam::{ACCOUNT}:role/eks-nodes",
            subnets=subnets,
            scalingConfig={"minSize": 2, "maxSize": 4, "desiredSize": 3},
        )
        nodegroups[region] = (cluster, ng)
        regions[region] = {
            "role": "primary" if region == EAST else "standby",
            "cluster_name": cluster,
            "nodegroup_name": ng,
            "endpoint": endpoints[region],
            "namespace": NAMESPACE,
            "deployment": DEPLOYMENT,
        }

    east_rds = session.client("rds", region_name=EAST)
    primary = east_rds.create_db_instance(
        DBInstanceIdentifier=f"im-primary-{suffix}",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="im",
        MasterUserPassword=PASSWORD,
        DBName="im",
        AllocatedStorage=20,
        DBSubnetGroupName=f"im-{EAST}",
        CopyTagsToSnapshot=True,
        Tags=[{"Key": "app", "Value": "im"}],
    )["DBInstance"]
    # A cross-region source must be named by its ARN (as stacks/aws/database.py does).
    standby = session.client("rds", region_name=WEST).create_db_instance_read_replica(
        DBInstanceIdentifier=f"im-standby-{suffix}",
        SourceDBInstanceIdentifier=primary["DBInstanceArn"],
        DBInstanceClass="db.t3.micro",
        # No DBSubnetGroupName: moto looks a cross-region replica's group up in the source's
        # region and fails. The restore and failover code never reads the replica's group.
    )["DBInstance"]
    db_hosts = {EAST: primary["Endpoint"]["Address"], WEST: standby["Endpoint"]["Address"]}
    regions[EAST]["db_instance_id"] = primary["DBInstanceIdentifier"]
    regions[WEST]["db_instance_id"] = standby["DBInstanceIdentifier"]

    r53 = session.client("route53", region_name=EAST)
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=zone)["HostedZone"]["Id"]
    health_checks: dict[str, str] = {}
    changes = []
    for region, role in ((EAST, "PRIMARY"), (WEST, "SECONDARY")):
        health_checks[region] = r53.create_health_check(
            CallerReference=f"{zone}-{region}",
            HealthCheckConfig={
                "Type": "HTTP",
                "FullyQualifiedDomainName": endpoints[region],
                "Port": 80,
                "ResourcePath": "/readyz",
                "RequestInterval": 10,
                "FailureThreshold": 3,
            },
        )["HealthCheck"]["Id"]
        changes.append(
            {
                "Action": "CREATE",
                "ResourceRecordSet": {
                    "Name": f"chat.{zone}",
                    "Type": "CNAME",
                    "TTL": 60,
                    "SetIdentifier": region,
                    "Failover": role,
                    "HealthCheckId": health_checks[region],
                    "ResourceRecords": [{"Value": endpoints[region]}],
                },
            }
        )
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})

    outputs = CloudOutputs.from_json(
        {
            "cloud": "aws",
            "primary_region": EAST,
            "standby_region": WEST,
            "regions": regions,
            "hosted_zone_id": zone_id,
            "dns_name": f"chat.{zone}",
            "backup_bucket": "imctl-test-backups",
        }
    )
    kubes: dict[str, FakeKube] = {}
    for region, replicas in ((EAST, PRIMARY_REPLICAS), (WEST, 0)):
        kube = kube_type()
        kube.replicas[(NAMESPACE, DEPLOYMENT)] = replicas
        kube.secrets[(NAMESPACE, "im-server")] = {
            "database-url": f"postgresql://im:{PASSWORD}@{db_hosts[region]}:5432/im?sslmode=require",
            "jwt-secret": "jwt",
        }
        kubes[region] = kube
    return World(session, suffix, outputs, kubes, health_checks, db_hosts, nodegroups)


# --- stand-ins for what moto 5.2.5 lacks ------------------------------------------------------


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


class _Stub:
    """Hooks on a boto3 session. Clients copy the session's hooks when they are made, so
    install before making the clients that should see it."""

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        raise NotImplementedError

    def install(self, session: Any) -> None:
        for event, handler in self.hooks():
            session.events.register(event, handler)

    def uninstall(self, session: Any) -> None:
        for event, handler in self.hooks():
            session.events.unregister(event, handler)


class EksDescribeUpdateStub(_Stub):
    """Stands in for EKS DescribeUpdate (moto answers 404). It answers for the updates moto
    issued, with the status moto gave them (moto applies a scaling change at once:
    ``Successful``); ``status``/``errors`` make it report another outcome."""

    def __init__(self) -> None:
        self.updates: dict[str, dict[str, Any]] = {}
        self.status: str | None = None
        self.errors: list[dict[str, str]] = []
        self.calls = 0

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [
            ("after-call.eks.UpdateNodegroupConfig", self._record),
            ("before-call.eks.DescribeUpdate", self._answer),
        ]

    def _record(self, parsed: dict[str, Any], **_: Any) -> None:
        if "update" in parsed:
            self.updates[parsed["update"]["id"]] = dict(parsed["update"])

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]]:
        self.calls += 1
        update_id = params["url_path"].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if update_id not in self.updates:
            error = {"Code": "ResourceNotFoundException", "Message": f"no update {update_id}"}
            return _Http(404), {"Error": error}
        update = dict(self.updates[update_id])
        if self.status is not None:
            update.update(status=self.status, errors=self.errors)
        return _Http(200), {"update": update}


class RdsPromotionStub(_Stub):
    """Stands in for RDS detaching a promoted replica. moto's PromoteReadReplica clears its
    internal replica flag, but DescribeDBInstances keeps reporting
    ReadReplicaSourceDBInstanceIdentifier (and the source keeps listing the replica), which on
    AWS disappear once the promotion is done. After a promotion this drops both from answers."""

    def __init__(self) -> None:
        self.promoted: set[str] = set()

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [
            ("after-call.rds.PromoteReadReplica", self._record),
            ("after-call.rds.DescribeDBInstances", self._edit),
        ]

    def _record(self, parsed: dict[str, Any], **_: Any) -> None:
        if "DBInstance" in parsed:
            self.promoted.add(parsed["DBInstance"]["DBInstanceIdentifier"])

    def _edit(self, parsed: dict[str, Any], **_: Any) -> None:
        for inst in parsed.get("DBInstances", []):
            if inst["DBInstanceIdentifier"] in self.promoted:
                inst.pop("ReadReplicaSourceDBInstanceIdentifier", None)
            inst["ReadReplicaDBInstanceIdentifiers"] = [
                r
                for r in inst.get("ReadReplicaDBInstanceIdentifiers", [])
                if r.rsplit(":", 1)[-1] not in self.promoted
            ]


class SlowSnapshotStub(_Stub):
    """Stands in for an RDS snapshot that takes longer than the caller's timeout (moto makes
    every snapshot ``available`` at once): DescribeDBSnapshots reports it ``creating``."""

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("after-call.rds.DescribeDBSnapshots", self._edit)]

    def _edit(self, parsed: dict[str, Any], **_: Any) -> None:
        for snap in parsed.get("DBSnapshots", []):
            snap.update(Status="creating", PercentProgress=40)


class Route53RefusesChangesStub(_Stub):
    """Stands in for a Route 53 control plane that refuses changes (it is served from
    us-east-1, the region a forced failover may be running away from)."""

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("before-call.route53.ChangeResourceRecordSets", self._refuse)]

    def _refuse(self, **_: Any) -> tuple[_Http, dict[str, Any]]:
        error = {"Code": "PriorRequestNotComplete", "Message": "the control plane is impaired"}
        return _Http(400), {"Error": error}


class RdsRestoreWindowStub(_Stub):
    """Stands in for the recoverable window RDS reports, which moto does not model: moto's
    DescribeDBInstanceAutomatedBackups has no RestoreWindow, and its LatestRestorableTime is
    always "now". ``earliest`` is put in the RestoreWindow of every automated backup;
    ``latest`` (when set) replaces LatestRestorableTime, as when log uploads stall."""

    def __init__(self, earliest: datetime, latest: datetime | None = None) -> None:
        self.earliest, self.latest = earliest, latest

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [
            ("after-call.rds.DescribeDBInstanceAutomatedBackups", self._window),
            ("after-call.rds.DescribeDBInstances", self._latest),
        ]

    def _window(self, parsed: dict[str, Any], **_: Any) -> None:
        for backup in parsed.get("DBInstanceAutomatedBackups", []):
            backup["RestoreWindow"] = {
                "EarliestTime": self.earliest,
                "LatestTime": self.latest or datetime.now(UTC),
            }

    def _latest(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.latest is not None:
            for inst in parsed.get("DBInstances", []):
                inst["LatestRestorableTime"] = self.latest


class RdsRequests(_Stub):
    """Not a stand-in: records the parameters of every RDS request as botocore is about to
    send them (``provide-client-params``), for what moto accepts but does not act on."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("provide-client-params.rds", self._record)]

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append((str(model.name), dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [p for name, p in self.sent if name == operation]
