"""Status and scale for a cloud whose regions each hold a database and a Deployment the stack
can scale, the standby an asynchronous copy (GCP, Alibaba Cloud): ``RegionalStatus`` runs them
the same way and asks the cloud's ``RegionProbe`` for what only it can read or resize. AWS
reads its own (aws/status.py) into the same shape: per region ``role``, ``endpoint``,
``database {id, state, available, role}``, ``workload {desired, ready}`` (or ``{error}``) and
``readyz`` (``ok`` or why not); health and problems are judged from that (cloud/health.py)."""

from __future__ import annotations

from typing import Any, Protocol

from cli.deadline import Deadline
from cli.errors import CredentialsError, ImctlError
from cli.progress import Note
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import RegionOutputs
from cli.targets.cloud.probes import readyz
from cli.targets.cloud.workload import check_scale_args, scale_workload, workload_status


def region_facts(r: RegionOutputs) -> dict[str, Any]:
    """What the outputs say about a region, as every cloud's status starts its entry."""
    return {
        "role": r.role,
        "cluster_name": r.cluster_name,
        "nodegroup_name": r.nodegroup_name,
        "db_instance_id": r.db_instance_id,
        "endpoint": r.endpoint,
    }


class RegionProbe(Protocol):
    def placement(self) -> dict[str, Any]:
        """Fields that place the stack in the cloud (a project, say), after ``cloud``."""
        ...

    def db_status(self, r: RegionOutputs) -> dict[str, Any]:
        """The region's database state; an ImctlError makes it unknown."""
        ...

    def standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        """How far behind the standby is, as fields of the status document."""
        ...

    def dns_points_to(self) -> list[dict[str, Any]]: ...

    def scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]: ...


class RegionalStatus:
    def __init__(
        self, scope: Scope, probe: RegionProbe, *, cloud: str, readyz_timeout: float
    ) -> None:
        self.scope = scope
        self.probe = probe
        self._cloud = cloud
        self._readyz_timeout = readyz_timeout

    def status(self) -> dict[str, Any]:
        outputs = self.scope.outputs
        regions: dict[str, Any] = {}
        for name, r in outputs.regions.items():
            info = region_facts(r)
            try:
                info["database"] = {"id": r.db_instance_id, **self.probe.db_status(r)}
            except CredentialsError:
                raise
            except ImctlError as exc:
                info["database"] = {
                    "id": r.db_instance_id, "state": f"unknown: {exc.message}", "available": False,
                }  # fmt: skip
            info["workload"] = workload_status(self.scope.kube, r)
            info["readyz"] = readyz(r.endpoint, self._readyz_timeout, outputs.tls_name)
            regions[name] = info
        doc: dict[str, Any] = {
            "cloud": self._cloud,
            **self.probe.placement(),
            "primary_region": outputs.primary_region,
            "standby_region": outputs.standby_region,
            "dns_name": outputs.dns_name,
            "endpoint": outputs.endpoint,
            "regions": regions,
        }
        if outputs.standby_region:
            doc.update(self.probe.standby_status(outputs.regions[outputs.standby_region]))
        try:
            doc["dns_points_to"] = self.probe.dns_points_to()
        except ImctlError as exc:
            doc["dns_points_to"] = f"unknown: {exc.message}"
        return doc

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
        check_scale_args(nodes, replicas, min_replicas, max_replicas)
        deadline = Deadline(timeout)
        r = self.scope.outputs.region(region or self.scope.outputs.primary_region)
        out: dict[str, Any] = {"region": r.name}
        if nodes is not None:
            out["nodes"] = self.probe.scale_pool(r, nodes, deadline, progress)
        out.update(
            scale_workload(
                self.scope.kube,
                r,
                replicas=replicas,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                deadline=deadline,
                progress=progress,
            )
        )
        return out
