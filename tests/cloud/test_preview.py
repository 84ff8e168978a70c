"""A deploy's preview (cli/engine/staged.py, cli/engine/steps.py) against the stand-in ``pulumi``
CLI: the planned steps as the engine's events carry them, and a stack left exactly as it was
when nothing is applied.

The replacement steps come from FAKE_PULUMI_PLAN in the real event wire format; what a real
provider puts in ``keys`` and ``detailedDiff`` for a given change is not verified here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli import engine
from cli.engine.events import EventRenderer
from cli.engine.steps import PlannedStep, StepLog, refuse_state_loss
from cli.errors import Cancelled, ExitStatus, ImctlError, PreconditionFailed
from cli.progress import ProgressEvent
from tests.cloud.fake_pulumi import FakePulumi

pytest.importorskip("pulumi.automation", reason="the Pulumi SDK is not installed")

REGIONS = {"region": "us-east-1", "standbyRegion": "us-west-2"}
SECRET = "grafana-Pa55-before"
DB = "aws:rds/instance:Instance"
DB_REPLACEMENT = {
    "op": "replace",
    "type": DB,
    "name": "us-east-1-db",
    "keys": ["storageEncrypted"],
    "diffs": ["engineVersion", "storageEncrypted"],
    "detailedDiff": {
        "engineVersion": {"diffKind": "update", "inputDiff": True},
        "storageEncrypted": {"diffKind": "update-replace", "inputDiff": True},
    },
}


@pytest.fixture
def fake(tmp_path: Path) -> FakePulumi:
    return FakePulumi.create(tmp_path)


def _deployed(fake: FakePulumi) -> None:
    engine.deploy(
        "dev", "aws", {**REGIONS, "hpaMax": "12"}, home=fake.home, env=fake.env,
        secret_config={"grafanaAdminPassword": SECRET},
    )  # fmt: skip


def _config_file(fake: FakePulumi, stack: str = "dev") -> dict[str, Any] | None:
    path = fake.work_dir() / f"Pulumi.{stack}.yaml"
    return json.loads(path.read_text()) if path.exists() else None


def _stacks(fake: FakePulumi) -> list[tuple[str, int]]:
    root = fake.state_dir() / "stacks"
    docs = [json.loads(p.read_text()) for p in sorted(root.glob("imctl.*.json"))]
    return [(d["name"], len(d["resources"])) for d in docs]


class Recorder:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def event(self, event: ProgressEvent) -> None:
        self.events.append(event)


# --- nothing changes unless applied ----------------------------------------------------------


def test_preview_of_a_changed_config_puts_every_key_back(fake: FakePulumi) -> None:
    _deployed(fake)
    before, stacks, state = _config_file(fake), _stacks(fake), fake.stack_state("dev")
    # A changed value, a new key, and a secret-named key written as a secret over the old one.
    wanted = {"hpaMax": "20", "hpaMin": "3", "grafanaAdminPassword": "another-one"}
    doc = engine.preview("dev", "aws", wanted, home=fake.home, env=fake.env)
    assert doc["config_changed"] == ["grafanaAdminPassword", "hpaMax", "hpaMin"]
    assert {(s["op"], s["name"]) for s in doc["steps"]} == {
        ("update", "us-east-1-r0"), ("update", "us-west-2-r0"),
    }  # fmt: skip
    assert doc["new_stack"] is False
    assert _config_file(fake) == before and _stacks(fake) == stacks
    assert fake.stack_state("dev") == state
    assert engine.config_values("dev", home=fake.home, env=fake.env)["hpaMax"] == "12"
    assert ["config", "rm-all"] in fake.commands()  # hpaMin was new: removed, not blanked
    assert SECRET not in fake.log.read_text()  # the old secret went back on stdin


def test_preview_of_a_new_stack_removes_it_again(fake: FakePulumi) -> None:
    _deployed(fake)
    stacks = _stacks(fake)
    doc = engine.preview("staging", "aws", REGIONS, home=fake.home, env=fake.env)
    assert doc["new_stack"] is True and doc["changes"] == {"create": 7}
    assert _stacks(fake) == stacks and _config_file(fake, "staging") is None
    err = _error(lambda: engine.outputs("staging", home=fake.home, env=fake.env))
    assert err.status is ExitStatus.STACK_NOT_FOUND


def test_a_failed_preview_leaves_no_stack_behind(fake: FakePulumi) -> None:
    fake.env["FAKE_PULUMI_FAIL"] = "program"
    fake.env["FAKE_PULUMI_FAIL_ON"] = "preview"
    err = _error(lambda: engine.preview("dev", "aws", REGIONS, home=fake.home, env=fake.env))
    assert err.code == "program_error"
    assert _stacks(fake) == [] and _config_file(fake) is None


def test_a_no_after_the_preview_puts_the_config_back_and_applies_nothing(
    fake: FakePulumi,
) -> None:
    _deployed(fake)
    before, ups = _config_file(fake), len(fake.find("up"))
    with (
        pytest.raises(Cancelled),
        engine.staged("dev", "aws", {"hpaMax": "30"}, home=fake.home, env=fake.env) as stage,
    ):
        stage.preview()
        assert engine.config_values("dev", home=fake.home, env=fake.env)["hpaMax"] == "30"
        raise Cancelled("cancelled: the answer was not yes")
    assert _config_file(fake) == before and len(fake.find("up")) == ups


def test_applied_after_the_preview_the_config_stays(fake: FakePulumi) -> None:
    _deployed(fake)
    with engine.staged("dev", "aws", {"hpaMax": "30"}, home=fake.home, env=fake.env) as stage:
        planned = stage.preview()
        doc = stage.up()
    assert planned["changes"] == {"update": 2, "same": 5}
    assert doc["result"] == "succeeded" and doc["config_changed"] == ["hpaMax"]
    assert engine.config_values("dev", home=fake.home, env=fake.env)["hpaMax"] == "30"
    # Written once for both (the first deploy's write is the other one).
    assert len(fake.find("config", "set-all")) == 2


def test_a_failed_update_keeps_the_config_it_ran_with(fake: FakePulumi) -> None:
    _deployed(fake)
    fake.env["FAKE_PULUMI_FAIL"] = "resource"
    with (
        pytest.raises(ImctlError),
        engine.staged("dev", "aws", {"hpaMax": "30"}, home=fake.home, env=fake.env) as stage,
    ):
        stage.up()
    # Resources may have changed with it: the next deploy must start from the same config.
    assert engine.config_values("dev", home=fake.home, env=fake.env)["hpaMax"] == "30"


# --- the planned steps ------------------------------------------------------------------------


def test_a_scripted_replacement_is_one_stateful_step_with_its_reasons(fake: FakePulumi) -> None:
    _deployed(fake)
    fake.env["FAKE_PULUMI_PLAN"] = json.dumps(
        [
            DB_REPLACEMENT,
            {"op": "delete", "type": "aws:s3/bucket:Bucket", "name": "old-backups"},
            {"op": "update", "type": "aws:eks/nodeGroup:NodeGroup", "name": "ng",
             "diffs": ["scalingConfig"]},
        ]
    )  # fmt: skip
    recorder = Recorder()
    doc = engine.preview("dev", "aws", {}, home=fake.home, env=fake.env, progress=recorder)
    assert doc["changes"] == {"same": 7, "replace": 1, "delete": 1, "update": 1}
    by_name = {s["name"]: s for s in doc["steps"]}
    assert by_name["us-east-1-db"] == {
        "op": "replace",
        "urn": "urn:pulumi:dev::imctl::pulumi:pulumi:Stack$aws:rds/instance:Instance::us-east-1-db",
        "type": DB,
        "name": "us-east-1-db",
        "replace_keys": ["storageEncrypted"],
        "diffs": ["engineVersion", "storageEncrypted"],
        "stateful": True,
        "why": "changing storageEncrypted forces a new resource",
    }
    assert by_name["old-backups"]["why"] == "no longer in the program"
    assert by_name["old-backups"]["stateful"] is True
    assert by_name["ng"]["stateful"] is False and by_name["ng"]["why"] == "changes scalingConfig"
    assert len(doc["steps"]) == 3  # create-replacement, replace, delete-replaced: one step
    # The preview's progress is its start, diagnostics and summary; the steps are its result.
    assert [e.kind for e in recorder.events] == ["start", "summary"]


def test_replace_keys_from_the_detailed_diff_and_retained_resources() -> None:
    from pulumi.automation import EngineEvent

    urn = "urn:pulumi:dev::imctl::gcp:sql/databaseInstance:DatabaseInstance::db"
    meta: dict[str, Any] = {
        "urn": urn, "type": "gcp:sql/databaseInstance:DatabaseInstance", "provider": "",
        "detailedDiff": {"region": {"diffKind": "update-replace"}, "tier": {"diffKind": "update"}},
        "old": {"type": "x", "urn": urn, "id": "db", "parent": "", "provider": "",
                "retainOnDelete": True},
    }  # fmt: skip
    renderer = EventRenderer("dev", "preview")
    for i, op in enumerate(("delete-replaced", "replace", "create-replacement")):
        renderer(EngineEvent.from_json({"sequence": i, "resourcePreEvent": {
            "metadata": {**meta, "op": op}}}))  # fmt: skip
    [step] = renderer.plan.steps()
    assert step.replace_keys == ("region",) and step.diffs == ("region", "tier")
    assert step.loses_state and step.why == (
        "changing region forces a new resource; the old one is retained in the cloud, no"
        " longer managed"
    )


def test_reads_and_unchanged_resources_are_not_steps() -> None:
    class Md:
        def __init__(self, op: str) -> None:
            self.op, self.urn, self.type = op, f"urn:x::y::t::{op}", "aws:s3/bucket:Bucket"
            self.keys = self.diffs = self.detailed_diff = self.old = None

    log = StepLog()
    for op in ("same", "read", "refresh", "discard", "create", "import"):
        log.add(Md(op))
    assert [(s.op, s.why) for s in log.steps()] == [
        ("create", "new in the program"), ("import", "adopted from the cloud"),
    ]  # fmt: skip
    assert not any(s.loses_state for s in log.steps())  # a new bucket loses nothing


def test_refuse_state_loss_names_each_resource_and_why() -> None:
    steps = [
        PlannedStep("replace", "u1", DB, "us-east-1-db", ("storageEncrypted",)),
        PlannedStep("delete", "u2", "aws:kms/key:Key", "db-key"),
        PlannedStep("replace", "u3", "kubernetes:apps/v1:Deployment", "im-server", ("selector",)),
    ]
    refuse_state_loss("dev", steps[2:])  # a stateless replacement is fine
    with pytest.raises(PreconditionFailed) as info:
        refuse_state_loss("dev", steps)
    err = info.value
    assert err.status is ExitStatus.PRECONDITION and err.code == "stateful_replacement"
    assert "2 stateful resources" in err.message
    assert "us-east-1-db: changing storageEncrypted forces a new resource" in err.message
    assert "db-key: no longer in the program" in err.message
    assert err.details is not None
    assert [s["name"] for s in err.details["steps"]] == ["us-east-1-db", "db-key"]


def _error(fn: Any) -> ImctlError:
    with pytest.raises(ImctlError) as info:
        fn()
    return info.value
