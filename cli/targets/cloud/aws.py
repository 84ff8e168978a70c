"""AWS day-2 operations (``CloudOps``): EKS node groups, RDS snapshots, restore and replica
promotion, Route 53 failover records; the workload itself through ``KubeApi``.

boto3 is imported inside functions only, so importing this module costs nothing. Credentials,
profiles and ``AWS_ENDPOINT_URL`` come from boto3's own chain; every client is made for an
explicit region. Each operation polls until AWS reports the outcome, within its ``timeout``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cli.deadline import Deadline, poll
from cli.errors import (
    CredentialsError,
    ImctlError,
    OperationTimeout,
    PreconditionFailed,
    ResourceFailure,
    SnapshotNotFound,
    UsageError,
)
from cli.progress import Note
from cli.snapshots import RestoreTarget
from cli.targets.cloud.aws_support import (
    STILL_WAITING_EVERY,
    TIMEOUT_HINT,
    aws_call,
    aws_pages,
    failover_changes,
    failover_pair,
    http_readyz,
    iso,
    rds_id,
    slug,
    tag_value,
    tags_of,
    utc_stamp,
)
from cli.targets.cloud.content import (
    DIGEST_FIELDS,
    digest_of,
    snapshot_digest,
)
from cli.targets.cloud.day2_util import region_facts
from cli.targets.cloud.failover import FailoverHooks, Preflight, Switch, plan_failover, run_failover
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from cli.targets.cloud.restore import (
    Backup,
    Leftover,
    Restored,
    replica_note,
    run_restore,
    with_host,
)
from cli.targets.cloud.workload import Fence
from stacks.workload_contract import REPLICA_LAG_ALARM_SECONDS

STACK_TAG = "imctl:stack"
NOTE_TAG = "imctl:note"
RESTORED_FROM_TAG = "imctl:restored-from"
# The content digest read just before a snapshot was requested, one tag per figure (a tag value
# cannot hold JSON): imctl:digest-messages, imctl:digest-max-seq, ...
DIGEST_TAG_PREFIX = "imctl:digest-"
PLANNED_MAX_LAG_SECONDS = float(REPLICA_LAG_ALARM_SECONDS)
# How recent a ReplicaLag datapoint must be to count as known.
LAG_WINDOW = timedelta(minutes=5)
# Route 53 is global; its API is served from us-east-1.
ROUTE53_REGION = "us-east-1"

_DB_FAILED = frozenset(
    {
        "failed",
        "storage-full",
        "restore-error",
        "insufficient-capacity",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "incompatible-credentials",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "deleting",
        "stopped",
        "stopping",
    }
)
_NODEGROUP_FAILED = frozenset({"CREATE_FAILED", "DELETE_FAILED", "DELETING", "DEGRADED"})


def default_session() -> Any:
    import boto3

    return boto3.session.Session()


def _digest_tags(digest: dict[str, int] | None) -> list[dict[str, str]]:
    if digest is None:
        return []
    return [
        {"Key": DIGEST_TAG_PREFIX + key.replace("_", "-"), "Value": str(digest[key])}
        for key in DIGEST_FIELDS
    ]


def _digest_from_tags(tags: dict[str, str]) -> dict[str, int] | None:
    return digest_of(
        {
            key: tags[DIGEST_TAG_PREFIX + key.replace("_", "-")]
            for key in DIGEST_FIELDS
            if DIGEST_TAG_PREFIX + key.replace("_", "-") in tags
        }
    )


class AwsOps:
    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        session_factory: Callable[[], Any] = default_session,
        poll_interval: float = 5.0,
        readyz: Callable[[str], bool] = http_readyz,
        planned_max_lag_seconds: float = PLANNED_MAX_LAG_SECONDS,
        catchup_timeout: float = 300.0,
    ) -> None:
        if outputs.cloud != "aws":
            raise UsageError(f"these outputs describe a {outputs.cloud} stack, not aws")
        self.outputs = outputs
        self._kube_factory = kube
        self._session_factory = session_factory
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._kubes: dict[str, KubeApi] = {}
        self._poll = poll_interval
        # A wss:// stack (issue 13) answers /readyz on 443 with a certificate for its name.
        tls_name = outputs.tls_name
        self._readyz = (
            (lambda endpoint: http_readyz(endpoint, tls_name=tls_name))
            if readyz is http_readyz and tls_name is not None
            else readyz
        )
        self.scope = Scope(outputs, self._kube, poll_interval, TIMEOUT_HINT)
        self._max_lag = planned_max_lag_seconds
        self._catchup_timeout = catchup_timeout

    # --- plumbing ---------------------------------------------------------------------------

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:

            def make() -> Any:
                from botocore.config import Config

                if self._session is None:
                    self._session = self._session_factory()
                config = Config(
                    retries={"mode": "standard", "max_attempts": 5},
                    connect_timeout=5,
                    read_timeout=30,
                )
                return self._session.client(service, region_name=region, config=config)

            self._clients[key] = aws_call(f"setting up the {service} client for {region}", make)
        return self._clients[key]

    def _kube(self, region: str) -> KubeApi:
        if region not in self._kubes:
            self._kubes[region] = self._kube_factory(region)
        return self._kubes[region]

    def _wait(
        self,
        what: str,
        probe: Callable[[], tuple[bool, str]],
        deadline: Deadline,
        progress: Note,
        limit: float | None = None,
    ) -> str:
        _, state = poll(
            probe,
            done=lambda r: r[0],
            state=lambda r: r[1],
            what=what,
            deadline=deadline,
            progress=progress,
            interval=self._poll,
            limit=limit,
            still_every=STILL_WAITING_EVERY,
        )
        return state

    def _describe_db(self, region: str, instance_id: str) -> dict[str, Any] | None:
        rds = self._client("rds", region)
        found = aws_call(
            f"describing DB instance {instance_id} in {region}",
            rds.describe_db_instances,
            absent=("DBInstanceNotFound", "DBInstanceNotFoundFault"),
            DBInstanceIdentifier=instance_id,
        )
        return dict(found["DBInstances"][0]) if found and found["DBInstances"] else None

    def _wait_db(
        self,
        region: str,
        instance_id: str,
        deadline: Deadline,
        progress: Note,
        *,
        promoted: bool = False,
    ) -> dict[str, Any]:
        """Wait until the instance is ``available`` (and, with ``promoted``, no longer a replica:
        right after PromoteReadReplica it still reads available-and-replica for a moment)."""
        latest: dict[str, Any] = {}

        def probe() -> tuple[bool, str]:
            inst = self._describe_db(region, instance_id)
            if inst is None:
                # Just created or renamed: the name can take a moment to become visible.
                return False, "not visible yet"
            latest.clear()
            latest.update(inst)
            status = str(inst.get("DBInstanceStatus"))
            if status in _DB_FAILED:
                raise ResourceFailure(
                    f"DB instance {instance_id} in {region} is {status}",
                    "see its events: aws rds describe-events --source-type db-instance "
                    f"--source-identifier {instance_id} --region {region}",
                )
            replica_of = inst.get("ReadReplicaSourceDBInstanceIdentifier")
            if promoted and replica_of:
                return False, f"{status}, still replicating from {replica_of}"
            return status == "available", status

        self._wait(f"DB instance {instance_id} ({region})", probe, deadline, progress)
        return latest

    def _rename_db(
        self, region: str, old: str, new: str, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        rds = self._client("rds", region)
        progress(f"renaming DB instance {old} to {new}")
        aws_call(
            f"renaming DB instance {old} to {new}",
            rds.modify_db_instance,
            DBInstanceIdentifier=old,
            NewDBInstanceIdentifier=new,
            ApplyImmediately=True,
        )
        return self._wait_db(region, new, deadline, progress)

    def _replica_lag(
        self, region: str, instance_id: str, since: datetime | None = None
    ) -> tuple[float, datetime] | None:
        """The latest ReplicaLag datapoint (Maximum over a minute), at or after ``since``
        (default: within LAG_WINDOW); None when CloudWatch has none: lag unknown."""
        cw = self._client("cloudwatch", region)
        now = datetime.now(UTC)
        start = since or now - LAG_WINDOW
        got = aws_call(
            f"reading ReplicaLag of {instance_id} in {region}",
            cw.get_metric_statistics,
            Namespace="AWS/RDS",
            MetricName="ReplicaLag",
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance_id}],
            StartTime=start,
            # Past "now": a datapoint stamped at the current minute still counts.
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Maximum"],
        )
        points = [
            (float(p["Maximum"]), p["Timestamp"].astimezone(UTC))
            for p in got.get("Datapoints", [])
            if "Maximum" in p and p["Timestamp"].astimezone(UTC) >= start
        ]
        return max(points, key=lambda p: p[1]) if points else None

    # --- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        o = self.outputs
        regions: dict[str, Any] = {}
        for name, r in o.regions.items():
            regions[name] = {
                **region_facts(r),
                "namespace": r.namespace,
                "deployment": r.deployment,
                "database": self._db_status(r),
                "readyz": self._readyz(r.endpoint),
            }
        primary = regions[o.primary_region]
        return {
            "cloud": "aws",
            "primary_region": o.primary_region,
            "standby_region": o.standby_region,
            "dns_name": o.dns_name,
            "hosted_zone_id": o.hosted_zone_id,
            "backup_bucket": o.backup_bucket,
            "regions": regions,
            "dns": self._dns_status(),
            "healthy": primary["readyz"] and primary["database"].get("status") == "available",
        }

    def _db_status(self, r: RegionOutputs) -> dict[str, Any]:
        try:
            inst = self._describe_db(r.name, r.db_instance_id)
            if inst is None:
                return {"status": "not found"}
            out: dict[str, Any] = {
                "status": inst.get("DBInstanceStatus"),
                "host": inst.get("Endpoint", {}).get("Address"),
                "replica_of": inst.get("ReadReplicaSourceDBInstanceIdentifier"),
            }
            if out["replica_of"]:
                out["replication"] = [
                    {"status": s.get("Status"), "normal": s.get("Normal")}
                    for s in inst.get("StatusInfos", [])
                    if s.get("StatusType") == "read replication"
                ]
                lag = self._replica_lag(r.name, r.db_instance_id)
                out["replica_lag_seconds"] = lag[0] if lag else None
                out["replica_lag_at"] = iso(lag[1]) if lag else None
            return out
        except CredentialsError:
            raise
        except ImctlError as exc:
            # One unreachable region must not hide the other's state.
            return {"status": "unknown", "error": exc.message}

    def _dns_status(self) -> dict[str, Any]:
        try:
            primary, secondary = self._failover_records()
        except CredentialsError:
            raise
        except ImctlError as exc:
            return {"error": exc.message}
        return {
            "record": self.outputs.dns_name,
            "primary_target": primary["ResourceRecords"][0]["Value"],
            "secondary_target": secondary["ResourceRecords"][0]["Value"],
        }

    # --- scale ------------------------------------------------------------------------------

    def scale(
        self,
        *,
        region: str | None,
        nodes: int | None,
        replicas: int | None,
        min_replicas: int | None,
        max_replicas: int | None,
        progress: Note,
        timeout: float,
    ) -> dict[str, Any]:
        if nodes is None and replicas is None and min_replicas is None and max_replicas is None:
            raise UsageError("nothing to scale", "give --nodes, --replicas, --min or --max")
        for flag, value, low in (
            ("--nodes", nodes, 0),
            ("--replicas", replicas, 0),
            ("--min", min_replicas, 1),
            ("--max", max_replicas, 1),
        ):
            if value is not None and value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
            raise UsageError(f"--min {min_replicas} is more than --max {max_replicas}")
        r = self.outputs.region(region or self.outputs.primary_region)
        deadline = Deadline(timeout, operation="scale", hint=TIMEOUT_HINT)
        result: dict[str, Any] = {"region": r.name}

        grow_nodes_first = False
        ng: dict[str, Any] = {}
        if nodes is not None:
            ng = self._describe_nodegroup(r)
            grow_nodes_first = nodes >= int(ng["scalingConfig"]["desiredSize"])
        if nodes is not None and grow_nodes_first:
            # More pods may need the new nodes: add capacity before asking for them.
            result["nodegroup"] = self._scale_nodegroup(r, ng, nodes, deadline, progress)
        if min_replicas is not None or max_replicas is not None:
            self._kube(r.name).patch_hpa(r.namespace, r.deployment, min_replicas, max_replicas)
            progress(f"HPA {r.namespace}/{r.deployment}: min {min_replicas}, max {max_replicas}")
            result["hpa"] = {"name": r.deployment, "min": min_replicas, "max": max_replicas}
        if replicas is not None:
            result["deployment"] = self._scale_deployment(r, replicas, deadline, progress)
        if nodes is not None and not grow_nodes_first:
            result["nodegroup"] = self._scale_nodegroup(r, ng, nodes, deadline, progress)
        return result

    def _scale_deployment(
        self, r: RegionOutputs, replicas: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        kube = self._kube(r.name)
        kube.scale_deployment(r.namespace, r.deployment, replicas)
        progress(f"Deployment {r.namespace}/{r.deployment}: {replicas} replicas")
        if replicas > 0:
            kube.wait_ready(r.namespace, r.deployment, deadline.remaining())
        else:
            self._wait_drained(r, kube, deadline, progress)
        desired, ready = kube.get_replicas(r.namespace, r.deployment)
        return {"name": r.deployment, "replicas": desired, "ready": ready}

    def _wait_drained(
        self, r: RegionOutputs, kube: KubeApi, deadline: Deadline, progress: Note
    ) -> None:
        def probe() -> tuple[bool, str]:
            _, ready = kube.get_replicas(r.namespace, r.deployment)
            return ready == 0, f"{ready} pods ready"

        self._wait(f"{r.deployment} in {r.name} to stop", probe, deadline, progress)

    def _describe_nodegroup(self, r: RegionOutputs) -> dict[str, Any]:
        eks = self._client("eks", r.name)
        found = aws_call(
            f"describing node group {r.nodegroup_name} of {r.cluster_name}",
            eks.describe_nodegroup,
            clusterName=r.cluster_name,
            nodegroupName=r.nodegroup_name,
        )
        return dict(found["nodegroup"])

    def _scale_nodegroup(
        self,
        r: RegionOutputs,
        ng: dict[str, Any],
        nodes: int,
        deadline: Deadline,
        progress: Note,
    ) -> dict[str, Any]:
        eks = self._client("eks", r.name)
        before = {k: int(ng["scalingConfig"][k]) for k in ("minSize", "maxSize", "desiredSize")}
        after = {
            "minSize": min(before["minSize"], nodes),
            # EKS rejects a desired size above the maximum; asking for more nodes means it.
            "maxSize": max(before["maxSize"], nodes, 1),
            "desiredSize": nodes,
        }
        out: dict[str, Any] = {"name": r.nodegroup_name, "before": before, "after": after}
        if after == before and ng.get("status") == "ACTIVE":
            return {**out, "changed": False}
        update = aws_call(
            f"updating node group {r.nodegroup_name}",
            eks.update_nodegroup_config,
            clusterName=r.cluster_name,
            nodegroupName=r.nodegroup_name,
            scalingConfig=after,
        )["update"]
        update_id = update["id"]
        progress(f"node group {r.nodegroup_name}: desired {before['desiredSize']} -> {nodes}")

        def update_done() -> tuple[bool, str]:
            got = aws_call(
                f"reading update {update_id} of node group {r.nodegroup_name}",
                eks.describe_update,
                name=r.cluster_name,
                nodegroupName=r.nodegroup_name,
                updateId=update_id,
            )["update"]
            status = str(got["status"])
            if status in ("Failed", "Cancelled"):
                errors = "; ".join(
                    f"{e.get('errorCode')}: {e.get('errorMessage')}" for e in got.get("errors", [])
                )
                raise ResourceFailure(
                    f"node group {r.nodegroup_name} update {update_id} {status.lower()}"
                    + (f": {errors}" if errors else ""),
                    "see the node group's health in the EKS console; the scaling config was "
                    "not applied",
                )
            return status == "Successful", status

        self._wait(f"node group update {update_id}", update_done, deadline, progress)

        def settled() -> tuple[bool, str]:
            now = self._describe_nodegroup(r)
            status = str(now.get("status"))
            desired = int(now["scalingConfig"]["desiredSize"])
            if status in _NODEGROUP_FAILED:
                issues = "; ".join(
                    f"{i.get('code')}: {i.get('message')}"
                    for i in now.get("health", {}).get("issues", [])
                )
                raise ResourceFailure(
                    f"node group {r.nodegroup_name} is {status}" + (f": {issues}" if issues else "")
                )
            return status == "ACTIVE" and desired == nodes, f"{status}, desired {desired}"

        self._wait(f"node group {r.nodegroup_name}", settled, deadline, progress)
        return {
            **out,
            "changed": True,
            "update_id": update_id,
            "max_raised": nodes > before["maxSize"],
        }

    # --- snapshots --------------------------------------------------------------------------

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
            "digest": _digest_from_tags(tags),
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
        rds = self._client("rds", region)
        found = aws_call(
            f"describing snapshot {snapshot_id} in {region}",
            rds.describe_db_snapshots,
            # A malformed id cannot name one of our snapshots: not found, not a failure.
            absent=("DBSnapshotNotFound", "DBSnapshotNotFoundFault", "InvalidParameterValue"),
            DBSnapshotIdentifier=snapshot_id,
        )
        return dict(found["DBSnapshots"][0]) if found and found["DBSnapshots"] else None

    def _find_snapshot(self, snapshot_id: str) -> tuple[str, dict[str, Any]]:
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
        deadline = Deadline(timeout, operation="snapshot create", hint=TIMEOUT_HINT)
        started = time.monotonic()
        r = self.outputs.primary
        rds = self._client("rds", r.name)
        sid = f"imctl-{slug(self.outputs.dns_name)}-{utc_stamp()}"
        tags = [{"Key": STACK_TAG, "Value": self.outputs.dns_name}]
        if note:
            tags.append({"Key": NOTE_TAG, "Value": tag_value(note)})
        # Read just before the request: everything it counts was committed before the snapshot.
        instance = self._describe_db(r.name, r.db_instance_id) or {}
        digest, warnings = snapshot_digest(
            self._kube,
            r,
            interval=self._poll,
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

        self._wait(f"snapshot {sid}", probe, deadline, progress)
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
            rds = self._client("rds", region)
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
        region, snap = self._find_snapshot(snapshot_id)
        return self._snapshot_info(region, snap)

    def snapshot_delete(self, snapshot_id: str, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout, operation="snapshot delete", hint=TIMEOUT_HINT)
        region, snap = self._find_snapshot(snapshot_id)
        sid = snap["DBSnapshotIdentifier"]
        rds = self._client("rds", region)
        progress(f"deleting snapshot {sid} ({region})")
        aws_call(f"deleting snapshot {sid}", rds.delete_db_snapshot, DBSnapshotIdentifier=sid)

        def gone() -> tuple[bool, str]:
            now = self._describe_snapshot(region, sid)
            return now is None, "deleted" if now is None else str(now.get("Status"))

        self._wait(f"snapshot {sid}", gone, deadline, progress)
        return {"deleted": [sid], "region": region}

    # --- restore ----------------------------------------------------------------------------

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
        return plan_failover(AwsFailover(self), self.scope, to_region, force)

    def failover(
        self, to_region: str, force: bool, progress: Note, timeout: float
    ) -> dict[str, Any]:
        return run_failover(AwsFailover(self), self.scope, to_region, force, progress, timeout)

    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        r = self.outputs.primary
        region, snap = self._find_snapshot(snapshot_id)
        sid = snap["DBSnapshotIdentifier"]
        if snap.get("Status") != "available":
            raise PreconditionFailed(f"snapshot {sid} is {snap.get('Status')}, not available")
        if region != r.name:
            raise PreconditionFailed(
                f"snapshot {sid} is in {region}, the primary is in {r.name}",
                f"copy it first: aws rds copy-db-snapshot --source-region {region} "
                f"--region {r.name} ...",
            )
        return Backup(sid, _digest_from_tags(tags_of(snap)))

    def restore_into(
        self,
        backup: Backup,
        target: RestoreTarget,
        current_url: str,
        made: Leftover,
        deadline: Deadline,
        progress: Note,
    ) -> Restored:
        r = self.outputs.primary
        source = self._describe_db(r.name, r.db_instance_id)
        if source is None:
            raise PreconditionFailed(
                f"DB instance {r.db_instance_id} is gone: its subnet group, security groups and "
                "parameter group are what the restore copies",
                "restore by hand (aws rds restore-db-instance-from-db-snapshot), then point "
                "the outputs at it",
            )
        stamp = utc_stamp()
        new_id = rds_id(r.db_instance_id, f"-r{stamp}")
        self._restore_instance(r.name, backup.id, new_id, source, progress)
        cleanup = (
            f"delete it with `aws rds delete-db-instance --db-instance-identifier {new_id}"
            f" --region {r.name} --skip-final-snapshot` (after turning off deletion protection,"
            " if it is on)"
        )
        made.created(new_id, cleanup, r.db_instance_id)
        inst = self._wait_db(r.name, new_id, deadline, progress)
        restored = Restored(
            instance=new_id,
            host="",
            url=None,
            previous=r.db_instance_id,
            # The way back if the restored content fails its check: the database used until now.
            previous_url=current_url,
            cleanup=cleanup,
        )
        if target == "in-place":
            old_renamed = rds_id(r.db_instance_id, f"-old-{stamp}")
            inst = self._swap_names(r, new_id, old_renamed, deadline, progress)
            # The original name (and address) now belongs to the restored instance.
            old = (self._describe_db(r.name, old_renamed) or {}).get("Endpoint") or {}
            restored.instance, restored.previous = r.db_instance_id, old_renamed
            restored.previous_url = (
                with_host(current_url, old["Address"], old.get("Port"))
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
            made.created(r.db_instance_id, restored.cleanup, old_renamed)
        restored.host = inst["Endpoint"]["Address"]
        restored.url = with_host(current_url, restored.host, inst["Endpoint"].get("Port"))
        if self.outputs.standby_region:
            restored.standby_note = replica_note(restored.previous)
        restored.recheck = functools.partial(self._still_available, r.name, restored.instance)
        return restored

    def _still_available(self, region: str, instance_id: str) -> None:
        after = self._describe_db(region, instance_id)
        if after is None or after.get("DBInstanceStatus") != "available":
            raise ResourceFailure(
                f"restored instance {instance_id} is "
                f"{after.get('DBInstanceStatus') if after else 'gone'} after the roll"
            )

    def _restore_instance(
        self, region: str, sid: str, new_id: str, source: dict[str, Any], progress: Note
    ) -> None:
        rds = self._client("rds", region)
        # A dict: the source may carry the tag from an earlier restore, and RDS refuses a
        # request that names one key twice.
        tag_map = {k: v for k, v in tags_of(source).items() if not k.startswith("aws:")}
        tag_map[RESTORED_FROM_TAG] = sid
        tags = [{"Key": k, "Value": v} for k, v in tag_map.items()]
        params: dict[str, Any] = {
            "DBInstanceIdentifier": new_id,
            "DBSnapshotIdentifier": sid,
            "DBInstanceClass": source["DBInstanceClass"],
            "MultiAZ": bool(source.get("MultiAZ", False)),
            "PubliclyAccessible": bool(source.get("PubliclyAccessible", False)),
            "CopyTagsToSnapshot": bool(source.get("CopyTagsToSnapshot", False)),
            "DeletionProtection": bool(source.get("DeletionProtection", False)),
            "Tags": tags,
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
        progress(f"restoring {sid} into new DB instance {new_id} ({region})")
        aws_call(
            f"restoring {sid} into {new_id}",
            rds.restore_db_instance_from_db_snapshot,
            **params,
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
        self._rename_db(r.name, r.db_instance_id, old_renamed, deadline, progress)
        try:
            return self._rename_db(r.name, new_id, r.db_instance_id, deadline, progress)
        except ImctlError as exc:
            # No instance answers to the original name now: try to put the old one back.
            rds = self._client("rds", r.name)
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

    # --- failover ---------------------------------------------------------------------------

    def _failover_records(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r53 = self._client("route53", ROUTE53_REGION)
        sets = aws_pages(
            f"listing records of hosted zone {self.outputs.hosted_zone_id}",
            r53,
            "list_resource_record_sets",
            "ResourceRecordSets",
            HostedZoneId=self.outputs.hosted_zone_id,
        )
        return failover_pair(sets, self.outputs.dns_name)


@dataclass
class _Preflight:
    """What the AWS pre-flight read, for the later steps."""

    # The Route 53 change that makes the new region PRIMARY; None: not readable at the time.
    changes: list[dict[str, Any]] | None
    lag: tuple[float, datetime] | None


# RDS cross-region replicas are asynchronous: acked messages since the last replayed
# transaction may be lost, and nothing here can count them.
_ASYNC = "asynchronous RDS replica: acked messages since its last replayed transaction may be lost"


class AwsFailover(FailoverHooks):
    """An RDS cross-region read replica promoted, and the Route 53 failover records swapped.
    A planned switchover needs a recent ReplicaLag under a limit before it starts, and one of
    0 after the fence before it promotes."""

    # Forced: the region is presumed lost; its pods are scaled to 0 and not waited for.
    forced_fence_waits = False

    def __init__(self, ops: AwsOps) -> None:
        self.ops = ops
        self.outputs = ops.outputs

    def preflight(self, run: Switch) -> Preflight:
        old, new, force = run.old, run.new, run.force
        standby = self.ops._describe_db(new.name, new.db_instance_id)
        if standby is None:
            raise PreconditionFailed(
                f"standby DB instance {new.db_instance_id} ({new.name}) not found"
            )
        # A failover that stopped after its promotion: a forced one resumes from there.
        already_promoted = not standby.get("ReadReplicaSourceDBInstanceIdentifier")
        changes: list[dict[str, Any]] | None = None
        try:
            primary_rec, secondary_rec = self.ops._failover_records()
            changes = failover_changes(primary_rec, secondary_rec, new.endpoint, old.endpoint)
        except ImctlError as exc:
            # Route 53's control plane lives in us-east-1, which may be the region that is
            # lost: a forced failover promotes anyway and tries DNS again at the end.
            if not force or isinstance(exc, CredentialsError):
                raise
            run.progress(f"Route 53 not readable now ({exc.message}); continuing: --force")
            run.details["route53_error"] = exc.message
        lag = None if already_promoted else self._read_lag(new, strict=not force)
        if not force:
            self._planned_preflight(new, standby, already_promoted, lag)
        run.state = _Preflight(changes, lag)
        run.details["already_promoted"] = already_promoted
        return Preflight(
            catch_up=f"wait until CloudWatch reports a ReplicaLag of 0 for {new.db_instance_id}"
            f" in a datapoint after the fence (at most {self.ops._catchup_timeout:g}s)",
            promote=(
                f"{new.db_instance_id} is already promoted: wait until it is available"
                if already_promoted
                else f"promote read replica {new.db_instance_id} ({new.name}) and wait until it"
                " is available and no longer a replica"
            ),
            dns=(
                f"Route 53 already answers {self.outputs.dns_name} with {new.endpoint}"
                if changes == []
                else f"swap the Route 53 failover records of {self.outputs.dns_name}: PRIMARY"
                f" -> {new.endpoint}, SECONDARY -> {old.endpoint}"
            ),
            resume=already_promoted,
        )

    def _read_lag(self, new: RegionOutputs, *, strict: bool) -> tuple[float, datetime] | None:
        try:
            return self.ops._replica_lag(new.name, new.db_instance_id)
        except ImctlError:
            # Forced: the lag only feeds the reported bound; unknown is an honest answer.
            if strict:
                raise
            return None

    def _planned_preflight(
        self,
        new: RegionOutputs,
        standby: dict[str, Any],
        already_promoted: bool,
        lag: tuple[float, datetime] | None,
    ) -> None:
        if already_promoted:
            raise PreconditionFailed(
                f"{new.db_instance_id} ({new.name}) is not a read replica",
                "an interrupted failover? --force finishes it",
            )
        if standby.get("DBInstanceStatus") != "available":
            raise PreconditionFailed(
                f"standby {new.db_instance_id} is {standby.get('DBInstanceStatus')}, not available"
            )
        broken = [
            s
            for s in standby.get("StatusInfos", [])
            if s.get("StatusType") == "read replication" and not s.get("Normal", True)
        ]
        if broken:
            raise PreconditionFailed(
                f"standby {new.db_instance_id} replication is {broken[0].get('Status')}: "
                f"{broken[0].get('Message', '')}",
                "fix replication, or --force (reports the data-loss bound)",
            )
        if lag is None:
            raise PreconditionFailed(
                f"the replica lag of {new.db_instance_id} is unknown: CloudWatch has no "
                f"ReplicaLag datapoint from the last {int(LAG_WINDOW.total_seconds() // 60)} "
                "minutes",
                "a planned switchover must see the standby catch up; wait for the metric, or "
                "--force to fail over with an unknown data-loss bound",
            )
        max_lag = self.ops._max_lag
        if lag[0] > max_lag:
            raise PreconditionFailed(
                f"standby {new.db_instance_id} is {lag[0]:g}s behind (limit {max_lag:g}s)",
                "wait and retry, or --force to fail over losing up to that much",
            )

    def planned_bound(self, run: Switch) -> dict[str, Any]:
        lag = self._state(run).lag
        return {
            "acked_messages": None,
            "replica_lag_seconds": lag[0] if lag else None,
            "basis": "CloudWatch ReplicaLag now; the switchover waits for 0 after the fence",
            "why": _ASYNC,
        }

    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        new = run.new
        # Whole seconds: CloudWatch stamps are coarser, a later point must not look earlier.
        since = datetime.fromtimestamp(int(fenced_at), UTC)

        def probe() -> tuple[bool, str]:
            lag = self.ops._replica_lag(new.name, new.db_instance_id, since=since)
            if lag is None:
                return False, "no ReplicaLag datapoint since writes stopped"
            return lag[0] == 0, f"ReplicaLag {lag[0]:g}s"

        try:
            self.ops._wait(
                f"{new.db_instance_id} to replay everything",
                probe,
                run.deadline,
                run.progress,
                limit=self.ops._catchup_timeout,
            )
        except OperationTimeout as exc:
            raise OperationTimeout(
                f"{new.db_instance_id} did not catch up: no ReplicaLag of 0 since writes "
                f"stopped ({exc.message}); nothing was promoted",
                "retry later, or --force to fail over with the last measured lag as the bound",
            ) from exc
        return {
            "acked_messages": None,
            "replica_lag_seconds": 0.0,
            "basis": "CloudWatch ReplicaLag after writes stopped",
            "why": _ASYNC,
        }

    def forced_bound(self, run: Switch) -> dict[str, Any]:
        lag = self._state(run).lag
        return {
            "acked_messages": None,
            "replica_lag_seconds": lag[0] if lag else None,
            "basis": "last CloudWatch ReplicaLag before the failover (async replica)",
            "why": _ASYNC
            + (f"; the last ReplicaLag was {lag[0]:g}s" if lag else "; its lag is unknown"),
        }

    def promote(self, run: Switch) -> None:
        new = run.new
        run.progress(f"promoting {new.db_instance_id} ({new.name})")
        rds = self.ops._client("rds", new.name)
        aws_call(
            f"promoting {new.db_instance_id}",
            rds.promote_read_replica,
            DBInstanceIdentifier=new.db_instance_id,
        )

    def refused(self, exc: ImctlError) -> bool:
        # The promotion is one request (its wait is await_promoted): an error from it means AWS
        # did not promote, so the replica is still one.
        return True

    def await_promoted(self, run: Switch) -> None:
        new = run.new
        self.ops._wait_db(new.name, new.db_instance_id, run.deadline, run.progress, promoted=True)

    def replicas(self, run: Switch, fence: Fence) -> int:
        new = run.new
        current, _ = self.ops._kube(new.name).get_replicas(new.namespace, new.deployment)
        wanted = int(self.outputs.extra.get("replicas", 0) or 0)
        return max(fence.previous_replicas or 0, current, wanted, 1)

    def point_dns(self, run: Switch) -> dict[str, Any]:
        old, new = run.old, run.new
        changes = self._state(run).changes
        if changes is None:
            primary_rec, secondary_rec = self.ops._failover_records()
            changes = failover_changes(primary_rec, secondary_rec, new.endpoint, old.endpoint)
        return {
            "record": self.outputs.dns_name,
            "primary": new.endpoint,
            "secondary": old.endpoint,
            "change_id": self._repoint_dns(changes, run.deadline, run.progress),
        }

    def _repoint_dns(
        self, changes: list[dict[str, Any]], deadline: Deadline, progress: Note
    ) -> str | None:
        if not changes:
            progress("Route 53 already points at the new primary")
            return None
        r53 = self.ops._client("route53", ROUTE53_REGION)
        info = aws_call(
            f"rewriting the failover records of {self.outputs.dns_name}",
            r53.change_resource_record_sets,
            HostedZoneId=self.outputs.hosted_zone_id,
            ChangeBatch={"Comment": "imctl failover", "Changes": changes},
        )["ChangeInfo"]
        change_id = str(info["Id"])

        def insync() -> tuple[bool, str]:
            got = aws_call(f"reading Route 53 change {change_id}", r53.get_change, Id=change_id)
            status = str(got["ChangeInfo"]["Status"])
            return status == "INSYNC", status

        self.ops._wait(f"Route 53 change {change_id}", insync, deadline, progress)
        return change_id

    def dns_hint(self, run: Switch) -> str:
        return (
            "while the old primary fails its health check, Route 53 already answers with the "
            f"SECONDARY ({run.new.endpoint}); to make it permanent run the same failover again"
            " with --force (it resumes), or swap the records by hand"
        )

    def next_steps(self, run: Switch) -> list[str]:
        old, new = run.old, run.new
        return [
            f"imctl deploy creates a new replica of {new.db_instance_id} in {old.name} and "
            f"drops {old.db_instance_id} from the stack without deleting it (keep it for "
            "forensics, then delete it by hand)"
        ]

    @staticmethod
    def _state(run: Switch) -> _Preflight:
        assert isinstance(run.state, _Preflight)
        return run.state
