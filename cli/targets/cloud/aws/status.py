"""AWS status and scale: what each region's RDS instance, ReplicaLag, /readyz and the Route 53
records say, and sizing an EKS node group and the im-server Deployment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.deadline import Deadline
from cli.errors import CredentialsError, ImctlError, ResourceFailure, UsageError
from cli.progress import Note
from cli.targets.cloud.aws.api import AwsApi, aws_call, iso
from cli.targets.cloud.aws.dns import failover_records
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import RegionOutputs
from cli.targets.cloud.probes import readyz
from cli.targets.cloud.status import region_facts
from cli.targets.cloud.workload import workload_status

_NODEGROUP_FAILED = frozenset({"CREATE_FAILED", "DELETE_FAILED", "DELETING", "DEGRADED"})


def http_readyz(endpoint: str, timeout: float = 2.0, tls_name: str | None = None) -> bool:
    """True when ``http://<endpoint>/readyz`` (with ``tls_name``: https on 443, the certificate
    checked against that name) answers 200; anything else (refused, DNS, 503, slow) is False:
    status reports it, it never decides anything destructive on it."""
    return readyz(endpoint, timeout, tls_name) == "ok"


class AwsStatus:
    def __init__(self, api: AwsApi, scope: Scope, readyz: Callable[[str], bool]) -> None:
        self.api = api
        self.scope = scope
        self.outputs = scope.outputs
        self._readyz = readyz

    def status(self) -> dict[str, Any]:
        o = self.outputs
        regions: dict[str, Any] = {}
        for name, r in o.regions.items():
            regions[name] = {
                **region_facts(r),
                "namespace": r.namespace,
                "deployment": r.deployment,
                "database": {"id": r.db_instance_id, **self._db_status(r)},
                "workload": workload_status(self.scope.kube, r),
                "readyz": "ok" if self._readyz(r.endpoint) else "not ready",
            }
        return {
            "cloud": "aws",
            "primary_region": o.primary_region,
            "standby_region": o.standby_region,
            "dns_name": o.dns_name,
            "hosted_zone_id": o.hosted_zone_id,
            "backup_bucket": o.backup_bucket,
            "regions": regions,
            "dns": self._dns_status(),
        }

    def _db_status(self, r: RegionOutputs) -> dict[str, Any]:
        try:
            inst = self.api.describe_db(r.name, r.db_instance_id)
            if inst is None:
                return {"state": "not found", "available": False}
            state = inst.get("DBInstanceStatus")
            replica_of = inst.get("ReadReplicaSourceDBInstanceIdentifier")
            out: dict[str, Any] = {
                "state": state,
                "available": state == "available",
                "role": "replica" if replica_of else "primary",
                "host": inst.get("Endpoint", {}).get("Address"),
                "replica_of": replica_of,
            }
            if out["replica_of"]:
                out["replication"] = [
                    {"status": s.get("Status"), "normal": s.get("Normal")}
                    for s in inst.get("StatusInfos", [])
                    if s.get("StatusType") == "read replication"
                ]
                lag = self.api.replica_lag(r.name, r.db_instance_id)
                out["replica_lag_seconds"] = lag[0] if lag else None
                out["replica_lag_at"] = iso(lag[1]) if lag else None
            return out
        except CredentialsError:
            raise
        except ImctlError as exc:
            # One unreachable region must not hide the other's state.
            return {"state": f"unknown: {exc.message}", "available": False}

    def _dns_status(self) -> dict[str, Any]:
        try:
            primary, secondary = failover_records(self.api, self.outputs)
        except CredentialsError:
            raise
        except ImctlError as exc:
            return {"error": exc.message}
        return {
            "record": self.outputs.dns_name,
            "primary_target": primary["ResourceRecords"][0]["Value"],
            "secondary_target": secondary["ResourceRecords"][0]["Value"],
        }

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
        deadline = Deadline(timeout, operation="scale", hint=self.scope.timeout_hint)
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
            self.scope.kube(r.name).patch_hpa(r.namespace, r.deployment, min_replicas, max_replicas)
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
        kube = self.scope.kube(r.name)
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

        self.api.wait(f"{r.deployment} in {r.name} to stop", probe, deadline, progress)

    def _describe_nodegroup(self, r: RegionOutputs) -> dict[str, Any]:
        eks = self.api.client("eks", r.name)
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
        eks = self.api.client("eks", r.name)
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

        self.api.wait(f"node group update {update_id}", update_done, deadline, progress)

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

        self.api.wait(f"node group {r.nodegroup_name}", settled, deadline, progress)
        return {
            **out,
            "changed": True,
            "update_id": update_id,
            "max_raised": nodes > before["maxSize"],
        }
