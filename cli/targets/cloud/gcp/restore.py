"""The GCP hooks of the restore sequence (cloud/restore.py): a backup run is restored into a
new Cloud SQL instance made with the source's settings, or, ``in-place``, onto the source itself
(Cloud SQL allows that only for an instance without replicas). To a point in time, Cloud SQL
clones the source (instances.clone with CloneContext.pointInTime) into a new instance; the
window comes from instances.getLatestRecoveryTime and the backup configuration."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cli.deadline import Deadline
from cli.errors import PreconditionFailed, ResourceFailure
from cli.progress import Note
from cli.snapshots import RestoreTarget
from cli.targets.cloud.gcp.api import GcpApi
from cli.targets.cloud.gcp.snapshots import GcpSnapshots, from_description
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.recovery import (
    RecoveryWindow,
    last_automated,
    new_instance_only,
    parse_utc,
    utc_text,
)
from cli.targets.cloud.restore import (
    Backup,
    Restored,
    RestoreRun,
    database_url,
    new_password,
    replica_note,
)
from stacks.workload_contract import DB_PORT, DB_USER

# Instance settings a restore target copies from its source: the inputs of DatabaseInstance
# (output-only fields such as settingsVersion would be rejected by instances.insert).
_SETTINGS_COPY = (
    "tier",
    "edition",
    "availabilityType",
    "dataDiskType",
    "dataDiskSizeGb",
    "storageAutoResize",
    "storageAutoResizeLimit",
    "databaseFlags",
    "deletionProtectionEnabled",
    "insightsConfig",
    "maintenanceWindow",
    "userLabels",
)
_IP_COPY = (
    "ipv4Enabled",
    "privateNetwork",
    "allocatedIpRange",
    "sslMode",
    "requireSsl",
    "authorizedNetworks",
    "enablePrivatePathForGoogleCloudServices",
)
_BACKUP_COPY = (
    "enabled",
    "startTime",
    "pointInTimeRecoveryEnabled",
    "transactionLogRetentionDays",
    "backupRetentionSettings",
    "location",
)


DEFAULT_LOG_DAYS = 7


def utc_stamp() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())


class GcpRestore:
    def __init__(self, api: GcpApi, scope: Scope, snapshots: GcpSnapshots) -> None:
        self.api = api
        self.project = api.project
        self.outputs = scope.outputs
        self.snapshots = snapshots

    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        run = self.snapshots.backup_run(self.outputs.primary.db_instance_id, snapshot_id)
        if run.get("status") != "SUCCESSFUL":
            raise PreconditionFailed(
                f"backup run {snapshot_id} is {run.get('status')}, not SUCCESSFUL",
                "imctl snapshot list",
            )
        return Backup(str(run["id"]), from_description(run.get("description"))["digest"])

    def restore_into(self, run: RestoreRun) -> Restored:
        backup, deadline, progress = run.backup, run.deadline, run.progress
        source = self.outputs.primary.db_instance_id
        context = {
            "kind": "sql#restoreBackupContext",
            "backupRunId": backup.id,
            "instanceId": source,
            "project": self.project,
        }
        if run.target == "in-place":
            inst = self.api.instance(source)
            if inst.get("replicaNames"):
                raise PreconditionFailed(
                    f"{source} has replicas ({', '.join(inst['replicaNames'])}); Cloud SQL"
                    " restores a backup only onto an instance without replicas",
                    "restore into a new instance (the default) instead",
                )
            self._restore_backup(source, context, deadline, progress)
            return Restored(
                instance=source,
                host=urlsplit(run.current_url).hostname or "",
                url=None,
                previous=source,
                previous_url=None,  # restored over it: there is no way back
                cleanup="restore another backup run onto it",
            )
        src = self.api.instance(source)
        new = f"{source[:60]}-restore-{utc_stamp()}"
        progress(f"creating Cloud SQL instance {new} with the settings of {source}")
        op = self.api.call(
            self.api.sql().instances().insert(project=self.project, body=_clone_body(src, new)),
            f"creating instance {new}",
            mutation=True,
        )
        cleanup = f"delete it with: gcloud sql instances delete {new} --project {self.project}"
        run.created(new, cleanup, source)
        self.api.wait_sql(op, f"creation of {new}", deadline, progress)
        self._restore_backup(new, context, deadline, progress)
        return self._serving(run, new, cleanup)

    def refuse_time_target(self, target: RestoreTarget) -> None:
        new_instance_only(
            target, "Cloud SQL restores to a point in time only by cloning into a new instance"
        )

    def recovery_window(self) -> RecoveryWindow:
        source = self.outputs.primary.db_instance_id
        inst = self.api.instance(source)
        backups = (inst.get("settings") or {}).get("backupConfiguration") or {}
        enabled = bool(backups.get("enabled") and backups.get("pointInTimeRecoveryEnabled"))
        # Unset: Cloud SQL's documented default for the Enterprise edition (the stack sets it).
        days = int(backups.get("transactionLogRetentionDays") or DEFAULT_LOG_DAYS)
        first = last = None
        if enabled:
            times = self._recovery_times(source)
            last = parse_utc(times.get("latestRecoveryTime"))
            first = parse_utc(times.get("earliestRecoveryTime"))
            if first is None and days and inst.get("createTime"):
                # Where the API gives no earliest time: as far back as the logs are kept, but
                # not before the instance existed.
                created = parse_utc(inst["createTime"])
                assert created is not None
                first = max(created, datetime.now(UTC) - timedelta(days=days))
        where = (
            f"Cloud SQL automated backups and transaction logs of {source}"
            f" ({inst.get('region')}), logs kept {days} days"
        )
        base = last_automated(self.snapshots.snapshot_list()["snapshots"], "AUTOMATED")
        inspect = (
            f"gcloud sql instances describe {source} --project {self.project}"
            " --format='value(settings.backupConfiguration)'"
        )
        return RecoveryWindow(first, last, enabled and days > 0, days, where, base, inspect)

    def _recovery_times(self, source: str) -> dict[str, Any]:
        req = (
            self.api.sql()
            .projects()
            .instances()
            .getLatestRecoveryTime(project=self.project, instance=source)
        )
        return self.api.call(req, f"reading the recovery times of {source}")

    def restore_to_time_into(self, run: RestoreRun, when: datetime | None) -> Restored:
        deadline, progress = run.deadline, run.progress
        source = self.outputs.primary.db_instance_id
        if when is None:
            # The clone API has no "latest" of its own (without pointInTime it copies the
            # instance as it is now, not what its backups and logs hold): the latest recovery
            # time, read just before the clone.
            latest = parse_utc(self._recovery_times(source).get("latestRecoveryTime"))
            if latest is None:
                raise PreconditionFailed(
                    f"Cloud SQL reports no latest recovery time for {source}",
                    "`imctl backup status` shows the window",
                )
            when = latest
        new = f"{source[:60]}-pitr-{utc_stamp()}"
        progress(f"cloning {source} as of {utc_text(when)} into new Cloud SQL instance {new}")
        context = {
            "kind": "sql#cloneContext",
            "destinationInstanceName": new,
            "pointInTime": utc_text(when),
        }
        op = self.api.call(
            self.api.sql()
            .instances()
            .clone(project=self.project, instance=source, body={"cloneContext": context}),
            f"cloning {source} as of {utc_text(when)}",
            mutation=True,
        )
        cleanup = f"delete it with: gcloud sql instances delete {new} --project {self.project}"
        run.created(new, cleanup, source)
        self.api.wait_sql(op, f"clone of {source} into {new}", deadline, progress)
        return self._serving(run, new, cleanup)

    def _serving(self, run: RestoreRun, new: str, cleanup: str) -> Restored:
        """A new instance holding the restored data, given the URL the Secret gets."""
        source = self.outputs.primary.db_instance_id
        # The backup (or the clone) carries the roles; a fresh password means the URL we write
        # is the only one that works against the new instance.
        password = new_password()
        op = self.api.call(
            self.api.sql()
            .users()
            .update(
                project=self.project,
                instance=new,
                name=DB_USER,
                body={"name": DB_USER, "password": password},
            ),
            f"setting the {DB_USER} password on {new}",
            mutation=True,
        )
        self.api.wait_sql(op, f"password of {DB_USER} on {new}", run.deadline, run.progress)
        inst = self.api.instance(new)
        host = _private_ip(inst)
        if inst.get("state") != "RUNNABLE" or not host:
            raise ResourceFailure(
                f"{new} is {inst.get('state')} with no private address after the restore"
            )
        return Restored(
            instance=new,
            host=host,
            url=database_url(host, DB_PORT, password),
            previous=source,
            previous_url=run.current_url,
            cleanup=cleanup,
            standby_note=replica_note(source) if self.outputs.standby_region else None,
        )

    def _restore_backup(
        self, instance: str, context: dict[str, str], deadline: Deadline, progress: Note
    ) -> None:
        progress(f"restoring backup run {context['backupRunId']} of {context['instanceId']}"
                 f" onto {instance}")  # fmt: skip
        op = self.api.call(
            self.api.sql()
            .instances()
            .restoreBackup(
                project=self.project, instance=instance, body={"restoreBackupContext": context}
            ),
            f"restoring onto {instance}",
            mutation=True,
        )
        self.api.wait_sql(op, f"restore onto {instance}", deadline, progress)


def _pick(src: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: src[k] for k in keys if k in src}


def _clone_body(src: Mapping[str, Any], name: str) -> dict[str, Any]:
    settings = dict(src.get("settings") or {})
    out = _pick(settings, _SETTINGS_COPY)
    if "ipConfiguration" in settings:
        out["ipConfiguration"] = _pick(settings["ipConfiguration"], _IP_COPY)
    if "backupConfiguration" in settings:
        out["backupConfiguration"] = _pick(settings["backupConfiguration"], _BACKUP_COPY)
    labels = dict(out.get("userLabels") or {})
    labels["imctl-restored-from"] = str(src.get("name", ""))[:63]
    out["userLabels"] = labels
    return {
        "name": name,
        "region": src.get("region"),
        "databaseVersion": src.get("databaseVersion"),
        "settings": out,
    }


def _private_ip(inst: Mapping[str, Any]) -> str | None:
    addresses = inst.get("ipAddresses") or []
    for a in addresses:
        if a.get("type") == "PRIVATE":
            return str(a["ipAddress"])
    return str(addresses[0]["ipAddress"]) if addresses else None
