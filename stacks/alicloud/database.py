"""ApsaraDB RDS for PostgreSQL: a high-availability primary (primary and secondary node in two
zones), cloud-disk encryption with a KMS key of its region, reachable from the VPC only, with
backups, log backups and cross-region backup copies; and, in the standby region, a
disaster-recovery instance of the same class kept in sync by a one-way DTS synchronization.

ApsaraDB has no cross-region read replica for PostgreSQL; DTS is Alibaba Cloud's mechanism for
a warm standby in another region. DTS reads the primary's WAL through logical decoding, hence
``wal_level = logical`` on the primary.

Every instance is a full HA instance, so a failover needs no promotion in the program: the
writer's role moves, a new DTS synchronization feeds a new instance in the demoted region, and
the old writer is dropped from the program but retained (it may hold writes DTS never copied).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_alicloud as alicloud

from stacks.workload_contract import DB_NAME, DB_USER

ENGINE_VERSION = "16.0"
DTS_DELAY_ALARM_SECONDS = "30"
_ALL_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True, slots=True)
class RdsArgs:
    provider: pulumi.ProviderResource
    region: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    zones: Sequence[str]
    vswitch_ids: Sequence[pulumi.Input[str]]
    instance_type: str
    storage_gb: int
    backup_retention_days: int
    password: pulumi.Input[str]
    # Primary only: where cross-region backup copies go.
    cross_backup_region: str | None = None
    protect: bool = True  # False only while imctl destroy tears the stack down
    tags: Mapping[str, str] = field(default_factory=dict)


class RdsInstance(pulumi.ComponentResource):
    """One HA instance with its key, account, database and backup policy (both regions)."""

    instance_id: pulumi.Output[str]
    host: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: RdsArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        logical_replication: bool = False,
    ) -> None:
        super().__init__("imctl:alicloud:Database", name, None, opts)
        # Retained: the old writer a failover leaves behind is dropped from the program, and
        # its data, key and account must outlive that deploy.
        child = pulumi.ResourceOptions(
            parent=self, provider=args.provider, retain_on_delete=args.protect
        )
        self.key = alicloud.kms.Key(
            f"{name}-key",
            description=f"{name}: RDS cloud disk encryption",
            automatic_rotation="Enabled",
            rotation_interval="365d",
            pending_window_in_days=30,
            deletion_protection="Enabled" if args.protect else "Disabled",
            tags=dict(args.tags),
            # Left behind by destroy too: the backups ApsaraDB keeps after the release
            # (released_keep_policy below) are encrypted with it, and a key pending deletion
            # makes them unrestorable. Schedule its deletion by hand once they are gone.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        self.instance = alicloud.rds.Instance(
            f"{name}-postgres",
            engine="PostgreSQL",
            engine_version=ENGINE_VERSION,
            instance_type=args.instance_type,
            instance_storage=args.storage_gb,
            db_instance_storage_type="cloud_essd",
            category="HighAvailability",
            instance_charge_type="Postpaid",
            zone_id=args.zones[0],
            zone_id_slave_a=args.zones[1],
            # One vSwitch per node's zone, comma-separated as the API wants.
            vswitch_id=pulumi.Output.all(*args.vswitch_ids[:2]).apply(
                lambda ids: ",".join(str(i) for i in ids)
            ),
            vpc_id=args.vpc_id,
            security_ips=[args.vpc_cidr],
            security_ip_mode="safety",
            encryption_key=self.key.id,
            # The workload connects with sslmode=require, which a server without SSL refuses.
            # "aliyun": a cloud-issued certificate for the instance's internal endpoint (the
            # provider passes that endpoint when none is named).
            ssl_action="Open",
            ca_type="aliyun",
            deletion_protection=args.protect,
            storage_auto_scale="Enable",
            storage_threshold=20,
            storage_upper_bound=args.storage_gb * 4,
            parameters=(
                [alicloud.rds.InstanceParameterArgs(name="wal_level", value="logical")]
                if logical_replication
                else None
            ),
            tags=dict(args.tags),
            opts=child,
        )
        self.account = alicloud.rds.RdsAccount(
            f"{name}-account",
            db_instance_id=self.instance.id,
            account_name=DB_USER,
            account_password=args.password,
            account_type="Super",
            opts=child,
        )
        self.database = alicloud.rds.Database(
            f"{name}-database", instance_id=self.instance.id, data_base_name=DB_NAME, opts=child
        )
        self.backup_policy = alicloud.rds.BackupPolicy(
            f"{name}-backups",
            instance_id=self.instance.id,
            backup_retention_period=args.backup_retention_days,
            preferred_backup_periods=_ALL_DAYS,
            preferred_backup_time="02:00Z-03:00Z",
            enable_backup_log=True,
            log_backup_retention_period=args.backup_retention_days,
            # ApsaraDB releases an instance's backups with it unless told otherwise: keep every
            # backup set (imctl's snapshots included) after release, as AWS keeps its snapshots,
            # so `imctl destroy` does not take the data with it.
            released_keep_policy="All",
            # Never deleted by the program: the provider's delete resets the policy to its
            # defaults (7 days) just before the instance is released, and the policy goes with
            # the instance anyway.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        if args.cross_backup_region is not None:
            alicloud.rds.RdsInstanceCrossBackupPolicy(
                f"{name}-cross-region-backups",
                instance_id=self.instance.id,
                cross_backup_region=args.cross_backup_region,
                log_backup_enabled="Enable",
                retention=args.backup_retention_days,
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(depends_on=[self.backup_policy])
                ),
            )
        self.instance_id = self.instance.id
        self.host = self.instance.connection_string
        self.register_outputs({"instance_id": self.instance_id, "host": self.host})


@dataclass(frozen=True, slots=True)
class DtsSyncArgs:
    source: RdsInstance
    source_region: str
    destination: RdsInstance
    destination_region: str
    provider: pulumi.ProviderResource  # the destination region's: DTS runs there
    password: pulumi.Input[str]


class DtsSync(pulumi.ComponentResource):
    """The one-way DTS synchronization that keeps the standby's instance in step."""

    def __init__(
        self, name: str, args: DtsSyncArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:alicloud:DtsSync", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.dts = alicloud.dts.SynchronizationInstance(
            f"{name}-dts",
            payment_type="PayAsYouGo",
            source_endpoint_engine_name="PostgreSQL",
            source_endpoint_region=args.source_region,
            destination_endpoint_engine_name="PostgreSQL",
            destination_endpoint_region=args.destination_region,
            instance_class="small",
            sync_architecture="oneway",
            opts=child,
        )
        self.job = alicloud.dts.SynchronizationJob(
            f"{name}-dts-job",
            dts_instance_id=self.dts.id,
            dts_job_name=f"{name}-sync",
            source_endpoint_instance_type="RDS",
            source_endpoint_instance_id=args.source.instance_id,
            source_endpoint_engine_name="PostgreSQL",
            source_endpoint_region=args.source_region,
            source_endpoint_database_name=DB_NAME,
            source_endpoint_user_name=DB_USER,
            source_endpoint_password=args.password,
            destination_endpoint_instance_type="RDS",
            destination_endpoint_instance_id=args.destination.instance_id,
            destination_endpoint_engine_name="PostgreSQL",
            destination_endpoint_region=args.destination_region,
            destination_endpoint_database_name=DB_NAME,
            destination_endpoint_user_name=DB_USER,
            destination_endpoint_password=args.password,
            db_list=json.dumps({DB_NAME: {"name": DB_NAME, "all": True}}),
            structure_initialization=True,
            data_initialization=True,
            data_synchronization=True,
            delay_notice=True,
            delay_rule_time=DTS_DELAY_ALARM_SECONDS,
            status="Synchronizing",
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    depends_on=[
                        args.source.account,
                        args.source.database,
                        args.destination.database,
                    ]
                ),
            ),
        )
        self.register_outputs({"job_id": self.job.id})
