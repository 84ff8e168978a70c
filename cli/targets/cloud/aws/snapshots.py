"""RDS snapshots of the stack's primary instance, tagged with the stack's name, a note and the
content digest the application reported just before each was requested."""

from __future__ import annotations

import time
from typing import Any

from cli.deadline import Deadline
from cli.errors import ResourceFailure, SnapshotNotFound
from cli.progress import Note
from cli.targets.cloud.aws.api import (
    AwsApi,
    aws_call,
    aws_pages,
    iso,
    slug,
    tag_value,
    tags_of,
    utc_stamp,
)
from cli.targets.cloud.content import DIGEST_FIELDS, digest_of, snapshot_digest
from cli.targets.cloud.ops import Scope

STACK_TAG = "imctl:stack"
NOTE_TAG = "imctl:note"
# The content digest read just before a snapshot was requested, one tag per figure (a tag value
# cannot hold JSON): imctl:digest-messages, imctl:digest-max-seq, ...
DIGEST_TAG_PREFIX = "imctl:digest-"


def _digest_tags(digest: dict[str, int] | None) -> list[dict[str, str]]:
    if digest is None:
        return []
    return [
        {"Key": DIGEST_TAG_PREFIX + key.replace("_", "-"), "Value": str(digest[key])}
        for key in DIGEST_FIELDS
    ]


def digest_from_tags(tags: dict[str, str]) -> dict[str, int] | None:
    return digest_of(
        {
            key: tags[DIGEST_TAG_PREFIX + key.replace("_", "-")]
            for key in DIGEST_FIELDS
            if DIGEST_TAG_PREFIX + key.replace("_", "-") in tags
        }
    )


