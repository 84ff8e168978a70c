"""AWS day-2 operations against a real moto server on loopback: emulated AWS, not AWS.

What this proves: the calls imctl makes, their order and parameters, the waits and what each op
reports, as far as moto models them. What it cannot: real state transitions and timings (moto
flips everything to its end state at once), IAM, KMS, real ReplicaLag values. Where moto lacks
a call or a transition, a stub named for it stands in (tests/cloud/aws_fixtures.py).
"""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from cli.errors import (
    Cancelled,
    ContentUnverified,
    CredentialsError,
    ExitStatus,
    FailoverIncomplete,
    OperationTimeout,
    PreconditionFailed,
    ResourceFailure,
    RestoredContentMismatch,
    SnapshotNotFound,
    UsageError,
)
from cli.targets.base import TimeRestoreRequest
from cli.targets.cloud.aws import AwsOps
from cli.targets.cloud.aws.api import default_session, map_aws_error
from cli.targets.cloud.aws.dns import failover_changes, failover_pair
from cli.targets.cloud.aws.status import http_readyz
from cli.targets.cloud.ops import CloudOps
from cli.targets.cloud.outputs import CloudOutputs
from cli.targets.cloud.recovery import utc_text
from cli.targets.cloud.restore import with_host
from cli.targets.local.procs import free_port
from im_server.migrate import migrate
from tests.cloud.aws_fixtures import (
    ACCOUNT,
    DEPLOYMENT,
    EAST,
    NAMESPACE,
    PASSWORD,
    PRIMARY_REPLICAS,
    WEST,
    EksDescribeUpdateStub,
    RdsPromotionStub,
    RdsRequests,
    RdsRestoreWindowStub,
    Route53RefusesChangesStub,
    SecretFakeKube,
    SlowSnapshotStub,
    World,
    _Stub,
    build_network,
    build_world,
)
from tests.cloud.digest_fixtures import FakeImAdmin, ImProcess, RollingKube
from tests.cloud.fake_kube import FakeKube
from tests.cloud.pitr_fixtures import (
    Asked,
    OpsTarget,
    backup_status,
    check_backups_off,
    check_refusals,
    restored,
)
from tests.cloud.result_shapes import FAILOVER_KEYS, check_failover, check_plan, check_restore

ROOT = Path(__file__).resolve().parents[2]
# moto keeps its state per process, not per server: world names must be unique across modules.
WORLDS = itertools.count()


@dataclass
class Moto:
    endpoint: str
    session: Any
    network: dict[str, list[str]]
    worlds: itertools.count[int]


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """One moto server per module, fake credentials, none of this machine's AWS config."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
            for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
                mp.delenv(name, raising=False)
            mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_SESSION_TOKEN", "testing")
            mp.setenv("AWS_CONFIG_FILE", f"{tmp}/no-aws-config")
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp}/no-aws-credentials")
            mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
            session = default_session()
            yield Moto(f"http://127.0.0.1:{port}", session, build_network(session), WORLDS)
    finally:
        server.stop()


@dataclass
class Aws:
    world: World
    ops: AwsOps
    updates: EksDescribeUpdateStub
    promotion: RdsPromotionStub
    progress: list[str]

    def say(self, message: str) -> None:
        self.progress.append(message)

    def make_ops(self, **kwargs: Any) -> AwsOps:
        args: dict[str, Any] = {
            "session_factory": lambda: self.world.session,
            "poll_interval": 0.02,
        }
        args.update(kwargs)
        kube = args.pop("kube", self.world.kube)
        return AwsOps(self.world.outputs, kube, **args)

    def rds(self, region: str = EAST) -> Any:
        return self.world.client("rds", region)

    def instance(self, instance_id: str, region: str = EAST) -> dict[str, Any]:
        found = self.rds(region).describe_db_instances(DBInstanceIdentifier=instance_id)
        return dict(found["DBInstances"][0])

    def instance_ids(self, region: str = EAST) -> set[str]:
        found = self.rds(region).describe_db_instances()["DBInstances"]
        return {d["DBInstanceIdentifier"] for d in found}

    def moto_is_replica(self, instance_id: str) -> bool:
        """moto's own state: proves the server got the call, whatever the stubs answer."""
        from moto.rds.models import rds_backends

        return bool(rds_backends[ACCOUNT][WEST].databases[instance_id].is_replica)


def _world(moto: Moto, request: pytest.FixtureRequest, kube_type: type[FakeKube]) -> Aws:
    updates, promotion = EksDescribeUpdateStub(), RdsPromotionStub()
    for stub in (updates, promotion):
        stub.install(moto.session)
        request.addfinalizer(partial(stub.uninstall, moto.session))
    world = build_world(moto.session, moto.network, f"t{next(moto.worlds)}", kube_type)
    ops = AwsOps(
        world.outputs, world.kube, session_factory=lambda: world.session, poll_interval=0.02
    )
    return Aws(world, ops, updates, promotion, [])


@pytest.fixture
def aws(moto: Moto, request: pytest.FixtureRequest) -> Aws:
    return _world(moto, request, SecretFakeKube)


@pytest.fixture
def aws_plain_kube(moto: Moto, request: pytest.FixtureRequest) -> Aws:
    """A world whose Kubernetes client is the plain FakeKube (no call recording of reads)."""
    return _world(moto, request, FakeKube)


def _endpoint(aws: Aws, endpoint: str) -> None:
    """Serve the primary region's endpoint from ``endpoint``; new ops read the new outputs."""
    o = aws.world.outputs
    aws.world.outputs = replace(
        o, regions={**o.regions, EAST: replace(o.primary, endpoint=endpoint)}
    )
    aws.ops = aws.make_ops()


@pytest.fixture
def aws_rolling(moto: Moto, request: pytest.FixtureRequest) -> Aws:
    """A world whose rolling restarts restart what serves the primary's endpoint."""
    return _world(moto, request, RollingKube)


@pytest.fixture
def admin(aws_rolling: Aws) -> Iterator[FakeImAdmin]:
    """The primary's endpoint answers GET /admin/digest (counts only); the Secret holds the
    admin token."""
    kube = aws_rolling.world.kubes[EAST]
    assert isinstance(kube, RollingKube)
    token = secrets.token_urlsafe(24)
    kube.secrets[(NAMESPACE, "im-server")]["admin-token"] = token
    fake = FakeImAdmin(kube, NAMESPACE, token)
    _endpoint(aws_rolling, fake.endpoint)
    yield fake
    fake.stop()


