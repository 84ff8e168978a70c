"""What Alibaba Cloud status and scale read and resize (cloud/status.py runs them): ApsaraDB
instance states, the DTS job that feeds the standby, Alidns, and ACK node pools."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cli.deadline import Deadline, poll
from cli.errors import ImctlError, ResourceFailure
from cli.progress import Note
from cli.targets.cloud.alicloud.api import AlicloudApi, job_summary, runtime
from cli.targets.cloud.alicloud.dns import Alidns
from cli.targets.cloud.outputs import RegionOutputs


class AlicloudProbe:
    def __init__(self, api: AlicloudApi, dns: Alidns) -> None:
        self.api = api
        self.dns = dns

    def placement(self) -> dict[str, Any]:
        return {}

    def db_status(self, r: RegionOutputs) -> dict[str, Any]:
        # No database role: the standby is a writable instance that DTS feeds (see "dts").
        state = self.api.attribute(r.name, r.db_instance_id).get("DBInstanceStatus")
        return {"state": state, "available": state == "Running"}

    def standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        try:
            job = self.api.dts_job(standby)
        except ImctlError as exc:
            return {"dts": {"error": exc.message}}
        return {"dts": None if job is None else job_summary(job)}

    def dns_points_to(self) -> list[dict[str, Any]]:
        return [
            {"type": rec.get("Type"), "value": rec.get("Value"), "line": rec.get("Line")}
            for rec in self.dns.records()
        ]

    def _cluster_id(self, r: RegionOutputs) -> str:
        """The CS API addresses clusters by id; the outputs carry the name (and the id only
        when the outputs contract keeps it)."""
        known = getattr(r, "cluster_id", None)
        if known:
            return str(known)
        from alibabacloud_cs20151215 import models as cs

        client = self.api.client("cs", r.name)
        request = cs.DescribeClustersV1Request().from_map(
            {"name": r.cluster_name, "region_id": r.name}
        )
        doc = self.api.call(
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
        client = self.api.client("cs", region)
        request = open_api.OpenApiRequest(body=body)
        return self.api.call(
            lambda: client.call_api(params, request, runtime()), what, mutation=True
        )

    def scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]:
        """ACK adds nodes with ScaleClusterNodePool and removes them through the pool's desired
        size. With auto scaling on (as the stack creates it) it refuses manual sizing, so the
        bound on the side of the change moves to ``nodes`` and ESS brings the pool there."""
        from alibabacloud_cs20151215 import models as cs

        client = self.api.client("cs", r.name)
        cluster = self._cluster_id(r)
        pool_id = r.nodegroup_name

        def detail() -> dict[str, Any]:
            return self.api.call(
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
            doc = self.api.call(
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
                lambda: self.api.call(
                    lambda: client.describe_task_info(task), f"reading task {task}"
                ),
                done=lambda t: t.get("state") in ("success", "fail", "failed"),
                state=lambda t: str(t.get("state")),
                what=f"task {task}",
                deadline=deadline,
                progress=progress,
                interval=self.api.interval,
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
            interval=self.api.interval,
        )
        out["total"] = int((pool.get("status") or {}).get("total_nodes") or 0)
        return out
