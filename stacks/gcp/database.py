"""Cloud SQL for PostgreSQL: a REGIONAL (HA) writer with daily backups and point-in-time
recovery, reachable on a private IP only, and a cross-region read replica.

After a failover the promoted replica is declared as the writer (its master ignored, so it is
matched, not replaced), and the old writer is dropped from the program but retained: it may
hold writes the replica never received.

Storage is encrypted at rest by Cloud SQL with Google-managed keys (always on; a CMEK would need
a per-project service identity granted on the key, which this stack does not manage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from stacks.workload_contract import DB_NAME, DB_USER

DATABASE_VERSION = "POSTGRES_16"
PITR_LOG_DAYS = 7  # the most Enterprise edition keeps
# Cloud SQL deletes an instance's backups with it unless told otherwise. The stack keeps them
# (retain_backups_on_delete: imctl's on-demand snapshots until deleted, automated backups for
# their retention) and takes a final backup at deletion, kept this long (1-365 days; gcloud's
# default), so `imctl destroy` leaves the data restorable, as AWS's final snapshot does.
FINAL_BACKUP_DAYS = 30


@dataclass(frozen=True, slots=True)
class DatabaseArgs:
    """One site's instance. ``master_instance_name`` set: a read replica of that instance.
    ``promoted``: the writer a failover made out of a replica."""

    provider: pulumi.ProviderResource
    region: str
    network_id: pulumi.Input[str]
    private_services: pulumi.Resource
    tier: str
    disk_gb: int
    backup_retention_days: int
    password: pulumi.Input[str]
    master_instance_name: pulumi.Input[str] | None = None
    promoted: bool = False
    protect: bool = True  # False only while imctl destroy tears the stack down
    labels: Mapping[str, str] = field(default_factory=dict)


def _private_ip(
    network_id: pulumi.Input[str],
) -> gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs:
    return gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
        ipv4_enabled=False, private_network=network_id, ssl_mode="ENCRYPTED_ONLY"
    )


class Database(pulumi.ComponentResource):
    instance_name: pulumi.Output[str]
    private_ip: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:Database", name, None, opts)
        replica = args.master_instance_name is not None
        # Retained: the old writer a failover leaves behind is dropped from the program, and
        # its data (and the user and database inside it) must outlive that deploy.
        child = pulumi.ResourceOptions(
            parent=self, provider=args.provider, retain_on_delete=args.protect
        )
        backups = gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
            enabled=True,
            point_in_time_recovery_enabled=True,
            start_time="02:00",
            transaction_log_retention_days=PITR_LOG_DAYS,
            # One automated backup a day: the count is the retention in days.
            backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                retained_backups=args.backup_retention_days, retention_unit="COUNT"
            ),
        )
        self.instance = gcp.sql.DatabaseInstance(
            f"{name}-postgres",
            region=args.region,
            database_version=DATABASE_VERSION,
            # Users, databases and backups follow the master until the replica is promoted.
            master_instance_name=args.master_instance_name,
            instance_type="READ_REPLICA_INSTANCE" if replica else "CLOUD_SQL_INSTANCE",
            deletion_protection=args.protect,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=args.tier,
                edition="ENTERPRISE",
                # HA on the replica too, so a promoted replica is as available as a writer.
                availability_type="REGIONAL",
                disk_type="PD_SSD",
                disk_size=args.disk_gb,
                disk_autoresize=True,
                deletion_protection_enabled=args.protect,
                backup_configuration=None if replica else backups,
                retain_backups_on_delete=None if replica else True,
                final_backup_config=None
                if replica
                else gcp.sql.DatabaseInstanceSettingsFinalBackupConfigArgs(
                    enabled=True, retention_days=FINAL_BACKUP_DAYS
                ),
                ip_configuration=_private_ip(args.network_id),
                database_flags=[
                    gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(
                        name="log_min_duration_statement", value="1000"
                    )
                ],
                insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
                    query_insights_enabled=True
                ),
                user_labels=dict(args.labels),
            ),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    depends_on=[args.private_services],
                    # Promotion clears the master; ignoring it keeps the instance, whichever way
                    # the provider treats the field.
                    ignore_changes=["masterInstanceName", "replicaConfiguration"]
                    if args.promoted
                    else None,
                ),
            ),
        )
        if not replica and not args.promoted:
            # A promoted replica brought the database and user along from its old master.
            gcp.sql.Database(f"{name}-db", instance=self.instance.name, name=DB_NAME, opts=child)
            gcp.sql.User(
                f"{name}-user",
                instance=self.instance.name,
                name=DB_USER,
                password=args.password,
                opts=child,
            )
        self.instance_name = self.instance.name
        self.private_ip = self.instance.private_ip_address
        self.register_outputs({"instance_name": self.instance_name})
