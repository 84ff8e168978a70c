"""Alibaba Cloud day-2 operations end to end against an emulated Alibaba Cloud
(tests/cloud/fake_alicloud.py), not the real cloud: the generated SDK clients sign real requests
to a local server that checks the signature, the parameters against the SDK's request models,
and its own answers against the SDK's response models. What this proves: the actions, their
order and parameters, polling, signatures and error mapping. What it cannot: RAM, stock, timings,
and whether ApsaraDB/ACK/DTS accept these values for real resources."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.errors import (
    CredentialsError,
    ExitStatus,
    OperationTimeout,
    PreconditionFailed,
    ResourceFailure,
    RestoredContentMismatch,
    SnapshotNotFound,
    UsageError,
)
from cli.targets.cloud.alicloud import AlicloudOps
from cli.targets.cloud.alicloud.api import RDS_METHODS
from cli.targets.cloud.ops import CloudOps
from cli.targets.cloud.outputs import CloudOutputs
from tests.cloud.digest_fixtures import FakeImAdmin, Log, RollingKube
from tests.cloud.digest_fixtures import RegionKubes as Kubes
from tests.cloud.fake_alicloud import AliyunFake, check_params, check_response, model_fields
from tests.cloud.pitr_fixtures import (
    OpsTarget,
    backup_status,
    check_backups_off,
    check_refusals,
    restored,
)
from tests.cloud.result_shapes import check_failover, check_plan, check_restore

PRIMARY, STANDBY = "cn-hangzhou", "cn-shanghai"
NS, DEP = "imctl", "im-server"
GTM_CNAME = "im.gtm-abc123.example-gtm.aliyuncs.com"

OUTPUTS = {
    "cloud": "alicloud",
    "primary_region": PRIMARY,
    "standby_region": STANDBY,
    "regions": {
        PRIMARY: {
            "cluster_name": "im-cn-hangzhou",
            "nodegroup_name": "np-primary",
            "db_instance_id": "pgm-primary",
            "endpoint": "127.0.0.1",
        },
        STANDBY: {
            "role": "standby",
            "cluster_name": "im-cn-shanghai",
            "nodegroup_name": "np-standby",
            "db_instance_id": "pgm-dr",
            "endpoint": "127.0.0.2",
        },
    },
    "hosted_zone_id": "example.com",
    "dns_name": "im.example.com",
    "backup_bucket": "im-backups",
}


# The workload's Secret in the primary region, as the stack writes it.
OLD_URL = "postgresql://im:0ldPassw0rd@pgm-primary.pg.rds.aliyuncs.com:5432/im?sslmode=require"
ADMIN_TOKEN = "admin-token-of-the-test-stack"


@pytest.fixture
def fake() -> Iterator[AliyunFake]:
    f = AliyunFake(op_polls=2)
    f.start()
    f.add_instance("pgm-primary", PRIMARY, host="pgm-primary.pg.rds.aliyuncs.com", data="v1")
    f.add_instance("pgm-dr", STANDBY, host="pgm-dr.pg.rds.aliyuncs.com", data="v1")
    f.add_dts_job(STANDBY, "pgm-primary", "pgm-dr", PRIMARY)
    f.add_cluster("c-primary", "im-cn-hangzhou", PRIMARY)
    f.add_cluster("c-other", "im-cn-hangzhou-old", PRIMARY)  # a name the search also finds
    f.add_pool("c-primary", "np-primary", nodes=3, auto=(2, 4))
    f.add_record("example.com", "im", "CNAME", GTM_CNAME)
    f.add_record("example.com", "imx", "A", "192.0.2.9")  # RRKeyWord "im" also matches this
    yield f
    f.stop()
    # Every request any test made fits the SDK's models (and every answer of the fake too).
    assert f.violations == []


@pytest.fixture
def kubes() -> Kubes:
    return Kubes(
        PRIMARY,
        STANDBY,
        namespace=NS,
        deployment=DEP,
        database_url=OLD_URL,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
def admin(kubes: Kubes) -> Iterator[FakeImAdmin]:
    """GET /admin/digest of the primary's workload (pass ``endpoint=admin.endpoint``)."""
    kube = kubes.by_region[PRIMARY]
    assert isinstance(kube, RollingKube)
    fake = FakeImAdmin(kube, NS, ADMIN_TOKEN)
    yield fake
    fake.stop()


