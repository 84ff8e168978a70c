"""Alibaba Cloud day-2 operations: ApsaraDB RDS backups, restore by cloning into a new instance,
failover to the disaster-recovery instance with an Alidns flip, ACK node pool sizing; the
workload through ``KubeApi``.

SDKs: the generated alibabacloud clients for RDS (2014-08-15), CS (2015-12-15) and Alidns
(2015-01-09); DTS (2020-01-01) through tea-openapi's generic ``call_api`` (its SDK is not a
dependency). ``endpoint_override`` (``http://127.0.0.1:PORT``) sends every product to one
place, a local emulation in tests. Nothing imports an SDK until an operation runs.

What the stack builds decides what failover can do: the standby region holds an independent HA
instance that a one-way DTS synchronization keeps in step (ApsaraDB has no cross-region replica
for PostgreSQL). That instance is already writable, so "promotion" is stopping DTS from writing
into it (SuspendDtsJob) after the old primary's workload is fenced. A planned switchover waits
until DTS reports no delay and a checkpoint later than the fence; a forced one reports the last
delay as the data-loss bound. Nothing syncs back: the old primary does not rejoin.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from cli.deadline import Deadline, poll

# The local target's error: every target raises the same one for an unknown id.
from cli.errors import (
    CredentialsError,
    ImctlError,
    PreconditionFailed,
    ResourceFailure,
    SnapshotNotFound,
)
from cli.progress import Note
from cli.snapshots import RestoreTarget
from cli.targets.cloud.content import snapshot_digest
from cli.targets.cloud.day2_util import RegionalOps
from cli.targets.cloud.dns import DNS_TYPES, record_type, relative_name
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
    run_restore,
)
from stacks.workload_contract import DB_PORT, DB_USER

DTS_VERSION = "2020-01-01"
LIST_WINDOW_DAYS = 90  # DescribeBackups wants a short time range; backups older than this hide
# DTS states in which the job may still write into the standby (a failed or paused one won't).
_DTS_RUNNING = ("Synchronizing", "Initializing", "Retrying", "Modifying", "Upgrade", "Downgrade")
# The generated client's method per RDS action (its snake_case folds acronym runs).
RDS_METHODS = {
    "CreateBackup": "create_backup",
    "DescribeBackupTasks": "describe_backup_tasks",
    "DescribeBackups": "describe_backups",
    "DeleteBackup": "delete_backup",
    "CloneDBInstance": "clone_dbinstance",
    "DescribeDBInstanceAttribute": "describe_dbinstance_attribute",
    "ModifySecurityIps": "modify_security_ips",
    "ResetAccountPassword": "reset_account_password",
}
_AUTH_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken",
    "IncompleteSignature",
    "InvalidCredentials",
    "Forbidden",
    "NoPermission",
)


class AlicloudOps(RegionalOps):
    """``CloudOps`` for Alibaba Cloud, authenticated with an AccessKey pair."""

    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        access_key_id: str,
        access_key_secret: str,
        endpoint_override: str | None = None,
        poll_interval: float = 10.0,
        readyz_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            outputs,
            kube,
            cloud="alicloud",
            poll_interval=poll_interval,
            readyz_timeout=readyz_timeout,
        )
        if not access_key_id or not access_key_secret:
            raise CredentialsError(
                "no Alibaba Cloud AccessKey",
                "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            )
        self._ak = (access_key_id, access_key_secret)
        self._override = urlsplit(endpoint_override) if endpoint_override else None
        self._clients: dict[tuple[str, str], Any] = {}

    # --- plumbing -----------------------------------------------------------------------------

    def _config(self, region: str, endpoint: str | None = None) -> Any:
        from alibabacloud_tea_openapi import models as open_api

        cfg = open_api.Config(
            access_key_id=self._ak[0],
            access_key_secret=self._ak[1],
            region_id=region,
            connect_timeout=10_000,
            read_timeout=30_000,
        )
        if self._override is not None:
            cfg.endpoint = self._override.netloc
            cfg.protocol = self._override.scheme or "https"
        elif endpoint is not None:
            cfg.endpoint = endpoint
        return cfg

    def _client(self, product: str, region: str) -> Any:
        key = (product, region)
        if key not in self._clients:
            if product == "rds":
                from alibabacloud_rds20140815.client import Client as Rds

                self._clients[key] = Rds(self._config(region))
            elif product == "cs":
                from alibabacloud_cs20151215.client import Client as Cs

                self._clients[key] = Cs(self._config(region, f"cs.{region}.aliyuncs.com"))
            elif product == "alidns":
                from alibabacloud_alidns20150109.client import Client as Alidns

                self._clients[key] = Alidns(self._config(region, "alidns.aliyuncs.com"))
            else:
                from alibabacloud_tea_openapi.client import Client as OpenApi

                self._clients[key] = OpenApi(self._config(region, f"dts.{region}.aliyuncs.com"))
        return self._clients[key]

    def _call(self, fn: Callable[[], Any], what: str, *, mutation: bool = False) -> dict[str, Any]:
        """Run one SDK call and return its body as the wire's JSON names; failures map onto the
        exit-code contract. Reads are retried on throttling and server errors; mutations are
        not, so nothing happens twice."""
        from alibabacloud_tea_openapi.exceptions import (
            AlibabaCloudException,
            ServerException,
            ThrottlingException,
        )
        from Tea.exceptions import TeaException, UnretryableException

        attempts = 1 if mutation else 3
        for attempt in range(attempts):
            try:
                resp = fn()
            except (ThrottlingException, ServerException) as exc:
                if attempt + 1 < attempts:
                    time.sleep(1.0 + attempt)
                    continue
                raise _api_error(exc, what) from None
            except AlibabaCloudException as exc:
                raise _api_error(exc, what) from None
            except UnretryableException as exc:
                raise unreachable(what, exc, mutation=mutation) from None
            except TeaException as exc:
                raise _api_error(exc, what) from None
            if isinstance(resp, dict):  # call_api
                body = dict(resp.get("body") or {})
                if body.get("Success") is False or body.get("Success") == "false":
                    raise _dts_error(body, what)
                return body
            return dict(resp.body.to_map() if resp.body is not None else {})
        raise AssertionError("unreachable")

    def _rds(
        self,
        region: str,
        action: str,
        params: Mapping[str, Any],
        what: str,
        *,
        mutation: bool = False,
    ) -> dict[str, Any]:
        """One RDS action, with the request model built from the wire names the API documents
        (``from_map``), so parameters read like the API reference."""
        from alibabacloud_rds20140815 import models as rds

        request = getattr(rds, f"{action}Request")().from_map(dict(params))
        method = getattr(self._client("rds", region), RDS_METHODS[action])
        return self._call(lambda: method(request), what, mutation=mutation)

    def _dts(
        self,
        region: str,
        action: str,
        query: Mapping[str, Any],
        what: str,
        *,
        mutation: bool = False,
    ) -> dict[str, Any]:
        from alibabacloud_tea_openapi import models as open_api

        params = open_api.Params(
            action=action,
            version=DTS_VERSION,
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = open_api.OpenApiRequest(query={k: str(v) for k, v in query.items()})
        client = self._client("dts", region)
        return self._call(
            lambda: client.call_api(params, request, _runtime()), what, mutation=mutation
        )

    # --- RDS reads ----------------------------------------------------------------------------

    def _attribute(self, region: str, instance: str) -> dict[str, Any]:
        doc = self._rds(
            region,
            "DescribeDBInstanceAttribute",
            {"DBInstanceId": instance},
            f"reading RDS instance {instance}",
        )
        items = (doc.get("Items") or {}).get("DBInstanceAttribute") or []
        if not items:
            raise ResourceFailure(f"RDS instance {instance} not found", code="not_found")
        return dict(items[0])

    def _backup(self, snapshot_id: str) -> dict[str, Any]:
        r = self.outputs.primary
        if not snapshot_id.isdigit():
            raise SnapshotNotFound(
                f"no backup {snapshot_id!r} (ApsaraDB backup ids are numbers)",
                "imctl snapshot list",
            )
        doc = self._rds(
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

    # --- CloudOps -----------------------------------------------------------------------------

    def _db_status(self, r: RegionOutputs) -> dict[str, Any]:
        return {"db_state": self._attribute(r.name, r.db_instance_id).get("DBInstanceStatus")}

    def _standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        try:
            job = self._dts_job(standby)
        except ImctlError as exc:
            return {"dts": {"error": exc.message}}
        return {"dts": None if job is None else _job_summary(job)}

    def _dns_points_to(self) -> list[dict[str, Any]]:
        return [
            {"type": rec.get("Type"), "value": rec.get("Value"), "line": rec.get("Line")}
            for rec in self._records()
        ]

    def _cluster_id(self, r: RegionOutputs) -> str:
        """The CS API addresses clusters by id; the outputs carry the name (and the id only
        when the outputs contract keeps it)."""
        known = getattr(r, "cluster_id", None)
        if known:
            return str(known)
        from alibabacloud_cs20151215 import models as cs

        client = self._client("cs", r.name)
        request = cs.DescribeClustersV1Request().from_map(
            {"name": r.cluster_name, "region_id": r.name}
        )
        doc = self._call(
            lambda: client.describe_clusters_v1(request), f"finding cluster {r.cluster_name}"
        )
        ids = [
            c["cluster_id"] for c in doc.get("clusters") or [] if c.get("name") == r.cluster_name
        ]
        if len(ids) != 1:
            raise ResourceFailure(
                f"{len(ids)} ACK clusters named {r.cluster_name} in {r.name}",
                "check cluster_name in the outputs",
                code="not_found" if not ids else None,
            )
        return str(ids[0])

    def _modify_pool(
        self, region: str, cluster: str, pool_id: str, body: dict[str, Any], what: str
    ) -> dict[str, Any]:
        """ModifyClusterNodePool with exactly ``body``. Not through the typed request: its
        nested models serialize every unset list as ``[]`` (data_disks, tags, ...), and a PUT
        that names a field may reset it; this sends only what is meant to change."""
        from alibabacloud_tea_openapi import models as open_api

        params = open_api.Params(
            action="ModifyClusterNodePool",
            version="2015-12-15",
            protocol="HTTPS",
            pathname=f"/clusters/{quote(cluster, safe='')}/nodepools/{quote(pool_id, safe='')}",
            method="PUT",
            auth_type="AK",
            style="ROA",
            req_body_type="json",
            body_type="json",
        )
        client = self._client("cs", region)
        request = open_api.OpenApiRequest(body=body)
        return self._call(lambda: client.call_api(params, request, _runtime()), what, mutation=True)

    def _scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        """ACK adds nodes with ScaleClusterNodePool and removes them through the pool's desired
        size. With auto scaling on (as the stack creates it) it refuses manual sizing, so the
        bound on the side of the change moves to ``nodes`` and ESS brings the pool there."""
        from alibabacloud_cs20151215 import models as cs

        client = self._client("cs", r.name)
        cluster = self._cluster_id(r)
        pool_id = r.nodegroup_name

        def detail() -> dict[str, Any]:
            return self._call(
                lambda: client.describe_cluster_node_pool_detail(cluster, pool_id),
                f"reading node pool {pool_id}",
            )

        pool = detail()
        total = int((pool.get("status") or {}).get("total_nodes") or 0)
        auto = pool.get("auto_scaling") or {}
        out: dict[str, Any] = {"node_pool": pool_id, "cluster_id": cluster, "before": total}
        task: str | None = None
        if auto.get("enable"):
            lo, hi = int(auto.get("min_instances", 0)), int(auto.get("max_instances", 0))
            if nodes > total:
                lo, hi = nodes, max(hi, nodes)
            elif nodes < total:
                lo, hi = min(lo, nodes), nodes
            out["autoscaling"] = {"min": lo, "max": hi}
            if (lo, hi) != (auto.get("min_instances"), auto.get("max_instances")):
                progress(f"{r.name}: auto scaling bounds of {pool_id} -> {lo}..{hi}")
                doc = self._modify_pool(
                    r.name,
                    cluster,
                    pool_id,
                    {"auto_scaling": {"enable": True, "min_instances": lo, "max_instances": hi}},
                    f"changing the auto scaling bounds of {pool_id}",
                )
                task = doc.get("task_id")
        elif nodes > total:
            progress(f"{r.name}: adding {nodes - total} node(s) to {pool_id}")
            scale_out = cs.ScaleClusterNodePoolRequest().from_map({"count": nodes - total})
            doc = self._call(
                lambda: client.scale_cluster_node_pool(cluster, pool_id, scale_out),
                f"scaling out {pool_id}",
                mutation=True,
            )
            task = doc.get("task_id")
        elif nodes < total:
            progress(f"{r.name}: desired size of {pool_id} -> {nodes}")
            doc = self._modify_pool(
                r.name,
                cluster,
                pool_id,
                {"scaling_group": {"desired_size": nodes}},
                f"scaling in {pool_id}",
            )
            task = doc.get("task_id")
        if task:
            final = poll(
                lambda: self._call(lambda: client.describe_task_info(task), f"reading task {task}"),
                done=lambda t: t.get("state") in ("success", "fail", "failed"),
                state=lambda t: str(t.get("state")),
                what=f"task {task}",
                deadline=deadline,
                progress=progress,
                interval=self._interval,
                unknown_hint=f"aliyun cs GET /tasks/{task}",
            )
            if final.get("state") != "success":
                error = final.get("error") or {}
                raise ResourceFailure(
                    f"scaling {pool_id} failed: {error.get('message') or final.get('state')}"
                )
        pool = poll(
            detail,
            done=lambda p: (
                (p.get("status") or {}).get("state") == "active"
                and int((p.get("status") or {}).get("total_nodes") or 0) == nodes
            ),
            state=lambda p: (
                f"{(p.get('status') or {}).get('state')},"
                f" {(p.get('status') or {}).get('total_nodes')} node(s)"
            ),
            what=f"node pool {pool_id}",
            deadline=deadline,
            progress=progress,
            interval=self._interval,
        )
        out["total"] = int((pool.get("status") or {}).get("total_nodes") or 0)
        return out

    def snapshot_create(self, note: str | None, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        r = self.outputs.primary
        # Read just before the request, and reported; ApsaraDB has nowhere to keep it with the
        # backup (no description, no tags), so a restore cannot compare with it.
        digest, warnings = snapshot_digest(self.kube, r, interval=self._interval, progress=progress)
        for warning in warnings:
            progress(f"warning: {warning}")
        started = time.time()
        progress(f"starting a physical backup of {r.db_instance_id}")
        doc = self._rds(
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
            tasks = self._rds(
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
            interval=self._interval,
            unknown_hint=f"DescribeBackupTasks of {r.db_instance_id}, job {job_id}",
        )
        if final.get("BackupStatus") == "Failed":
            raise ResourceFailure(f"backup job {job_id} of {r.db_instance_id} failed")
        backup_id = final.get("BackupId") or self._find_manual_backup(r, started)
        backup = self._backup(str(backup_id))
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
        doc = self._rds(
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
            doc = self._rds(
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
        return self._snapshot(self._backup(snapshot_id))

    def snapshot_delete(self, snapshot_id: str, progress: Note, timeout: float) -> dict[str, Any]:
        deadline = Deadline(timeout)
        r = self.outputs.primary
        backup = self._backup(snapshot_id)
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
        self._rds(
            r.name,
            "DeleteBackup",
            {"DBInstanceId": r.db_instance_id, "BackupId": snapshot_id},
            f"deleting backup {snapshot_id}",
            mutation=True,
        )

        def gone() -> bool:
            try:
                self._backup(snapshot_id)
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
            interval=self._interval,
        )
        return {
            "id": snapshot_id,
            "instance": r.db_instance_id,
            "deleted": True,
            "status": "deleted",
        }

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
        return plan_failover(AlicloudFailover(self), self.scope, to_region, force)

    def failover(
        self, to_region: str, force: bool, progress: Note, timeout: float
    ) -> dict[str, Any]:
        return run_failover(AlicloudFailover(self), self.scope, to_region, force, progress, timeout)

    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        if target == "in-place":
            raise PreconditionFailed(
                "ApsaraDB RDS for PostgreSQL restores a backup only into a new instance"
                " (CloneDBInstance); there is no in-place restore",
                "restore into a new instance (the default)",
            )
        backup = self._backup(snapshot_id)
        if backup.get("BackupStatus") != "Success":
            raise PreconditionFailed(f"backup {snapshot_id} is {backup.get('BackupStatus')}")
        # No digest was kept with the backup (nowhere to keep it): density only.
        return Backup(snapshot_id, None)

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
        source = r.db_instance_id
        src = self._attribute(r.name, source)
        slave_zones = [
            z.get("ZoneId") for z in (src.get("SlaveZones") or {}).get("SlaveZone") or []
        ]
        params: dict[str, Any] = {
            "DBInstanceId": source,
            "BackupId": backup.id,
            "BackupType": "FullBackup",
            "PayType": "Postpaid",
            "InstanceNetworkType": "VPC",
            "VPCId": src.get("VpcId"),
            "VSwitchId": src.get("VSwitchId"),
            "ZoneId": src.get("ZoneId"),
            "DBInstanceClass": src.get("DBInstanceClass"),
            "DBInstanceStorage": src.get("DBInstanceStorage"),
            "DBInstanceStorageType": src.get("DBInstanceStorageType"),
            "DBInstanceDescription": f"imctl restore of backup {backup.id} of {source}",
            # Lower case on the wire: the SDK would send Python's "True".
            "DeletionProtection": "true",
            "RegionId": r.name,
            # Idempotency: a retried request with the same token makes no second instance.
            "ClientToken": str(uuid.uuid4()),
        }
        if slave_zones:
            params["ZoneIdSlave1"] = slave_zones[0]
        params = {k: v for k, v in params.items() if v is not None}
        progress(f"cloning {source} from backup {backup.id} into a new instance")
        doc = self._rds(r.name, "CloneDBInstance", params, f"cloning {source}", mutation=True)
        new = str(doc.get("DBInstanceId") or "")
        if not new:
            raise ResourceFailure(f"CloneDBInstance of {source} returned no instance id")
        cleanup = "release it in the RDS console (deletion protection is on)"
        made.created(new, cleanup, source)
        inst = self._wait_running(r.name, new, deadline, progress)
        wanted = _ips(src.get("SecurityIPList"))
        if not wanted <= _ips(inst.get("SecurityIPList")):
            progress(f"{new}: copying the IP whitelist of {source}")
            self._rds(
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
        self._rds(
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
            previous_url=current_url,
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
            lambda: self._attribute(region, instance),
            done=lambda a: a.get("DBInstanceStatus") == "Running",
            state=lambda a: str(a.get("DBInstanceStatus")),
            what=f"RDS instance {instance}",
            deadline=deadline,
            progress=progress,
            interval=self._interval,
            unknown_hint=f"aliyun rds DescribeDBInstanceAttribute --DBInstanceId {instance}",
        )

    # --- failover -----------------------------------------------------------------------------

    def _dts_job(self, standby: RegionOutputs) -> dict[str, Any] | None:
        """The synchronization job writing into the standby's instance (the stack makes one)."""
        doc = self._dts(
            standby.name,
            "DescribeDtsJobs",
            {
                "Region": standby.name,
                "RegionId": standby.name,
                "JobType": "SYNC",
                "Type": "rds",
                "Params": standby.db_instance_id,
                "PageSize": 30,
                "PageNumber": 1,
            },
            f"finding the DTS job that feeds {standby.db_instance_id}",
        )
        jobs = [
            j
            for j in doc.get("DtsJobList") or []
            if (j.get("DestinationEndpoint") or {}).get("InstanceID") == standby.db_instance_id
        ]
        return dict(jobs[0]) if jobs else None

    # --- Alidns -------------------------------------------------------------------------------

    def _records(self) -> list[dict[str, Any]]:
        zone = self.outputs.hosted_zone_id
        rr = relative_name(self.outputs.dns_name, zone)
        from alibabacloud_alidns20150109 import models as alidns

        client = self._client("alidns", self.outputs.primary_region)
        request = alidns.DescribeDomainRecordsRequest().from_map(
            {"DomainName": zone, "RRKeyWord": rr, "PageSize": 500}
        )
        doc = self._call(
            lambda: client.describe_domain_records(request),
            f"reading the records of {self.outputs.dns_name}",
        )
        records = (doc.get("DomainRecords") or {}).get("Record") or []
        # RRKeyWord matches fuzzily; only this exact name counts.
        return [dict(x) for x in records if x.get("RR") == rr and x.get("Type") in DNS_TYPES]

    def _point_dns(self, run: Switch) -> dict[str, Any]:
        new, progress = run.new, run.progress
        from alibabacloud_alidns20150109 import models as alidns

        client = self._client("alidns", self.outputs.primary_region)
        rr = relative_name(self.outputs.dns_name, self.outputs.hosted_zone_id)
        records = [x for x in self._records() if x.get("Line", "default") == "default"]
        if not records:
            raise ResourceFailure(
                f"no default-line record for {self.outputs.dns_name} in Alidns",
                "the stack creates one; check hosted_zone_id and dns_name in the outputs",
            )
        rtype = record_type(new.endpoint)
        before = [{"type": x.get("Type"), "value": x.get("Value")} for x in records]
        changed = False
        for rec in records:
            if rec.get("Type") == rtype and rec.get("Value") == new.endpoint:
                continue  # Alidns rejects an update that changes nothing
            progress(f"pointing {self.outputs.dns_name} ({rec.get('RecordId')}) at {new.endpoint}")
            fields = {
                "RecordId": rec["RecordId"],
                "RR": rr,
                "Type": rtype,
                "Value": new.endpoint,
                "TTL": rec.get("TTL"),
                "Line": rec.get("Line"),
            }
            request = alidns.UpdateDomainRecordRequest().from_map(
                {k: v for k, v in fields.items() if v is not None}
            )
            self._call(
                functools.partial(client.update_domain_record, request),
                f"updating the record of {self.outputs.dns_name}",
                mutation=True,
            )
            changed = True
        after = [
            {"type": x.get("Type"), "value": x.get("Value")}
            for x in self._records()
            if x.get("Line", "default") == "default"
        ]
        if any(a != {"type": rtype, "value": new.endpoint} for a in after):
            raise ResourceFailure(f"{self.outputs.dns_name} reads {after} after the update")
        out: dict[str, Any] = {
            "name": self.outputs.dns_name,
            "before": before,
            "after": after,
            "changed": changed,
        }
        if any(b["type"] == "CNAME" for b in before):
            out["note"] = (
                "the name pointed at a CNAME (the stack's GTM instance when it has a standby);"
                " it now points straight at the new region, bypassing GTM until a deploy"
                " restores the stack's record"
            )
        return out


