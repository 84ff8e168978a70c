"""The AWS hooks of the restore sequence (cloud/restore.py): RDS restores a snapshot
(RestoreDBInstanceFromDBSnapshot) or the primary as of a point in time
(RestoreDBInstanceToPointInTime) into a new instance with the source's settings; ``in-place``
then swaps the names, so the restored instance takes over the original's name and address.

The recoverable window: DescribeDBInstances' LatestRestorableTime and BackupRetentionPeriod, and
the earliest time from DescribeDBInstanceAutomatedBackups' RestoreWindow where RDS gives one."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.deadline import Deadline
from cli.errors import ImctlError, PreconditionFailed, ResourceFailure
from cli.progress import Note
from cli.snapshots import RestoreTarget
from cli.targets.cloud.aws.api import (
    AwsApi,
    aws_call,
    aws_pages,
    rds_id,
    tag_value,
    tags_of,
    utc_stamp,
)
from cli.targets.cloud.aws.snapshots import AwsSnapshots, digest_from_tags
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import RegionOutputs
from cli.targets.cloud.recovery import RecoveryWindow, utc_text
from cli.targets.cloud.restore import Backup, Restored, RestoreRun, replica_note, with_host

RESTORED_FROM_TAG = "imctl:restored-from"


class AwsRestore:
    def __init__(self, api: AwsApi, scope: Scope, snapshots: AwsSnapshots) -> None:
        self.api = api
        self.outputs = scope.outputs
        self.snapshots = snapshots

    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        r = self.outputs.primary
        region, snap = self.snapshots.find_snapshot(snapshot_id)
        sid = snap["DBSnapshotIdentifier"]
        if snap.get("Status") != "available":
            raise PreconditionFailed(f"snapshot {sid} is {snap.get('Status')}, not available")
        if region != r.name:
            raise PreconditionFailed(
                f"snapshot {sid} is in {region}, the primary is in {r.name}",
                f"copy it first: aws rds copy-db-snapshot --source-region {region} "
                f"--region {r.name} ...",
            )
        return Backup(sid, digest_from_tags(tags_of(snap)))

    def restore_into(self, run: RestoreRun) -> Restored:
        sid = run.backup.id

        def create(region: str, new_id: str, source: dict[str, Any], progress: Note) -> None:
            params = {**_copied(source, sid), "DBInstanceIdentifier": new_id,
                      "DBSnapshotIdentifier": sid}  # fmt: skip
            progress(f"restoring {sid} into new DB instance {new_id} ({region})")
            rds = self.api.client("rds", region)
            aws_call(
                f"restoring {sid} into {new_id}", rds.restore_db_instance_from_db_snapshot, **params
            )

        return self._into_new(run, create, "restore-db-instance-from-db-snapshot")

    def refuse_time_target(self, target: RestoreTarget) -> None:
        """Both: RDS restores to a time into a new instance; in place swaps the names after."""

    def recovery_window(self) -> RecoveryWindow:
        r = self.outputs.primary
        inst = self.api.describe_db(r.name, r.db_instance_id)
        if inst is None:
            raise PreconditionFailed(f"DB instance {r.db_instance_id} is gone ({r.name})")
        retention = int(inst.get("BackupRetentionPeriod") or 0)
        rds = self.api.client("rds", r.name)
        found = aws_call(
            f"reading the automated backups of {r.db_instance_id}",
            rds.describe_db_instance_automated_backups,
            absent=("DBInstanceAutomatedBackupNotFound", "DBInstanceAutomatedBackupNotFoundFault"),
            DBInstanceIdentifier=r.db_instance_id,
        )
        earliest = [
            b["RestoreWindow"]["EarliestTime"]
            for b in (found or {}).get("DBInstanceAutomatedBackups", [])
            if b.get("Status") == "active" and (b.get("RestoreWindow") or {}).get("EarliestTime")
        ]
        if earliest:
            first: datetime | None = max(earliest).astimezone(UTC)
        elif retention > 0 and inst.get("InstanceCreateTime"):
            # Where the API gives no RestoreWindow: as far back as the retention reaches, but
            # not before the instance existed.
            created = inst["InstanceCreateTime"].astimezone(UTC)
            first = max(created, datetime.now(UTC) - timedelta(days=retention))
        else:
            first = None
        latest = inst.get("LatestRestorableTime")
        automated = aws_pages(
            f"listing the automated snapshots of {r.db_instance_id}",
            rds,
            "describe_db_snapshots",
            "DBSnapshots",
            DBInstanceIdentifier=r.db_instance_id,
            SnapshotType="automated",
        )
        taken = [s["SnapshotCreateTime"] for s in automated if s.get("SnapshotCreateTime")]
        return RecoveryWindow(
            first=first,
            last=latest.astimezone(UTC) if latest else None,
            enabled=retention > 0,
            retention_days=retention,
            where=f"RDS automated backups of {r.db_instance_id} ({r.name}), kept {retention} days",
            last_base_backup=max(taken).astimezone(UTC) if taken else None,
            inspect=f"aws rds describe-db-instance-automated-backups --db-instance-identifier"
            f" {r.db_instance_id} --region {r.name}",
        )

    def restore_to_time_into(self, run: RestoreRun, when: datetime | None) -> Restored:
        r = self.outputs.primary
        # RDS's own "latest" form: the time is the one RDS has when it starts, not one read
        # before the question.
        at: dict[str, Any] = (
            {"RestoreTime": when} if when is not None else {"UseLatestRestorableTime": True}
        )
        label = utc_text(when) if when is not None else "latest"

        def create(region: str, new_id: str, source: dict[str, Any], progress: Note) -> None:
            params = {
                **_copied(source, f"{r.db_instance_id} at {label}"),
                "SourceDBInstanceIdentifier": r.db_instance_id,
                "TargetDBInstanceIdentifier": new_id,
                **at,
            }
            progress(f"restoring {r.db_instance_id} as of {label} into new DB instance {new_id}"
                     f" ({region})")  # fmt: skip
            rds = self.api.client("rds", region)
            aws_call(
                f"restoring {r.db_instance_id} as of {label} into {new_id}",
                rds.restore_db_instance_to_point_in_time,
                **params,
            )

        return self._into_new(run, create, "restore-db-instance-to-point-in-time")

    def _into_new(
        self,
        run: RestoreRun,
        create: Callable[[str, str, dict[str, Any], Note], None],
        by_hand: str,
    ) -> Restored:
        deadline, progress = run.deadline, run.progress
        r = self.outputs.primary
        source = self.api.describe_db(r.name, r.db_instance_id)
        if source is None:
            raise PreconditionFailed(
                f"DB instance {r.db_instance_id} is gone: its subnet group, security groups and "
                "parameter group are what the restore copies",
                f"restore by hand (aws rds {by_hand}), then point the outputs at it",
            )
        stamp = utc_stamp()
        new_id = rds_id(r.db_instance_id, f"-r{stamp}")
        create(r.name, new_id, source, progress)
        cleanup = (
            f"delete it with `aws rds delete-db-instance --db-instance-identifier {new_id}"
            f" --region {r.name} --skip-final-snapshot` (after turning off deletion protection,"
            " if it is on)"
        )
        run.created(new_id, cleanup, r.db_instance_id)
        inst = self.api.wait_db(r.name, new_id, deadline, progress)
        restored = Restored(
            instance=new_id,
            host="",
            url=None,
            previous=r.db_instance_id,
            # The way back if the restored content fails its check: the database used until now.
            previous_url=run.current_url,
            cleanup=cleanup,
        )
        if run.target == "in-place":
            old_renamed = rds_id(r.db_instance_id, f"-old-{stamp}")
            inst = self._swap_names(r, new_id, old_renamed, deadline, progress)
            # The original name (and address) now belongs to the restored instance.
            old = (self.api.describe_db(r.name, old_renamed) or {}).get("Endpoint") or {}
            restored.instance, restored.previous = r.db_instance_id, old_renamed
            restored.previous_url = (
                with_host(run.current_url, old["Address"], old.get("Port"))
                if old.get("Address")
                else None
            )
            restored.cleanup = (
                f"it carries the name {r.db_instance_id} now: rename it away and {old_renamed}"
                " back to make the outputs right again"
            )
            # In place the restored instance has the old address, so the address cannot tell a
            # pod on it from a pod still on the old one: only pods started after the roll can.
            restored.fresh_after_roll = True
            run.created(r.db_instance_id, restored.cleanup, old_renamed)
        restored.host = inst["Endpoint"]["Address"]
        restored.url = with_host(run.current_url, restored.host, inst["Endpoint"].get("Port"))
        if self.outputs.standby_region:
            restored.standby_note = replica_note(restored.previous)
        restored.recheck = functools.partial(self._still_available, r.name, restored.instance)
        return restored

    def _still_available(self, region: str, instance_id: str) -> None:
        after = self.api.describe_db(region, instance_id)
        if after is None or after.get("DBInstanceStatus") != "available":
            raise ResourceFailure(
                f"restored instance {instance_id} is "
                f"{after.get('DBInstanceStatus') if after else 'gone'} after the roll"
            )

    def _swap_names(
        self,
        r: RegionOutputs,
        new_id: str,
        old_renamed: str,
        deadline: Deadline,
        progress: Note,
    ) -> dict[str, Any]:
        """Give the restored instance the original name (and so the original endpoint)."""
        self.api.rename_db(r.name, r.db_instance_id, old_renamed, deadline, progress)
        try:
            return self.api.rename_db(r.name, new_id, r.db_instance_id, deadline, progress)
        except ImctlError as exc:
            # No instance answers to the original name now: try to put the old one back.
            rds = self.api.client("rds", r.name)
            back = aws_call(
                f"renaming {old_renamed} back to {r.db_instance_id}",
                rds.modify_db_instance,
                absent=("DBInstanceNotFound",),
                DBInstanceIdentifier=old_renamed,
                NewDBInstanceIdentifier=r.db_instance_id,
                ApplyImmediately=True,
            )
            undo = (
                f"asked AWS to rename {old_renamed} back to {r.db_instance_id}"
                if back
                else f"could not rename {old_renamed} back"
            )
            raise type(exc)(
                f"{exc.message}; the original instance had been renamed to {old_renamed}: {undo}",
                f"the restored data is in {new_id}; nothing was repointed",
            ) from exc


def _copied(source: dict[str, Any], restored_from: str) -> dict[str, Any]:
    """The settings a restored instance takes from its source (both RDS restore calls take
    them), tagged with what it was restored from."""
    # A dict: the source may carry the tag from an earlier restore, and RDS refuses a request
    # that names one key twice.
    tag_map = {k: v for k, v in tags_of(source).items() if not k.startswith("aws:")}
    tag_map[RESTORED_FROM_TAG] = tag_value(restored_from)
    params: dict[str, Any] = {
        "DBInstanceClass": source["DBInstanceClass"],
        "MultiAZ": bool(source.get("MultiAZ", False)),
        "PubliclyAccessible": bool(source.get("PubliclyAccessible", False)),
        "CopyTagsToSnapshot": bool(source.get("CopyTagsToSnapshot", False)),
        "DeletionProtection": bool(source.get("DeletionProtection", False)),
        "Tags": [{"Key": k, "Value": v} for k, v in tag_map.items()],
    }
    if group := source.get("DBSubnetGroup", {}).get("DBSubnetGroupName"):
        params["DBSubnetGroupName"] = group
    security_groups = [
        g["VpcSecurityGroupId"]
        for g in source.get("VpcSecurityGroups", [])
        if g.get("Status", "active") == "active"
    ]
    if security_groups:
        params["VpcSecurityGroupIds"] = security_groups
    parameter_groups = [p["DBParameterGroupName"] for p in source.get("DBParameterGroups", [])]
    if parameter_groups:
        params["DBParameterGroupName"] = parameter_groups[0]
    if storage := source.get("StorageType"):
        params["StorageType"] = storage
    if exports := source.get("EnabledCloudwatchLogsExports"):
        params["EnableCloudwatchLogsExports"] = list(exports)
    if "AutoMinorVersionUpgrade" in source:
        params["AutoMinorVersionUpgrade"] = bool(source["AutoMinorVersionUpgrade"])
    return params