class AwsSnapshots:
    def __init__(self, api: AwsApi, scope: Scope) -> None:
        self.api = api
        self.scope = scope
        self.outputs = scope.outputs

    def _snapshot_info(self, region: str, snap: dict[str, Any]) -> dict[str, Any]:
        tags = tags_of(snap)
        return {
            "id": snap["DBSnapshotIdentifier"],
            "created_at": iso(snap.get("SnapshotCreateTime")),
            # RDS snapshots are incremental and report no size; allocated_gb is the volume.
            "size_bytes": None,
            "messages": None,
            "note": tags.get(NOTE_TAG),
            # What the application reported just before the snapshot was requested: a lower
            # bound of what the snapshot holds, which a restore checks.
            "digest": digest_from_tags(tags),
            "stack": tags.get(STACK_TAG),
            "region": region,
            "location": snap.get("DBSnapshotArn"),
            "status": snap.get("Status"),
            "progress_percent": snap.get("PercentProgress"),
            "db_instance_id": snap.get("DBInstanceIdentifier"),
            "allocated_gb": snap.get("AllocatedStorage"),
            "engine": snap.get("Engine"),
            "engine_version": snap.get("EngineVersion"),
            "encrypted": snap.get("Encrypted"),
        }

    def _ours(self, snap: dict[str, Any]) -> bool:
        return tags_of(snap).get(STACK_TAG) == self.outputs.dns_name

    def _describe_snapshot(self, region: str, snapshot_id: str) -> dict[str, Any] | None:
        rds = self.api.client("rds", region)
        found = aws_call(
            f"describing snapshot {snapshot_id} in {region}",
            rds.describe_db_snapshots,
            # A malformed id cannot name one of our snapshots: not found, not a failure.
            absent=("DBSnapshotNotFound", "DBSnapshotNotFoundFault", "InvalidParameterValue"),
            DBSnapshotIdentifier=snapshot_id,
        )
        return dict(found["DBSnapshots"][0]) if found and found["DBSnapshots"] else None

    def find_snapshot(self, snapshot_id: str) -> tuple[str, dict[str, Any]]:
        """(region, snapshot) of one of this stack's snapshots, in any of its regions (after a
        failover, the older ones stay where they were taken)."""
        sid = snapshot_id.lower()
        for region in self.outputs.regions:
            snap = self._describe_snapshot(region, sid)
            if snap is not None and self._ours(snap):
                return region, snap
        raise SnapshotNotFound(
            f"no snapshot {snapshot_id!r} of this stack",
            f"`imctl snapshot list` shows this stack's snapshots (tag {STACK_TAG}="
            f"{self.outputs.dns_name})",
        )

    def snapshot_create(self, note: str | None, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout, operation="snapshot create", hint=self.scope.timeout_hint)
        started = time.monotonic()
        r = self.outputs.primary
        rds = self.api.client("rds", r.name)
        sid = f"imctl-{slug(self.outputs.dns_name)}-{utc_stamp()}"
        tags = [{"Key": STACK_TAG, "Value": self.outputs.dns_name}]
        if note:
            tags.append({"Key": NOTE_TAG, "Value": tag_value(note)})
        # Read just before the request: everything it counts was committed before the snapshot.
        instance = self.api.describe_db(r.name, r.db_instance_id) or {}
        digest, warnings = snapshot_digest(
            self.scope.kube,
            r,
            interval=self.api.interval,
            progress=progress,
            instance_host=(instance.get("Endpoint") or {}).get("Address"),
        )
        for warning in warnings:
            progress(f"warning: {warning}")
        tags += _digest_tags(digest)
        progress(f"creating RDS snapshot {sid} of {r.db_instance_id} ({r.name})")
        aws_call(
            f"creating snapshot {sid}",
            rds.create_db_snapshot,
            DBSnapshotIdentifier=sid,
            DBInstanceIdentifier=r.db_instance_id,
            Tags=tags,
        )
        latest: dict[str, Any] = {}

        def probe() -> tuple[bool, str]:
            snap = self._describe_snapshot(r.name, sid)
            if snap is None:
                return False, "not visible yet"
            latest.clear()
            latest.update(snap)
            status = str(snap.get("Status"))
            if status in ("failed", "error", "deleting"):
                raise ResourceFailure(f"snapshot {sid} is {status}")
            pct = snap.get("PercentProgress")
            return status == "available", status + (f" {pct}%" if pct is not None else "")

        self.api.wait(f"snapshot {sid}", probe, deadline, progress)
        info = self._snapshot_info(r.name, latest)
        return {
            **info,
            "digest": digest,
            "warnings": warnings,
            "duration_s": round(time.monotonic() - started, 1),
        }

    def snapshot_list(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = []
        for region in self.outputs.regions:
            rds = self.api.client("rds", region)
            snaps = aws_pages(
                f"listing snapshots in {region}",
                rds,
                "describe_db_snapshots",
                "DBSnapshots",
                SnapshotType="manual",
            )
            found += [self._snapshot_info(region, s) for s in snaps if self._ours(s)]
        found.sort(key=lambda s: s["created_at"] or "", reverse=True)
        return {"snapshots": found}

    def snapshot_show(self, snapshot_id: str) -> dict[str, Any]:
        region, snap = self.find_snapshot(snapshot_id)
        return self._snapshot_info(region, snap)

    def snapshot_delete(self, snapshot_id: str, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout, operation="snapshot delete", hint=self.scope.timeout_hint)
        region, snap = self.find_snapshot(snapshot_id)
        sid = snap["DBSnapshotIdentifier"]
        rds = self.api.client("rds", region)
        progress(f"deleting snapshot {sid} ({region})")
        aws_call(f"deleting snapshot {sid}", rds.delete_db_snapshot, DBSnapshotIdentifier=sid)

        def gone() -> tuple[bool, str]:
            now = self._describe_snapshot(region, sid)
            return now is None, "deleted" if now is None else str(now.get("Status"))

        self.api.wait(f"snapshot {sid}", gone, deadline, progress)
        return {"deleted": [sid], "region": region}
