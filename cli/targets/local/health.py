"""The one definition of "healthy" for a local stack: a list of problems, empty when healthy.

Each problem is ``{code, region, message, next_command}``; ``imctl status`` prints them and
``status --check`` exits 10 when there is any. The table of codes is in docs/runbook.md
("What unhealthy means"); other checks add rows there and here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cli.state import StackConfig

# code -> what it means; the order is the order status lists them in (most urgent first).
CODES = {
    "database_unreachable": "PostgreSQL is down or does not answer within 2 s",
    "writes_blocked": "commits wait (lost synchronous standby, stalled database)",
    "no_node_ready": "no im-server node of the primary region is ready",
    "nodes_not_ready": "fewer im-server nodes are ready than the stack runs",
    "writes_unprotected": "a configured standby is lost or fenced, or replication is not"
    " synchronous when it should be",
    "bus_down": "NATS is not running: pushes between nodes stop (sends stay durable)",
    # Continuous backup (cli/targets/local/backups/window.py): the recovery point at risk.
    "archiving_stopped": "the WAL archiver is not running or not streaming",
    "archiving_not_synchronous": "--archiving sync, but commits do not wait for the archiver",
    "archiving_behind": "the WAL archiver trails the primary by more than a segment",
    "archive_gap": "a WAL segment is missing inside the archive",
    "backup_missing": "no base backup: no point-in-time restore possible",
    "base_backup_old": "the newest base backup is older than twice --base-every",
}


def _problem(code: str, region: str, message: str, next_command: str | None) -> dict[str, Any]:
    return {"code": code, "region": region, "message": message, "next_command": next_command}


def backup_problem(code: str, message: str, next_command: str | None) -> dict[str, Any]:
    """A problem of the stack's continuous backup (backups/window.py, backups/shipping.py):
    not a region's, so its region column says backup."""
    return _problem(code, "backup", message, next_command)


def problems(cfg: StackConfig, regions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    s = f"-s {cfg.stack}"
    deploy = f"imctl deploy {s}"
    out: list[dict[str, Any]] = []
    standbys = [r for r in regions if r["role"] == "standby"]
    primary = next((r for r in regions if r["role"] == "primary"), None)
    primary_down = primary is not None and not primary["database"]["answering"]
    for r in regions:
        name, role, db = r["name"], r["role"], r["database"]
        if role == "fenced":
            out.append(
                _problem(
                    "writes_unprotected",
                    name,
                    f"region {name} is fenced after a forced failover: nothing replicates the"
                    " primary",
                    f"imctl standby rebuild --region {name} {s}",
                )
            )
            continue
        if role == "primary":
            if not db["answering"]:
                what = "is not running" if not db["running"] else "does not answer within 2 s"
                hint = deploy
                if standbys:
                    hint += (
                        f"   (if region {name} is lost: imctl failover --to-region"
                        f" {standbys[0]['name']} --force {s})"
                    )
                out.append(_problem("database_unreachable", name, f"PostgreSQL {what}", hint))
            out += _primary_problems(cfg, r, standbys, deploy)
        elif role == "standby":
            rep = r.get("replication") or {}
            nxt = f"{deploy}   (or rebuild it: imctl standby rebuild --region {name} {s})"
            if not db["answering"]:
                what = "is not running" if not db["running"] else "does not answer within 2 s"
                why = f"standby {name}'s PostgreSQL {what}"
            elif not rep.get("streaming") and primary_down:
                # Its copy may be the only one left: rebuilding it from the primary would be
                # the wrong advice (and cannot work); promoting it is the way out.
                assert primary is not None
                why = f"standby {name} cannot stream: the primary {primary['name']} is down"
                nxt = (
                    f"{deploy}   (if region {primary['name']} is lost: imctl failover"
                    f" --to-region {name} --force {s})"
                )
            elif not rep.get("streaming"):
                why = f"standby {name} is not streaming from the primary"
            else:
                why = ""
            if why:
                out.append(_problem("writes_unprotected", name, why, nxt))
        # A standby region's NATS serves nobody until a failover (which starts it).
        if not r["bus"]["running"] and role == "primary":
            out.append(_problem("bus_down", name, "NATS is not running", deploy))
    order = list(CODES)
    return sorted(out, key=lambda p: order.index(p["code"]))


def _primary_problems(
    cfg: StackConfig,
    r: Mapping[str, Any],
    standbys: Sequence[Mapping[str, Any]],
    deploy: str,
) -> list[dict[str, Any]]:
    name, db = r["name"], r["database"]
    out: list[dict[str, Any]] = []
    nodes = r["nodes"]
    ready = sum(1 for n in nodes if n["ready"])
    blocked = [n for n in nodes if n.get("writes") == "blocked" and n["alive"]]
    sync_names = db.get("synchronous_standby_names") or ""
    waiting_for_standby = bool(
        db["answering"] and sync_names and not db.get("sync_standbys_streaming")
    )
    if waiting_for_standby:
        sb = standbys[0]["name"] if standbys else sync_names
        out.append(
            _problem(
                "writes_blocked",
                name,
                f"every commit waits for synchronous standby {sb}, which is not streaming"
                f" (policy {cfg.sync_policy}); sends are answered outcome_unknown after the"
                " send timeout",
                f"{deploy}   (restarts the standby; to keep writing without it: imctl deploy"
                f" --sync-policy degrade -s {cfg.stack})",
            )
        )
    elif blocked and db["answering"]:  # else database_unreachable already says it
        reason = blocked[0].get("writes_reason") or "commits are not finishing"
        on_standby = "standby" in reason
        out.append(
            _problem(
                "writes_blocked",
                name,
                f"{len(blocked)} node(s) report blocked writes: {reason}",
                f"{deploy}   (to keep writing without the standby: imctl deploy --sync-policy"
                f" degrade -s {cfg.stack})"
                if on_standby
                else f"imctl logs --node postgres -s {cfg.stack}",
            )
        )
    if ready == 0 and r["replicas"] > 0:
        out.append(
            _problem(
                "no_node_ready",
                name,
                f"none of the {r['replicas']} im-server node(s) is ready",
                deploy,
            )
        )
    elif ready < r["replicas"]:
        out.append(
            _problem(
                "nodes_not_ready",
                name,
                f"{ready} of {r['replicas']} im-server node(s) ready",
                deploy,
            )
        )
    if cfg.replication == "sync" and standbys and db["answering"] and not sync_names:
        out.append(
            _problem(
                "writes_unprotected",
                name,
                f"replication to {standbys[0]['name']} is asynchronous although the stack"
                f" wants it synchronous (policy {cfg.sync_policy} degraded it, or it was"
                " changed by hand)",
                deploy,
            )
        )
    return out