def make_ops(
    fake: AliyunFake,
    kubes: Kubes,
    *,
    ak: str | None = None,
    sk: str | None = None,
    endpoint: str | None = None,
) -> AlicloudOps:
    outputs = CloudOutputs.from_json(OUTPUTS)
    if endpoint is not None:
        primary = replace(outputs.primary, endpoint=endpoint)
        outputs = replace(outputs, regions={**outputs.regions, PRIMARY: primary})
    return AlicloudOps(
        outputs,
        kubes,
        access_key_id=fake.access_key_id if ak is None else ak,
        access_key_secret=fake.access_key_secret if sk is None else sk,
        endpoint_override=fake.url,
        poll_interval=0.01,
        readyz_timeout=0.5,
    )


def actions(fake: AliyunFake) -> list[str]:
    return [f"{product}.{action}" for product, action, _ in fake.requests]


def params_of(fake: AliyunFake, action: str) -> dict[str, Any]:
    return next(p for _, a, p in fake.requests if a == action)


# --- model checks -----------------------------------------------------------------------------


def test_the_model_checker_catches_bad_shapes() -> None:
    from alibabacloud_cs20151215 import models as cs
    from alibabacloud_rds20140815 import models as rds

    problems: list[str] = []
    check_params(rds.CloneDBInstanceRequest, {"BackupId": "1", "VpcId": "v"}, "clone", problems)
    check_params(
        cs.ModifyClusterNodePoolRequest,
        {"auto_scaling": {"enable": True, "min_nodes": 1}},
        "modify",
        problems,
    )
    check_params(
        rds.CloneDBInstanceRequest,
        {"DBInstanceId": "i", "PayType": "Postpaid", "DeletionProtection": "True"},
        "clone",
        problems,
    )
    check_response(rds.DescribeBackupsResponseBody, {"TotalRecordCount": 3}, "list", problems)
    joined = "\n".join(problems)
    assert "has no parameter 'VpcId'" in joined  # the API spells it VPCId
    assert "requires 'DBInstanceId'" in joined and "requires 'PayType'" in joined
    assert "has no parameter 'min_nodes'" in joined
    assert "3 is not str" in joined
    assert "DeletionProtection='True' is not true/false" in joined
    assert model_fields(rds.CreateBackupRequest)["DBInstanceId"].required


def test_every_rds_action_is_a_client_method() -> None:
    from alibabacloud_rds20140815 import models as rds
    from alibabacloud_rds20140815.client import Client

    for action, method in RDS_METHODS.items():
        assert callable(getattr(Client, method)), action
        assert hasattr(rds, f"{action}Request"), action


