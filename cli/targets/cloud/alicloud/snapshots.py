"""ApsaraDB backups of the stack's primary instance. They carry no description and no tags:
the note and the content digest are in the create result (and the journal) only."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from cli.deadline import Deadline, poll
from cli.errors import PreconditionFailed, ResourceFailure, SnapshotNotFound
from cli.progress import Note
from cli.targets.cloud.alicloud.api import AlicloudApi
from cli.targets.cloud.content import snapshot_digest
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import RegionOutputs

LIST_WINDOW_DAYS = 90  # DescribeBackups wants a short time range; backups older than this hide


class AlicloudSnapshots:
    def __init__(self, api: AlicloudApi, scope: Scope) -> None:
        self.api = api
        self.scope = scope
        self.outputs = scope.outputs

    def backup(self, snapshot_id: str) -> dict[str, Any]:
        r = self.outputs.primary
        if not snapshot_id.isdigit():
            raise SnapshotNotFound(
                f"no backup {snapshot_id!r} (ApsaraDB backup ids are numbers)",
                "imctl snapshot list",
            )
        doc = self.api.rds(
            r.name,
            "DescribeBackups",
            {"DBInstanceId": r.db_instance_id, "BackupId": snapshot_id},
            f"reading backup {snapshot_id}",
        )
        items = (doc.get("Items") or {}).get("Backup") or []
        match = [b for b in items if str(b.get("BackupId")) == snapshot_id]
        if not match:
            raise SnapshotNotFound(
                f"no backup {snapshot_id} of {r.db_instance_id}", "imctl snapshot list"
            )
        return dict(match[0])

    def _snapshot(self, b: Mapping[str, Any]) -> dict[str, Any]:
        instance = b.get("DBInstanceId") or self.outputs.primary.db_instance_id
        status = str(b.get("BackupStatus", ""))
        out: dict[str, Any] = {
            "id": str(b.get("BackupId")),
            "created_at": b.get("BackupStartTime"),
            "finished_at": b.get("BackupEndTime"),
            "status": {"Success": "available", "Failed": "failed"}.get(status, status.lower()),
            "cloud_status": status,
            "type": b.get("BackupMode"),
            "method": b.get("BackupMethod"),
            "instance": instance,
            "location": f"rds://{self.outputs.primary_region}/{instance}/backups/{b.get('BackupId')}",
        }
        if b.get("BackupSize") is not None:
            out["size_bytes"] = int(b["BackupSize"])
        if b.get("ConsistentTime"):
            out["consistent_time"] = b["ConsistentTime"]
        return out

    def snapshot_create(self, note: str | None, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        r = self.outputs.primary
        # Read just before the request, and reported; ApsaraDB has nowhere to keep it with the
        # backup (no description, no tags), so a restore cannot compare with it.
        digest, warnings = snapshot_digest(
            self.scope.kube, r, interval=self.scope.interval, progress=progress
        )
        for warning in warnings:
            progress(f"warning: {warning}")
        started = time.time()
        progress(f"starting a physical backup of {r.db_instance_id}")
        doc = self.api.rds(
            r.name,
            "CreateBackup",
            {
                "DBInstanceId": r.db_instance_id,
                "BackupMethod": "Physical",
                "BackupType": "FullBackup",
            },
            f"starting a backup of {r.db_instance_id}",
            mutation=True,
        )
        job_id = str(doc.get("BackupJobId"))

        def job() -> dict[str, Any]:
            tasks = self.api.rds(
                r.name,
                "DescribeBackupTasks",
                {"DBInstanceId": r.db_instance_id, "BackupJobId": job_id},
                f"reading backup job {job_id}",
            )
            jobs = (tasks.get("Items") or {}).get("BackupJob") or []
            # The task list holds jobs that are running; a finished one may be gone from it.
            return dict(jobs[0]) if jobs else {"BackupStatus": "Gone"}

        final = poll(
            job,
            done=lambda j: j.get("BackupStatus") in ("Finished", "Failed", "Gone"),
            state=lambda j: (
                str(j.get("BackupStatus")) + (f" {j['Process']}" if j.get("Process") else "")
            ),
            what=f"backup of {r.db_instance_id}",
            deadline=deadline,
            progress=progress,
            interval=self.scope.interval,
            unknown_hint=f"DescribeBackupTasks of {r.db_instance_id}, job {job_id}",
        )
        if final.get("BackupStatus") == "Failed":
            raise ResourceFailure(f"backup job {job_id} of {r.db_instance_id} failed")
        backup_id = final.get("BackupId") or self._find_manual_backup(r, started)
        backup = self.backup(str(backup_id))
        if backup.get("BackupStatus") != "Success":
            raise ResourceFailure(f"backup {backup_id} is {backup.get('BackupStatus')}")
        out = self._snapshot(backup)
        out["job_id"] = job_id
        # ApsaraDB backups carry no description; the caller's journal keeps the note.
        out["note"] = note
        out["note_stored_in_cloud"] = False
        # Nor the digest: it is in this result (and `imctl history`) for a comparison by hand.
        out["digest"] = digest
        out["digest_stored_in_cloud"] = False
        out["warnings"] = warnings
        return out

    def _find_manual_backup(self, r: RegionOutputs, started: float) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 60))
        doc = self.api.rds(
            r.name,
            "DescribeBackups",
            {
                "DBInstanceId": r.db_instance_id,
                "BackupMode": "Manual",
                "StartTime": _minute(started - 60),
                "EndTime": _minute(time.time() + 60),
            },
            f"finding the new backup of {r.db_instance_id}",
        )
        mine = [
            b
            for b in (doc.get("Items") or {}).get("Backup") or []
            if str(b.get("BackupStartTime", "")) >= since
        ]
        if len(mine) != 1:
            raise ResourceFailure(
                f"the backup job finished but its backup cannot be told apart ({len(mine)}"
                f" manual backups since {since})",
                "imctl snapshot list",
            )
        return str(mine[0]["BackupId"])

    def snapshot_list(self) -> dict[str, Any]:
        r = self.outputs.primary
        now = time.time()
        backups: list[dict[str, Any]] = []
        page = 1
        while True:
            doc = self.api.rds(
                r.name,
                "DescribeBackups",
                {
                    "DBInstanceId": r.db_instance_id,
                    "StartTime": _minute(now - LIST_WINDOW_DAYS * 86400),
                    "EndTime": _minute(now + 60),
                    "PageSize": 100,
                    "PageNumber": page,
                },
                f"listing backups of {r.db_instance_id}",
            )
            items = (doc.get("Items") or {}).get("Backup") or []
            backups.extend(items)
            if not items or len(backups) >= int(doc.get("TotalRecordCount") or 0):
                break
            page += 1
        return {
            "snapshots": [self._snapshot(b) for b in backups],
            "instance": r.db_instance_id,
            "window_days": LIST_WINDOW_DAYS,
        }

    def snapshot_show(self, snapshot_id: str) -> dict[str, Any]:
        return self._snapshot(self.backup(snapshot_id))

    def snapshot_delete(self, snapshot_id: str, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        r = self.outputs.primary
        backup = self.backup(snapshot_id)
        if backup.get("BackupMode") != "Manual":
            raise PreconditionFailed(
                f"backup {snapshot_id} is automatic; ApsaraDB deletes those only by retention",
                "shorten the backup retention in the stack config instead",
            )
        if backup.get("StoreStatus") not in (None, "Enabled"):
            raise PreconditionFailed(
                f"backup {snapshot_id} cannot be deleted yet (StoreStatus"
                f" {backup.get('StoreStatus')}): ApsaraDB keeps backups the log backups need"
            )
        progress(f"deleting backup {snapshot_id}")
        self.api.rds(
            r.name,
            "DeleteBackup",
            {"DBInstanceId": r.db_instance_id, "BackupId": snapshot_id},
            f"deleting backup {snapshot_id}",
            mutation=True,
        )

        def gone() -> bool:
            try:
                self.backup(snapshot_id)
            except SnapshotNotFound:
                return True
            return False

        poll(
            gone,
            done=bool,
            state=lambda g: "deleted" if g else "still listed",
            what=f"backup {snapshot_id}",
            deadline=deadline,
            progress=progress,
            interval=self.scope.interval,
        )
        return {
            "id": snapshot_id,
            "instance": r.db_instance_id,
            "deleted": True,
            "status": "deleted",
        }


def _minute(t: float) -> str:
    """DescribeBackups' time format: minutes, UTC."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t))
