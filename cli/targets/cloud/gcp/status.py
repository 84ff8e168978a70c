"""What GCP status and scale read and resize (cloud/status.py runs them): Cloud SQL instance
states, the standby's replica_lag, Cloud DNS, and GKE node pools."""

from __future__ import annotations

import math
from typing import Any

from cli.deadline import Deadline
from cli.errors import ImctlError
from cli.progress import Note
from cli.targets.cloud.gcp.api import GcpApi
from cli.targets.cloud.gcp.dns import CloudDns, rrset_summary
from cli.targets.cloud.outputs import RegionOutputs


class GcpProbe:
    def __init__(self, api: GcpApi, dns: CloudDns) -> None:
        self.api = api
        self.dns = dns

    def placement(self) -> dict[str, Any]:
        return {"project": self.api.project}

    def db_status(self, r: RegionOutputs) -> dict[str, Any]:
        inst = self.api.instance(r.db_instance_id)
        state = inst.get("state")
        return {
            "state": state,
            "available": state == "RUNNABLE",
            "role": "replica" if inst.get("masterInstanceName") else "primary",
        }

    def standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        try:
            lag, at = self.api.replica_lag(standby.db_instance_id)
        except ImctlError as exc:
            return {"replica_lag_seconds": None, "replica_lag_error": exc.message}
        return {"replica_lag_seconds": lag, "replica_lag_sampled_at": at}

    def dns_points_to(self) -> list[dict[str, Any]]:
        return [rrset_summary(s) for s in self.dns.rrsets()]

    def scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        """GKE sizes a regional pool per zone: ``nodes`` is the total, rounded up to a multiple
        of the pool's zone count. The autoscaler's bounds are widened to include it, or it
        would undo the change."""
        name = (
            f"projects/{self.api.project}/locations/{r.name}/clusters/{r.cluster_name}"
            f"/nodePools/{r.nodegroup_name}"
        )
        pools = self.api.gke().projects().locations().clusters().nodePools()
        pool = self.api.call(pools.get(name=name), f"reading node pool {r.nodegroup_name}")
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
                op = self.api.call(
                    pools.setAutoscaling(name=name, body={"autoscaling": widened}),
                    f"setting autoscaling of {r.nodegroup_name}",
                    mutation=True,
                )
                self.api.wait_gke(op, r.name, "autoscaling bounds", deadline, progress)
        progress(f"{r.name}: sizing {r.nodegroup_name} to {per_zone} per zone ({total} nodes)")
        op = self.api.call(
            pools.setSize(name=name, body={"nodeCount": per_zone}),
            f"resizing node pool {r.nodegroup_name}",
            mutation=True,
        )
        self.api.wait_gke(op, r.name, f"resize of {r.nodegroup_name}", deadline, progress)
        return out