def test_importing_the_module_loads_no_aws_sdk() -> None:
    code = (
        "import sys, cli.targets.cloud.aws; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_aws_ops_satisfies_the_cloud_ops_protocol(aws: Aws) -> None:
    ops: CloudOps = aws.ops  # mypy checks the signatures; this checks construction
    assert ops.status()["cloud"] == "aws"


# --- snapshots ----------------------------------------------------------------------------


def test_snapshot_create_list_show_delete(aws: Aws) -> None:
    created = aws.ops.snapshot_create("before the upgrade, 50% done!", aws.say, timeout=30)
    sid = created["id"]
    assert sid.startswith(f"imctl-chat-{aws.world.suffix}-imctl-test-example-")
    assert created["status"] == "available"
    assert created["location"] == f"arn:aws:rds:{EAST}:{ACCOUNT}:snapshot:{sid}"
    assert created["db_instance_id"] == aws.world.primary_db
    # RDS refuses some characters in tag values; they are replaced, not a failed snapshot.
    assert created["note"] == "before the upgrade_ 50_ done_"
    assert any(sid in m for m in aws.progress)

    # Not ours: an untagged manual snapshot, and one of another stack.
    aws.rds().create_db_snapshot(
        DBSnapshotIdentifier="by-hand", DBInstanceIdentifier=aws.world.primary_db
    )
    aws.rds().create_db_snapshot(
        DBSnapshotIdentifier="other-stack",
        DBInstanceIdentifier=aws.world.primary_db,
        Tags=[{"Key": "imctl:stack", "Value": "chat.elsewhere.example"}],
    )
    listed = aws.ops.snapshot_list()["snapshots"]
    assert [s["id"] for s in listed] == [sid]
    assert listed[0]["stack"] == aws.world.dns_name

    shown = aws.ops.snapshot_show(sid.upper())  # RDS identifiers are case-insensitive
    assert shown["location"] == created["location"]
    assert shown["status"] == "available"
    assert shown["region"] == EAST
    for foreign in ("by-hand", "other-stack", "no-such-snapshot"):
        with pytest.raises(SnapshotNotFound):
            aws.ops.snapshot_show(foreign)
    with pytest.raises(SnapshotNotFound):
        aws.ops.snapshot_delete("other-stack", aws.say, timeout=10)

    assert aws.ops.snapshot_delete(sid, aws.say, timeout=30) == {"deleted": [sid], "region": EAST}
    assert aws.ops.snapshot_list()["snapshots"] == []
    left = {s["DBSnapshotIdentifier"] for s in aws.rds().describe_db_snapshots()["DBSnapshots"]}
    assert sid not in left
    assert {"by-hand", "other-stack"} <= left
    with pytest.raises(SnapshotNotFound):
        aws.ops.snapshot_show(sid)


def test_snapshot_wait_times_out_with_exit_9(aws: Aws) -> None:
    stub = SlowSnapshotStub()
    stub.install(aws.world.session)
    try:
        with pytest.raises(OperationTimeout) as err:
            aws.make_ops().snapshot_create(None, aws.say, timeout=0.3)
    finally:
        stub.uninstall(aws.world.session)
    assert err.value.status == ExitStatus.TIMEOUT
    assert "creating 40%" in err.value.message


# --- restore ------------------------------------------------------------------------------


def _secret_url(kube: FakeKube) -> str:
    return kube.secrets[(NAMESPACE, "im-server")]["database-url"]


def test_restore_stops_before_the_switch_when_on_switch_fails(
    aws_rolling: Aws, admin: FakeImAdmin
) -> None:
    """The CLI records the restored instance in on_switch; if it cannot, nothing switches."""
    aws = aws_rolling
    kube = aws.world.kubes[EAST]
    before = _secret_url(kube)
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]

    def refuse(instance: str) -> None:
        assert _secret_url(kube) == before  # called before the Secret is touched
        raise PreconditionFailed(f"could not record {instance}")

    with pytest.raises(PreconditionFailed, match="could not record"):
        aws.ops.restore(sid, "new", aws.say, timeout=60, on_switch=refuse)
    assert _secret_url(kube) == before


def test_restore_names_the_instance_to_on_switch(aws_rolling: Aws, admin: FakeImAdmin) -> None:
    aws = aws_rolling
    before = _secret_url(aws.world.kubes[EAST])
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]
    seen: list[str] = []
    result = aws.ops.restore(sid, "new", aws.say, timeout=60, on_switch=seen.append)
    assert seen == [result["instance_id"]] and _secret_url(aws.world.kubes[EAST]) != before


def test_restore_into_a_new_instance_repoints_and_rolls(
    aws_rolling: Aws, admin: FakeImAdmin
) -> None:
    aws = aws_rolling
    created = aws.ops.snapshot_create(None, aws.say, timeout=30)
    sid = created["id"]
    assert created["digest"] == {**admin.counts, "at_ms": created["digest"]["at_ms"]}
    admin.counts["messages"] += 3  # committed after the request: more is fine
    result = aws.ops.restore(sid, "new", aws.say, timeout=60)

    new_id = result["instance_id"]
    assert new_id.startswith(f"{aws.world.primary_db}-r") and len(new_id) <= 63
    inst = aws.instance(new_id)
    assert inst["DBInstanceStatus"] == "available"
    assert inst["DBSubnetGroup"]["DBSubnetGroupName"] == f"im-{EAST}"
    assert inst["DBInstanceClass"] == "db.t3.micro"
    assert {t["Key"]: t["Value"] for t in inst["TagList"]}["imctl:restored-from"] == sid
    assert result["db_host"] == inst["Endpoint"]["Address"] != aws.world.db_hosts[EAST]
    assert aws.instance(aws.world.primary_db)["DBInstanceStatus"] == "available"  # left alone

    kube = aws.world.kubes[EAST]
    url = urlsplit(_secret_url(kube))
    assert (url.hostname, url.port, url.username, url.password) == (
        inst["Endpoint"]["Address"],
        5432,
        "im",
        PASSWORD,
    )
    assert (url.path, url.query) == ("/im", "sslmode=require")
    assert kube.secrets[(NAMESPACE, "im-server")]["jwt-secret"] == "jwt"
    acts = [c for c in kube.calls if c[0] in ("secret", "restart", "wait")]
    assert acts == [
        ("secret", (NAMESPACE, "im-server", ["database-url"])),
        ("restart", (NAMESPACE, DEPLOYMENT)),
        ("wait", (NAMESPACE, DEPLOYMENT)),
    ]
    assert aws.world.kubes[WEST].calls == []
    verified = result["verified"]
    assert (verified["instance_available"], verified["deployment_ready"]) == (True, True)
    assert verified["content_checked"] is True
    content = verified["content"]
    assert content["ok"] is True and content["problems"] == []
    assert content["before"] == created["digest"]
    assert content["after"]["messages"] == created["digest"]["messages"] + 3
    # The answer came from a pod on the restored instance.
    assert content["after"]["database"]["host"] == inst["Endpoint"]["Address"]
    assert result["snapshot_id"] == sid and result["target"] == "new"
    check_restore(result)
    assert any("standby replica still follows" in w for w in result["warnings"])


