"""The Alibaba Cloud hooks of the restore sequence (cloud/restore.py): ApsaraDB RDS for
PostgreSQL restores a backup, or the instance as of a point in time (RestoreTime), only by
cloning it into a new instance (CloneDBInstance), which gets the source's network, class,
storage and IP whitelist. The window: DescribeBackupPolicy (log backups on, kept how long) and
DescribeLocalAvailableRecoveryTime. RecoveryDBInstance restores named databases (DbNames is
required), not an instance, so it is not used."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from cli.deadline import Deadline, poll
from cli.errors import PreconditionFailed, ResourceFailure
from cli.progress import Note
from cli.snapshots import RestoreTarget
from cli.targets.cloud.alicloud.api import AlicloudApi
from cli.targets.cloud.alicloud.snapshots import AlicloudSnapshots
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.recovery import (
    RecoveryWindow,
    last_automated,
    new_instance_only,
    parse_utc,
)
from cli.targets.cloud.restore import (
    Backup,
    Restored,
    RestoreRun,
    database_url,
    new_password,
)
from stacks.workload_contract import DB_PORT, DB_USER


class AlicloudRestore:
    def __init__(self, api: AlicloudApi, scope: Scope, snapshots: AlicloudSnapshots) -> None:
        self.api = api
        self.scope = scope
        self.outputs = scope.outputs
        self.snapshots = snapshots

    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        if target == "in-place":
            raise PreconditionFailed(
                "ApsaraDB RDS for PostgreSQL restores a backup only into a new instance"
                " (CloneDBInstance); there is no in-place restore",
                "restore into a new instance (the default)",
            )
        backup = self.snapshots.backup(snapshot_id)
        if backup.get("BackupStatus") != "Success":
            raise PreconditionFailed(f"backup {snapshot_id} is {backup.get('BackupStatus')}")
        # No digest was kept with the backup (nowhere to keep it): density only.
        return Backup(snapshot_id, None)

    def restore_into(self, run: RestoreRun) -> Restored:
        backup = run.backup
        return self._clone(
            run,
            {"BackupId": backup.id, "BackupType": "FullBackup"},
            f"from backup {backup.id}",
        )

    def refuse_time_target(self, target: RestoreTarget) -> None:
        new_instance_only(
            target,
            "ApsaraDB RDS for PostgreSQL restores to a point in time only into a new instance"
            " (CloneDBInstance)",
        )

    def recovery_window(self) -> RecoveryWindow:
        r = self.outputs.primary
        source = r.db_instance_id
        policy = self.api.rds(
            r.name,
            "DescribeBackupPolicy",
            {"DBInstanceId": source},
            f"reading the backup policy of {source}",
        )
        logs_on = str(policy.get("EnableBackupLog")) == "1" or policy.get("BackupLog") == "Enable"
        days = int(policy.get("LogBackupRetentionPeriod") or 0)
        first, last = self._recoverable() if logs_on else (None, None)
        where = f"ApsaraDB RDS data and log backups of {source} ({r.name}), logs kept {days} days"
        base = last_automated(self.snapshots.snapshot_list()["snapshots"], "Automated")
        inspect = f"aliyun rds DescribeBackupPolicy --DBInstanceId {source}"
        return RecoveryWindow(first, last, logs_on and days > 0, days, where, base, inspect)

    def restore_to_time_into(self, run: RestoreRun, when: datetime | None) -> Restored:
        r = self.outputs.primary
        if when is None:
            # CloneDBInstance has no "latest" of its own: the end of the window, read just
            # before the clone.
            when = self._recoverable()[1]
            if when is None:
                raise PreconditionFailed(
                    f"ApsaraDB reports no recoverable window for {r.db_instance_id}",
                    "`imctl backup status` shows the window",
                )
        # The API takes whole seconds (yyyy-MM-ddTHH:mm:ssZ).
        at = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._clone(run, {"RestoreTime": at}, f"as of {at}")

    def _recoverable(self) -> tuple[datetime | None, datetime | None]:
        r = self.outputs.primary
        # DescribeAvailableRecoveryTime is for cross-region backup copies (it requires
        # CrossBackupId); the instance's own window is DescribeLocalAvailableRecoveryTime.
        times = self.api.rds(
            r.name,
            "DescribeLocalAvailableRecoveryTime",
            {"DBInstanceId": r.db_instance_id, "Region": r.name},
            f"reading the recoverable window of {r.db_instance_id}",
        )
        return parse_utc(times.get("RecoveryBeginTime")), parse_utc(times.get("RecoveryEndTime"))

    def _clone(self, run: RestoreRun, restore_from: dict[str, Any], what: str) -> Restored:
        deadline, progress = run.deadline, run.progress
        r = self.outputs.primary
        source = r.db_instance_id
        src = self.api.attribute(r.name, source)
        slave_zones = [
            z.get("ZoneId") for z in (src.get("SlaveZones") or {}).get("SlaveZone") or []
        ]
        params: dict[str, Any] = {
            "DBInstanceId": source,
            **restore_from,
            "PayType": "Postpaid",
            "InstanceNetworkType": "VPC",
            "VPCId": src.get("VpcId"),
            "VSwitchId": src.get("VSwitchId"),
            "ZoneId": src.get("ZoneId"),
            "DBInstanceClass": src.get("DBInstanceClass"),
            "DBInstanceStorage": src.get("DBInstanceStorage"),
            "DBInstanceStorageType": src.get("DBInstanceStorageType"),
            "DBInstanceDescription": f"imctl restore of {source} {what}",
            # Lower case on the wire: the SDK would send Python's "True".
            "DeletionProtection": "true",
            "RegionId": r.name,
            # Idempotency: a retried request with the same token makes no second instance.
            "ClientToken": str(uuid.uuid4()),
        }
        if slave_zones:
            params["ZoneIdSlave1"] = slave_zones[0]
        params = {k: v for k, v in params.items() if v is not None}
        progress(f"cloning {source} {what} into a new instance")
        doc = self.api.rds(r.name, "CloneDBInstance", params, f"cloning {source}", mutation=True)
        new = str(doc.get("DBInstanceId") or "")
        if not new:
            raise ResourceFailure(f"CloneDBInstance of {source} returned no instance id")
        cleanup = "release it in the RDS console (deletion protection is on)"
        run.created(new, cleanup, source)
        inst = self._wait_running(r.name, new, deadline, progress)
        wanted = _ips(src.get("SecurityIPList"))
        if not wanted <= _ips(inst.get("SecurityIPList")):
            progress(f"{new}: copying the IP whitelist of {source}")
            self.api.rds(
                r.name,
                "ModifySecurityIps",
                {"DBInstanceId": new, "SecurityIps": ",".join(sorted(wanted))},
                f"setting the IP whitelist of {new}",
                mutation=True,
            )
            inst = self._wait_running(r.name, new, deadline, progress)
        # The clone carries the roles; a fresh password makes the URL written below the one
        # credential for the new instance.
        password = new_password()
        self.api.rds(
            r.name,
            "ResetAccountPassword",
            {"DBInstanceId": new, "AccountName": DB_USER, "AccountPassword": password},
            f"setting the {DB_USER} password on {new}",
            mutation=True,
        )
        inst = self._wait_running(r.name, new, deadline, progress)
        host = str(inst.get("ConnectionString") or "")
        if not host:
            raise ResourceFailure(f"{new} has no connection string")
        return Restored(
            instance=new,
            host=host,
            url=database_url(host, int(inst.get("Port") or DB_PORT), password),
            previous=source,
            previous_url=run.current_url,
            cleanup=cleanup,
            standby_note=(
                f"the DTS synchronization still reads {source}; re-point it at {new} if the"
                " standby region must follow the restored data"
            ),
        )

    def _wait_running(
        self, region: str, instance: str, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        return poll(
            lambda: self.api.attribute(region, instance),
            done=lambda a: a.get("DBInstanceStatus") == "Running",
            state=lambda a: str(a.get("DBInstanceStatus")),
            what=f"RDS instance {instance}",
            deadline=deadline,
            progress=progress,
            interval=self.scope.interval,
            unknown_hint=f"aliyun rds DescribeDBInstanceAttribute --DBInstanceId {instance}",
        )


def _ips(value: Any) -> set[str]:
    return {ip.strip() for ip in str(value or "").split(",") if ip.strip()}