def test_alicloud_ops_satisfies_the_protocol(fake: AliyunFake, kubes: Kubes) -> None:
    ops: CloudOps = make_ops(fake, kubes)
    assert ops is not None


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_create_list_show_delete(fake: AliyunFake, kubes: Kubes) -> None:
    automated = fake.add_backup("pgm-primary", mode="Automated")
    ops = make_ops(fake, kubes)
    log = Log()
    snap = ops.snapshot_create("before the upgrade", log, timeout=30)
    assert snap["status"] == "available" and snap["type"] == "Manual"
    assert snap["method"] == "Physical" and snap["size_bytes"] == 7340032
    assert snap["note"] == "before the upgrade" and snap["note_stored_in_cloud"] is False
    create = params_of(fake, "CreateBackup")
    assert create == {
        "DBInstanceId": "pgm-primary",
        "BackupMethod": "Physical",
        "BackupType": "FullBackup",
    }
    assert [line for line in log.lines if line.startswith("backup of")] == [
        "backup of pgm-primary: Uploading 40%",
        "backup of pgm-primary: Finished 100%",
    ]

    listed = {s["id"]: s for s in ops.snapshot_list()["snapshots"]}
    assert set(listed) == {snap["id"], automated}
    assert listed[automated]["type"] == "Automated"
    listing = next(p for _, a, p in fake.requests if a == "DescribeBackups" and "PageSize" in p)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", listing["StartTime"])

    assert ops.snapshot_show(snap["id"])["id"] == snap["id"]
    assert ops.snapshot_delete(snap["id"], Log(), timeout=10)["deleted"] is True
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_show(snap["id"])
    with pytest.raises(PreconditionFailed, match="automatic"):
        ops.snapshot_delete(automated, Log(), timeout=10)
    assert fake.violations == []


def test_a_finished_job_gone_from_the_task_list_is_found_among_backups(
    fake: AliyunFake, kubes: Kubes
) -> None:
    fake.hide_finished_jobs = True
    snap = make_ops(fake, kubes).snapshot_create(None, Log(), timeout=30)
    (created,) = [b for b in fake.backups["pgm-primary"].values() if b["BackupMode"] == "Manual"]
    assert snap["id"] == created["BackupId"]
    assert fake.violations == []


