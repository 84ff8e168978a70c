"""What "healthy" means for a cloud stack, judged from its status document with the problem
codes the local target uses (docs/runbook.md, "What unhealthy means"), each with the command to
run next.

From outside the cluster imctl sees the databases (the cloud's API), the Deployment (Kubernetes)
and /readyz through each region's load balancer; it cannot see NATS, so ``bus_down`` is the
nodes' own /readyz to report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stacks.workload_contract import REPLICA_LAG_ALARM_SECONDS


def _problem(code: str, region: str, message: str, next_command: str) -> dict[str, Any]:
    return {"code": code, "region": region, "message": message, "next_command": next_command}


def problems(doc: Mapping[str, Any], stack: str, cloud: str) -> list[dict[str, Any]]:
    regions: Mapping[str, Mapping[str, Any]] = doc.get("regions") or {}
    primary = doc.get("primary_region")
    standby = doc.get("standby_region")
    flags = f"-s {stack} --cloud {cloud}"
    found: list[dict[str, Any]] = []
    p = regions.get(primary or "") or {}
    db = p.get("database") or {}
    if primary and not db.get("available"):
        nxt = (
            f"imctl failover --to-region {standby} --force {flags} (if {primary} is lost)"
            if standby
            else f"check the database {db.get('id')} in the {cloud} console"
        )
        found.append(
            _problem(
                "database_unreachable",
                primary,
                f"the primary database {db.get('id')} is {db.get('state')}",
                nxt,
            )
        )
    work = p.get("workload") or {}
    ready, desired = work.get("ready"), work.get("desired")
    if primary and (p.get("readyz") != "ok" or not ready):
        why = work.get("error") or f"{ready or 0}/{desired} pods ready, /readyz {p.get('readyz')}"
        found.append(
            _problem(
                "no_node_ready", primary, f"no im-server is ready: {why}", f"imctl deploy {flags}"
            )
        )
    elif primary and desired is not None and ready is not None and ready < desired:
        found.append(
            _problem(
                "nodes_not_ready",
                primary,
                f"{ready}/{desired} im-server pods ready",
                f"kubectl -n {p.get('namespace', '<namespace>')} describe deploy/im-server",
            )
        )
    if standby:
        s_db = (regions.get(standby) or {}).get("database") or {}
        lag = doc.get("replica_lag_seconds")
        if not s_db.get("available"):
            why = f"the standby database {s_db.get('id')} is {s_db.get('state')}"
        elif s_db.get("role") not in (None, "replica"):
            # After a forced failover the old writer is kept, not deleted, and no longer
            # replicates: the status names it the standby until a deploy builds a new one.
            why = f"the standby database {s_db.get('id')} is not a replica (it is a {s_db['role']})"
        elif (dts_why := _dts_problem(doc)) is not None:
            why = dts_why
        elif lag is not None and lag > REPLICA_LAG_ALARM_SECONDS:
            why = f"the standby is {lag:g}s behind (alarm at {REPLICA_LAG_ALARM_SECONDS}s)"
        else:
            why = ""
        if why:
            found.append(
                _problem(
                    "writes_unprotected",
                    standby,
                    f"{why}: losing {primary} now would lose acked messages",
                    f"imctl deploy {flags} (it rebuilds the standby replica)",
                )
            )
    return found


def _dts_problem(doc: Mapping[str, Any]) -> str | None:
    """Alibaba's standby is a writable instance that a DTS job feeds: no job, or one that is not
    synchronizing, protects nothing. None when the document has no DTS facts (other clouds) or
    the job could not be read (the problem is then unknown, not absent or present)."""
    if "dts" not in doc:
        return None
    dts = doc["dts"]
    if dts is None:
        return "no DTS job feeds the standby database"
    if "error" in dts or dts.get("status") == "Synchronizing":
        return None
    return f"the DTS job {dts.get('id')} feeding the standby is {dts.get('status')}"