def test_restore_in_place_swaps_names(aws_rolling: Aws, admin: FakeImAdmin) -> None:
    aws = aws_rolling
    before = aws.instance(aws.world.primary_db)["InstanceCreateTime"]
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]
    result = aws.ops.restore(sid, "in-place", aws.say, timeout=60)

    assert result["instance_id"] == aws.world.primary_db
    now = aws.instance(aws.world.primary_db)
    # The original name now belongs to the restored instance.
    assert now["InstanceCreateTime"] > before
    assert {t["Key"]: t["Value"] for t in now["TagList"]}["imctl:restored-from"] == sid
    old_name = result["previous_instance_id"]
    assert old_name.startswith(f"{aws.world.primary_db}-old-")
    old = aws.instance(old_name)
    assert old["InstanceCreateTime"] == before
    assert "imctl:restored-from" not in {t["Key"] for t in old["TagList"]}
    assert not any(i.startswith(f"{aws.world.primary_db}-r") for i in aws.instance_ids())
    assert urlsplit(_secret_url(aws.world.kubes[EAST])).hostname == now["Endpoint"]["Address"]
    assert [c[0] for c in aws.world.kubes[EAST].calls][-2:] == ["restart", "wait"]
    # In place the address is the old one: only a pod started after the roll could answer.
    assert result["verified"]["content_checked"] is True
    assert result["verified"]["content"]["after"]["node"] == "im-server-pod-2"


def test_restore_refuses_before_creating_anything_when_the_secret_has_no_database_url(
    aws_plain_kube: Aws,
) -> None:
    aws = aws_plain_kube
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]
    aws.world.kubes[EAST].secrets.clear()  # the workload's Secret lost its database URL
    before = aws.instance_ids()
    with pytest.raises(PreconditionFailed, match="has no database-url"):
        aws.ops.restore(sid, "new", aws.say, timeout=30)
    assert aws.instance_ids() == before
    assert aws.world.kubes[EAST].calls == []


def test_restore_of_an_unknown_snapshot(aws: Aws) -> None:
    with pytest.raises(SnapshotNotFound):
        aws.ops.restore("imctl-nope", "new", aws.say, timeout=10)


# --- restore to a point in time ------------------------------------------------------------


@dataclass
class Pitr:
    aws: Aws
    window: RdsRestoreWindowStub
    sent: RdsRequests


@pytest.fixture
def pitr(aws_rolling: Aws, admin: FakeImAdmin, request: pytest.FixtureRequest) -> Pitr:
    """A world whose RDS reports a recoverable window two days deep, with the RDS requests
    recorded as botocore sends them."""
    window = RdsRestoreWindowStub(datetime.now(UTC).replace(microsecond=0) - timedelta(days=2))
    sent = RdsRequests()
    for stub in (window, sent):
        stub.install(aws_rolling.world.session)
        request.addfinalizer(partial(stub.uninstall, aws_rolling.world.session))
    aws_rolling.ops = aws_rolling.make_ops()
    return Pitr(aws_rolling, window, sent)


def test_restore_to_a_time_asks_rds_for_exactly_that_time(pitr: Pitr) -> None:
    """moto accepts RestoreDBInstanceToPointInTime but ignores the time (the new instance is a
    copy of the source as it is) and has no earliest restorable time (RdsRestoreWindowStub
    stands in for RDS's RestoreWindow): what this asserts is the request imctl sent, as botocore
    sent it, and the sequence around it."""
    aws = pitr.aws
    primary = aws.world.primary_db
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3, seconds=7)
    doc = restored(OpsTarget(aws.ops, "aws"), when)

    (sent,) = pitr.sent.of("RestoreDBInstanceToPointInTime")
    assert sent["RestoreTime"] == when and "UseLatestRestorableTime" not in sent
    assert sent["SourceDBInstanceIdentifier"] == primary
    new_id = sent["TargetDBInstanceIdentifier"]
    assert new_id.startswith(f"{primary}-r") and len(new_id) <= 63
    # The source's settings, as a snapshot restore copies them.
    assert (sent["DBSubnetGroupName"], sent["DBInstanceClass"]) == (f"im-{EAST}", "db.t3.micro")
    assert pitr.sent.of("RestoreDBInstanceFromDBSnapshot") == []
    assert (doc["to_time"], doc["target"], doc["instance_id"]) == (utc_text(when), "new", new_id)
    assert doc["window"]["first"] == utc_text(pitr.window.earliest)
    inst = aws.instance(new_id)
    assert inst["DBInstanceStatus"] == "available"
    tags = {t["Key"]: t["Value"] for t in inst["TagList"]}
    assert tags["imctl:restored-from"] == f"{primary} at {utc_text(when)}"
    assert aws.instance(primary)["DBInstanceStatus"] == "available"  # kept
    kube = aws.world.kubes[EAST]
    assert urlsplit(_secret_url(kube)).hostname == inst["Endpoint"]["Address"] == doc["db_host"]
    assert [c[0] for c in kube.calls if c[0] in ("secret", "restart", "wait")] == [
        "secret",
        "restart",
        "wait",
    ]
    assert doc["verified"]["content"]["after"]["database"]["host"] == inst["Endpoint"]["Address"]


def test_restore_to_the_latest_time_in_place_uses_the_latest_form(pitr: Pitr) -> None:
    aws = pitr.aws
    primary = aws.world.primary_db
    doc = restored(OpsTarget(aws.ops, "aws"), None, "in-place")
    (sent,) = pitr.sent.of("RestoreDBInstanceToPointInTime")
    assert sent["UseLatestRestorableTime"] is True and "RestoreTime" not in sent
    assert doc["to_time"] == "latest" and doc["target"] == "in-place"
    # In place swaps the names, as a snapshot restore in place does; the old one is kept.
    assert doc["instance_id"] == primary
    assert doc["previous_instance_id"].startswith(f"{primary}-old-")
    assert aws.instance(doc["previous_instance_id"])["DBInstanceStatus"] == "available"


def test_what_the_backups_cannot_reach_is_refused_before_any_change(pitr: Pitr) -> None:
    aws = pitr.aws
    seen = _Calls()
    seen.install(aws.world.session)
    try:
        check_refusals(
            OpsTarget(aws.make_ops(), "aws"), pitr.window.earliest, aws.world.kubes[EAST]
        )
    finally:
        seen.uninstall(aws.world.session)
    assert seen.names and all(n.startswith(("Describe", "List", "Get")) for n in seen.names)
    assert pitr.sent.of("RestoreDBInstanceToPointInTime") == []


