"""GCP day-2 operations end to end against an emulated GCP (tests/cloud/fake_gcp.py), not the real
cloud: google-api-python-client talks HTTP to a local server that checks every request against
the shipped discovery documents. What this proves: the calls, their order, their parameters and
bodies, the polling and the error mapping. What it cannot: IAM, quotas, timings, and whether
Cloud SQL accepts these settings for a real instance."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.errors import (
    CredentialsError,
    ExitStatus,
    FailoverIncomplete,
    OperationTimeout,
    Partial,
    PreconditionFailed,
    ResourceFailure,
    RestoredContentMismatch,
    SnapshotNotFound,
    UsageError,
)
from cli.targets.cloud.gcp import GcpOps
from cli.targets.cloud.ops import CloudOps
from cli.targets.cloud.outputs import CloudOutputs
from tests.cloud.digest_fixtures import FakeImAdmin, Log, RollingKube
from tests.cloud.digest_fixtures import RegionKubes as Kubes
from tests.cloud.fake_gcp import GcpFake, check_request, check_value, load_discovery
from tests.cloud.fake_kube import FakeKube
from tests.cloud.pitr_fixtures import (
    OpsTarget,
    backup_status,
    check_backups_off,
    check_refusals,
    restored,
)
from tests.cloud.result_shapes import FAILOVER_KEYS, check_failover, check_plan, check_restore

PROJECT = "imctl-test"
PRIMARY, STANDBY = "us-central1", "us-east1"
NS, DEP = "imctl", "im-server"
ROOT = Path(__file__).resolve().parents[2]

OUTPUTS = {
    "cloud": "gcp",
    "primary_region": PRIMARY,
    "standby_region": STANDBY,
    "regions": {
        PRIMARY: {
            "cluster_name": "im-us-central1",
            "nodegroup_name": "im-nodes",
            "db_instance_id": "im-db",
            "endpoint": "127.0.0.1",
        },
        STANDBY: {
            "role": "standby",
            "cluster_name": "im-us-east1",
            "nodegroup_name": "im-nodes",
            "db_instance_id": "im-db-replica",
            "endpoint": "127.0.0.2",
        },
    },
    "hosted_zone_id": "im-zone",
    "dns_name": "im.example.com",
    "backup_bucket": "im-backups",
}


# The workload's Secret in the primary region, as the stack writes it.
OLD_URL = "postgresql://im:0ldPassw0rd@10.10.0.5:5432/im?sslmode=require"
ADMIN_TOKEN = "admin-token-of-the-test-stack"


@pytest.fixture
def fake() -> Iterator[GcpFake]:
    f = GcpFake(project=PROJECT, op_polls=2)
    f.start()
    f.add_instance("im-db", PRIMARY, private_ip="10.10.0.5", data="v1")
    f.add_instance("im-db-replica", STANDBY, master="im-db", private_ip="10.20.0.5", data="v1")
    f.add_node_pool(PRIMARY, "im-us-central1", "im-nodes", zones=3, total_min=3, total_max=6)
    f.add_zone("im-zone", "example.com.")
    f.add_rrset(
        "im-zone",
        {
            "name": "im.example.com.",
            "type": "A",
            "ttl": 60,
            "routingPolicy": {
                "healthCheck": f"projects/{PROJECT}/global/healthChecks/im",
                "primaryBackup": {
                    "primaryTargets": {"externalEndpoints": ["127.0.0.1"]},
                    "backupGeoTargets": {
                        "items": [
                            {
                                "location": STANDBY,
                                "healthCheckedTargets": {"externalEndpoints": ["127.0.0.2"]},
                            }
                        ]
                    },
                    "trickleTraffic": 0,
                },
            },
        },
    )
    yield f
    f.stop()
    # Every request any test made matched the discovery documents.
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
    fake: GcpFake, kubes: Kubes, token: str = "fake-token", *, endpoint: str | None = None
) -> GcpOps:
    from google.oauth2.credentials import Credentials

    outputs = CloudOutputs.from_json(OUTPUTS)
    if endpoint is not None:
        primary = replace(outputs.primary, endpoint=endpoint)
        outputs = replace(outputs, regions={**outputs.regions, PRIMARY: primary})
    return GcpOps(
        outputs,
        kubes,
        project=PROJECT,
        credentials=Credentials(token=token),  # type: ignore[no-untyped-call]
        api_endpoint=fake.url,
        poll_interval=0.01,
        readyz_timeout=0.5,
    )


def calls(fake: GcpFake) -> list[str]:
    return [method for method, _, _ in fake.requests]


def no_violations(fake: GcpFake) -> None:
    assert fake.violations == []


# --- import hygiene and contract --------------------------------------------------------------


def test_importing_the_ops_imports_no_sdk() -> None:
    code = (
        "import sys, cli.targets.cloud.gcp, cli.targets.cloud.alicloud;"
        "bad=[m for m in sys.modules if m.split('.')[0] in"
        " ('googleapiclient','google','httplib2','alibabacloud_rds20140815',"
        "'alibabacloud_cs20151215','alibabacloud_alidns20150109','alibabacloud_tea_openapi',"
        "'Tea','darabonba')];print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_workload_contract_is_one_module_without_pulumi() -> None:
    # The day-2 code and the stacks read the same constants; importing them loads no Pulumi.
    from stacks import contract, workload_contract

    day2 = {p: p.read_text() for p in (ROOT / "cli/targets/cloud").rglob("*.py")}
    assert any("from stacks.workload_contract import" in text for text in day2.values())
    copies = [
        str(p) for p, text in day2.items() if re.search(r"^(SECRET_\w+|DB_\w+) = ", text, re.M)
    ]
    assert copies == []
    assert contract.RegionInfra.__dataclass_fields__["db_port"].default == workload_contract.DB_PORT
    server = (ROOT / "stacks/workload/server.py").read_text()
    assert "SECRET_ADMIN_TOKEN_KEY: args.admin_token" in server
    assert '_secret_env("IM_ADMIN_TOKEN", SECRET_ADMIN_TOKEN_KEY)' in server
    code = (
        "import sys, stacks.workload_contract;"
        "print(sorted(m for m in sys.modules if 'pulumi' in m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_gcp_ops_satisfies_the_protocol(fake: GcpFake, kubes: Kubes) -> None:
    ops: CloudOps = make_ops(fake, kubes)
    assert ops is not None


# --- request shapes ---------------------------------------------------------------------------


def test_the_shape_checker_catches_bad_requests() -> None:
    methods, _docs = load_discovery()
    by_id = {m.id: m for m in methods}
    problems: list[str] = []
    check_request(
        by_id["sql.instances.restoreBackup"],
        {"project": "p", "instance": "i"},
        {"restoreBackupContext": {"backupRunID": "1"}},
        problems,
    )
    check_request(by_id["sql.backupRuns.get"], {"project": "p", "instance": "i"}, None, problems)
    check_request(
        by_id["container.projects.locations.clusters.nodePools.setSize"],
        {"name": "x"},
        {"nodeCount": "3"},
        problems,
    )
    check_request(by_id["dns.changes.create"], {"project": "p", "managedZone": "z"}, None, problems)
    check_request(
        by_id["sql.instances.get"], {"project": "p", "instance": "i", "x": "1"}, None, problems
    )
    check_request(
        by_id["sql.instances.clone"],
        {"project": "p", "instance": "i"},
        {"cloneContext": {"destinationInstanceName": "n", "restoreTime": "2026-01-01T00:00:00Z"}},
        problems,
    )
    m = by_id["sql.operations.get"]
    check_value(m.doc, {"$ref": "Operation"}, {"status": "FINISHED"}, "op", problems)
    joined = "\n".join(problems)
    assert "unknown field 'backupRunID'" in joined
    assert "missing required parameter 'id'" in joined
    assert "expected an integer" in joined
    assert "needs a Change body" in joined
    assert "unknown parameter 'x'" in joined
    assert "'FINISHED' is not one of" in joined
    assert "unknown field 'restoreTime'" in joined  # the clone API calls it pointInTime


def test_unknown_paths_are_violations(fake: GcpFake) -> None:
    status, _ = fake.handle("GET", "/v1/projects/p/instancez/x", {}, b"")
    assert status == 404
    assert fake.violations and "no discovery method" in fake.violations[0]
    fake.violations.clear()


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_create_list_show_delete(fake: GcpFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    log = Log()
    snap = ops.snapshot_create("before the migration", log, timeout=30)
    assert snap["status"] == "available"
    assert snap["note"] == "before the migration"
    assert snap["size_bytes"] == 123456
    assert snap["location"] == f"projects/{PROJECT}/instances/im-db/backupRuns/{snap['id']}"
    # The operation was polled through its states, and each was reported once.
    states = [line.split(": ", 1)[1] for line in log.lines if line.startswith("backup of im-db")]
    assert states == ["PENDING", "RUNNING", "DONE"]
    assert calls(fake)[:2] == ["sql.backupRuns.insert", "sql.operations.get"]

    more = [ops.snapshot_create(None, log, timeout=30)["id"] for _ in range(2)]
    listed = ops.snapshot_list()["snapshots"]
    # Three runs over pages of two: the list follows nextPageToken.
    assert {s["id"] for s in listed} == {snap["id"], *more}
    assert sum(1 for c in calls(fake) if c == "sql.backupRuns.list") == 2

    shown = ops.snapshot_show(snap["id"])
    assert shown["id"] == snap["id"] and shown["type"] == "ON_DEMAND"

    deleted = ops.snapshot_delete(snap["id"], log, timeout=30)
    assert deleted["deleted"] is True
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_show(snap["id"])
    no_violations(fake)


def test_unknown_snapshot_ids(fake: GcpFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_show("12345")
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_show("20240101T000000Z-abcdef")  # a local id: never sent to the API
    with pytest.raises(SnapshotNotFound):
        ops.snapshot_delete("999", Log(), timeout=5)
    assert "sql.backupRuns.delete" not in calls(fake)
    no_violations(fake)


def test_an_operation_past_the_deadline_is_an_unknown_outcome(fake: GcpFake, kubes: Kubes) -> None:
    fake.op_polls = 10_000
    with pytest.raises(OperationTimeout) as err:
        make_ops(fake, kubes).snapshot_create(None, Log(), timeout=0.3)
    assert "outcome is unknown" in err.value.message
    assert "gcloud sql operations describe" in err.value.hint


def test_a_failed_operation_is_a_resource_failure(fake: GcpFake, kubes: Kubes) -> None:
    fake.fail_ops["sql.backupRuns.insert"] = "backup disk unavailable"
    with pytest.raises(ResourceFailure, match="backup disk unavailable"):
        make_ops(fake, kubes).snapshot_create(None, Log(), timeout=30)


# --- restore ----------------------------------------------------------------------------------


def test_restore_into_a_new_instance_repoints_and_rolls(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    fake.data["im-db"] = "v2 (after the snapshot)"
    log = Log()
    doc = ops.restore(snap["id"], "new", log, timeout=60)

    new = doc["instance_id"]
    assert re.fullmatch(r"im-db-restore-\d{14}", new)
    assert fake.data[new] == "v1"  # the backup's content, not the live instance's
    assert fake.data["im-db"] == "v2 (after the snapshot)"  # the source is untouched
    created = fake.instances[new]
    src = fake.instances["im-db"]
    assert created["region"] == PRIMARY and created["databaseVersion"] == "POSTGRES_16"
    for key in ("tier", "edition", "availabilityType", "dataDiskSizeGb", "ipConfiguration"):
        assert created["settings"][key] == src["settings"][key]
    assert created["settings"]["userLabels"]["imctl-restored-from"] == "im-db"

    order = [c for c in calls(fake) if c != "sql.operations.get"]
    assert order.index("sql.instances.insert") < order.index("sql.instances.restoreBackup")
    assert order.index("sql.instances.restoreBackup") < order.index("sql.users.update")
    restore_body = next(b for m, _, b in fake.requests if m == "sql.instances.restoreBackup")
    assert restore_body["restoreBackupContext"]["backupRunId"] == snap["id"]
    assert restore_body["restoreBackupContext"]["instanceId"] == "im-db"

    kube = kubes.by_region[PRIMARY]
    assert kube.calls == [
        ("secret", (NS, "im-server", ["database-url"])),
        ("restart", (NS, DEP)),
        ("wait", (NS, DEP)),
    ]
    url = kube.secrets[(NS, "im-server")]["database-url"]
    m = re.fullmatch(r"postgresql://im:([A-Za-z0-9]+)@([\d.]+):5432/im\?sslmode=require", url)
    assert m is not None
    assert m.group(2) == created["ipAddresses"][0]["ipAddress"] == doc["db_host"]
    assert fake.users[new]["im"] == m.group(1)  # the password written is the one set
    assert doc["status"] == "restored" and doc["previous_instance_id"] == "im-db"
    check_restore(doc)
    verified = doc["verified"]
    assert verified["content_checked"] is True and verified["content"]["ok"] is True
    assert verified["content"]["before"] == snap["digest"]
    assert verified["content"]["after"]["database"]["host"] == doc["db_host"]
    no_violations(fake)


class StuckRollout(FakeKube):
    def wait_ready(self, namespace: str, deployment: str, timeout: float) -> None:
        raise OperationTimeout(f"{deployment} not ready in {timeout:.0f}s")


def test_a_rollout_failing_after_the_repoint_is_a_partial_success(
    fake: GcpFake, kubes: Kubes
) -> None:
    kubes.by_region[PRIMARY] = StuckRollout(secrets=kubes.by_region[PRIMARY].secrets)
    ops = make_ops(fake, kubes)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    with pytest.raises(Partial) as err:
        ops.restore(snap["id"], "new", Log(), timeout=30)
    assert "points at the restored database" in err.value.message
    assert "rollout restart deployment/im-server" in err.value.hint
    assert "-restore-" in err.value.hint  # and the new instance is named


def test_in_place_restore_is_refused_while_the_primary_has_replicas(
    fake: GcpFake, kubes: Kubes
) -> None:
    ops = make_ops(fake, kubes)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    with pytest.raises(PreconditionFailed, match="has replicas"):
        ops.restore(snap["id"], "in-place", Log(), timeout=30)
    assert "sql.instances.restoreBackup" not in calls(fake)


def test_in_place_restore_without_replicas(fake: GcpFake, kubes: Kubes, admin: FakeImAdmin) -> None:
    fake.instances["im-db"].pop("replicaNames")
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    fake.data["im-db"] = "v2"
    doc = ops.restore(snap["id"], "in-place", Log(), timeout=30)
    assert doc["instance_id"] == "im-db" and fake.data["im-db"] == "v1"
    check_restore(doc)
    assert kubes.by_region[PRIMARY].calls == [("restart", (NS, DEP)), ("wait", (NS, DEP))]
    assert doc["verified"]["content_checked"] is True
    no_violations(fake)


def test_a_failed_restore_names_the_instance_it_left(fake: GcpFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    fake.fail_ops["sql.instances.restoreBackup"] = "restore failed on the volume"
    with pytest.raises(ResourceFailure) as err:
        ops.restore(snap["id"], "new", Log(), timeout=30)
    new = next(n for n in fake.instances if "-restore-" in n)
    assert new in err.value.hint and "gcloud sql instances delete" in err.value.hint
    assert kubes.by_region[PRIMARY].calls == []  # the workload never moved


# --- restore: the content check -------------------------------------------------------------


def test_a_backup_run_keeps_the_note_and_the_digest_in_its_description(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create("before the upgrade", Log(), timeout=30)
    assert snap["note"] == "before the upgrade" and snap["warnings"] == []
    assert snap["digest"] == {**admin.counts, "at_ms": snap["digest"]["at_ms"]}
    description = fake.backup_runs["im-db"][snap["id"]]["description"]
    assert json.loads(description) == {"imctl_digest": snap["digest"], "note": snap["note"]}
    assert " " not in description.replace("before the upgrade", "")  # compact
    shown = ops.snapshot_show(snap["id"])
    assert (shown["note"], shown["digest"]) == (snap["note"], snap["digest"])
    # A run described by anything else: its description is the note, and there is no digest.
    fake.backup_runs["im-db"][snap["id"]]["description"] = '{"made": "by hand"}'
    shown = ops.snapshot_show(snap["id"])
    assert (shown["note"], shown["digest"]) == ('{"made": "by hand"}', None)
    no_violations(fake)


def test_a_restore_missing_committed_messages_points_the_secret_back(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    admin.counts["messages"] -= 4  # what the restored instance will answer

    with pytest.raises(RestoredContentMismatch) as err:
        ops.restore(snap["id"], "new", Log(), timeout=60)

    exc = err.value
    assert (exc.status, exc.code) == (ExitStatus.PRECONDITION, "content_mismatch")
    new = next(n for n in fake.instances if "-restore-" in n)
    assert "messages: 6 restored, 10 before the snapshot" in exc.message
    assert "pointed back at im-db" in exc.message
    assert f"instance {new} was left for inspection" in exc.hint
    assert f"gcloud sql instances delete {new}" in exc.hint
    kube = kubes.by_region[PRIMARY]
    assert kube.secrets[(NS, "im-server")]["database-url"] == OLD_URL
    assert [c[0] for c in kube.calls] == ["secret", "restart", "wait"] * 2
    assert new in fake.instances  # left for inspection
    no_violations(fake)


def test_an_in_place_restore_that_fails_its_check_has_nothing_to_go_back_to(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    fake.instances["im-db"].pop("replicaNames")
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    snap = ops.snapshot_create(None, Log(), timeout=30)
    admin.counts["non_dense"] = 1
    with pytest.raises(RestoredContentMismatch) as err:
        ops.restore(snap["id"], "in-place", Log(), timeout=30)
    assert "the restore was in place" in err.value.message
    assert "restore another backup run onto it" in err.value.hint
    assert err.value.result["rolled_back"] is False
    assert kubes.by_region[PRIMARY].calls == [("restart", (NS, DEP)), ("wait", (NS, DEP))]


def test_a_backup_while_the_application_is_down_is_taken_without_a_digest(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    ops = make_ops(fake, kubes, endpoint=admin.endpoint)
    admin.fail_with = 503
    snap = ops.snapshot_create("note only", Log(), timeout=30)
    assert snap["status"] == "available" and snap["digest"] is None
    assert "no content digest recorded" in snap["warnings"][0]
    assert "HTTP 503" in snap["warnings"][0]
    assert fake.backup_runs["im-db"][snap["id"]]["description"] == "note only"
    # Its restore checks density only, and says so.
    admin.fail_with = None
    doc = ops.restore(snap["id"], "new", Log(), timeout=60)
    assert doc["verified"]["content_checked"] == "partial"
    assert doc["verified"]["content"]["before"] is None


# --- restore to a point in time --------------------------------------------------------------


def _window(fake: GcpFake, days: float = 3) -> tuple[datetime, datetime]:
    """Fix the recoverable window of im-db: ``days`` deep, ending a minute ago (whole seconds)."""
    now = datetime.now(UTC).replace(microsecond=0)
    first, last = now - timedelta(days=days), now - timedelta(minutes=1)
    fake.recovery_window["im-db"] = (first.timestamp(), last.timestamp())
    return first, last


def test_restore_to_a_time_clones_as_of_exactly_that_time(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    first, _ = _window(fake)
    when = datetime.now(UTC).replace(microsecond=250000) - timedelta(hours=5)
    # What im-db held over time: the clone must carry what it held at ``when``.
    fake.data_at["im-db"] = [
        ((when - timedelta(hours=1)).timestamp(), "v-before"),
        (when.timestamp(), "v-at-the-time"),
        ((when + timedelta(seconds=1)).timestamp(), "v-after"),
    ]
    doc = restored(OpsTarget(make_ops(fake, kubes, endpoint=admin.endpoint), "gcp"), when)

    ((params, body),) = [(p, b) for m, p, b in fake.requests if m == "sql.instances.clone"]
    assert params["instance"] == "im-db"
    ctx = body["cloneContext"]
    assert datetime.fromisoformat(ctx["pointInTime"]) == when  # to the microsecond
    new = ctx["destinationInstanceName"]
    assert re.fullmatch(r"im-db-pitr-\d{14}", new)
    assert fake.data[new] == "v-at-the-time"
    assert "sql.instances.insert" not in calls(fake)  # the clone makes the instance itself
    assert (doc["to_time"], doc["instance_id"]) == (when.isoformat().replace("+00:00", "Z"), new)
    assert datetime.fromisoformat(doc["window"]["first"]) == first
    url = kubes.by_region[PRIMARY].secrets[(NS, "im-server")]["database-url"]
    m = re.fullmatch(r"postgresql://im:([A-Za-z0-9]+)@([\d.]+):5432/im\?sslmode=require", url)
    assert m is not None and fake.users[new]["im"] == m.group(1)
    assert m.group(2) == doc["db_host"] == fake.instances[new]["ipAddresses"][0]["ipAddress"]
    assert fake.instances["im-db"]["state"] == "RUNNABLE"  # the source is kept


def test_restore_to_the_latest_time_clones_as_of_the_latest_recovery_time(
    fake: GcpFake, kubes: Kubes, admin: FakeImAdmin
) -> None:
    _, last = _window(fake)
    doc = restored(OpsTarget(make_ops(fake, kubes, endpoint=admin.endpoint), "gcp"), None)
    ((body),) = [b for m, _, b in fake.requests if m == "sql.instances.clone"]
    # Without pointInTime Cloud SQL would copy the instance as it is now, not recover it.
    assert datetime.fromisoformat(body["cloneContext"]["pointInTime"]) == last
    order = calls(fake)
    assert order.index("sql.projects.instances.getLatestRecoveryTime") < order.index(
        "sql.instances.clone"
    )
    assert doc["to_time"] == "latest"


def test_what_the_backups_cannot_reach_is_refused_before_any_create(
    fake: GcpFake, kubes: Kubes
) -> None:
    first, _ = _window(fake)
    in_place = ("only by cloning into a new instance", fake.requests)
    check_refusals(
        OpsTarget(make_ops(fake, kubes), "gcp"), first, kubes.by_region[PRIMARY], in_place
    )
    made = {"sql.instances.clone", "sql.instances.insert", "sql.users.update"}
    assert not made & set(calls(fake))


def test_backup_status_reads_the_window_and_the_automated_backups(
    fake: GcpFake, kubes: Kubes
) -> None:
    first, last = _window(fake)
    ops = make_ops(fake, kubes)
    ops.snapshot_create(None, Log(), timeout=30)  # on demand: not a base backup of the schedule
    automated = next(iter(fake.backup_runs["im-db"].values()))
    automated["type"] = "AUTOMATED"
    doc, status = backup_status(OpsTarget(ops, "gcp"))
    assert status is ExitStatus.OK and doc["archiving"]["state"] == "ok"
    assert [datetime.fromisoformat(doc["window"][k]) for k in ("first", "last")] == [first, last]
    assert doc["retention_days"] == 7 and "im-db" in doc["where"]
    assert datetime.fromisoformat(doc["last_base_backup"]) == datetime.fromisoformat(
        automated["startTime"]
    )


def test_backups_off_exit_10_under_check_and_refuse_a_restore_to_a_time(
    fake: GcpFake, kubes: Kubes
) -> None:
    fake.instances["im-db"]["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"] = False
    doc = check_backups_off(OpsTarget(make_ops(fake, kubes), "gcp"))
    assert doc["window"] == {"first": None, "last": None}
    assert "sql.projects.instances.getLatestRecoveryTime" not in calls(fake)


# --- failover ---------------------------------------------------------------------------------


def test_planned_failover_waits_for_zero_lag_promotes_and_flips_dns(
    fake: GcpFake, kubes: Kubes
) -> None:
    fake.lag["im-db-replica"] = [2.5, 0.4, 0.0]
    log = Log()
    doc = make_ops(fake, kubes).failover(STANDBY, False, log, timeout=30)

    assert doc["mode"] == "planned" and doc["from_region"] == PRIMARY
    assert doc["data_loss_bound"]["acked_messages"] == 0
    assert doc["data_loss_bound"]["replica_lag_seconds"] == 0.0
    assert "masterInstanceName" not in fake.instances["im-db-replica"]
    assert fake.instances["im-db"].get("replicaNames") == []
    # Fence before promotion, promotion before the new region takes traffic.
    assert kubes.by_region[PRIMARY].calls == [("scale", (NS, DEP, 0))]
    assert kubes.by_region[STANDBY].calls == [("scale", (NS, DEP, 3)), ("wait", (NS, DEP))]
    assert calls(fake).count("monitoring.projects.timeSeries.list") == 3
    (record,) = fake.rrsets["im-zone"]
    assert record["rrdatas"] == ["127.0.0.2"] and "routingPolicy" not in record
    assert doc["details"]["dns"]["after"] == [{"type": "A", "rrdatas": ["127.0.0.2"]}]
    assert doc["rto_seconds"] >= doc["promote_seconds"] > 0
    assert any("replica_lag 2.5s" in line for line in log.lines)
    check_failover(doc)
    assert doc["endpoint"] == "im.example.com" and doc["fenced"] is True
    no_violations(fake)


@pytest.mark.parametrize("force", [False, True])
def test_failover_plan_reads_and_changes_nothing(fake: GcpFake, kubes: Kubes, force: bool) -> None:
    fake.lag["im-db-replica"] = [1.5]
    plan = make_ops(fake, kubes).failover_plan(STANDBY, force)
    check_plan(plan)
    assert (plan["mode"], plan["from_region"], plan["to_region"]) == (
        "forced" if force else "planned",
        PRIMARY,
        STANDBY,
    )
    assert any("promote im-db-replica" in step for step in plan["steps"])
    assert plan["data_loss_bound"]["acked_messages"] == (None if force else 0)
    reads = {c.rsplit(".", 1)[-1] for c in calls(fake)}
    assert reads <= {"get", "list"}, calls(fake)
    assert kubes.by_region[PRIMARY].calls == [] and kubes.by_region[STANDBY].calls == []
    assert fake.instances["im-db-replica"]["masterInstanceName"].endswith(":im-db")
    # The plan refuses what the failover refuses, with the same error.
    fake.instances["im-db-replica"].pop("masterInstanceName")
    with pytest.raises(PreconditionFailed, match="not a read replica"):
        make_ops(fake, kubes).failover_plan(STANDBY, force)
    no_violations(fake)


def test_forced_failover_with_the_old_region_gone(fake: GcpFake, kubes: Kubes) -> None:
    kubes.down.add(PRIMARY)
    fake.lag["im-db-replica"] = [4.0]
    doc = make_ops(fake, kubes).failover(STANDBY, True, Log(), timeout=30)
    assert doc["mode"] == "forced"
    assert doc["fenced"] is False and "does not answer" in doc["details"]["fence"]["error"]
    bound = doc["data_loss_bound"]
    assert bound["acked_messages"] is None and bound["replica_lag_seconds"] == 4.0
    assert "could not be fenced" in bound["why"]
    assert "masterInstanceName" not in fake.instances["im-db-replica"]
    # The old region's size is unknown, so the new one starts with the default.
    assert kubes.by_region[STANDBY].calls[0] == ("scale", (NS, DEP, 2))
    no_violations(fake)


def test_planned_failover_that_never_catches_up_is_undone(fake: GcpFake, kubes: Kubes) -> None:
    fake.lag["im-db-replica"] = [3.0] * 10_000
    with pytest.raises(OperationTimeout) as err:
        make_ops(fake, kubes).failover(STANDBY, False, Log(), timeout=0.5)
    assert "nothing was promoted" in err.value.hint
    assert "sql.instances.promoteReplica" not in calls(fake)
    assert kubes.by_region[PRIMARY].calls == [("scale", (NS, DEP, 0)), ("scale", (NS, DEP, 3))]
    assert fake.instances["im-db-replica"]["masterInstanceName"].endswith(":im-db")


def test_planned_failover_with_the_old_region_unreachable_is_refused(
    fake: GcpFake, kubes: Kubes
) -> None:
    kubes.down.add(PRIMARY)
    with pytest.raises(PreconditionFailed, match="could not fence") as err:
        make_ops(fake, kubes).failover(STANDBY, False, Log(), timeout=5)
    assert "--force" in err.value.hint
    assert "sql.instances.promoteReplica" not in calls(fake)


def test_a_failure_after_promotion_is_a_partial_success(fake: GcpFake, kubes: Kubes) -> None:
    kubes.down.add(STANDBY)
    fake.lag["im-db-replica"] = [0.0]
    with pytest.raises(Partial) as err:
        make_ops(fake, kubes).failover(STANDBY, True, Log(), timeout=30)
    assert err.value.status == ExitStatus.PARTIAL
    assert "im-db-replica in us-east1 is the primary now" in err.value.message
    assert "imctl scale --region us-east1 --replicas 3" in err.value.hint
    assert "masterInstanceName" not in fake.instances["im-db-replica"]


def test_a_dns_step_that_fails_is_an_incomplete_failover_with_its_result(
    fake: GcpFake, kubes: Kubes
) -> None:
    fake.lag["im-db-replica"] = [0.0]
    fake.deny.add("dns.changes.create")
    with pytest.raises(FailoverIncomplete, match="promoted and serving") as err:
        make_ops(fake, kubes).failover(STANDBY, True, Log(), timeout=30)
    assert err.value.status == ExitStatus.PARTIAL
    assert "by hand" in err.value.hint and "127.0.0.2" in err.value.hint
    result = err.value.result
    assert set(result) == FAILOVER_KEYS and result["rto_seconds"] is not None
    assert "Permission denied" in result["details"]["dns"]["error"]
    assert "masterInstanceName" not in fake.instances["im-db-replica"]
    assert kubes.by_region[STANDBY].calls == [("scale", (NS, DEP, 3)), ("wait", (NS, DEP))]


def test_a_refused_promotion_gives_the_old_primary_its_workload_back(
    fake: GcpFake, kubes: Kubes
) -> None:
    fake.lag["im-db-replica"] = [0.0]
    fake.fail_ops["sql.instances.promoteReplica"] = "replica is being recreated"
    with pytest.raises(ResourceFailure, match="being recreated") as err:
        make_ops(fake, kubes).failover(STANDBY, False, Log(), timeout=30)
    assert "nothing was promoted" in err.value.hint
    assert kubes.by_region[PRIMARY].calls == [("scale", (NS, DEP, 0)), ("scale", (NS, DEP, 3))]
    assert kubes.by_region[STANDBY].calls == []


def test_failover_preconditions(fake: GcpFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    with pytest.raises(UsageError):
        ops.failover(PRIMARY, False, Log(), timeout=5)
    with pytest.raises(UsageError):
        ops.failover("eu-west1", False, Log(), timeout=5)
    fake.instances["im-db-replica"].pop("masterInstanceName")
    with pytest.raises(PreconditionFailed, match="not a read replica"):
        ops.failover(STANDBY, True, Log(), timeout=5)
    assert kubes.by_region[PRIMARY].calls == []


# --- scale ------------------------------------------------------------------------------------


def test_scale_nodes_widens_autoscaling_then_resizes(fake: GcpFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    doc = ops.scale(
        region=None,
        nodes=8,
        replicas=4,
        min_replicas=2,
        max_replicas=10,
        progress=Log(),
        timeout=30,
    )
    pool = fake.pools[
        f"projects/{PROJECT}/locations/{PRIMARY}/clusters/im-us-central1/nodePools/im-nodes"
    ]
    assert doc["nodes"]["per_zone"] == 3 and doc["nodes"]["total"] == 9
    assert pool["initialNodeCount"] == 3
    assert pool["autoscaling"]["totalMaxNodeCount"] == 9
    assert pool["autoscaling"]["totalMinNodeCount"] == 3
    order = [c.rsplit(".", 1)[-1] for c in calls(fake)]
    assert order.index("setAutoscaling") < order.index("setSize")
    assert kubes.by_region[PRIMARY].calls == [
        ("hpa", (NS, DEP, 2, 10)),
        ("scale", (NS, DEP, 4)),
        ("wait", (NS, DEP)),
    ]
    assert doc["replicas"] == {"desired": 4, "ready": 4}
    no_violations(fake)


def test_scale_within_bounds_touches_no_autoscaling(fake: GcpFake, kubes: Kubes) -> None:
    make_ops(fake, kubes).scale(
        region=PRIMARY,
        nodes=6,
        replicas=None,
        min_replicas=None,
        max_replicas=None,
        progress=Log(),
        timeout=30,
    )
    assert not any(c.endswith("setAutoscaling") for c in calls(fake))
    no_violations(fake)


def test_scale_argument_checks(fake: GcpFake, kubes: Kubes) -> None:
    ops = make_ops(fake, kubes)
    scale: Callable[..., Any] = ops.scale
    common = {"region": None, "progress": Log(), "timeout": 5}
    with pytest.raises(UsageError):
        scale(nodes=None, replicas=None, min_replicas=None, max_replicas=None, **common)
    with pytest.raises(UsageError):
        scale(nodes=None, replicas=None, min_replicas=5, max_replicas=2, **common)
    with pytest.raises(UsageError):
        scale(nodes=-1, replicas=None, min_replicas=None, max_replicas=None, **common)
    assert fake.requests == []


# --- credentials and status -------------------------------------------------------------------


def test_an_unreachable_api_is_a_resource_failure_not_a_success(kubes: Kubes) -> None:
    from google.oauth2.credentials import Credentials

    from cli.targets.local.procs import free_port

    ops = GcpOps(
        CloudOutputs.from_json(OUTPUTS),
        kubes,
        project=PROJECT,
        credentials=Credentials(token="t"),  # type: ignore[no-untyped-call]
        api_endpoint=f"http://127.0.0.1:{free_port()}/",
    )
    with pytest.raises(ResourceFailure, match="whether it took effect is unknown"):
        ops.snapshot_create(None, Log(), timeout=5)


def test_a_rejected_token_is_a_credentials_error(fake: GcpFake, kubes: Kubes) -> None:
    with pytest.raises(CredentialsError):
        make_ops(fake, kubes, token="expired").snapshot_list()


def test_a_denied_permission_is_a_credentials_error(fake: GcpFake, kubes: Kubes) -> None:
    fake.deny.add("sql.backupRuns.insert")
    with pytest.raises(CredentialsError, match="Permission denied"):
        make_ops(fake, kubes).snapshot_create(None, Log(), timeout=5)


def test_no_default_credentials_is_a_credentials_error(
    fake: GcpFake, kubes: Kubes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    ops = GcpOps(
        CloudOutputs.from_json(OUTPUTS),
        kubes,
        project=PROJECT,
        api_endpoint=fake.url,
    )
    with pytest.raises(CredentialsError, match="no Google credentials"):
        ops.snapshot_list()
    assert fake.requests == []


def test_status_reports_databases_workloads_lag_and_dns(fake: GcpFake, kubes: Kubes) -> None:
    fake.lag["im-db-replica"] = [1.5]
    doc = make_ops(fake, kubes).status()
    p, s = doc["regions"][PRIMARY], doc["regions"][STANDBY]
    assert (p["database"]["state"], p["database"]["role"]) == ("RUNNABLE", "primary")
    assert (s["database"]["state"], s["database"]["role"]) == ("RUNNABLE", "replica")
    assert p["workload"] == {"desired": 3, "ready": 3}
    assert p["readyz"] != "ok"  # no im-server behind these addresses
    assert doc["replica_lag_seconds"] == 1.5
    assert doc["dns_points_to"] == [
        {"type": "A", "primary": ["127.0.0.1"], "backup": ["127.0.0.2"]}
    ]
    no_violations(fake)
