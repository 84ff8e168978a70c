"""RDS PostgreSQL: a Multi-AZ writer and a cross-region read replica.

Both are encrypted with a customer-managed KMS key of their own region (a KMS key never leaves
its region, so the replica cannot reuse the writer's), private to their VPC, protected from
deletion, and force TLS through their parameter group.

The per-region plumbing (key, subnet group, security group, parameter group) is one component
per site, apart from the instance: after a failover the old writer is left standing (its
instance is retained, never deleted by a deploy: it may hold the only copy of writes the replica
had not received), and it keeps using its site's key and groups, which a new replica beside it
uses too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from stacks.workload_contract import DB_NAME, DB_USER, REPLICA_LAG_ALARM_SECONDS

ENGINE_VERSION = "16"
PARAMETER_FAMILY = "postgres16"


# A promoted replica carries these from its source; declaring them on an instance that exists
# would replace it (dbName, username), or fight what the source set (engine version, storage
# grown by autoscaling), so the writer that was a replica ignores them. The password and the
# final snapshot name are not among them: both are plain updates, and both must apply.
CREATE_ONLY_FIELDS = (
    "engine",
    "engineVersion",
    "allocatedStorage",
    "dbName",
    "username",
    "replicateSourceDb",
)


@dataclass(frozen=True, slots=True)
class DatabaseNetworkArgs:
    provider: pulumi.ProviderResource
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: Sequence[pulumi.Input[str]]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DatabaseArgs:
    """One site's instance. ``source_arn`` set: a read replica of that instance. ``promoted``:
    the writer that a failover made out of a replica (declared as a writer, creation-only
    fields ignored, so the next deploy matches it instead of replacing it)."""

    plumbing: DatabasePlumbing
    network: DatabaseNetworkArgs
    instance_class: str
    storage_gb: int
    backup_retention_days: int
    password: pulumi.Input[str]
    final_snapshot_id: str  # the writer's; see stacks.naming.final_snapshot_id
    source_arn: pulumi.Input[str] | None = None
    promoted: bool = False
    protect: bool = True  # False only while imctl destroy tears the stack down


class DatabasePlumbing(pulumi.ComponentResource):
    """KMS key, subnet group, security group and parameter group: one set per site, shared by
    every instance that site has held."""

    def __init__(
        self, name: str, net: DatabaseNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:DatabasePlumbing", name, None, opts)
        # One per site for the stack's life: an instance a failover leaves behind keeps using
        # it, and no failover drops it, so it needs no retention.
        child = pulumi.ResourceOptions(parent=self, provider=net.provider)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: RDS storage encryption",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=dict(net.tags),
            # Left behind by destroy too: the writer's final snapshot is encrypted with it, and
            # a deleted key would make the one copy destroy keeps unrestorable. Schedule its
            # deletion by hand once the snapshot is gone.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
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
        self.register_outputs({"key_arn": self.key.arn})


class Database(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    arn: pulumi.Output[str]
    address: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:aws:Database", name, None, opts)
        net, plumbing = args.network, args.plumbing
        # Retained: a deploy after a failover drops the old writer from the program, and its
        # data (maybe writes the replica never got) must outlive that; delete it by hand.
        child = pulumi.ResourceOptions(
            parent=self, provider=net.provider, retain_on_delete=args.protect
        )
        replica = args.source_arn is not None
        writer = not replica  # engine, user, password and database: a replica's come from its
        # source; a cross-region source is named by ARN, through this region's provider.
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            replicate_source_db=args.source_arn,
            engine="postgres" if writer else None,
            engine_version=ENGINE_VERSION if writer else None,
            allocated_storage=args.storage_gb if writer else None,
            max_allocated_storage=args.storage_gb * 4 if writer else None,
            db_name=DB_NAME if writer else None,
            username=DB_USER if writer else None,
            password=args.password if writer else None,
            instance_class=args.instance_class,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=plumbing.key.arn,
            # Multi-AZ on the replica too, so a promoted replica is as available as a writer.
            multi_az=True,
            publicly_accessible=False,
            deletion_protection=args.protect,
            backup_retention_period=args.backup_retention_days,
            backup_window="02:00-03:00" if writer else None,
            maintenance_window="sun:04:00-sun:05:00",
            copy_tags_to_snapshot=True,
            skip_final_snapshot=replica,
            final_snapshot_identifier=args.final_snapshot_id if writer else None,
            delete_automated_backups=False,
            db_subnet_group_name=plumbing.subnet_group.name,
            vpc_security_group_ids=[plumbing.security_group.id],
            parameter_group_name=plumbing.parameters.name,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=plumbing.key.arn,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            tags=dict(net.tags),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    ignore_changes=list(CREATE_ONLY_FIELDS) if args.promoted else None
                ),
            ),
        )
        if args.source_arn is not None:
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
                opts=pulumi.ResourceOptions(parent=self, provider=net.provider),
            )
        self.instance_id = self.instance.identifier
        self.arn = self.instance.arn
        self.address = self.instance.address
        self.register_outputs({"instance_id": self.instance_id, "address": self.address})