class AlicloudFailover(FailoverHooks):
    """The standby region holds an independent HA instance that a one-way DTS synchronization
    keeps in step (ApsaraDB has no cross-region replica for PostgreSQL). It is writable all
    along, so the switch is stopping DTS from writing into it; nothing syncs back."""

    switch_verb = "switched"

    def __init__(self, ops: AlicloudOps) -> None:
        self.ops = ops
        self.outputs = ops.outputs

    def preflight(self, run: Switch) -> Preflight:
        old, new = run.old, run.new
        target = self.ops._attribute(new.name, new.db_instance_id)
        if target.get("DBInstanceStatus") != "Running":
            raise PreconditionFailed(
                f"{new.db_instance_id} in {new.name} is {target.get('DBInstanceStatus')}"
            )
        # The catch-up wait refreshes the job; the switch acts on the latest.
        job = run.state = self.ops._dts_job(new)
        if not run.force:
            if job is None or job.get("Status") != "Synchronizing":
                state = "no DTS job" if job is None else f"DTS job {job.get('Status')}"
                raise PreconditionFailed(
                    f"{new.db_instance_id} is not being synchronized ({state}): a planned"
                    " switchover needs a running synchronization",
                    f"if the primary is lost: imctl failover --to-region {new.name} --force",
                )
            primary = self.ops._attribute(old.name, old.db_instance_id)
            if primary.get("DBInstanceStatus") != "Running":
                raise PreconditionFailed(
                    f"primary {old.db_instance_id} is {primary.get('DBInstanceStatus')}",
                    f"if it is lost: imctl failover --to-region {new.name} --force",
                )
        run.details["dts_job"] = None if job is None else _job_summary(job)
        return Preflight(
            catch_up=f"wait until the DTS job into {new.db_instance_id} reports no delay and a"
            " checkpoint later than the fence",
            promote=(
                f"suspend DTS job {job.get('DtsJobId')}, so nothing more from"
                f" {old.db_instance_id} lands in {new.db_instance_id} (writable all along)"
                if job is not None and job.get("Status") in _DTS_RUNNING
                else f"nothing to suspend: no DTS job writes into {new.db_instance_id}"
            ),
            dns=f"point {self.outputs.dns_name} (Alidns zone {self.outputs.hosted_zone_id},"
            f" default line) at {new.endpoint}",
        )

    def planned_bound(self, run: Switch) -> dict[str, Any]:
        return {
            "acked_messages": 0,
            "why": f"{run.old.name}'s im-server is fenced first, and DTS is stopped only after it"
            " reports no delay and a checkpoint after the fence",
        }

    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        standby = run.new

        def fetch() -> dict[str, Any]:
            return self.ops._dts_job(standby) or {"Status": "missing"}

        def done(j: Mapping[str, Any]) -> bool:
            return (
                j.get("Status") == "Synchronizing"
                and str(j.get("Delay")) == "0"
                and _int(j.get("Checkpoint")) > fenced_at
            )

        job = run.state = poll(
            fetch,
            done=done,
            state=lambda j: (
                f"{j.get('Status')}, delay {j.get('Delay')}s,"
                f" checkpoint {'after' if _int(j.get('Checkpoint')) > fenced_at else 'before'}"
                " the fence"
            ),
            what=f"DTS into {standby.db_instance_id}",
            deadline=run.deadline,
            progress=run.progress,
            interval=self.ops.scope.interval,
        )
        return {
            "acked_messages": 0,
            "replica_lag_seconds": 0,
            "basis": f"DTS delay and checkpoint ({job.get('Checkpoint')})",
            "why": f"{run.old.name}'s im-server was fenced, then DTS reported no delay and a"
            f" checkpoint ({job.get('Checkpoint')}) after the fence",
        }

    def forced_bound(self, run: Switch) -> dict[str, Any]:
        job = run.state
        delay = None if job is None else job.get("Delay")
        why = (
            "no DTS job found: the standby's staleness is unknown"
            if job is None
            else f"one-way DTS synchronization, last reported delay {delay}s"
            f" (status {job.get('Status')}); writes inside it may be lost"
        )
        return {
            "acked_messages": None,
            "replica_lag_seconds": None if delay is None else float(delay),
            "why": why,
        }

    def promote(self, run: Switch) -> None:
        # A job that refuses to stop is still syncing: that is a refusal, nothing switched.
        job = run.state
        if job is not None and job.get("Status") in _DTS_RUNNING:
            self._stop_dts(run, job)

    def _stop_dts(self, run: Switch, job: Mapping[str, Any]) -> None:
        """Pause the synchronization, so nothing from the old primary lands in the new one."""
        standby = run.new
        run.progress(f"suspending DTS job {job.get('DtsJobId')} into {standby.db_instance_id}")
        self.ops._dts(
            standby.name,
            "SuspendDtsJob",
            {
                "DtsJobId": job.get("DtsJobId"),
                "DtsInstanceId": job.get("DtsInstanceID"),
                "RegionId": standby.name,
            },
            f"suspending DTS job {job.get('DtsJobId')}",
            mutation=True,
        )
        poll(
            lambda: self.ops._dts_job(standby) or {"Status": "missing"},
            done=lambda j: j.get("Status") in ("Suspending", "missing"),
            state=lambda j: str(j.get("Status")),
            what=f"DTS job {job.get('DtsJobId')}",
            deadline=run.deadline,
            progress=run.progress,
            interval=self.ops.scope.interval,
        )

    def await_promoted(self, run: Switch) -> None:
        """A suspended job writes nothing more, and the instance took writes all along."""

    def point_dns(self, run: Switch) -> dict[str, Any]:
        return self.ops._point_dns(run)

    def dns_hint(self, run: Switch) -> str:
        return (
            f"point {self.outputs.dns_name} at {run.new.endpoint} in Alidns zone"
            f" {self.outputs.hosted_zone_id} by hand (default line)"
        )

    def next_steps(self, run: Switch) -> list[str]:
        old, new = run.old, run.new
        return [
            f"{old.db_instance_id} no longer feeds {new.db_instance_id}; imctl deploy sets up"
            f" DTS from {new.db_instance_id} to a fresh instance in {old.name} and drops"
            f" {old.db_instance_id} from the stack without deleting it (keep it for forensics,"
            " then delete it by hand)"
        ]


