"""imctl destroy deploys ``teardown=true``, then runs ``pulumi destroy``. After that deploy nothing
in any cloud's plan may still refuse deletion: otherwise the destroy stops half-way, leaving a
cluster, a key or a bucket (and its bill) behind, and the operator cleans up by hand.

What "protected" means differs per type and flag, so the rules are listed per (type, flag), from
the providers' argument docs; a flag's absence means the provider's default (true for GKE's
``deletion_protection``). Every custom type the plans register is checked against the installed
SDK: an argument whose name suggests protection must appear in ``RULES`` or in ``NOT_BLOCKING``
(with the reason), so a new resource type cannot bring a protection in unnoticed.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stacks.mocks import ALIBABA_ACCOUNT_ID
from stacks.naming import final_snapshot_id
from stacks.plan import PlanRun, Registration, run_program
from tests.stacks.helpers import REGIONS, args, config, only, run

CLOUDS = ("aws", "gcp", "alicloud")
# Argument names (as the SDKs spell them) that may make a delete fail or be skipped.
_SUSPECT = re.compile(
    r"protect|force_destroy|force_delete|skip_final|deletion_policy|prevent|retain"
)

Inputs = dict[str, Any]
# True: with these inputs, the resource would refuse (or skip) deletion.
Rule = Callable[[Inputs], bool]


def _flag(path: str, protected: Callable[[Any], bool]) -> Rule:
    def rule(inputs: Inputs) -> bool:
        value: Any = inputs
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return protected(value)

    return rule


def _rds_final_snapshot(inputs: Inputs) -> bool:
    # skipFinalSnapshot defaults to false; RDS then refuses the delete without an identifier.
    if inputs.get("skipFinalSnapshot") is True:
        return False
    return not inputs.get("finalSnapshotIdentifier")


# (type, SDK argument) -> when it protects. "*" matches every type of that provider.
RULES: dict[tuple[str, str], Rule] = {
    ("aws:eks/cluster:Cluster", "deletion_protection"): _flag(
        "deletionProtection", lambda v: v is True
    ),
    ("aws:rds/instance:Instance", "deletion_protection"): _flag(
        "deletionProtection", lambda v: v is True
    ),
    ("aws:rds/instance:Instance", "skip_final_snapshot"): _rds_final_snapshot,
    ("aws:s3/bucket:Bucket", "force_destroy"): _flag("forceDestroy", lambda v: v is not True),
    # A repository holding images cannot be deleted without it (the pushed im-server image).
    ("aws:ecr/repository:Repository", "force_delete"): _flag(
        "forceDelete", lambda v: v is not True
    ),
    # Defaults to true in the provider: only an explicit false lets destroy delete it.
    ("gcp:container/cluster:Cluster", "deletion_protection"): _flag(
        "deletionProtection", lambda v: v is not False
    ),
    ("gcp:sql/databaseInstance:DatabaseInstance", "deletion_protection"): lambda i: (
        i.get("deletionProtection") is not False
        or (i.get("settings") or {}).get("deletionProtectionEnabled") is True
    ),
    ("gcp:storage/bucket:Bucket", "force_destroy"): _flag("forceDestroy", lambda v: v is not True),
    # PREVENT fails the delete, ABANDON leaves the resource in the cloud.
    ("gcp:*", "deletion_policy"): _flag("deletionPolicy", lambda v: v in ("PREVENT", "ABANDON")),
    ("alicloud:cs/managedKubernetes:ManagedKubernetes", "deletion_protection"): _flag(
        "deletionProtection", lambda v: v is True
    ),
    ("alicloud:cs/managedKubernetes:ManagedKubernetes", "retain_resources"): _flag(
        "retainResources", bool
    ),
    ("alicloud:cs/nodePool:NodePool", "force_delete"): _flag(
        "forceDelete", lambda v: v is not True
    ),
    ("alicloud:kms/key:Key", "deletion_protection"): _flag(
        "deletionProtection", lambda v: v == "Enabled"
    ),
    ("alicloud:rds/instance:Instance", "deletion_protection"): _flag(
        "deletionProtection", lambda v: v is True
    ),
    # Only a subscription instance needs it; these are pay-as-you-go.
    ("alicloud:rds/instance:Instance", "force_delete"): lambda i: (
        i.get("instanceChargeType") == "Prepaid" and i.get("forceDelete") is not True
    ),
    ("alicloud:oss/bucket:Bucket", "force_destroy"): _flag("forceDestroy", lambda v: v is not True),
}

NOT_BLOCKING: dict[tuple[str, str], str] = {
    ("aws:route53/zone:Zone", "force_destroy"): "only records made outside the program block "
    "the delete; the program's own records are deleted before their zone",
    ("gcp:dns/managedZone:ManagedZone", "force_destroy"): "as for Route 53: only foreign records",
    ("gcp:container/cluster:Cluster", "protect_config"): "GKE security posture, not deletion",
    ("gcp:storage/bucket:Bucket", "public_access_prevention"): "public access, not deletion",
    ("alicloud:kms/key:Key", "deletion_protection_description"): "a note on the protection",
    ("alicloud:kms/key:Key", "protection_level"): "SOFTWARE or HSM key storage",
    ("alicloud:rds/instance:Instance", "released_keep_policy"): "which archived backups "
    "outlive the instance; the release goes ahead",
    ("alicloud:rds/backupPolicy:BackupPolicy", "released_keep_policy"): "as on the instance",
    ("alicloud:rds/backupPolicy:BackupPolicy", "enable_pitr_protection"): "point-in-time "
    "recovery switch, not deletion",
    ("alicloud:rds/backupPolicy:BackupPolicy", "high_space_usage_protection"): "log backup "
    "cleanup when the disk fills, not deletion",
    ("alicloud:vpc/network:Network", "force_delete"): "removes what others left in the VPC; "
    "the program's vSwitches go first and ACK deletes the NAT gateway and SLBs it made",
}


# Left in the cloud by destroy on purpose (retain_on_delete), and why.
KEPT: dict[str, str] = {
    "aws:kms/key:Key/us-east-1-db-base-key": "encrypts the writer's final snapshot",
    "aws:kms/key:Key/us-west-2-db-base-key": "encrypts the writer's final snapshot after a "
    "failover",
    "alicloud:kms/key:Key/cn-hangzhou-db-key": "encrypts the backups ApsaraDB keeps after the "
    "release",
    "alicloud:kms/key:Key/cn-shanghai-db-key": "encrypts the backups kept after the release of "
    "the standby (the writer after a failover)",
    "alicloud:rds/backupPolicy:BackupPolicy/cn-hangzhou-db-backups": "its delete would reset the "
    "retention to 7 days just before the release; it goes with the instance",
    "alicloud:rds/backupPolicy:BackupPolicy/cn-shanghai-db-backups": "the same, for the standby",
}


def _sdk_arguments(type_: str) -> list[str]:
    package, module, name = type_.split(":")
    top = module.split("/")[0]
    base = "pulumi_" + package.replace("-", "_")  # docker-build -> pulumi_docker_build
    path = base if top == "index" else f"{base}.{top}"
    cls = getattr(importlib.import_module(path), name)
    return [p for p in inspect.signature(cls._internal_init).parameters if _SUSPECT.search(p)]


def _rule(type_: str, argument: str) -> Rule | None:
    return RULES.get((type_, argument)) or RULES.get((type_.split(":")[0] + ":*", argument))


def _custom(plan: PlanRun) -> list[Registration]:
    return [
        r
        for r in plan.registrations
        if r.custom and not r.type.startswith(("pulumi:", "kubernetes:"))
    ]


@functools.cache
def teardown(cloud: str) -> PlanRun:
    return run_program(config(cloud, teardown="true"))


def protected(plan: PlanRun) -> list[str]:
    """Each registration and flag that would stop or skip a delete."""
    found: list[str] = []
    for reg in _custom(plan):
        if reg.retain_on_delete and f"{reg.type}/{reg.name}" not in KEPT:
            found.append(f"{reg.type} {reg.name}: retain_on_delete")
        for argument in _sdk_arguments(reg.type):
            rule = _rule(reg.type, argument)
            if rule is not None and rule(args(reg)):
                found.append(f"{reg.type} {reg.name}: {argument}")
    return found


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_protection_flag_in_the_plan_has_a_rule(cloud: str) -> None:
    unknown = sorted(
        {
            f"{reg.type}: {argument}"
            for reg in _custom(teardown(cloud))
            for argument in _sdk_arguments(reg.type)
            if _rule(reg.type, argument) is None and (reg.type, argument) not in NOT_BLOCKING
        }
    )
    assert not unknown, f"add to RULES or NOT_BLOCKING: {unknown}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_after_the_teardown_deploy_nothing_refuses_deletion(cloud: str) -> None:
    assert protected(teardown(cloud)) == []


@pytest.mark.parametrize(
    ("cloud", "kinds"),
    [
        ("aws", {"aws:rds/instance:Instance", "aws:s3/bucket:Bucket"}),
        (
            "gcp",
            {
                "gcp:container/cluster:Cluster",
                "gcp:sql/databaseInstance:DatabaseInstance",
                "gcp:storage/bucket:Bucket",
            },
        ),
        (
            "alicloud",
            {
                "alicloud:cs/managedKubernetes:ManagedKubernetes",
                "alicloud:cs/nodePool:NodePool",
                "alicloud:kms/key:Key",
                "alicloud:rds/instance:Instance",
                "alicloud:oss/bucket:Bucket",
            },
        ),
    ],
)
def test_an_ordinary_deploy_keeps_them_protected(cloud: str, kinds: set[str]) -> None:
    """The rules do detect protection: without teardown, clusters, keys, databases and buckets
    refuse deletion (so a stray pulumi destroy or a failover cannot remove them)."""
    found = {line.split(" ", 1)[0] for line in protected(run(cloud))}
    assert kinds <= found, kinds - found


def test_every_alibaba_key_is_unprotected_at_teardown_and_keeps_its_pending_window() -> None:
    keys = teardown("alicloud").find("alicloud:kms/key:Key")
    assert len(keys) == 4  # one per ACK cluster, one per ApsaraDB instance
    for key in keys:
        assert args(key)["deletionProtection"] == "Disabled", key.name
        # KMS cannot delete a key at once; the window is the operator's undo.
        assert args(key)["pendingWindowInDays"] == 30, key.name


def test_the_key_of_the_backups_alibaba_keeps_outlives_the_destroy() -> None:
    """ApsaraDB keeps every backup set after the release (released_keep_policy All); they are
    encrypted with the instance's key, which a pending deletion would make unusable."""
    plan = teardown("alicloud")
    policies = plan.find("alicloud:rds/backupPolicy:BackupPolicy")
    keys = [k for k in plan.find("alicloud:kms/key:Key") if k.name.endswith("-db-key")]
    assert policies and keys  # a stack without them would pass the loops below vacuously
    for policy in policies:
        assert args(policy)["releasedKeepPolicy"] == "All"
        assert policy.retain_on_delete, policy.name
    for key in keys:
        assert key.retain_on_delete, key.name


