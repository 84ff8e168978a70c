"""Cloud SQL backup runs of the stack's primary instance: on demand, with the note and the
content digest the application reported just before each was requested kept in the run's
description (backup runs have no labels)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cli.deadline import Deadline
from cli.errors import ResourceFailure, SnapshotNotFound
from cli.progress import Note
from cli.targets.cloud.content import digest_of, snapshot_digest
from cli.targets.cloud.gcp.api import GcpApi
from cli.targets.cloud.ops import Scope


class GcpSnapshots:
    def __init__(self, api: GcpApi, scope: Scope) -> None:
        self.api = api
        self.project = api.project
        self.scope = scope
        self.outputs = scope.outputs

    def backup_run(self, instance: str, snapshot_id: str) -> dict[str, Any]:
        if not snapshot_id.isdigit():
            raise SnapshotNotFound(
                f"no backup run {snapshot_id!r} (Cloud SQL backup run ids are numbers)",
                "imctl snapshot list",
            )
        req = (
            self.api.sql().backupRuns().get(project=self.project, instance=instance, id=snapshot_id)
        )
        try:
            return self.api.call(req, f"reading backup run {snapshot_id}")
        except ResourceFailure as exc:
            if exc.code == "not_found":
                raise SnapshotNotFound(
                    f"no backup run {snapshot_id} of {instance}", "imctl snapshot list"
                ) from None
            raise

    def _snapshot(self, run: Mapping[str, Any]) -> dict[str, Any]:
        instance = run.get("instance") or self.outputs.primary.db_instance_id
        out: dict[str, Any] = {
            "id": str(run.get("id")),
            "created_at": run.get("startTime") or run.get("enqueuedTime"),
            "status": _snapshot_status(str(run.get("status", ""))),
            "cloud_status": run.get("status"),
            "type": run.get("type"),
            **from_description(run.get("description")),
            "instance": instance,
            "location": f"projects/{self.project}/instances/{instance}/backupRuns/{run.get('id')}",
        }
        if run.get("maxChargeableBytes"):
            out["size_bytes"] = int(run["maxChargeableBytes"])
        if run.get("location"):
            out["backup_location"] = run["location"]
        return out

    def snapshot_create(self, note: str | None, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        instance = self.outputs.primary.db_instance_id
        # Read just before the request: everything it counts was committed before the backup.
        digest, warnings = snapshot_digest(
            self.scope.kube, self.outputs.primary, interval=self.scope.interval, progress=progress
        )
        for warning in warnings:
            progress(f"warning: {warning}")
        description = _description(note, digest)
        body: dict[str, Any] = {"description": description} if description else {}
        progress(f"starting an on-demand backup of {instance}")
        op = self.api.call(
            self.api.sql().backupRuns().insert(project=self.project, instance=instance, body=body),
            f"starting a backup of {instance}",
            mutation=True,
        )
        final = self.api.wait_sql(op, f"backup of {instance}", deadline, progress)
        backup_id = (final.get("backupContext") or {}).get("backupId")
        if backup_id is None:
            backup_id = self._find_run_of(instance, final)
        run = self.backup_run(instance, str(backup_id))
        if run.get("status") != "SUCCESSFUL":
            raise ResourceFailure(
                f"backup run {backup_id} of {instance} ended {run.get('status')}",
                str((run.get("error") or {}).get("message") or ""),
            )
        return {**self._snapshot(run), "warnings": warnings}

    def _find_run_of(self, instance: str, op: Mapping[str, Any]) -> str:
        """An operation without backupContext (older API behaviour): the on-demand run enqueued
        at or after the operation's insert time, and only if exactly one matches."""
        since = str(op.get("insertTime") or "")
        runs = self.api.call(
            self.api.sql().backupRuns().list(project=self.project, instance=instance),
            f"listing backup runs of {instance}",
        ).get("items", [])
        mine = [
            r
            for r in runs
            if r.get("type") == "ON_DEMAND" and str(r.get("enqueuedTime", "")) >= since
        ]
        if len(mine) != 1:
            raise ResourceFailure(
                f"the backup of {instance} finished but its run cannot be told apart"
                f" ({len(mine)} candidates since {since})",
                "imctl snapshot list",
            )
        return str(mine[0]["id"])

    def snapshot_list(self) -> dict[str, Any]:
        instance = self.outputs.primary.db_instance_id
        runs: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"project": self.project, "instance": instance}
            if token:
                kwargs["pageToken"] = token
            page = self.api.call(
                self.api.sql().backupRuns().list(**kwargs), f"listing backup runs of {instance}"
            )
            runs.extend(page.get("items") or [])
            token = page.get("nextPageToken")
            if not token:
                break
        return {"snapshots": [self._snapshot(r) for r in runs], "instance": instance}

    def snapshot_show(self, snapshot_id: str) -> dict[str, Any]:
        instance = self.outputs.primary.db_instance_id
        return self._snapshot(self.backup_run(instance, snapshot_id))

    def snapshot_delete(self, snapshot_id: str, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        instance = self.outputs.primary.db_instance_id
        self.backup_run(instance, snapshot_id)  # a clear not-found before any mutation
        op = self.api.call(
            self.api.sql()
            .backupRuns()
            .delete(project=self.project, instance=instance, id=snapshot_id),
            f"deleting backup run {snapshot_id}",
            mutation=True,
        )
        self.api.wait_sql(op, f"deletion of backup run {snapshot_id}", deadline, progress)
        try:
            left = self.backup_run(instance, snapshot_id)
        except SnapshotNotFound:
            left = {}
        if left and left.get("status") not in ("DELETED", "DELETION_PENDING"):
            raise ResourceFailure(
                f"backup run {snapshot_id} is still {left.get('status')} after its deletion"
            )
        return {"id": snapshot_id, "instance": instance, "deleted": True, "status": "deleted"}


def _description(note: str | None, digest: dict[str, int] | None) -> str | None:
    """A backup run's description: the note alone, or with a digest compact JSON holding both
    (backup runs have no labels; the description is their one free-text field)."""
    if digest is None:
        return note or None
    doc: dict[str, Any] = {"imctl_digest": digest}
    if note:
        doc["note"] = note
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def from_description(text: Any) -> dict[str, Any]:
    """``note`` and ``digest`` from a description _description wrote, or from any other text
    (a plain note: no digest)."""
    if not isinstance(text, str) or not text:
        return {"note": None, "digest": None}
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "imctl_digest" not in doc:
        return {"note": text, "digest": None}
    note = doc.get("note")
    return {
        "note": note if isinstance(note, str) else None,
        "digest": digest_of(doc["imctl_digest"]),
    }


def _snapshot_status(cloud: str) -> str:
    if cloud == "SUCCESSFUL":
        return "available"
    if cloud in ("ENQUEUED", "RUNNING", "OVERDUE"):
        return "creating"
    if cloud in ("DELETION_PENDING", "DELETED"):
        return "deleting"
    return "failed" if cloud in ("FAILED", "SKIPPED", "DELETION_FAILED") else cloud.lower()
