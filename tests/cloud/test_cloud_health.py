"""What `imctl status --check --cloud X` calls healthy: the local target's problem codes, judged
from the cloud status document every cloud now gives in one shape."""

from __future__ import annotations

import copy
from typing import Any

from cli.targets.cloud.health import problems
from stacks.workload_contract import REPLICA_LAG_ALARM_SECONDS

HEALTHY: dict[str, Any] = {
    "primary_region": "a",
    "standby_region": "b",
    "replica_lag_seconds": 0.4,
    "regions": {
        "a": {
            "role": "primary",
            "namespace": "im",
            "database": {"id": "db-a", "state": "available", "available": True},
            "workload": {"desired": 2, "ready": 2},
            "readyz": "ok",
        },
        "b": {
            "role": "standby",
            "database": {"id": "db-b", "state": "available", "available": True},
            "workload": {"desired": 0, "ready": 0},
            "readyz": "not ready",  # the standby runs no pods until promoted
        },
    },
}


def _codes(doc: dict[str, Any]) -> list[str]:
    return [p["code"] for p in problems(doc, "prod", "aws")]


def _with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(HEALTHY)
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = doc
        for k in keys:
            node = node[k]
        node[last] = value
    return doc


def test_a_healthy_stack_has_no_problems() -> None:
    assert problems(HEALTHY, "prod", "aws") == []


def test_a_lost_primary_database_names_the_forced_failover_with_the_stack_and_cloud() -> None:
    doc = _with(regions__a__database={"id": "db-a", "state": "failed", "available": False})
    [p] = [p for p in problems(doc, "prod", "aws") if p["code"] == "database_unreachable"]
    assert p["region"] == "a" and "failed" in p["message"]
    assert p["next_command"].startswith("imctl failover --to-region b --force -s prod --cloud aws")


def test_pods_not_ready() -> None:
    assert _codes(_with(regions__a__workload={"desired": 2, "ready": 0})) == ["no_node_ready"]
    assert _codes(_with(regions__a__readyz="unreachable: timed out")) == ["no_node_ready"]
    assert _codes(_with(regions__a__workload={"desired": 3, "ready": 2})) == ["nodes_not_ready"]
    broken = _with(regions__a__workload={"error": "forbidden"})
    assert _codes(broken) == ["no_node_ready"]


def test_an_unprotected_stack_is_unhealthy() -> None:
    lagging = _with(replica_lag_seconds=REPLICA_LAG_ALARM_SECONDS + 1)
    assert _codes(lagging) == ["writes_unprotected"]
    gone = _with(regions__b__database={"id": "db-b", "state": "not found", "available": False})
    [p] = problems(gone, "prod", "gcp")
    assert (
        p["code"] == "writes_unprotected"
        and "imctl deploy -s prod --cloud gcp" in p["next_command"]
    )


def test_a_standby_that_no_longer_replicates_is_unprotected() -> None:
    # After a forced failover the old writer is kept as the "standby" region, still a primary.
    promoted = _with(regions__b__database={"id": "db-b", "state": "available",
                                           "available": True, "role": "primary"})  # fmt: skip
    [p] = problems(promoted, "prod", "aws")
    assert p["code"] == "writes_unprotected" and "not a replica" in p["message"], p
    assert _codes(_with(regions__b__database__role="replica")) == []


def test_alibabas_standby_is_protected_only_while_its_dts_job_synchronizes() -> None:
    running = {"id": "dts-1", "status": "Synchronizing", "delay_seconds": 0}
    assert _codes(_with(dts=running)) == []
    assert _codes(_with(dts={"error": "throttled"})) == []  # unknown, not a problem
    assert _codes(_with(dts=None)) == ["writes_unprotected"]
    [p] = problems(_with(dts={**running, "status": "Suspending"}), "prod", "alicloud")
    assert "dts-1" in p["message"] and "Suspending" in p["message"]
    assert p["next_command"].startswith("imctl deploy -s prod --cloud alicloud")
