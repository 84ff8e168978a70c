"""The result shapes every cloud shares (cli/targets/cloud/failover.py and restore.py list
them): each cloud's tests check its results against these, so the three stay one shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cli.targets import base

# What a cloud's ops return; the target adds cloud and stack (cli/targets/base.py).
FAILOVER_KEYS = set(base.FAILOVER_KEYS) - {"cloud", "stack"}
PLAN_KEYS = set(base.FAILOVER_PLAN_KEYS) - {"cloud", "stack"}
BOUND_KEYS = {"acked_messages", "why"}
BOUND_OPTIONAL = {"wal_bytes", "replica_lag_seconds", "basis"}
DETAILS_KEYS = {"promoted_instance", "old_instance", "new_primary_target"}
RESTORE_KEYS = {
    "snapshot_id",
    "target",
    "region",
    "source_instance",
    "instance_id",
    "previous_instance_id",
    "db_host",
    "secret",
    "secret_key",
    "deployment",
    "status",
    "verified",
    "warnings",
    "next_steps",
    "duration_s",
}


def check_bound(bound: Mapping[str, Any]) -> None:
    assert BOUND_KEYS <= set(bound) <= BOUND_KEYS | BOUND_OPTIONAL, sorted(bound)
    assert bound["acked_messages"] is None or isinstance(bound["acked_messages"], int)
    assert isinstance(bound["why"], str) and bound["why"]


def check_failover(doc: Mapping[str, Any]) -> None:
    assert set(doc) == FAILOVER_KEYS, sorted(doc)
    assert doc["mode"] in ("planned", "forced") and doc["dry_run"] is False
    assert isinstance(doc["rto_seconds"], float) and isinstance(doc["promote_seconds"], float)
    assert isinstance(doc["fenced"], bool) and doc["rejoined"] is False
    assert isinstance(doc["endpoint"], str) and doc["endpoint"]
    assert all(isinstance(s, str) for s in (*doc["next_steps"], *doc["warnings"]))
    check_bound(doc["data_loss_bound"])
    assert DETAILS_KEYS | {"fence", "replicas", "dns"} <= set(doc["details"])


def check_plan(doc: Mapping[str, Any]) -> None:
    assert set(doc) == PLAN_KEYS, sorted(doc)
    assert doc["mode"] in ("planned", "forced") and doc["dry_run"] is True
    assert doc["steps"] and all(isinstance(s, str) and s for s in doc["steps"])
    check_bound(doc["data_loss_bound"])
    assert set(doc["details"]) >= DETAILS_KEYS


def check_restore(doc: Mapping[str, Any]) -> None:
    assert set(doc) == RESTORE_KEYS, sorted(doc)
    assert doc["status"] == "restored"
    assert {"instance_available", "deployment_ready", "content_checked", "content"} <= set(
        doc["verified"]
    )
