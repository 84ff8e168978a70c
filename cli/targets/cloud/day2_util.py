"""What GCP and Alibaba Cloud still share here: ``RegionalOps``, the order of status and
scale with the cloud's steps as hooks. (To be split further: issue 14.)"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from cli.deadline import Deadline
from cli.errors import CredentialsError, ImctlError, UsageError
from cli.progress import Note
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from cli.targets.cloud.probes import readyz
from cli.targets.cloud.workload import (
    check_scale_args,
    scale_workload,
    workload_status,
)

# Pods the new primary gets when the old one had none to give (fenced at zero, or unreachable).
DEFAULT_FAILOVER_REPLICAS = 2


def utc_stamp() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())


def region_facts(r: RegionOutputs) -> dict[str, Any]:
    """What the outputs say about a region, as every cloud's status starts its entry."""
    return {
        "role": r.role,
        "cluster_name": r.cluster_name,
        "nodegroup_name": r.nodegroup_name,
        "db_instance_id": r.db_instance_id,
        "endpoint": r.endpoint,
    }


class RegionalOps(ABC):
    """``CloudOps`` status and scale for a cloud whose standby region holds an asynchronous
    copy of the database and a Deployment the stack can scale (GCP, Alibaba Cloud); the
    subclass supplies the cloud calls."""

    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        cloud: str,
        poll_interval: float,
        readyz_timeout: float,
    ) -> None:
        if outputs.cloud != cloud:
            # Exit 2 as on AWS and in load_outputs: the caller named the wrong file or cloud;
            # nothing about the stack itself is in the way.
            raise UsageError(f"these outputs describe a {outputs.cloud} stack, not {cloud}")
        self.outputs = outputs
        self.kube = kube
        self.scope = Scope(outputs, kube, poll_interval)
        self._cloud = cloud
        self._interval = poll_interval
        self._readyz_timeout = readyz_timeout

    # --- hooks ------------------------------------------------------------------------------

    def _status_scope(self) -> dict[str, Any]:
        """Fields that place the stack in the cloud (a project, say), after ``cloud``."""
        return {}

    @abstractmethod
    def _db_status(self, r: RegionOutputs) -> dict[str, Any]:
        """The region's database state for status; an ImctlError makes it unknown."""

    @abstractmethod
    def _standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        """How far behind the standby is, as fields of the status document."""

    @abstractmethod
    def _dns_points_to(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]: ...

    # --- CloudOps ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        regions: dict[str, Any] = {}
        for name, r in self.outputs.regions.items():
            info = region_facts(r)
            try:
                info.update(self._db_status(r))
            except CredentialsError:
                raise
            except ImctlError as exc:
                info["db_state"] = f"unknown: {exc.message}"
            info["workload"] = workload_status(self.kube, r)
            info["readyz"] = readyz(r.endpoint, self._readyz_timeout, self.outputs.tls_name)
            regions[name] = info
        doc: dict[str, Any] = {
            "cloud": self._cloud,
            **self._status_scope(),
            "primary_region": self.outputs.primary_region,
            "standby_region": self.outputs.standby_region,
            "dns_name": self.outputs.dns_name,
            "endpoint": self.outputs.endpoint,
            "regions": regions,
        }
        if self.outputs.standby_region:
            doc.update(self._standby_status(self.outputs.regions[self.outputs.standby_region]))
        try:
            doc["dns_points_to"] = self._dns_points_to()
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
        r = self.outputs.region(region or self.outputs.primary_region)
        out: dict[str, Any] = {"region": r.name}
        if nodes is not None:
            out["nodes"] = self._scale_pool(r, nodes, deadline, progress)
        out.update(
            scale_workload(
                self.kube,
                r,
                replicas=replicas,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                deadline=deadline,
                progress=progress,
            )
        )
        return out