def test_the_plan_names_the_time_the_window_and_the_new_instance(pitr: Pitr) -> None:
    aws = pitr.aws
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    before = aws.instance_ids()
    asked = Asked(yes=False)
    with pytest.raises(Cancelled):
        OpsTarget(aws.ops, "aws").restore_to_time(
            TimeRestoreRequest(when, "new", 60), asked.operator()
        )
    ((question, plan),) = asked.questions
    assert question == f"Restore the data as of {utc_text(when)} on aws?"
    assert plan[0].startswith(f"restore the data as of {utc_text(when)} (recoverable:")
    assert utc_text(pitr.window.earliest) in plan[0]
    assert f"RDS automated backups of {aws.world.primary_db}" in plan[0]
    assert plan[0].endswith("into a NEW aws database instance")
    assert "density only" in plan[2]
    assert plan[-1] == "the current instance is kept, untouched"
    assert aws.instance_ids() == before and pitr.sent.of("RestoreDBInstanceToPointInTime") == []
    # In place, the stack's name is typed, and the plan says the names are swapped.
    asked = Asked(yes=False)
    with pytest.raises(Cancelled):
        OpsTarget(aws.ops, "aws").restore_to_time(
            TimeRestoreRequest(None, "in-place", 60), asked.operator()
        )
    ((question, plan),) = asked.questions
    assert question == "type pitr-test"
    assert plan[0].startswith("restore the data as of the latest recoverable time (now ")
    assert plan[0].endswith(", then swap it in place of the current one")


def test_backup_status_reports_the_window_and_the_last_base_backup(pitr: Pitr) -> None:
    doc, status = backup_status(OpsTarget(pitr.aws.ops, "aws"))
    assert status is ExitStatus.OK and doc["healthy"] is True
    assert doc["window"]["first"] == utc_text(pitr.window.earliest)
    assert doc["window"]["last"] is not None
    assert doc["retention_days"] == 1  # moto's default for an instance created without one
    assert doc["archiving"]["state"] == "ok"
    # The automated snapshot moto takes when it creates the instance.
    assert doc["last_base_backup"] is not None


def test_backup_status_exits_10_under_check_when_the_window_stops_advancing(pitr: Pitr) -> None:
    pitr.window.latest = datetime.now(UTC) - timedelta(hours=1)
    doc, status = backup_status(OpsTarget(pitr.aws.make_ops(), "aws"))
    assert doc["archiving"]["state"] == "behind" and status is ExitStatus.PRECONDITION
    assert [p["code"] for p in doc["problems"]] == ["archiving_behind"]
    assert "describe-db-instance-automated-backups" in doc["problems"][0]["next_command"]


def test_backups_off_exit_10_under_check_and_refuse_a_restore_to_a_time(aws: Aws) -> None:
    aws.rds().modify_db_instance(
        DBInstanceIdentifier=aws.world.primary_db, BackupRetentionPeriod=0, ApplyImmediately=True
    )
    doc = check_backups_off(OpsTarget(aws.make_ops(), "aws"))
    assert doc["retention_days"] == 0


# --- restore: the content check against a real im-server ----------------------------------


class RestoredAddressStub(_Stub):
    """Stands in for the addresses RDS gives this world's instances, so that the workload can
    reach them: the instances answer at a real PostgreSQL, the primary (and whatever does not
    carry imctl's restored-from tag) as 127.0.0.1, an instance imctl restored as localhost.
    Both are the same live database: a "restore" serves what the test leaves in it, which is
    how a test makes a restore lose data."""

    def __init__(self, prefix: str, port: int) -> None:
        self.prefix, self.port = prefix, port

    def hooks(self) -> list[tuple[str, Any]]:
        return [("after-call.rds.DescribeDBInstances", self._edit)]

    def _edit(self, parsed: dict[str, Any], **_: Any) -> None:
        for inst in parsed.get("DBInstances", []):
            if not inst["DBInstanceIdentifier"].startswith(self.prefix):
                continue
            restored = any(t["Key"] == "imctl:restored-from" for t in inst.get("TagList", []))
            host = "localhost" if restored else "127.0.0.1"
            inst["Endpoint"] = {**inst.get("Endpoint", {}), "Address": host, "Port": self.port}


@dataclass
class Live:
    aws: Aws
    im: ImProcess
    kube: RollingKube
    dsn: str

    def secret_url(self) -> str:
        return _secret_url(self.kube)

    def sql(self, query: str, *args: Any) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(query, *args)
            finally:
                await conn.close()

        asyncio.run(run())


@pytest.fixture
def live(
    moto: Moto, request: pytest.FixtureRequest, fresh_dsn: str, tmp_path: Path
) -> Iterator[Live]:
    """The primary's endpoint is a real im-server on real PostgreSQL; the Secret holds its
    database URL and admin token; a rolling restart restarts it with the Secret's URL."""
    asyncio.run(migrate(fresh_dsn))
    stub = RestoredAddressStub("im-primary-", int(urlsplit(fresh_dsn).port or 0))
    stub.install(moto.session)
    request.addfinalizer(partial(stub.uninstall, moto.session))
    aws = _world(moto, request, RollingKube)
    kube = aws.world.kubes[EAST]
    assert isinstance(kube, RollingKube)
    token = secrets.token_urlsafe(24)
    kube.secrets[(NAMESPACE, "im-server")] = {"database-url": fresh_dsn, "admin-token": token}
    im = ImProcess(tmp_path, fresh_dsn, token)
    im.start()
    kube.on_restart.append(im.restart)
    _endpoint(aws, im.endpoint)
    yield Live(aws, im, kube, fresh_dsn)
    im.stop()


def test_restore_checks_the_content_recorded_with_the_snapshot(live: Live) -> None:
    aws, im = live.aws, live.im
    im.send("alice", "bob", 3)
    im.send("carol", "bob", 2)
    created = aws.ops.snapshot_create("with a digest", aws.say, timeout=30)
    digest = created["digest"]
    assert digest is not None and created["warnings"] == []
    assert (digest["messages"], digest["conversations"], digest["max_seq"]) == (5, 2, 3)
    assert digest["non_dense"] == 0 and 0 < digest["latest_ms"] <= digest["at_ms"]
    tags = aws.rds().list_tags_for_resource(ResourceName=created["location"])["TagList"]
    stored = {t["Key"]: t["Value"] for t in tags if t["Key"].startswith("imctl:digest-")}
    assert stored["imctl:digest-messages"] == "5" and stored["imctl:digest-max-seq"] == "3"
    assert aws.ops.snapshot_show(created["id"])["digest"] == digest
    im.send("alice", "bob", 1)  # committed after the request: not compared

    result = aws.ops.restore(created["id"], "new", aws.say, timeout=60)

    verified = result["verified"]
    assert verified["content_checked"] is True, verified
    content = verified["content"]
    assert content["ok"] is True and content["before"] == digest
    assert (content["after"]["messages"], content["after"]["non_dense"]) == (6, 0)
    # The restored instance's address, read by the process started by the roll.
    assert content["after"]["database"]["host"] == "localhost"
    assert urlsplit(live.secret_url()).hostname == "localhost" == result["db_host"]
    assert im.database_url == live.secret_url() and im.starts == 2