# --- helpers --------------------------------------------------------------------------------


def _runtime() -> Any:
    """Per-call options for ``call_api`` (the generated clients make their own)."""
    from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

    return RuntimeOptions()


def _api_error(exc: Any, what: str) -> ImctlError:
    status = int(getattr(exc, "status_code", 0) or getattr(exc, "statusCode", 0) or 0)
    return _error(
        str(getattr(exc, "code", "") or ""), str(getattr(exc, "message", "") or exc), status, what
    )


def _dts_error(body: Mapping[str, Any], what: str) -> ImctlError:
    """DTS may answer HTTP 200 with ``Success: false`` and the error in the body."""
    return _error(
        str(body.get("ErrCode") or body.get("Code") or ""),
        str(body.get("ErrMessage") or body.get("Message") or "the call failed"),
        int(body.get("HttpStatusCode") or 0),
        what,
    )


def _error(code: str, message: str, status: int, what: str) -> ImctlError:
    text = f"{what}: {code}: {message}" if code else f"{what}: {message}"
    if status in (401, 403) or any(code.startswith(c) for c in _AUTH_CODES):
        return CredentialsError(
            text, "check the AccessKey and the RAM policy in docs/runbook.md (Alibaba permissions)"
        )
    if status == 404 or "NotFound" in code:
        return ResourceFailure(text, "check the outputs (imctl status)", code="not_found")
    return ResourceFailure(text)


def _job_summary(job: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": job.get("DtsJobId"),
        "instance": job.get("DtsInstanceID"),
        "status": job.get("Status"),
        "delay_seconds": job.get("Delay"),
        "checkpoint": job.get("Checkpoint"),
    }


def _ips(value: Any) -> set[str]:
    return {ip.strip() for ip in str(value or "").split(",") if ip.strip()}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _minute(t: float) -> str:
    """DescribeBackups' time format: minutes, UTC."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t))
