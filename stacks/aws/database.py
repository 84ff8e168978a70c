"""RDS PostgreSQL: a Multi-AZ primary and a cross-region read replica.

Both are encrypted with a customer-managed KMS key of their own region (a KMS key never leaves
its region, so the replica cannot reuse the primary's), private to their VPC, protected from
deletion, and force TLS through their parameter group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from stacks.contract import DB_NAME, DB_USER

ENGINE_VERSION = "16"
PARAMETER_FAMILY = "postgres16"
# Alarm when the standby is this many seconds behind: the data an unplanned failover would lose.
REPLICA_LAG_ALARM_SECONDS = 30


@dataclass(frozen=True, slots=True)
class DatabaseNetworkArgs:
    provider: pulumi.ProviderResource
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: Sequence[pulumi.Input[str]]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PrimaryDatabaseArgs:
    network: DatabaseNetworkArgs
    instance_class: str
    storage_gb: int
    backup_retention_days: int
    password: pulumi.Input[str]


@dataclass(frozen=True, slots=True)
class ReadReplicaArgs:
    network: DatabaseNetworkArgs
    source_arn: pulumi.Input[str]
    instance_class: str
    backup_retention_days: int


class _DatabasePlumbing:
    """KMS key, subnet group, security group and parameter group: one set per region."""

    def __init__(self, name: str, net: DatabaseNetworkArgs, parent: pulumi.Resource) -> None:
        child = pulumi.ResourceOptions(parent=parent, provider=net.provider)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: RDS storage encryption",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=dict(net.tags),
            opts=child,
        )
        self.subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=list(net.subnet_ids), tags=dict(net.tags), opts=child
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="PostgreSQL from inside the VPC only",
            vpc_id=net.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=5432, to_port=5432, cidr_blocks=[net.vpc_cidr]
                )
            ],
            tags=dict(net.tags),
            opts=child,
        )
        self.parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=PARAMETER_FAMILY,
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                aws.rds.ParameterGroupParameterArgs(
                    name="log_min_duration_statement", value="1000"
                ),
            ],
            tags=dict(net.tags),
            opts=child,
        )


class PrimaryDatabase(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    arn: pulumi.Output[str]
    address: pulumi.Output[str]

    def __init__(
        self, name: str, args: PrimaryDatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:Database", name, None, opts)
        net = args.network
        plumbing = _DatabasePlumbing(name, net, self)
        self.key = plumbing.key
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=ENGINE_VERSION,
            instance_class=args.instance_class,
            allocated_storage=args.storage_gb,
            max_allocated_storage=args.storage_gb * 4,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=plumbing.key.arn,
            multi_az=True,
            publicly_accessible=False,
            deletion_protection=True,
            backup_retention_period=args.backup_retention_days,
            backup_window="02:00-03:00",
            maintenance_window="sun:04:00-sun:05:00",
            copy_tags_to_snapshot=True,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{name}-final",
            delete_automated_backups=False,
            db_name=DB_NAME,
            username=DB_USER,
            password=args.password,
            db_subnet_group_name=plumbing.subnet_group.name,
            vpc_security_group_ids=[plumbing.security_group.id],
            parameter_group_name=plumbing.parameters.name,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=plumbing.key.arn,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            tags=dict(net.tags),
            opts=pulumi.ResourceOptions(parent=self, provider=net.provider),
        )
        self.instance_id = self.instance.identifier
        self.arn = self.instance.arn
        self.address = self.instance.address
        self.register_outputs({"instance_id": self.instance_id, "address": self.address})


class ReadReplica(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    address: pulumi.Output[str]

    def __init__(
        self, name: str, args: ReadReplicaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:ReadReplica", name, None, opts)
        net = args.network
        plumbing = _DatabasePlumbing(name, net, self)
        child = pulumi.ResourceOptions(parent=self, provider=net.provider)
        self.key = plumbing.key
        # Engine, user, password and database come from the source; a cross-region source must
        # be named by ARN, and the replica is created through the standby region's provider.
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            replicate_source_db=args.source_arn,
            instance_class=args.instance_class,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=plumbing.key.arn,
            # Multi-AZ already, so a promoted replica is as available as the old primary.
            multi_az=True,
            publicly_accessible=False,
            deletion_protection=True,
            backup_retention_period=args.backup_retention_days,
            skip_final_snapshot=True,
            db_subnet_group_name=plumbing.subnet_group.name,
            vpc_security_group_ids=[plumbing.security_group.id],
            parameter_group_name=plumbing.parameters.name,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=plumbing.key.arn,
            tags=dict(net.tags),
            opts=child,
        )
        self.lag_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-replica-lag",
            alarm_description="Standby replica lag: the data an unplanned failover would lose",
            namespace="AWS/RDS",
            metric_name="ReplicaLag",
            dimensions={"DBInstanceIdentifier": self.instance.identifier},
            statistic="Maximum",
            period=60,
            evaluation_periods=5,
            threshold=REPLICA_LAG_ALARM_SECONDS,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="breaching",
            tags=dict(net.tags),
            opts=child,
        )
        self.instance_id = self.instance.identifier
        self.address = self.instance.address
        self.register_outputs({"instance_id": self.instance_id, "address": self.address})