def test_a_restore_that_lost_committed_messages_points_the_workload_back(live: Live) -> None:
    aws, im = live.aws, live.im
    im.send("alice", "bob", 3)
    im.send("carol", "dave", 2)
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]
    # What a restore that lost data looks like from the application: a conversation is gone.
    live.sql("DELETE FROM conversations WHERE id = 'd:carol:dave'")

    with pytest.raises(RestoredContentMismatch) as err:
        aws.ops.restore(sid, "new", aws.say, timeout=60)

    exc = err.value
    assert (exc.status, exc.code) == (ExitStatus.PRECONDITION, "content_mismatch")
    new_id = next(i for i in aws.instance_ids() if i.startswith(f"{aws.world.primary_db}-r"))
    assert new_id in exc.message and "messages: 3 restored, 5 before the snapshot" in exc.message
    assert f"pointed back at {aws.world.primary_db}" in exc.message
    assert f"instance {new_id} was left for inspection" in exc.hint
    assert "aws rds delete-db-instance" in exc.hint
    assert exc.result["rolled_back"] is True and exc.result["content"]["ok"] is False
    # The workload is back on the database it used before, through a second roll.
    assert live.secret_url() == live.dsn == im.database_url
    acts = [c[0] for c in live.kube.calls if c[0] in ("secret", "restart", "wait")]
    assert acts == ["secret", "restart", "wait", "secret", "restart", "wait"]
    assert aws.instance(new_id)["DBInstanceStatus"] == "available"  # left, not deleted


def test_a_snapshot_while_the_application_is_down_records_no_digest(live: Live) -> None:
    aws, im = live.aws, live.im
    im.send("alice", "bob", 2)
    im.stop()
    created = aws.ops.snapshot_create(None, aws.say, timeout=30)
    assert created["status"] == "available"  # the snapshot does not need the application
    assert created["digest"] is None
    (warning,) = created["warnings"]
    assert "no content digest recorded" in warning and "unreachable" in warning
    assert any("warning: no content digest" in m for m in aws.progress)
    tags = aws.rds().list_tags_for_resource(ResourceName=created["location"])["TagList"]
    assert not [t for t in tags if t["Key"].startswith("imctl:digest-")]

    # Restoring it still checks what can be checked: every conversation is dense.
    im.start()
    result = aws.ops.restore(created["id"], "new", aws.say, timeout=60)
    assert result["verified"]["content_checked"] == "partial"
    content = result["verified"]["content"]
    assert content["ok"] is True and content["before"] is None
    assert "density only" in content["basis"]


def test_a_restore_whose_content_cannot_be_read_is_a_partial_success(live: Live) -> None:
    aws, im = live.aws, live.im
    im.send("alice", "bob", 1)
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]
    live.kube.on_restart.clear()  # the roll brings nothing up behind the endpoint
    im.stop()

    with pytest.raises(ContentUnverified) as err:
        aws.ops.restore(sid, "new", aws.say, timeout=60)

    assert err.value.status == ExitStatus.PARTIAL and err.value.code == "content_unverified"
    assert "could not be checked" in err.value.message and "unreachable" in err.value.message
    assert "/admin/digest" in err.value.hint and aws.world.primary_db in err.value.hint
    # Nothing says the data is wrong: the workload stays on the restored instance.
    assert urlsplit(live.secret_url()).hostname == "localhost"


def test_an_in_place_restore_that_fails_its_check_points_at_the_renamed_instance(
    live: Live,
) -> None:
    aws, im = live.aws, live.im
    im.send("alice", "bob", 4)
    sid = aws.ops.snapshot_create(None, aws.say, timeout=30)["id"]
    live.sql("DELETE FROM messages WHERE seq = 2")  # a gap: not dense any more

    with pytest.raises(RestoredContentMismatch) as err:
        aws.ops.restore(sid, "in-place", aws.say, timeout=60)

    problems = err.value.result["content"]["problems"]
    assert any("1 conversation(s) whose seqs are not exactly 1..last_seq" in p for p in problems)
    old = next(i for i in aws.instance_ids() if i.startswith(f"{aws.world.primary_db}-old-"))
    assert f"pointed back at {old}" in err.value.message
    assert f"rename it away and {old} back" in err.value.hint
    # The original name holds the restored data now; the workload is on the renamed original.
    assert live.secret_url() == live.dsn == im.database_url


def test_no_digest_is_recorded_when_the_workload_uses_another_instance(
    aws_rolling: Aws, admin: FakeImAdmin
) -> None:
    """After a restore to a new instance the outputs still name the old one (a known gap):
    the application's figures would not describe the snapshot of the old one."""
    aws = aws_rolling
    secret = aws.world.kubes[EAST].secrets[(NAMESPACE, "im-server")]
    secret["database-url"] = with_host(secret["database-url"], "im-restored.example", 5432)
    created = aws.ops.snapshot_create(None, aws.say, timeout=30)
    assert created["status"] == "available" and created["digest"] is None
    (warning,) = created["warnings"]
    assert f"not {aws.world.primary_db}" in warning and "im-restored.example" in warning
    assert admin.requests == 0


# --- scale --------------------------------------------------------------------------------


def _scaling(aws: Aws) -> dict[str, int]:
    cluster, ng = aws.world.nodegroups[EAST]
    got = aws.world.client("eks").describe_nodegroup(clusterName=cluster, nodegroupName=ng)
    return dict(got["nodegroup"]["scalingConfig"])


