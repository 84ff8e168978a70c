"""Shared runs and lookups for the stack tests.

Each cloud's program runs once per test session (a run is a fresh thread, event loop and Pulumi
settings; see stacks.plan), with non-default config values so a test can tell "from config"
from "a default that happens to match".
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from stacks.config import StackConfig, load
from stacks.plan import PlanRun, Registration, run_program, unwrap

CUSTOM = {
    "nodeMin": "2",
    "nodeMax": "7",
    "nodeDesired": "4",
    "replicas": "5",
    "hpaMin": "4",
    "hpaMax": "9",
    "hpaCpuPercent": "65",
    "pdbMaxUnavailable": "2",
    "drainGraceSeconds": "45",
    "dbBackupRetentionDays": "14",
    "dbStorageGb": "200",
}
# The day the programs check Kubernetes versions against: fixed, so no test turns red by itself
# when a date in stacks/k8s_support.py passes.
TODAY = date(2026, 12, 3)
REGIONS = {
    "aws": ("us-east-1", "us-west-2"),
    "gcp": ("us-central1", "us-east1"),
    "alicloud": ("cn-hangzhou", "cn-shanghai"),
}


def config(cloud: str, standby: bool = True, **extra: str) -> StackConfig:
    primary, second = REGIONS[cloud]
    return load(cloud, primary, second if standby else None, {**CUSTOM, **extra})


@functools.cache
def run(cloud: str) -> PlanRun:
    """The two-region run of a cloud, shared by every test in the session."""
    return run_program(config(cloud), today=TODAY)


@functools.cache
def single_region_run(cloud: str) -> PlanRun:
    return run_program(config(cloud, standby=False, monitoring="false"), today=TODAY)


def args(reg: Registration) -> dict[str, Any]:
    """Recorded inputs with secret wrappers removed."""
    value = unwrap(reg.inputs)
    assert isinstance(value, dict)
    return value


def provider_of(plan: PlanRun, reg: Registration) -> Registration:
    urn = reg.provider.rsplit("::", 1)[0]
    return plan.by_urn()[urn]


def in_region(plan: PlanRun, type_: str, region: str) -> list[Registration]:
    return [r for r in plan.find(type_) if plan.region_of(r.urn) == region]


def only(plan: PlanRun, type_: str, region: str | None = None) -> Registration:
    found = plan.find(type_) if region is None else in_region(plan, type_, region)
    assert len(found) == 1, f"expected one {type_} in {region or 'the stack'}, got {len(found)}"
    return found[0]


def k8s(plan: PlanRun, kind: str, name: str, region: str) -> Registration:
    """A Kubernetes object by kind (type token) and metadata.name in one region."""
    found = [
        r
        for r in in_region(plan, kind, region)
        if (args(r).get("metadata") or {}).get("name") == name
    ]
    assert len(found) == 1, f"expected one {kind} {name!r} in {region}, got {len(found)}"
    return found[0]
