"""`imctl failover` and `imctl restore --cloud aws` through the real command: stack outputs
from the stand-in pulumi, RDS and Route 53 on a moto server (with the promotion stub),
Kubernetes in-process.

What an on-call engineer would notice if the wiring were wrong: the failover succeeds but the
next deploy (or a second command) still thinks the old region is the primary.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import engine
from cli.env import Env
from cli.main import app
from cli.targets.cloud import aws as aws_module
from cli.targets.cloud import factory
from tests.cloud.aws_fixtures import EAST, WEST, Route53RefusesChangesStub
from tests.cloud.digest_fixtures import FakeImAdmin
from tests.cloud.fake_pulumi import FakePulumi
from tests.cloud.test_aws import Aws, admin, aws, aws_rolling, moto  # noqa: F401  (fixtures)

pytest.importorskip("pulumi.automation", reason="the Pulumi SDK is not installed")


def _make_stack(world_of: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    """A stack 'dev' whose outputs describe the moto world, and ops that reach that world."""
    fake = FakePulumi.create(tmp_path)
    o = world_of.world.outputs
    regions: dict[str, dict[str, Any]] = {}
    for name, r in o.regions.items():
        entry = asdict(r)
        del entry["name"], entry["kubeconfig"]
        regions[name] = entry
    doc = {
        "cloud": o.cloud,
        "primary_region": o.primary_region,
        "standby_region": o.standby_region,
        "regions": regions,
        "hosted_zone_id": o.hosted_zone_id,
        "dns_name": o.dns_name,
        "backup_bucket": o.backup_bucket,
        "failovers": 0,
    }
    scripted = tmp_path / "outputs.json"
    scripted.write_text(json.dumps({"values": doc, "secrets": []}))
    fake.env["FAKE_PULUMI_OUTPUTS"] = str(scripted)
    engine.deploy(
        "dev", "aws", {"region": EAST, "standbyRegion": WEST}, home=fake.home, env=fake.env
    )

    class TestOps(aws_module.AwsOps):
        def __init__(self, outputs: Any, kube: Any, **kw: Any) -> None:
            super().__init__(outputs, kube, session_factory=lambda: world_of.world.session,
                             poll_interval=0.02, **kw)  # fmt: skip

    monkeypatch.setattr(aws_module, "AwsOps", TestOps)
    world = world_of.world
    monkeypatch.setattr(factory._KubeCache, "__call__", lambda self, region: world.kube(region))
    return fake


@pytest.fixture
def stack(aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:  # noqa: F811
    return _make_stack(aws, tmp_path, monkeypatch)


@pytest.fixture
def rolling_stack(
    aws_rolling: Aws,  # noqa: F811
    admin: FakeImAdmin,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FakePulumi:
    """As ``stack``, with the primary's endpoint answering /admin/digest (set up by
    ``admin`` before the outputs are written, so they name it)."""
    return _make_stack(aws_rolling, tmp_path, monkeypatch)


def _imctl(fake: FakePulumi, args: Sequence[str]) -> tuple[int, dict[str, Any]]:
    stdout = io.StringIO()
    env = Env(
        stdout=stdout,
        stderr=io.StringIO(),
        stdin_isatty=False,
        stdout_isatty=False,
        environ={**fake.env, "CI": "1"},
        home=fake.home,
        stdin=io.StringIO(""),
    )
    result = CliRunner().invoke(app, list(args), obj=env)
    out = stdout.getvalue() or result.output
    return result.exit_code, json.loads(out)


def test_forced_failover_is_recorded_and_a_repeat_is_refused(aws: Aws, stack: FakePulumi) -> None:  # noqa: F811
    code, doc = _imctl(
        stack, ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--yes", "-o", "json"]
    )
    assert code == 0, doc
    assert (doc["from_region"], doc["to_region"]) == (EAST, WEST)
    details = doc["details"]
    assert details["config_written"] == {"failovers": "1"} and details["failovers"] == 1
    assert any("imctl deploy -s dev" in step for step in doc["next_steps"])
    assert aws.world.failover_records()["PRIMARY"]["ResourceRecords"] == [
        {"Value": aws.world.endpoints[WEST]}
    ]
    # Before any deploy, imctl already reads the new roles...
    outs = engine.outputs("dev", home=stack.home, env=stack.env).cloud("dev")
    assert (outs.primary_region, outs.standby_region) == (WEST, EAST)
    # ...and the old writer, kept, is no standby: nothing protects the new one until a deploy.
    code, st = _imctl(stack, ["status", "--cloud", "aws", "--check", "-o", "json"])
    [lost] = [p for p in st["problems"] if p["code"] == "writes_unprotected"]
    assert code == 10 and lost["region"] == EAST and "not a replica" in lost["message"], st
    assert lost["next_command"].startswith("imctl deploy -s dev --cloud aws")
    # ...so failing over to the region that already leads is refused, not counted twice.
    code, again = _imctl(
        stack, ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--yes", "-o", "json"]
    )
    assert code == 2 and "already the primary" in again["error"]["message"]
    assert engine.config_values("dev", home=stack.home, env=stack.env)["failovers"] == "1"


def test_with_an_outputs_file_nothing_is_written_back(
    aws: Aws,  # noqa: F811
    stack: FakePulumi,
    tmp_path: Path,
) -> None:
    path = tmp_path / "outputs-file.json"  # the same contract, as a file: not imctl's stack
    path.write_text(json.dumps(json.loads((tmp_path / "outputs.json").read_text())["values"]))
    code, doc = _imctl(
        stack,
        ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--yes", "-o", "json",
         "--outputs", str(path)],
    )  # fmt: skip
    assert code == 0, doc
    assert doc["details"]["config_written"] is False
    assert "failovers" not in engine.config_values("dev", home=stack.home, env=stack.env)


def test_a_failover_that_stops_after_promotion_is_recorded_and_reports_what_it_did(
    aws: Aws,  # noqa: F811
    stack: FakePulumi,
) -> None:
    stub = Route53RefusesChangesStub()
    stub.install(aws.world.session)
    try:
        code, doc = _imctl(
            stack,
            ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--yes", "-o", "json"],
        )
    finally:
        stub.uninstall(aws.world.session)
    assert code == 12, doc
    err = doc["error"]
    assert "promoted and serving" in err["message"]
    # -o json callers see what was done before the stop, not only the message.
    assert err["details"]["details"]["promoted_instance"] == aws.world.standby_db
    assert "PriorRequestNotComplete" in err["details"]["details"]["dns"]["error"]
    # The promotion happened, so the roles moved: the next deploy must keep them.
    assert engine.config_values("dev", home=stack.home, env=stack.env)["failovers"] == "1"


def test_a_partial_failover_whose_record_fails_says_both(
    aws: Aws,  # noqa: F811
    stack: FakePulumi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli.errors import UsageError

    def refuse(*a: Any, **kw: Any) -> dict[str, str]:
        raise UsageError("the backend is read-only")

    monkeypatch.setattr(engine, "set_config", refuse)
    stub = Route53RefusesChangesStub()
    stub.install(aws.world.session)
    try:
        code, doc = _imctl(
            stack,
            ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--yes", "-o", "json"],
        )
    finally:
        stub.uninstall(aws.world.session)
    assert code == 12, doc
    err = doc["error"]
    # The DNS step and the record both failed: the operator must learn of both, or the next
    # deploy would hand the old writer its role back.
    assert "record it before the next deploy" in err["hint"] and WEST in err["hint"]
    assert err["details"]["config_written"] is False
    assert err["details"]["config_error"] == "the backend is read-only"


def _config(fake: FakePulumi) -> dict[str, str]:
    return engine.config_values("dev", home=fake.home, env=fake.env)


def test_a_restore_is_recorded_before_the_switch_and_blocks_deploys(
    aws_rolling: Aws,  # noqa: F811
    rolling_stack: FakePulumi,
) -> None:
    sid = aws_rolling.ops.snapshot_create(None, aws_rolling.say, timeout=30)["id"]
    code, doc = _imctl(rolling_stack, ["restore", sid, "--cloud", "aws", "--yes", "-o", "json"])
    assert code == 0, doc
    new_id = doc["instance_id"]
    assert doc["config_written"] == {"restoredInstance": new_id}
    assert doc["verified"]["content_checked"] is True
    assert "refuse" in doc["next_steps"][0]
    assert _config(rolling_stack)["restoredInstance"] == new_id


def test_a_restore_pointed_back_after_a_failed_check_clears_the_record(
    aws_rolling: Aws,  # noqa: F811
    admin: FakeImAdmin,  # noqa: F811
    rolling_stack: FakePulumi,
) -> None:
    sid = aws_rolling.ops.snapshot_create(None, aws_rolling.say, timeout=30)["id"]
    admin.counts["messages"] -= 2  # what the restored data will look like: messages missing
    code, doc = _imctl(rolling_stack, ["restore", sid, "--cloud", "aws", "--yes", "-o", "json"])
    assert code == 10, doc
    assert doc["error"]["code"] == "content_mismatch"
    assert doc["error"]["details"]["rolled_back"] is True
    # The workload is back on the stack's own instance: nothing for a deploy to undo.
    assert _config(rolling_stack)["restoredInstance"] == ""


# --- the one Target interface, through the real command ----------------------------------------


def test_a_cloud_dry_run_changes_nothing_and_shows_the_plan(aws: Aws, stack: FakePulumi) -> None:  # noqa: F811
    before = aws.world.failover_records()
    code, doc = _imctl(
        stack,
        ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--dry-run", "--yes",
         "-o", "json"],
    )  # fmt: skip
    assert code == 0, doc
    assert doc["dry_run"] is True and (doc["from_region"], doc["to_region"]) == (EAST, WEST)
    assert doc["steps"] and "acked_messages" in doc["data_loss_bound"]
    # It used to run the failover: nothing moved, nothing was recorded.
    assert aws.world.failover_records() == before
    assert "failovers" not in engine.config_values("dev", home=stack.home, env=stack.env)
    outs = engine.outputs("dev", home=stack.home, env=stack.env).cloud("dev")
    assert outs.primary_region == EAST


def test_failover_json_has_the_same_common_keys_as_the_local_target(
    aws: Aws,  # noqa: F811
    stack: FakePulumi,
) -> None:
    from cli.targets.base import FAILOVER_KEYS

    code, doc = _imctl(
        stack, ["failover", "--cloud", "aws", "--to-region", WEST, "--force", "--yes", "-o", "json"]
    )
    assert code == 0, doc
    assert set(FAILOVER_KEYS) <= set(doc), set(FAILOVER_KEYS) - set(doc)
    assert set(doc) - set(FAILOVER_KEYS) == set()  # the rest is under details


def test_a_token_for_a_cloud_stack_is_signed_with_the_secret_its_pods_verify(
    aws: Aws,  # noqa: F811
    stack: FakePulumi,
) -> None:
    from im_server import auth
    from stacks.workload_contract import SECRET_JWT_KEY, SECRET_NAME
    from tests.cloud.aws_fixtures import NAMESPACE

    secret = "k" * 48
    aws.world.kube(EAST).secrets[(NAMESPACE, SECRET_NAME)] = {SECRET_JWT_KEY: secret}
    code, doc = _imctl(stack, ["token", "--cloud", "aws", "--user", "alice", "-o", "json"])
    assert code == 0, doc
    assert auth.verify(secret, doc["token"]) == "alice"

    del aws.world.kube(EAST).secrets[(NAMESPACE, SECRET_NAME)]
    code, doc = _imctl(stack, ["token", "--cloud", "aws", "--user", "alice", "-o", "json"])
    assert code == 10 and SECRET_JWT_KEY in doc["error"]["message"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["deploy", "--port", "8800"], "--port"),
        (["destroy", "--keep-data"], "--keep-data"),
        (["failover", "--to-region", WEST, "--max-lag", "10"], "--max-lag"),
    ],
)
def test_an_option_of_the_local_target_exits_2_on_a_cloud(
    stack: FakePulumi, args: list[str], flag: str
) -> None:
    code, doc = _imctl(stack, [*args, "--cloud", "aws", "--yes", "-o", "json"])
    assert code == 2, doc
    assert doc["error"]["message"] == f"{flag} is not an option of the aws target"
    assert "it is for local" in doc["error"]["hint"]


def test_cloud_status_prints_as_text_not_as_json(aws: Aws, stack: FakePulumi) -> None:  # noqa: F811
    stdout = io.StringIO()
    env = Env(
        stdout=stdout, stderr=io.StringIO(), stdin_isatty=False, stdout_isatty=False,
        environ={**stack.env, "CI": "1"}, home=stack.home, stdin=io.StringIO(""),
    )  # fmt: skip
    CliRunner().invoke(app, ["status", "--cloud", "aws"], obj=env)
    text = stdout.getvalue()
    assert f"region {EAST} (primary)" in text and f"region {WEST} (standby)" in text
    assert "{" not in text  # no JSON dump


def test_status_check_fails_on_a_cloud_stack_whose_pods_answer_nothing(
    aws: Aws,  # noqa: F811
    stack: FakePulumi,
) -> None:
    # Nothing serves /readyz behind the moto world's load balancer names.
    code, doc = _imctl(stack, ["status", "--cloud", "aws", "--check", "-o", "json"])
    assert code == 10, doc
    assert doc["healthy"] is False
    assert "no_node_ready" in [p["code"] for p in doc["problems"]]
    code, doc = _imctl(stack, ["status", "--cloud", "aws", "-o", "json"])
    assert code == 0 and doc["healthy"] is False  # without --check: reported, exit 0