def test_unknown_snapshot_ids(fake: AliyunFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_show("424242")
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_show("20240101T000000Z-abcdef")
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_delete("424242", Log(), timeout=5)
    assert "DeleteBackup" not in [a for _, a, _ in fake.requests]


# --- restore ----------------------------------------------------------------------------------


def test_restore_clones_waits_repoints_and_rolls(
    fake: AliyunFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    # Read, reported, and kept nowhere in the cloud: ApsaraDB backups have no field for it.
    assert snap["digest"] == {**admin.counts, "at_ms": snap["digest"]["at_ms"]}
    assert snap["digest_stored_in_cloud"] is False
    fake.data["pgm-primary"] = "v2 (after the snapshot)"
    log = Log()
    doc = ops.restore(snap["id"], "new", log, timeout=60)

    new = doc["instance_id"]
    assert new.startswith("pgm-clone") and fake.data[new] == "v1"
    assert fake.data["pgm-primary"] == "v2 (after the snapshot)"
    clone = params_of(fake, "CloneDBInstance")
    assert clone["DBInstanceId"] == "pgm-primary" and clone["BackupId"] == snap["id"]
    assert clone["PayType"] == "Postpaid" and clone["InstanceNetworkType"] == "VPC"
    assert clone["VPCId"] == "vpc-cn-hangzhou" and clone["VSwitchId"] == "vsw-a,vsw-b"
    assert (clone["ZoneId"], clone["ZoneIdSlave1"]) == ("cn-hangzhou-a", "cn-hangzhou-b")
    # The clone came up admitting only 127.0.0.1; the source's whitelist was copied over.
    assert fake.instances[new]["SecurityIPList"] == "10.10.0.0/16"
    assert any(line == f"RDS instance {new}: Creating" for line in log.lines)

    kube = kubes.by_region[PRIMARY]
    assert kube.calls == [
        ("secret", (NS, "im-server", ["database-url"])),
        ("restart", (NS, DEP)),
        ("wait", (NS, DEP)),
    ]
    url = kube.secrets[(NS, "im-server")]["database-url"]
    m = re.fullmatch(r"postgresql://im:([A-Za-z0-9]+)@([\w.-]+):5432/im\?sslmode=require", url)
    assert m is not None
    assert m.group(2) == f"{new}.pg.rds.aliyuncs.com" == doc["db_host"]
    assert fake.accounts[new]["im"] == m.group(1)
    check_restore(doc)
    assert "DTS synchronization still reads" in doc["warnings"][0]
    # No digest was kept with the backup: the restored data is checked for density only.
    verified = doc["verified"]
    assert verified["content_checked"] == "partial" and verified["content"]["ok"] is True
    assert verified["content"]["after"]["database"]["host"] == doc["db_host"]
    assert fake.violations == []


def test_a_restore_with_gaps_points_the_secret_back(
    fake: AliyunFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    admin.counts["non_dense"] = 2  # what the clone will answer

    with pytest.raises(RestoredContentMismatch) as err:
        ops.restore(snap["id"], "new", Log(), timeout=60)

    exc = err.value
    assert (exc.status, exc.code) == (ExitStatus.PRECONDITION, "content_mismatch")
    new = next(n for n in fake.instances if n.startswith("pgm-clone"))
    assert "2 conversation(s) whose seqs are not exactly 1..last_seq" in exc.message
    assert "pointed back at pgm-primary" in exc.message
    assert f"instance {new} was left for inspection" in exc.hint
    kube = kubes.by_region[PRIMARY]
    assert kube.secrets[(NS, "im-server")]["database-url"] == OLD_URL
    assert [c[0] for c in kube.calls] == ["secret", "restart", "wait"] * 2
    assert fake.violations == []


def test_in_place_restore_is_refused(fake: AliyunFake, kubes: Kubes) -> None:
    backup = fake.add_backup("pgm-primary")
    with pytest.raises(PreconditionFailed, match="only into a new instance"):
        make_ops(fake, kubes).restore(backup, "in-place", Log(), timeout=5)
    assert fake.requests == []


# --- restore to a point in time --------------------------------------------------------------


def _window(fake: AliyunFake) -> tuple[datetime, datetime]:
    """Fix the recoverable window of pgm-primary: three days, ending two minutes ago."""
    now = datetime.now(UTC).replace(microsecond=0)
    first, last = now - timedelta(days=3), now - timedelta(minutes=2)
    fake.recovery_window["pgm-primary"] = (first.timestamp(), last.timestamp())
    return first, last


def _wire(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_restore_to_a_time_clones_with_exactly_that_restore_time(
    fake: AliyunFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    first, _ = _window(fake)
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6, seconds=11)
    fake.data_at["pgm-primary"] = [
        ((when - timedelta(hours=1)).timestamp(), "v-before"),
        (when.timestamp(), "v-at-the-time"),
        ((when + timedelta(seconds=1)).timestamp(), "v-after"),
    ]
    doc = restored(OpsTarget(make_ops(fake, kubes, endpoint=admin.endpoint), "alicloud"), when)

    clone = params_of(fake, "CloneDBInstance")
    assert clone["RestoreTime"] == _wire(when)
    assert "BackupId" not in clone and "BackupType" not in clone
    assert clone["DBInstanceId"] == "pgm-primary" and clone["PayType"] == "Postpaid"
    assert clone["VPCId"] == "vpc-cn-hangzhou" and clone["VSwitchId"] == "vsw-a,vsw-b"
    new = doc["instance_id"]
    assert new.startswith("pgm-clone") and fake.data[new] == "v-at-the-time"
    assert fake.instances[new]["SecurityIPList"] == "10.10.0.0/16"
    assert doc["to_time"] == _wire(when) and doc["window"]["first"] == _wire(first)
    url = kubes.by_region[PRIMARY].secrets[(NS, "im-server")]["database-url"]
    assert f"@{new}.pg.rds.aliyuncs.com:5432/" in url
    assert fake.instances["pgm-primary"]["DBInstanceStatus"] == "Running"  # kept


def test_restore_to_the_latest_time_clones_at_the_end_of_the_window(
    fake: AliyunFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    _, last = _window(fake)
    doc = restored(OpsTarget(make_ops(fake, kubes, endpoint=admin.endpoint), "alicloud"), None)
    # CloneDBInstance has no "latest": the end of the window, read just before the clone.
    assert params_of(fake, "CloneDBInstance")["RestoreTime"] == _wire(last)
    order = actions(fake)
    clone = order.index("rds.CloneDBInstance")
    assert order[clone - 2 : clone] == [
        "rds.DescribeLocalAvailableRecoveryTime",
        "rds.DescribeDBInstanceAttribute",  # the source's settings
    ]
    assert doc["to_time"] == "latest"


def test_what_the_backups_cannot_reach_is_refused_with_only_reads_made(
    fake: AliyunFake, kubes: Kubes
) -> None:
    target = OpsTarget(make_ops(fake, kubes), "alicloud")
    in_place = ("only into a new instance", fake.requests)
    check_refusals(target, _window(fake)[0], kubes.by_region[PRIMARY], in_place)
    reads = {"rds.DescribeBackupPolicy", "rds.DescribeLocalAvailableRecoveryTime"}
    assert set(actions(fake)) <= reads | {"rds.DescribeBackups"}


def test_backup_status_reads_the_policy_the_window_and_the_automated_backups(
    fake: AliyunFake, kubes: Kubes
) -> None:
    first, last = _window(fake)
    automated = fake.add_backup("pgm-primary", mode="Automated")
    doc, status = backup_status(OpsTarget(make_ops(fake, kubes), "alicloud"))
    assert status is ExitStatus.OK and doc["archiving"]["state"] == "ok"
    assert doc["window"] == {"first": _wire(first), "last": _wire(last)}
    assert doc["retention_days"] == 7 and "pgm-primary" in doc["where"]
    started = fake.backups["pgm-primary"][automated]["BackupStartTime"]
    assert doc["last_base_backup"] == started


def test_log_backups_off_exit_10_under_check_and_refuse_a_restore_to_a_time(
    fake: AliyunFake, kubes: Kubes
) -> None:
    fake.backup_policy["pgm-primary"].update(EnableBackupLog="0", BackupLog="Disabled")
    doc = check_backups_off(OpsTarget(make_ops(fake, kubes), "alicloud"))
    assert doc["window"] == {"first": None, "last": None}
    assert "rds.DescribeLocalAvailableRecoveryTime" not in actions(fake)
    assert "rds.CloneDBInstance" not in actions(fake)


# --- failover ---------------------------------------------------------------------------------


def test_planned_failover_waits_for_dts_suspends_it_and_flips_dns(
    fake: AliyunFake, kubes: Kubes
) -> None:
    fake.dts_delay = [3, 2, 0]
    log = Log()
    doc = make_ops(fake, kubes).failover(STANDBY, False, log, timeout=30)

    assert doc["mode"] == "planned" and doc["data_loss_bound"]["acked_messages"] == 0
    assert fake.dts_jobs[0]["Status"] == "Suspending"
    suspend = params_of(fake, "SuspendDtsJob")
    assert suspend["DtsJobId"] == fake.dts_jobs[0]["DtsJobId"]
    assert kubes.by_region[PRIMARY].calls == [("scale", (NS, DEP, 0))]
    assert kubes.by_region[STANDBY].calls == [("scale", (NS, DEP, 3)), ("wait", (NS, DEP))]
    im = next(r for r in fake.domains["example.com"] if r["RR"] == "im")
    assert (im["Type"], im["Value"]) == ("A", "127.0.0.2")
    imx = next(r for r in fake.domains["example.com"] if r["RR"] == "imx")
    assert imx["Value"] == "192.0.2.9"  # the fuzzy match was not touched
    assert doc["details"]["dns"]["before"] == [{"type": "CNAME", "value": GTM_CNAME}]
    assert "bypassing GTM" in doc["details"]["dns"]["note"]
    order = [a for _, a, _ in fake.requests]
    assert order.index("SuspendDtsJob") < order.index("UpdateDomainRecord")
    assert any("delay 2s" in line for line in log.lines)
    check_failover(doc)
    assert doc["details"]["dts_job"]["status"] == "Synchronizing"
    assert fake.violations == []


@pytest.mark.parametrize("force", [False, True])
def test_failover_plan_reads_and_changes_nothing(
    fake: AliyunFake, kubes: Kubes, force: bool
) -> None:
    plan = make_ops(fake, kubes).failover_plan(STANDBY, force)
    check_plan(plan)
    assert plan["mode"] == ("forced" if force else "planned")
    assert any("suspend DTS job" in step for step in plan["steps"])
    assert plan["details"]["dts_job"]["status"] == "Synchronizing"
    assert all(a.startswith("Describe") for _, a, _ in fake.requests), actions(fake)
    assert kubes.by_region[PRIMARY].calls == [] and kubes.by_region[STANDBY].calls == []
    assert fake.dts_jobs[0]["Status"] == "Synchronizing"
    fake.dts_jobs[0]["Status"] = "Failed"
    if not force:  # the plan refuses what the failover refuses
        with pytest.raises(PreconditionFailed, match="DTS job Failed"):
            make_ops(fake, kubes).failover_plan(STANDBY, force)
    assert fake.violations == []


def test_forced_failover_with_the_old_region_gone(fake: AliyunFake, kubes: Kubes) -> None:
    kubes.down.add(PRIMARY)
    fake.instances["pgm-primary"]["DBInstanceStatus"] = "Unavailable"
    fake.dts_jobs[0]["Delay"] = 7
    doc = make_ops(fake, kubes).failover(STANDBY, True, Log(), timeout=30)
    assert doc["fenced"] is False and doc["details"]["fence"]["fenced"] is False
    bound = doc["data_loss_bound"]
    assert bound["acked_messages"] is None and bound["replica_lag_seconds"] == 7.0
    assert "could not be fenced" in bound["why"]
    assert fake.dts_jobs[0]["Status"] == "Suspending"
    assert kubes.by_region[STANDBY].calls[0] == ("scale", (NS, DEP, 2))
    assert fake.violations == []


def test_planned_failover_needs_a_running_synchronization(fake: AliyunFake, kubes: Kubes) -> None:
    fake.dts_jobs[0]["Status"] = "Failed"
    with pytest.raises(PreconditionFailed, match="DTS job Failed"):
        make_ops(fake, kubes).failover(STANDBY, False, Log(), timeout=5)
    assert kubes.by_region[PRIMARY].calls == []
    with pytest.raises(UsageError):
        make_ops(fake, kubes).failover(PRIMARY, False, Log(), timeout=5)


def test_planned_failover_that_never_catches_up_is_undone(fake: AliyunFake, kubes: Kubes) -> None:
    fake.dts_delay = [5] * 100_000
    with pytest.raises(OperationTimeout, match="DTS into pgm-dr") as err:
        make_ops(fake, kubes).failover(STANDBY, False, Log(), timeout=0.5)
    assert "nothing was switched" in err.value.hint
    assert "SuspendDtsJob" not in [a for _, a, _ in fake.requests]
    assert kubes.by_region[PRIMARY].calls == [("scale", (NS, DEP, 0)), ("scale", (NS, DEP, 3))]


# --- scale ------------------------------------------------------------------------------------


def test_scale_an_autoscaled_pool_moves_its_bounds(fake: AliyunFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    doc = ops.scale(
        region=None,
        nodes=5,
        replicas=6,
        min_replicas=3,
        max_replicas=12,
        progress=Log(),
        timeout=30,
    )
    pool = fake.pools[("c-primary", "np-primary")]
    assert pool["status"]["total_nodes"] == 5
    assert doc["nodes"]["autoscaling"] == {"min": 5, "max": 5}
    assert doc["nodes"]["cluster_id"] == "c-primary"
    modify = params_of(fake, "ModifyClusterNodePool")
    assert modify["auto_scaling"] == {"enable": True, "min_instances": 5, "max_instances": 5}
    assert "ScaleClusterNodePool" not in [a for _, a, _ in fake.requests]
    assert kubes.by_region[PRIMARY].calls == [
        ("hpa", (NS, DEP, 3, 12)),
        ("scale", (NS, DEP, 6)),
        ("wait", (NS, DEP)),
    ]

    ops.scale(
        region=PRIMARY,
        nodes=2,
        replicas=None,
        min_replicas=None,
        max_replicas=None,
        progress=Log(),
        timeout=30,
    )
    assert pool["status"]["total_nodes"] == 2
    assert pool["auto_scaling"]["max_instances"] == 2
    assert fake.violations == []


def test_scale_a_manual_pool_out_then_in(fake: AliyunFake, kubes: Kubes) -> None:
    pool = fake.add_pool("c-primary", "np-primary", nodes=2, auto=None)
    ops = make_ops(fake, kubes)
    common: dict[str, Any] = {
        "region": None,
        "replicas": None,
        "min_replicas": None,
        "max_replicas": None,
        "progress": Log(),
        "timeout": 30,
    }
    ops.scale(nodes=5, **common)
    assert params_of(fake, "ScaleClusterNodePool")["count"] == 3
    assert pool["status"]["total_nodes"] == 5
    ops.scale(nodes=1, **common)
    assert params_of(fake, "ModifyClusterNodePool")["scaling_group"] == {"desired_size": 1}
    assert pool["status"]["total_nodes"] == 1
    assert fake.violations == []


def test_a_failed_scaling_task_is_a_resource_failure(fake: AliyunFake, kubes: Kubes) -> None:
    fake.fail_tasks = True
    with pytest.raises(ResourceFailure, match="no stock"):
        make_ops(fake, kubes).scale(
            region=None,
            nodes=4,
            replicas=None,
            min_replicas=None,
            max_replicas=None,
            progress=Log(),
            timeout=30,
        )


# --- credentials and status -------------------------------------------------------------------


def test_an_unreachable_api_is_a_resource_failure(kubes: Kubes) -> None:
    from cli.targets.local.procs import free_port

    ops = AlicloudOps(
        CloudOutputs.from_json(OUTPUTS),
        kubes,
        access_key_id="LTAI-test",
        access_key_secret="s",
        endpoint_override=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(ResourceFailure, match="could not reach the API"):
        ops.snapshot_list()


def test_an_unknown_access_key_is_a_credentials_error(fake: AliyunFake, kubes: Kubes) -> None:
    with pytest.raises(CredentialsError, match=r"InvalidAccessKeyId\.NotFound"):
        make_ops(fake, kubes, ak="LTAI-nobody").snapshot_list()


def test_a_wrong_secret_is_a_credentials_error(fake: AliyunFake, kubes: Kubes) -> None:
    with pytest.raises(CredentialsError, match="SignatureDoesNotMatch"):
        make_ops(fake, kubes, sk="not-the-secret").snapshot_list()


def test_a_missing_access_key_is_a_credentials_error(fake: AliyunFake, kubes: Kubes) -> None:
    with pytest.raises(CredentialsError):
        make_ops(fake, kubes, ak="")


def test_status_reports_instances_dts_workloads_and_dns(fake: AliyunFake, kubes: Kubes) -> None:
    doc = make_ops(fake, kubes).status()
    assert doc["regions"][PRIMARY]["database"]["state"] == "Running"
    assert doc["regions"][PRIMARY]["workload"] == {"desired": 3, "ready": 3}
    assert doc["dts"]["status"] == "Synchronizing"
    assert doc["dns_points_to"] == [{"type": "CNAME", "value": GTM_CNAME, "line": "default"}]
    assert fake.violations == []
