"""GCP day-2 operations: Cloud SQL backup runs, restore into a new instance, replica promotion
with a Cloud DNS flip, GKE node pool sizing; the workload through ``KubeApi``.

The SDK is google-api-python-client over the discovery documents it ships (no network to
discover); ``api_endpoint`` points every service at one base URL (a local emulation in tests).
Nothing imports googleapiclient or google.auth until an operation runs.

The standby region's database is a Cloud SQL cross-region read replica (asynchronous). A
planned switchover fences the old primary's Deployment, waits until Cloud Monitoring's
``replica_lag`` is 0 in a sample taken after the fence, then promotes; a forced one fences what
it can and reports the last lag sample as the data-loss bound. Promotion detaches the replica
for good: the old primary does not rejoin (create a new replica of the new primary for that).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from cli.deadline import Deadline, poll

# The local target's error: every target raises the same one for an unknown id.
from cli.errors import (
    CredentialsError,
    ImctlError,
    PreconditionFailed,
    PrerequisiteMissing,
    ResourceFailure,
    SnapshotNotFound,
)
from cli.progress import Note
from cli.snapshots import RestoreTarget
from cli.targets.cloud.content import (
    digest_of,
    snapshot_digest,
)
from cli.targets.cloud.day2_util import RegionalOps, utc_stamp
from cli.targets.cloud.dns import DNS_TYPES, record_type
from cli.targets.cloud.failover import FailoverHooks, Preflight, Switch, plan_failover, run_failover
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.outcomes import unreachable
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from cli.targets.cloud.restore import (
    Backup,
    Leftover,
    Restored,
    database_url,
    new_password,
    replica_note,
    run_restore,
)
from stacks.workload_contract import DB_PORT, DB_USER

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
LAG_METRIC = "cloudsql.googleapis.com/database/replication/replica_lag"

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


class GcpOps(RegionalOps):
    """``CloudOps`` for GCP. ``credentials``: a google.auth credentials object (default:
    Application Default Credentials with the cloud-platform scope)."""

    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        project: str,
        credentials: Any = None,
        api_endpoint: str | None = None,
        poll_interval: float = 5.0,
        readyz_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            outputs, kube, cloud="gcp", poll_interval=poll_interval, readyz_timeout=readyz_timeout
        )
        if not project:
            raise CredentialsError(
                "no GCP project given",
                "set gcp_project in the stack config or GOOGLE_CLOUD_PROJECT",
            )
        self.project = project
        self._credentials = credentials
        self._endpoint = api_endpoint.rstrip("/") + "/" if api_endpoint else None
        self._services: dict[str, Any] = {}

    # --- plumbing -----------------------------------------------------------------------------

    def _creds(self) -> Any:
        if self._credentials is None:
            import google.auth
            import google.auth.exceptions

            try:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise CredentialsError(
                    f"no Google credentials: {exc}",
                    "gcloud auth application-default login, or set GOOGLE_APPLICATION_CREDENTIALS",
                ) from None
        return self._credentials

    def _service(self, name: str, version: str) -> Any:
        if name not in self._services:
            from googleapiclient.discovery import build

            options = {"api_endpoint": self._endpoint} if self._endpoint else None
            self._services[name] = build(
                name,
                version,
                credentials=self._creds(),
                client_options=options,
                static_discovery=True,
                cache_discovery=False,
            )
        return self._services[name]

    def _sql(self) -> Any:
        return self._service("sqladmin", "v1")

    def _gke(self) -> Any:
        return self._service("container", "v1")

    def _dns(self) -> Any:
        return self._service("dns", "v1")

    def _monitoring(self) -> Any:
        return self._service("monitoring", "v3")

    def _call(self, request: Any, what: str, *, mutation: bool = False) -> dict[str, Any]:
        """Execute one request; map failures onto the exit-code contract. Reads are retried on
        429/5xx by the client library; mutations are not, so nothing is created twice."""
        import google.auth.exceptions
        import httplib2  # type: ignore[import-untyped]
        from googleapiclient.errors import HttpError

        try:
            result = request.execute(num_retries=0 if mutation else 3)
        except HttpError as exc:
            raise _http_error(exc, what) from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise CredentialsError(f"{what}: Google credentials failed: {exc}") from None
        except (OSError, httplib2.HttpLib2Error) as exc:
            raise unreachable(what, exc, mutation=mutation) from None
        return dict(result or {})

    def _wait_sql(
        self, op: Mapping[str, Any], what: str, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        first = [dict(op)]

        def fetch() -> dict[str, Any]:
            if first:
                return first.pop()
            req = self._sql().operations().get(project=self.project, operation=op["name"])
            return self._call(req, f"{what} (operation {op['name']})")

        final = poll(
            fetch,
            done=lambda o: o.get("status") == "DONE",
            state=lambda o: str(o.get("status", "UNKNOWN")),
            what=what,
            deadline=deadline,
            progress=progress,
            interval=self._interval,
            unknown_hint=f"gcloud sql operations describe {op['name']} --project {self.project}",
        )
        errors = (final.get("error") or {}).get("errors") or []
        if errors:
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
            raise ResourceFailure(f"{what} failed: {detail}")
        return final

    def _wait_gke(
        self,
        op: Mapping[str, Any],
        location: str,
        what: str,
        deadline: Deadline,
        progress: Note,
    ) -> dict[str, Any]:
        name = f"projects/{self.project}/locations/{location}/operations/{op['name']}"
        first = [dict(op)]

        def fetch() -> dict[str, Any]:
            if first:
                return first.pop()
            req = self._gke().projects().locations().operations().get(name=name)
            return self._call(req, f"{what} (operation {op['name']})")

        final = poll(
            fetch,
            done=lambda o: o.get("status") in ("DONE", "ABORTING"),
            state=lambda o: str(o.get("status", "UNKNOWN")),
            what=what,
            deadline=deadline,
            progress=progress,
            interval=self._interval,
            unknown_hint=f"gcloud container operations describe {op['name']} --region {location}",
        )
        error = final.get("error") or {}
        if final.get("status") != "DONE" or error.get("code") or error.get("message"):
            detail = error.get("message") or final.get("statusMessage") or final.get("status")
            raise ResourceFailure(f"{what} failed: {detail}")
        return final

    # --- Cloud SQL reads ----------------------------------------------------------------------

    def _instance(self, name: str) -> dict[str, Any]:
        req = self._sql().instances().get(project=self.project, instance=name)
        return self._call(req, f"reading Cloud SQL instance {name}")

    def _backup_run(self, instance: str, snapshot_id: str) -> dict[str, Any]:
        if not snapshot_id.isdigit():
            raise SnapshotNotFound(
                f"no backup run {snapshot_id!r} (Cloud SQL backup run ids are numbers)",
                "imctl snapshot list",
            )
        req = self._sql().backupRuns().get(project=self.project, instance=instance, id=snapshot_id)
        try:
            return self._call(req, f"reading backup run {snapshot_id}")
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
            **_from_description(run.get("description")),
            "instance": instance,
            "location": f"projects/{self.project}/instances/{instance}/backupRuns/{run.get('id')}",
        }
        if run.get("maxChargeableBytes"):
            out["size_bytes"] = int(run["maxChargeableBytes"])
        if run.get("location"):
            out["backup_location"] = run["location"]
        return out

    def _replica_lag(self, instance: str) -> tuple[float | None, str | None]:
        """The newest ``replica_lag`` sample (seconds) of ``instance`` and its end time."""
        now = time.time()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60))
        filt = (
            f'metric.type = "{LAG_METRIC}" AND '
            f'resource.labels.database_id = "{self.project}:{instance}"'
        )
        req = (
            self._monitoring()
            .projects()
            .timeSeries()
            .list(
                name=f"projects/{self.project}",
                filter=filt,
                **{"interval_startTime": start, "interval_endTime": end},
            )
        )
        doc = self._call(req, f"reading replica_lag of {instance}")
        best: tuple[float | None, str | None] = (None, None)
        for series in doc.get("timeSeries") or []:
            for point in series.get("points") or []:
                at = (point.get("interval") or {}).get("endTime")
                value = point.get("value") or {}
                raw = value.get("doubleValue", value.get("int64Value"))
                if at is None or raw is None:
                    continue
                if best[1] is None or _epoch(str(at)) > _epoch(best[1]):
                    best = (float(raw), str(at))
        return best

    # --- CloudOps -----------------------------------------------------------------------------

    def _status_scope(self) -> dict[str, Any]:
        return {"project": self.project}

    def _db_status(self, r: RegionOutputs) -> dict[str, Any]:
        inst = self._instance(r.db_instance_id)
        return {
            "db_state": inst.get("state"),
            "db_role": "replica" if inst.get("masterInstanceName") else "primary",
        }

    def _standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        try:
            lag, at = self._replica_lag(standby.db_instance_id)
        except ImctlError as exc:
            return {"replica_lag_seconds": None, "replica_lag_error": exc.message}
        return {"replica_lag_seconds": lag, "replica_lag_sampled_at": at}

    def _dns_points_to(self) -> list[dict[str, Any]]:
        return [_rrset_summary(s) for s in self._rrsets()]

    def _scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        """GKE sizes a regional pool per zone: ``nodes`` is the total, rounded up to a multiple
        of the pool's zone count. The autoscaler's bounds are widened to include it, or it
        would undo the change."""
        name = (
            f"projects/{self.project}/locations/{r.name}/clusters/{r.cluster_name}"
            f"/nodePools/{r.nodegroup_name}"
        )
        pools = self._gke().projects().locations().clusters().nodePools()
        pool = self._call(pools.get(name=name), f"reading node pool {r.nodegroup_name}")
        zones = len(pool.get("locations") or []) or 1
        per_zone = math.ceil(nodes / zones)
        total = per_zone * zones
        out: dict[str, Any] = {
            "node_pool": r.nodegroup_name,
            "requested": nodes,
            "zones": zones,
            "per_zone": per_zone,
            "total": total,
        }
        auto = dict(pool.get("autoscaling") or {})
        if auto.get("enabled"):
            widened = dict(auto)
            if "totalMinNodeCount" in auto or "totalMaxNodeCount" in auto:
                lo, hi = (
                    int(auto.get("totalMinNodeCount", 0)),
                    int(auto.get("totalMaxNodeCount", 0)),
                )
                widened["totalMinNodeCount"] = min(lo, total)
                widened["totalMaxNodeCount"] = max(hi, total)
                bounds = (widened["totalMinNodeCount"], widened["totalMaxNodeCount"])
            else:
                lo, hi = int(auto.get("minNodeCount", 0)), int(auto.get("maxNodeCount", 0))
                widened["minNodeCount"] = min(lo, per_zone)
                widened["maxNodeCount"] = max(hi, per_zone)
                bounds = (widened["minNodeCount"] * zones, widened["maxNodeCount"] * zones)
            out["autoscaling"] = {"min": bounds[0], "max": bounds[1]}
            if widened != auto:
                progress(f"{r.name}: widening the autoscaler bounds to {bounds[0]}..{bounds[1]}")
                op = self._call(
                    pools.setAutoscaling(name=name, body={"autoscaling": widened}),
                    f"setting autoscaling of {r.nodegroup_name}",
                    mutation=True,
                )
                self._wait_gke(op, r.name, "autoscaling bounds", deadline, progress)
        progress(f"{r.name}: sizing {r.nodegroup_name} to {per_zone} per zone ({total} nodes)")
        op = self._call(
            pools.setSize(name=name, body={"nodeCount": per_zone}),
            f"resizing node pool {r.nodegroup_name}",
            mutation=True,
        )
        self._wait_gke(op, r.name, f"resize of {r.nodegroup_name}", deadline, progress)
        return out

    def snapshot_create(self, note: str | None, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        instance = self.outputs.primary.db_instance_id
        # Read just before the request: everything it counts was committed before the backup.
        digest, warnings = snapshot_digest(
            self.kube, self.outputs.primary, interval=self._interval, progress=progress
        )
        for warning in warnings:
            progress(f"warning: {warning}")
        description = _description(note, digest)
        body: dict[str, Any] = {"description": description} if description else {}
        progress(f"starting an on-demand backup of {instance}")
        op = self._call(
            self._sql().backupRuns().insert(project=self.project, instance=instance, body=body),
            f"starting a backup of {instance}",
            mutation=True,
        )
        final = self._wait_sql(op, f"backup of {instance}", deadline, progress)
        backup_id = (final.get("backupContext") or {}).get("backupId")
        if backup_id is None:
            backup_id = self._find_run_of(instance, final)
        run = self._backup_run(instance, str(backup_id))
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
        runs = self._call(
            self._sql().backupRuns().list(project=self.project, instance=instance),
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
            page = self._call(
                self._sql().backupRuns().list(**kwargs), f"listing backup runs of {instance}"
            )
            runs.extend(page.get("items") or [])
            token = page.get("nextPageToken")
            if not token:
                break
        return {"snapshots": [self._snapshot(r) for r in runs], "instance": instance}

    def snapshot_show(self, snapshot_id: str) -> dict[str, Any]:
        instance = self.outputs.primary.db_instance_id
        return self._snapshot(self._backup_run(instance, snapshot_id))

    def snapshot_delete(self, snapshot_id: str, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        instance = self.outputs.primary.db_instance_id
        self._backup_run(instance, snapshot_id)  # a clear not-found before any mutation
        op = self._call(
            self._sql()
            .backupRuns()
            .delete(project=self.project, instance=instance, id=snapshot_id),
            f"deleting backup run {snapshot_id}",
            mutation=True,
        )
        self._wait_sql(op, f"deletion of backup run {snapshot_id}", deadline, progress)
        try:
            left = self._backup_run(instance, snapshot_id)
        except SnapshotNotFound:
            left = {}
        if left and left.get("status") not in ("DELETED", "DELETION_PENDING"):
            raise ResourceFailure(
                f"backup run {snapshot_id} is still {left.get('status')} after its deletion"
            )
        return {"id": snapshot_id, "instance": instance, "deleted": True, "status": "deleted"}

    def restore(
        self,
        snapshot_id: str,
        target: Literal["new", "in-place"],
        progress: Note,
        timeout: float,
        on_switch: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        return run_restore(self, self.scope, snapshot_id, target, progress, timeout, on_switch)

    def failover_plan(self, to_region: str, force: bool) -> dict[str, Any]:
        return plan_failover(GcpFailover(self), self.scope, to_region, force)

    def failover(
        self, to_region: str, force: bool, progress: Note, timeout: float
    ) -> dict[str, Any]:
        return run_failover(GcpFailover(self), self.scope, to_region, force, progress, timeout)

    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        run = self._backup_run(self.outputs.primary.db_instance_id, snapshot_id)
        if run.get("status") != "SUCCESSFUL":
            raise PreconditionFailed(
                f"backup run {snapshot_id} is {run.get('status')}, not SUCCESSFUL",
                "imctl snapshot list",
            )
        return Backup(str(run["id"]), _from_description(run.get("description"))["digest"])

    def restore_into(
        self,
        backup: Backup,
        target: RestoreTarget,
        current_url: str,
        made: Leftover,
        deadline: Deadline,
        progress: Note,
    ) -> Restored:
        source = self.outputs.primary.db_instance_id
        context = {
            "kind": "sql#restoreBackupContext",
            "backupRunId": backup.id,
            "instanceId": source,
            "project": self.project,
        }
        if target == "in-place":
            inst = self._instance(source)
            if inst.get("replicaNames"):
                raise PreconditionFailed(
                    f"{source} has replicas ({', '.join(inst['replicaNames'])}); Cloud SQL"
                    " restores a backup only onto an instance without replicas",
                    "restore into a new instance (the default) instead",
                )
            self._restore_backup(source, context, deadline, progress)
            return Restored(
                instance=source,
                host=urlsplit(current_url).hostname or "",
                url=None,
                previous=source,
                previous_url=None,  # restored over it: there is no way back
                cleanup="restore another backup run onto it",
            )
        src = self._instance(source)
        new = f"{source[:60]}-restore-{utc_stamp()}"
        progress(f"creating Cloud SQL instance {new} with the settings of {source}")
        op = self._call(
            self._sql().instances().insert(project=self.project, body=_clone_body(src, new)),
            f"creating instance {new}",
            mutation=True,
        )
        cleanup = f"delete it with: gcloud sql instances delete {new} --project {self.project}"
        made.created(new, cleanup, source)
        self._wait_sql(op, f"creation of {new}", deadline, progress)
        self._restore_backup(new, context, deadline, progress)
        # The backup carries the roles; a fresh password means the URL we write is the only
        # one that works against the new instance.
        password = new_password()
        op = self._call(
            self._sql()
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
        self._wait_sql(op, f"password of {DB_USER} on {new}", deadline, progress)
        inst = self._instance(new)
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
            previous_url=current_url,
            cleanup=cleanup,
            standby_note=replica_note(source) if self.outputs.standby_region else None,
        )

    def _restore_backup(
        self, instance: str, context: dict[str, str], deadline: Deadline, progress: Note
    ) -> None:
        progress(f"restoring backup run {context['backupRunId']} of {context['instanceId']}"
                 f" onto {instance}")  # fmt: skip
        op = self._call(
            self._sql()
            .instances()
            .restoreBackup(
                project=self.project, instance=instance, body={"restoreBackupContext": context}
            ),
            f"restoring onto {instance}",
            mutation=True,
        )
        self._wait_sql(op, f"restore onto {instance}", deadline, progress)

    # --- Cloud DNS ----------------------------------------------------------------------------

    def _fqdn(self) -> str:
        return self.outputs.dns_name.rstrip(".") + "."

    def _rrsets(self) -> list[dict[str, Any]]:
        req = (
            self._dns()
            .resourceRecordSets()
            .list(project=self.project, managedZone=self.outputs.hosted_zone_id, name=self._fqdn())
        )
        doc = self._call(req, f"reading the records of {self.outputs.dns_name}")
        return [s for s in doc.get("rrsets") or [] if s.get("type") in DNS_TYPES]

    def _point_dns(self, run: Switch) -> dict[str, Any]:
        old, new, deadline, progress = run.old, run.new, run.deadline, run.progress
        current = self._rrsets()
        backups = [r for r in self.outputs.regions.values() if r.name not in (old.name, new.name)]
        wanted = _new_rrset(self._fqdn(), current, new, backups)
        before = [_rrset_summary(s) for s in current]
        if [_rrset_summary(wanted)] == before:
            return {"name": self._fqdn(), "before": before, "after": before, "changed": False}
        progress(f"pointing {self.outputs.dns_name} at {new.name} ({new.endpoint})")
        change = self._call(
            self._dns()
            .changes()
            .create(
                project=self.project,
                managedZone=self.outputs.hosted_zone_id,
                body={"deletions": current, "additions": [wanted]},
            ),
            f"changing the records of {self.outputs.dns_name}",
            mutation=True,
        )
        first = [change]

        def fetch() -> dict[str, Any]:
            if first:
                return first.pop()
            req = (
                self._dns()
                .changes()
                .get(
                    project=self.project,
                    managedZone=self.outputs.hosted_zone_id,
                    changeId=change["id"],
                )
            )
            return self._call(req, f"reading DNS change {change['id']}")

        poll(
            fetch,
            done=lambda c: c.get("status") == "done",
            state=lambda c: str(c.get("status")),
            what=f"DNS change {change.get('id')}",
            deadline=deadline,
            progress=progress,
            interval=self._interval,
        )
        after = [_rrset_summary(s) for s in self._rrsets()]
        if after != [_rrset_summary(wanted)]:
            raise ResourceFailure(
                f"{self.outputs.dns_name} reads {after} after the change, not what was written"
            )
        return {
            "name": self._fqdn(),
            "before": before,
            "after": after,
            "changed": True,
            "change_id": change.get("id"),
        }


class GcpFailover(FailoverHooks):
    """A Cloud SQL cross-region read replica (asynchronous) promoted: it leaves the old
    primary for good, so the old primary does not rejoin."""

    def __init__(self, ops: GcpOps) -> None:
        self.ops = ops
        self.outputs = ops.outputs

    def preflight(self, run: Switch) -> Preflight:
        old, new = run.old, run.new
        replica = self.ops._instance(new.db_instance_id)
        if not replica.get("masterInstanceName"):
            raise PreconditionFailed(
                f"{new.db_instance_id} in {new.name} is not a read replica (already promoted?)",
                "imctl status",
            )
        if replica.get("state") != "RUNNABLE":
            raise PreconditionFailed(f"replica {new.db_instance_id} is {replica.get('state')}")
        if not run.force:
            primary = self.ops._instance(old.db_instance_id)
            if primary.get("state") != "RUNNABLE":
                raise PreconditionFailed(
                    f"primary {old.db_instance_id} is {primary.get('state')}: a planned"
                    " switchover needs it",
                    f"if it is lost: imctl failover --to-region {new.name} --force",
                )
        return Preflight(
            catch_up=f"wait until Cloud Monitoring's replica_lag of {new.db_instance_id} is 0"
            " in a sample taken after the fence",
            promote=f"promote {new.db_instance_id} ({new.name}); it stops replicating from"
            f" {old.db_instance_id} for good",
            dns=f"point {self.outputs.dns_name} at {new.endpoint} (Cloud DNS zone"
            f" {self.outputs.hosted_zone_id})",
        )

    def planned_bound(self, run: Switch) -> dict[str, Any]:
        return {
            "acked_messages": 0,
            "why": f"{run.old.name}'s im-server is fenced first, and {run.new.db_instance_id} is"
            " promoted only after a replica_lag of 0 in a sample taken after the fence",
        }

    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        instance = run.new.db_instance_id

        def after_fence(at: str | None) -> bool:
            return at is not None and _epoch(at) > fenced_at

        def done(sample: tuple[float | None, str | None]) -> bool:
            lag, at = sample
            return lag is not None and after_fence(at) and lag <= 0

        def state(sample: tuple[float | None, str | None]) -> str:
            lag, at = sample
            if lag is None:
                return "no replica_lag sample yet"
            return f"replica_lag {lag:g}s at {at}" + ("" if after_fence(at) else " (pre-fence)")

        lag, at = poll(
            lambda: self.ops._replica_lag(instance),
            done=done,
            state=state,
            what=f"waiting for {instance} to catch up",
            deadline=run.deadline,
            progress=run.progress,
            interval=self.ops.scope.interval,
            unknown_hint="Cloud Monitoring samples replica_lag once a minute; allow a few",
        )
        assert lag is not None and at is not None
        return {
            "acked_messages": 0,
            "replica_lag_seconds": lag,
            "basis": f"Cloud Monitoring replica_lag sampled at {at}",
            "why": f"{run.old.name}'s im-server was fenced, then replica_lag was {lag:g}s in a"
            f" sample at {at}, taken after the fence",
        }

    def forced_bound(self, run: Switch) -> dict[str, Any]:
        try:
            lag, at = self.ops._replica_lag(run.new.db_instance_id)
        except ImctlError as exc:
            lag, at = None, None
            why = f"replica_lag could not be read ({exc.message})"
        else:
            why = (
                f"asynchronous replica: the last replica_lag sample ({at}) was {lag:g}s;"
                " writes inside that window may be lost"
                if lag is not None
                else "asynchronous replica and no replica_lag sample: the loss is unknown"
            )
        bound: dict[str, Any] = {"acked_messages": None, "replica_lag_seconds": lag, "why": why}
        if at is not None:
            bound["basis"] = f"the newest Cloud Monitoring replica_lag sample, at {at}"
        return bound

    def promote(self, run: Switch) -> None:
        new = run.new
        run.progress(f"promoting {new.db_instance_id} in {new.name}")
        op = self.ops._call(
            self.ops._sql()
            .instances()
            .promoteReplica(project=self.ops.project, instance=new.db_instance_id),
            f"promoting {new.db_instance_id}",
            mutation=True,
        )
        self.ops._wait_sql(op, f"promotion of {new.db_instance_id}", run.deadline, run.progress)

    def await_promoted(self, run: Switch) -> None:
        promoted = self.ops._instance(run.new.db_instance_id)
        if promoted.get("masterInstanceName"):
            raise ResourceFailure(
                f"{run.new.db_instance_id} still names {promoted['masterInstanceName']} as its"
                " primary after the promotion finished"
            )

    def point_dns(self, run: Switch) -> dict[str, Any]:
        return self.ops._point_dns(run)

    def dns_hint(self, run: Switch) -> str:
        return (
            f"point {self.outputs.dns_name} at {run.new.endpoint} in Cloud DNS zone"
            f" {self.outputs.hosted_zone_id} by hand (a second failover would find the replica"
            " promoted and refuse)"
        )

    def next_steps(self, run: Switch) -> list[str]:
        return [
            f"{run.old.db_instance_id} is now an independent instance: imctl deploy creates a"
            f" new replica of {run.new.db_instance_id} in {run.old.name} and drops"
            f" {run.old.db_instance_id} from the stack without deleting it (keep it for"
            " forensics, then delete it by hand)"
        ]


# --- helpers --------------------------------------------------------------------------------


def _http_error(exc: Any, what: str) -> ImctlError:
    import json

    status = int(getattr(exc.resp, "status", 0) or 0)
    message, reason, state = str(exc), "", ""
    try:
        err = json.loads(exc.content.decode("utf-8", "replace")).get("error", {})
        message = str(err.get("message") or message)
        state = str(err.get("status") or "")
        reasons = [str(e.get("reason", "")) for e in err.get("errors") or []]
        reasons += [str(d.get("reason", "")) for d in err.get("details") or []]
        reason = ",".join(r for r in reasons if r)
    except (ValueError, AttributeError):
        pass
    text = f"{what}: {message}"
    if "SERVICE_DISABLED" in reason or "accessNotConfigured" in reason:
        return PrerequisiteMissing(text, "enable the API in the project (gcloud services enable)")
    if status in (401, 403):
        return CredentialsError(
            text, "check the credentials and the IAM roles in docs/runbook.md (GCP permissions)"
        )
    if status == 404:
        return ResourceFailure(text, "check the outputs (imctl status)", code="not_found")
    if status == 409 or state in ("ABORTED", "FAILED_PRECONDITION"):
        return ResourceFailure(text, "another operation may be running on it; retry later")
    return ResourceFailure(f"{text} (HTTP {status})")


def _description(note: str | None, digest: dict[str, int] | None) -> str | None:
    """A backup run's description: the note alone, or with a digest compact JSON holding both
    (backup runs have no labels; the description is their one free-text field)."""
    if digest is None:
        return note or None
    doc: dict[str, Any] = {"imctl_digest": digest}
    if note:
        doc["note"] = note
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def _from_description(text: Any) -> dict[str, Any]:
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


def _new_rrset(
    fqdn: str,
    current: list[dict[str, Any]],
    new: RegionOutputs,
    backups: list[RegionOutputs],
) -> dict[str, Any]:
    """The record set that sends the name to ``new``. A primary-backup policy stays one when
    regions other than the old primary can back it up; the old primary is never a backup, since
    its workload is fenced and its database diverges from here on."""
    rtype = record_type(new.endpoint)
    ttl = int(current[0].get("ttl", 60)) if current else 60
    policy = next((s.get("routingPolicy") for s in current if s.get("routingPolicy")), None)
    geo_backups = [b for b in backups if record_type(b.endpoint) == rtype]
    if policy and policy.get("primaryBackup") and geo_backups and rtype != "CNAME":
        routing: dict[str, Any] = {
            "primaryBackup": {
                "primaryTargets": {"externalEndpoints": [new.endpoint]},
                "backupGeoTargets": {
                    "items": [
                        {
                            "location": b.name,
                            "healthCheckedTargets": {"externalEndpoints": [b.endpoint]},
                        }
                        for b in geo_backups
                    ]
                },
                "trickleTraffic": 0,
            }
        }
        if policy.get("healthCheck"):
            routing["healthCheck"] = policy["healthCheck"]
        return {"name": fqdn, "type": rtype, "ttl": ttl, "routingPolicy": routing}
    value = new.endpoint.rstrip(".") + "." if rtype == "CNAME" else new.endpoint
    return {"name": fqdn, "type": rtype, "ttl": ttl, "rrdatas": [value]}


def _rrset_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": s.get("type")}
    if s.get("rrdatas"):
        out["rrdatas"] = list(s["rrdatas"])
    pb = (s.get("routingPolicy") or {}).get("primaryBackup")
    if pb:
        out["primary"] = list((pb.get("primaryTargets") or {}).get("externalEndpoints") or [])
        out["backup"] = [
            ep
            for item in (pb.get("backupGeoTargets") or {}).get("items") or []
            for ep in (item.get("healthCheckedTargets") or {}).get("externalEndpoints") or []
        ]
    return out


def _epoch(rfc3339: str) -> float:
    """RFC 3339 as Cloud Monitoring writes it (``Z``, optional fraction) -> Unix seconds."""
    from datetime import datetime

    text = rfc3339.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]:0<6}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()