def _scale(aws: Aws, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(region=None, nodes=None, replicas=None, min_replicas=None)
    args.update(max_replicas=None, progress=aws.say, timeout=30)
    args.update(kwargs)
    return aws.ops.scale(**args)


def test_scale_node_group_raises_max_and_lowers_min(aws: Aws) -> None:
    up = _scale(aws, nodes=6)
    assert _scaling(aws) == {"minSize": 2, "maxSize": 6, "desiredSize": 6}
    assert up["nodegroup"]["before"] == {"minSize": 2, "maxSize": 4, "desiredSize": 3}
    assert up["nodegroup"]["max_raised"] is True
    assert aws.updates.calls >= 1  # the update's outcome was read, not assumed

    _scale(aws, nodes=1)
    assert _scaling(aws) == {"minSize": 1, "maxSize": 6, "desiredSize": 1}
    again = _scale(aws, nodes=1)
    assert again["nodegroup"]["changed"] is False


def test_scale_node_group_failed_update_is_a_resource_failure(aws: Aws) -> None:
    aws.updates.status = "Failed"
    aws.updates.errors = [{"errorCode": "AsgInstanceLaunchFailures", "errorMessage": "no capacity"}]
    with pytest.raises(ResourceFailure, match="no capacity") as err:
        _scale(aws, nodes=5)
    assert err.value.status == ExitStatus.RESOURCE_FAILURE


def test_scale_replicas_and_hpa_go_through_kubernetes(aws: Aws) -> None:
    result = _scale(aws, region=WEST, replicas=4, min_replicas=2, max_replicas=8)
    kube = aws.world.kubes[WEST]
    assert kube.calls == [
        ("hpa", (NAMESPACE, DEPLOYMENT, 2, 8)),
        ("scale", (NAMESPACE, DEPLOYMENT, 4)),
        ("wait", (NAMESPACE, DEPLOYMENT)),
    ]
    assert result["deployment"] == {"name": DEPLOYMENT, "replicas": 4, "ready": 4}
    assert "nodegroup" not in result
    assert aws.world.kubes[EAST].calls == []

    _scale(aws, replicas=0)  # drains: no wait_ready on zero pods
    assert aws.world.kubes[EAST].calls == [("scale", (NAMESPACE, DEPLOYMENT, 0))]


def _no_aws() -> Any:
    raise AssertionError("this request should be refused before any AWS call")


@pytest.fixture
def offline() -> AwsOps:
    """Ops over outputs alone: for requests refused before anything is asked of AWS."""
    region = {"cluster_name": "c", "nodegroup_name": "n", "db_instance_id": "d", "endpoint": "e"}
    outputs = CloudOutputs.from_json(
        {
            "cloud": "aws",
            "primary_region": EAST,
            "standby_region": WEST,
            "regions": {EAST: region, WEST: {**region, "role": "standby"}},
            "hosted_zone_id": "Z1",
            "dns_name": "chat.example.com",
            "backup_bucket": "b",
        }
    )
    return AwsOps(outputs, lambda region: FakeKube(), session_factory=_no_aws)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "nothing to scale"),
        ({"nodes": -1}, "--nodes"),
        ({"min_replicas": 5, "max_replicas": 2}, "more than"),
        ({"region": "eu-west-1", "replicas": 1}, "not in this stack"),
    ],
)
def test_scale_rejects_bad_requests(offline: AwsOps, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = dict(region=None, nodes=None, replicas=None, min_replicas=None)
    args.update(max_replicas=None, progress=print, timeout=30)
    with pytest.raises(UsageError, match=match):
        offline.scale(**{**args, **kwargs})


# --- failover -----------------------------------------------------------------------------


def test_forced_failover_promotes_scales_and_flips_route53(aws: Aws) -> None:
    assert aws.instance(aws.world.standby_db, WEST)["ReadReplicaSourceDBInstanceIdentifier"]
    result = aws.ops.failover(WEST, True, aws.say, timeout=60)

    assert not aws.moto_is_replica(aws.world.standby_db)  # the server really got PromoteReadReplica
    assert "ReadReplicaSourceDBInstanceIdentifier" not in aws.instance(aws.world.standby_db, WEST)
    records = aws.world.failover_records()
    assert records["PRIMARY"]["ResourceRecords"] == [{"Value": aws.world.endpoints[WEST]}]
    assert records["PRIMARY"]["HealthCheckId"] == aws.world.health_checks[WEST]
    assert records["SECONDARY"]["ResourceRecords"] == [{"Value": aws.world.endpoints[EAST]}]
    assert records["SECONDARY"]["HealthCheckId"] == aws.world.health_checks[EAST]

    assert aws.world.kubes[EAST].calls == [("scale", (NAMESPACE, DEPLOYMENT, 0))]
    assert aws.world.kubes[WEST].calls == [
        ("scale", (NAMESPACE, DEPLOYMENT, PRIMARY_REPLICAS)),
        ("wait", (NAMESPACE, DEPLOYMENT)),
    ]
    assert result["mode"] == "forced"
    assert (result["from_region"], result["to_region"]) == (EAST, WEST)
    assert result["details"]["new_primary_target"] == aws.world.endpoints[WEST]
    assert result["data_loss_bound"]["acked_messages"] is None
    assert result["data_loss_bound"]["replica_lag_seconds"] is None  # moto reports no lag
    assert result["fenced"] is True
    assert 0 <= result["rto_seconds"] < 30
    check_failover(result)
    assert result["endpoint"] == aws.world.dns_name

    # Running it again finds everything done and changes nothing in DNS.
    again = aws.ops.failover(WEST, True, aws.say, timeout=60)
    assert again["details"]["dns"]["change_id"] is None


def test_forced_failover_goes_on_when_the_old_region_is_unreachable(aws: Aws) -> None:
    def kube(region: str) -> FakeKube:
        if region == EAST:
            raise ConnectionError("eks api in us-east-1: connection timed out")
        return aws.world.kubes[region]

    ops = aws.make_ops(kube=kube)
    aws.world.put_replica_lag(4.0)
    result = ops.failover(WEST, True, aws.say, timeout=60)
    assert result["fenced"] is False
    assert "connection timed out" in result["details"]["fence"]["error"]
    assert result["data_loss_bound"]["replica_lag_seconds"] == 4.0
    assert aws.world.failover_records()["PRIMARY"]["ResourceRecords"] == [
        {"Value": aws.world.endpoints[WEST]}
    ]
    # The old primary's replica count is unknown: at least one pod serves.
    assert aws.world.kubes[WEST].replicas[(NAMESPACE, DEPLOYMENT)] == 1


def test_forced_failover_without_dns_is_a_partial_success(aws: Aws) -> None:
    stub = Route53RefusesChangesStub()
    stub.install(aws.world.session)
    try:
        with pytest.raises(FailoverIncomplete, match="promoted and serving") as err:
            aws.make_ops().failover(WEST, True, aws.say, timeout=60)
    finally:
        stub.uninstall(aws.world.session)
    assert err.value.status == ExitStatus.PARTIAL
    assert "PriorRequestNotComplete" in err.value.result["details"]["dns"]["error"]
    assert err.value.result["rto_seconds"] is not None
    assert set(err.value.result) == FAILOVER_KEYS
    assert not aws.moto_is_replica(aws.world.standby_db)
    assert aws.world.failover_records()["PRIMARY"]["ResourceRecords"] == [
        {"Value": aws.world.endpoints[EAST]}
    ]
    # Running it again (Route 53 back) finishes the job.
    done = aws.make_ops().failover(WEST, True, aws.say, timeout=60)
    assert done["details"]["dns"]["change_id"]
    assert aws.world.failover_records()["PRIMARY"]["ResourceRecords"] == [
        {"Value": aws.world.endpoints[WEST]}
    ]


class _Calls(_Stub):
    """Records the name of every AWS operation the clients made after it call."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def hooks(self) -> list[tuple[str, Any]]:
        return [("before-call.*.*", self._record)]

    def _record(self, model: Any, **_: Any) -> None:
        self.names.append(str(model.name))


@pytest.mark.parametrize("force", [False, True])
def test_failover_plan_reads_and_changes_nothing(aws: Aws, force: bool) -> None:
    aws.world.put_replica_lag(1.5)
    seen = _Calls()
    seen.install(aws.world.session)
    try:
        plan = aws.make_ops().failover_plan(WEST, force)
    finally:
        seen.uninstall(aws.world.session)
    check_plan(plan)
    assert (plan["mode"], plan["from_region"], plan["to_region"]) == (
        "forced" if force else "planned",
        EAST,
        WEST,
    )
    assert plan["data_loss_bound"]["replica_lag_seconds"] == 1.5
    assert any("swap the Route 53 failover records" in step for step in plan["steps"])
    assert seen.names and all(n.startswith(("Describe", "List", "Get")) for n in seen.names)
    assert aws.world.kubes[EAST].calls == [] and aws.world.kubes[WEST].calls == []
    assert aws.moto_is_replica(aws.world.standby_db)


def test_failover_plan_refuses_what_failover_refuses(aws: Aws) -> None:
    with pytest.raises(PreconditionFailed, match=r"lag of im-standby-t\d+ is unknown"):
        aws.ops.failover_plan(WEST, False)
    with pytest.raises(UsageError, match="already the primary"):
        aws.ops.failover_plan(EAST, True)


def test_planned_failover_refused_while_lag_is_unknown(aws: Aws) -> None:
    with pytest.raises(PreconditionFailed, match=r"lag of im-standby-t\d+ is unknown") as err:
        aws.ops.failover(WEST, False, aws.say, timeout=30)
    assert err.value.status == ExitStatus.PRECONDITION
    assert aws.moto_is_replica(aws.world.standby_db)
    assert aws.world.kubes[EAST].calls == [] and aws.world.kubes[WEST].calls == []
    assert aws.world.failover_records()["PRIMARY"]["ResourceRecords"] == [
        {"Value": aws.world.endpoints[EAST]}
    ]


def test_planned_failover_refused_when_lag_is_over_the_limit(aws: Aws) -> None:
    aws.world.put_replica_lag(95.0)
    with pytest.raises(PreconditionFailed, match="95s behind"):
        aws.ops.failover(WEST, False, aws.say, timeout=30)
    assert aws.moto_is_replica(aws.world.standby_db)


def test_planned_failover_waits_for_zero_lag_after_the_fence(aws: Aws) -> None:
    aws.world.put_replica_lag(2.0, datetime.now(UTC) - timedelta(seconds=60))
    injected: list[str] = []

    def progress(message: str) -> None:
        aws.say(message)
        # RDS publishing the next minute's ReplicaLag, once writes have stopped.
        if "replay everything" in message and not injected:
            injected.append(message)
            aws.world.put_replica_lag(0.0)

    result = aws.ops.failover(WEST, False, progress, timeout=60)
    assert injected and "no ReplicaLag datapoint since writes stopped" in injected[0]
    assert result["mode"] == "planned"
    assert result["data_loss_bound"]["replica_lag_seconds"] == 0.0
    assert not aws.moto_is_replica(aws.world.standby_db)
    fence = aws.progress.index(next(m for m in aws.progress if m.startswith("fencing")))
    promote = aws.progress.index(next(m for m in aws.progress if m.startswith("promoting")))
    assert fence < aws.progress.index(injected[0]) < promote


def test_planned_failover_abandoned_when_the_standby_never_catches_up(aws: Aws) -> None:
    aws.world.put_replica_lag(2.0, datetime.now(UTC) - timedelta(seconds=60))
    ops = aws.make_ops(catchup_timeout=0.3)
    with pytest.raises(OperationTimeout, match="nothing was promoted") as err:
        ops.failover(WEST, False, aws.say, timeout=30)
    assert err.value.status == ExitStatus.TIMEOUT
    assert "scaled back to 3 replicas" in err.value.message
    assert aws.moto_is_replica(aws.world.standby_db)
    # Fenced, then given its pods back.
    assert aws.world.kubes[EAST].calls == [
        ("scale", (NAMESPACE, DEPLOYMENT, 0)),
        ("scale", (NAMESPACE, DEPLOYMENT, PRIMARY_REPLICAS)),
    ]
    assert aws.world.failover_records()["PRIMARY"]["ResourceRecords"] == [
        {"Value": aws.world.endpoints[EAST]}
    ]


def test_failover_to_the_primary_or_an_unknown_region_is_a_usage_error(offline: AwsOps) -> None:
    with pytest.raises(UsageError, match="already the primary"):
        offline.failover(EAST, True, print, timeout=10)
    with pytest.raises(UsageError, match="not in this stack"):
        offline.failover("eu-west-1", True, print, timeout=10)


def test_outputs_of_another_cloud_are_refused() -> None:
    region = {"cluster_name": "c", "nodegroup_name": "n", "db_instance_id": "d", "endpoint": "e"}
    doc = {"cloud": "gcp", "primary_region": "r", "regions": {"r": region}}
    outputs = CloudOutputs.from_json(
        {**doc, "hosted_zone_id": "z", "dns_name": "d", "backup_bucket": "b"}
    )
    with pytest.raises(UsageError, match="gcp"):
        AwsOps(outputs, lambda region: FakeKube(), session_factory=_no_aws)


# --- status -------------------------------------------------------------------------------


def test_status_reports_databases_lag_dns_and_readyz(aws: Aws) -> None:
    aws.world.put_replica_lag(1.5)
    ops = aws.make_ops(readyz=lambda endpoint: endpoint == aws.world.endpoints[EAST])
    doc = ops.status()
    east, west = doc["regions"][EAST], doc["regions"][WEST]
    assert east["database"]["state"] == "available" and east["database"]["available"]
    assert east["database"]["replica_of"] is None
    assert west["database"]["replica_of"].endswith(f":db:{aws.world.primary_db}")
    assert west["database"]["replica_lag_seconds"] == 1.5
    assert (east["readyz"], west["readyz"]) == ("ok", "not ready")
    assert doc["dns"]["primary_target"] == aws.world.endpoints[EAST]
    assert doc["primary_region"] == EAST and doc["dns_name"] == aws.world.dns_name


# --- errors, probes, pure helpers ---------------------------------------------------------


def test_botocore_errors_map_to_exit_codes() -> None:
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        ProfileNotFound,
    )

    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "DescribeDBInstances")

    for code in ("UnrecognizedClientException", "InvalidClientTokenId", "AccessDenied"):
        mapped = map_aws_error(client_error(code), "x")
        assert isinstance(mapped, CredentialsError) and mapped.status == ExitStatus.AUTH
    assert isinstance(map_aws_error(client_error("AccessDeniedException"), "x"), CredentialsError)
    assert isinstance(map_aws_error(NoCredentialsError(), "x"), CredentialsError)
    assert isinstance(map_aws_error(ProfileNotFound(profile="p"), "x"), CredentialsError)
    failed = map_aws_error(client_error("InvalidDBInstanceState"), "promoting")
    assert isinstance(failed, ResourceFailure) and "InvalidDBInstanceState" in failed.message
    down = map_aws_error(EndpointConnectionError(endpoint_url="https://rds"), "x")
    assert isinstance(down, ResourceFailure) and down.status == ExitStatus.RESOURCE_FAILURE
    assert map_aws_error(ValueError("a bug"), "x") is None


def test_missing_credentials_exit_3_through_an_operation(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    ops = aws.make_ops(session_factory=default_session)
    with pytest.raises(CredentialsError) as err:
        ops.snapshot_list()
    assert err.value.status == ExitStatus.AUTH

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(CredentialsError, match="no-such-profile"):
        aws.make_ops(session_factory=default_session).snapshot_list()


class _Readyz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_http_readyz() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert http_readyz(f"127.0.0.1:{port}") is True
        assert http_readyz(f"http://127.0.0.1:{port}/") is True
        assert http_readyz(f"http://127.0.0.1:{port}/down") is False  # 503
        assert http_readyz(f"127.0.0.1:{free_port()}", timeout=1) is False  # refused
    finally:
        server.shutdown()
        server.server_close()


def test_with_host_keeps_everything_but_the_host() -> None:
    url = "postgresql://im:p%40ss@old.rds.amazonaws.com:5432/im?sslmode=require"
    assert with_host(url, "new.rds.amazonaws.com", 5433) == (
        "postgresql://im:p%40ss@new.rds.amazonaws.com:5433/im?sslmode=require"
    )
    with pytest.raises(PreconditionFailed):
        with_host("not a url", "h", 1)


def _record(role: str, value: str, check: str) -> dict[str, Any]:
    return {
        "Name": "chat.example.com.",
        "Type": "CNAME",
        "TTL": 60,
        "SetIdentifier": role.lower(),
        "Failover": role,
        "HealthCheckId": check,
        "ResourceRecords": [{"Value": value}],
    }


def test_failover_changes_swap_values_and_health_checks_only() -> None:
    p, s = _record("PRIMARY", "a.elb.", "hc-a"), _record("SECONDARY", "b.elb", "hc-b")
    changes = failover_changes(p, s, "b.elb", "a.elb")
    new_p, new_s = (c["ResourceRecordSet"] for c in changes)
    assert {c["Action"] for c in changes} == {"UPSERT"}
    assert (new_p["Failover"], new_p["SetIdentifier"]) == ("PRIMARY", "primary")
    assert (new_p["ResourceRecords"], new_p["HealthCheckId"]) == ([{"Value": "b.elb"}], "hc-b")
    assert (new_s["ResourceRecords"], new_s["HealthCheckId"]) == ([{"Value": "a.elb."}], "hc-a")
    assert failover_changes(new_p, new_s, "b.elb", "a.elb") == []  # already done
    with pytest.raises(PreconditionFailed, match="not at the endpoints"):
        failover_changes(p, s, "c.elb", "a.elb")
    with pytest.raises(PreconditionFailed, match="0 SECONDARY"):
        failover_pair([p], "chat.example.com")


# --- through the real imctl command ---------------------------------------------------------


def _outputs_file(aws: Aws, tmp_path: Path) -> Path:
    o = aws.world.outputs
    doc = {
        "cloud": o.cloud,
        "primary_region": o.primary_region,
        "standby_region": o.standby_region,
        "regions": {
            name: {
                k: getattr(r, k)
                for k in ("cluster_name", "nodegroup_name", "db_instance_id", "endpoint", "role")
            }
            for name, r in o.regions.items()
        },
        "hosted_zone_id": o.hosted_zone_id,
        "dns_name": o.dns_name,
        "backup_bucket": o.backup_bucket,
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(doc))
    return path


def _imctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMCTL_HOME": str(tmp_path / "home"), "CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
        timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_imctl_snapshot_and_status_commands_reach_aws_through_an_outputs_file(
    aws: Aws, tmp_path: Path
) -> None:
    outputs = str(_outputs_file(aws, tmp_path))
    common = ("--cloud", "aws", "--outputs", outputs, "-o", "json")
    made = _imctl(tmp_path, "snapshot", "create", "--note", "cli", *common)
    assert made.returncode == 0, made.stdout + made.stderr
    sid = json.loads(made.stdout)["id"]
    listed = _imctl(tmp_path, "snapshot", "list", *common)
    assert listed.returncode == 0 and sid in listed.stdout
    missing = _imctl(tmp_path, "snapshot", "show", "imctl-nope", *common)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["code"] == "snapshot_not_found"
    st = _imctl(tmp_path, "status", *common)
    assert st.returncode == 0, st.stdout + st.stderr
    assert json.loads(st.stdout)["cloud"] == "aws"
    # Without --yes and a TTY, the dangerous verbs refuse (exit 2) and change nothing.
    before = aws.instance_ids()
    assert _imctl(tmp_path, "restore", sid, *common).returncode == 2
    # The failover's pre-flight runs before the question (the plan is what is asked about):
    # a standby the pre-flight accepts, so that the missing answer is what refuses.
    aws.world.put_replica_lag(1.0)
    assert _imctl(tmp_path, "failover", "--to-region", WEST, *common).returncode == 2
    assert aws.instance_ids() == before
    refused = _imctl(tmp_path, "snapshot", "delete", sid, *common)
    assert refused.returncode == 2 and "--yes" in refused.stdout
    assert f"delete aws backup {sid}" in refused.stderr  # the plan names what would go
    assert sid in _imctl(tmp_path, "snapshot", "list", *common).stdout
    deleted = _imctl(tmp_path, "snapshot", "delete", sid, "--yes", *common)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert sid not in _imctl(tmp_path, "snapshot", "list", *common).stdout