def test_the_final_rds_snapshot_is_named_for_the_stack_and_the_destroy() -> None:
    plan = teardown("aws")
    writer = args(only(plan, "aws:rds/instance:Instance", REGIONS["aws"][0]))
    ident = writer["finalSnapshotIdentifier"]
    match = re.fullmatch(r"imctl-plan-us-east-1-db-final-(\d{14})", ident)
    assert match, ident
    stamp = datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    # The teardown deploy's own time (this session's run), in UTC.
    assert timedelta(0) <= datetime.now(UTC) - stamp < timedelta(minutes=10)
    assert re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]{0,253}[a-z0-9]", ident)


def test_final_snapshot_names_differ_per_stack_and_per_destroy_within_rds_rules() -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    names = {
        final_snapshot_id("imctl-prod", "us-east-1-db", first),
        final_snapshot_id("imctl-staging", "us-east-1-db", first),
        final_snapshot_id("imctl-prod", "us-east-1-db", first + timedelta(seconds=1)),
    }
    assert len(names) == 3
    # A stack name Pulumi allows but RDS does not: underscores, dots, a digit first.
    odd = final_snapshot_id("9_team..x_", "us-east-1-db-f2", first)
    assert re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]{0,253}[a-z0-9]", odd), odd


def test_the_oss_bucket_name_carries_the_account_and_the_stack() -> None:
    bucket = args(only(run("alicloud"), "alicloud:oss/bucket:Bucket"))["bucket"]
    assert ALIBABA_ACCOUNT_ID in bucket and bucket.startswith("imctl-plan-")
    # OSS: 3-63 lowercase letters, digits and hyphens, a letter or digit at both ends.
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket), bucket


def test_the_key_of_the_final_rds_snapshot_outlives_the_destroy() -> None:
    """The snapshot destroy keeps is encrypted with its site's key; deleting the key (30 days
    after destroy) would make it unrestorable."""
    plan = teardown("aws")
    keys = {k.id: k for k in plan.find("aws:kms/key:Key")}
    for region in REGIONS["aws"]:
        db = args(only(plan, "aws:rds/instance:Instance", region))
        key = keys[db["kmsKeyId"].rsplit("/", 1)[-1]]
        assert key.retain_on_delete, region
        assert f"{key.type}/{key.name}" in KEPT
