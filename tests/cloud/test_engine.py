"""cli.engine against a scripted stand-in ``pulumi`` CLI (tests/cloud/fake_pulumi).

What this proves: how imctl drives the real Automation API (pulumi 3.272 as installed): the
argv and env it gives the CLI, where config and secrets go, how engine events become progress,
how failures become exit codes, how outputs become the outputs contract. What it does not
prove: that a real ``pulumi up`` deploys anything. The stand-in never runs the program and
never talks to a cloud; the real runs at the bottom are skipped unless a real CLI, credentials
and an explicit opt-in are present.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli import engine, progress_view
from cli.engine.events import EventRenderer, Failure
from cli.engine.pulumi_errors import translate_error, translated
from cli.engine.settings import MIN_PULUMI_VERSION, resolve_settings
from cli.errors import ExitStatus, ImctlError, PreconditionFailed
from cli.progress import ProgressEvent
from cli.targets.cloud.outputs import CloudOutputs
from tests.cloud.fake_pulumi import PASSPHRASE, FakePulumi

pytest.importorskip("pulumi.automation", reason="the Pulumi SDK is not installed")

SECRET_VALUE = "s3cr3t-grafana-Pa55"
REGIONS = {"region": "us-east-1", "standbyRegion": "us-west-2"}


class Recorder:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def event(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture
def fake(tmp_path: Path) -> FakePulumi:
    return FakePulumi.create(tmp_path)


def _deploy(fake: FakePulumi, config: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return engine.deploy(
        "dev", kw.pop("cloud", "aws"), REGIONS if config is None else config,
        home=fake.home, env=fake.env, **kw,
    )  # fmt: skip


def _error(fn: Callable[[], object]) -> ImctlError:
    with pytest.raises(ImctlError) as info:
        fn()
    return info.value


# --- wiring --------------------------------------------------------------------------------


def test_deploy_wires_backend_stack_config_and_keeps_secrets_off_argv(fake: FakePulumi) -> None:
    config = engine.stack_config("us-east-1", "us-west-2", {"hpaMax": "20"})
    doc = _deploy(fake, config, secret_config={"grafanaAdminPassword": SECRET_VALUE})

    assert [c for c in fake.commands() if c] == [
        ["stack", "select"],  # not found: validate, then create
        ["stack", "select"],
        ["stack", "init"],
        ["config", "set-all"],
        ["config", "set"],
        ["up"],
        ["stack", "output"],
        ["stack", "output"],
        ["stack", "history"],
    ]
    backend = f"file://{(fake.home / 'pulumi').resolve()}"
    for call in fake.calls():
        assert call["env"]["PULUMI_BACKEND_URL"] == backend
        assert call["env"]["PULUMI_SKIP_UPDATE_CHECK"] == "true"
        assert "PULUMI_CONFIG_PASSPHRASE" in call["secrets_present"]
        assert call["cwd"] == str(fake.work_dir())
    assert fake.find("stack", "init")[0]["argv"][-1] == "dev"

    set_all = fake.find("config", "set-all")[0]["argv"]
    pairs = {set_all[i + 1]: set_all[i] for i, tok in enumerate(set_all) if tok.startswith("--p")}
    assert pairs == {
        "imctl:region=us-east-1": "--plaintext",
        "imctl:standbyRegion=us-west-2": "--plaintext",
        "imctl:hpaMax=20": "--plaintext",
        "imctl:cloud=aws": "--plaintext",
    }
    secret_set = fake.find("config", "set")[0]
    assert secret_set["argv"][1:] == [
        "config", "set", "imctl:grafanaAdminPassword", "--secret", "--stack", "dev",
    ]  # fmt: skip
    assert secret_set["stdin_chars"] == len(SECRET_VALUE)  # the value came on stdin

    up = fake.find("up")[0]["argv"]
    assert {"--yes", "--skip-preview", "--suppress-progress"} <= set(up)
    assert up[up.index("--exec-kind") + 1] == "auto.inline"  # the in-process program
    assert up[up.index("--event-log") + 1].startswith("tcp://127.0.0.1:")
    assert up[up.index("--stack") + 1] == "dev"
    assert any(tok.startswith("--client=127.0.0.1:") for tok in up)

    # No secret in any argv, the call log, or the stack config file on disk.
    log_text = fake.log.read_text()
    assert SECRET_VALUE not in log_text and PASSPHRASE not in log_text
    stack_file = (fake.work_dir() / "Pulumi.dev.yaml").read_text()
    assert SECRET_VALUE not in stack_file
    stored = json.loads(stack_file)["config"]
    assert stored["imctl:hpaMax"] == "20" and "secure" in stored["imctl:grafanaAdminPassword"]

    assert doc["created"] is True and doc["changed"] is True
    assert doc["result"] == "succeeded" and doc["backend"] == backend
    assert doc["changes"] == {"create": 7}
    assert doc["resources"] == {"done": 7, "total": 7, "failed": 0}
    assert doc["config_changed"] == ["cloud", "hpaMax", "region", "standbyRegion"]
    assert (
        doc["outputs"]["kubeconfig"] == "[secret]" and doc["outputs"]["kubeconfigs"] == "[secret]"
    )
    assert "apiVersion" not in json.dumps(doc)  # no kubeconfig in the printed document


def test_redeploy_writes_only_changed_config_and_reports_no_changes(fake: FakePulumi) -> None:
    _deploy(fake)
    before = len(fake.calls())
    doc = _deploy(fake, {})  # no flags: the stack keeps what it has
    again = [w for w in fake.commands()[before:] if w]
    assert ["config", "set-all"] not in again and ["stack", "init"] not in again
    assert doc["created"] is False and doc["changed"] is False
    assert doc["changes"] == {"same": 7} and doc["config_changed"] == []

    doc = _deploy(fake, {"hpaMax": "20"})
    assert doc["config_changed"] == ["hpaMax"] and doc["changes"]["update"] == 2


def test_config_is_validated_before_anything_is_created(fake: FakePulumi) -> None:
    err = _error(lambda: _deploy(fake, {"region": "mars-1"}))
    assert err.status is ExitStatus.USAGE and "mars-1" in err.message
    err = _error(lambda: _deploy(fake, {**REGIONS, "hpaMaxx": "3"}))
    assert err.status is ExitStatus.USAGE and "hpaMax" in err.hint
    assert ["stack", "init"] not in fake.commands()
    with pytest.raises(ImctlError, match="set by a flag"):
        engine.stack_config("us-east-1", None, {"region": "eu-west-1"})

    _deploy(fake)
    err = _error(lambda: _deploy(fake, {"region": "us-central1"}, cloud="gcp"))
    assert err.status is ExitStatus.USAGE and "is a aws stack" in err.message
    assert len(fake.find("up")) == 1


def test_set_config_writes_back_and_validates(fake: FakePulumi) -> None:
    _deploy(fake)
    assert engine.set_config("dev", "aws", {"hpaMax": "30"}, home=fake.home, env=fake.env) == {
        "hpaMax": "30"
    }
    assert _deploy(fake, {})["config_changed"] == []  # the deploy keeps the written value
    err = _error(
        lambda: engine.set_config("dev", "aws", {"hpaMin": "40"}, home=fake.home, env=fake.env)
    )
    assert err.status is ExitStatus.USAGE and "hpaMin" in err.message


def test_kms_secrets_provider_needs_no_passphrase(fake: FakePulumi) -> None:
    env = {k: v for k, v in fake.env.items() if k != "PULUMI_CONFIG_PASSPHRASE"}
    env["IMCTL_SECRETS_PROVIDER"] = "awskms://alias/imctl?region=us-east-1"
    engine.deploy("dev", "aws", REGIONS, home=fake.home, env=env)
    init = fake.find("stack", "init")[0]["argv"]
    assert init[init.index("--secrets-provider") + 1] == env["IMCTL_SECRETS_PROVIDER"]
    assert all("PULUMI_CONFIG_PASSPHRASE" not in c["secrets_present"] for c in fake.calls())


def test_backend_url_from_the_environment(fake: FakePulumi, tmp_path: Path) -> None:
    shared = tmp_path / "shared-state"
    shared.mkdir()
    fake.env["PULUMI_BACKEND_URL"] = f"file://{shared}"
    _deploy(fake)
    assert {c["env"]["PULUMI_BACKEND_URL"] for c in fake.calls()} == {f"file://{shared}"}
    assert (shared / ".pulumi-fake" / "stacks" / "imctl.dev.json").exists()
    settings = resolve_settings(
        fake.home, {**fake.env, "PULUMI_BACKEND_URL": "https://u:p@api.example.com/x?token=1"}
    )
    assert settings.public_backend == "https://api.example.com/x"


# --- events -> progress --------------------------------------------------------------------


def test_events_become_progress_calls_and_json_lines(fake: FakePulumi) -> None:
    fake.env["FAKE_PULUMI_WARN"] = "deprecated: use aws.s3.BucketV2"
    recorder = Recorder()
    _deploy(fake, progress=recorder, expected_total=5)
    kinds = recorder.kinds()
    assert kinds[0] == "start" and kinds[-1] == "summary"
    assert kinds.count("resource_started") == kinds.count("resource_done") == 7
    done = [e.done for e in recorder.events]
    assert done == sorted(done) and recorder.events[-1].done == recorder.events[-1].total == 7
    assert recorder.events[1].total == 5  # the caller's estimate until more steps are known
    warning = [e for e in recorder.events if e.kind == "diagnostic"]
    assert warning[0].severity == "warning"
    assert (warning[0].message or "").startswith("deprecated")

    stream = io.StringIO()
    doc = _deploy(fake, {}, progress=progress_view.JsonLinesProgress(stream))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1 + 7 + 7 + 2  # start, pre + done per step, warning, summary
    assert lines[-1] == {
        "event": "summary", "stack": "dev", "operation": "up", "sequence": lines[-1]["sequence"],
        "done": 7, "total": 7, "changes": {"same": 7}, "duration_seconds": 1.0,
    }  # fmt: skip
    assert {line["event"] for line in lines} == {
        "start", "resource_started", "resource_done", "diagnostic", "summary",
    }  # fmt: skip
    assert doc["warnings"] == ["deprecated: use aws.s3.BucketV2"]

    printed: list[str] = []
    fake.env["FAKE_PULUMI_RESOURCES"] = "3"
    _deploy(fake, {}, progress=progress_view.LineProgress(printed.append))
    assert printed[0] == "pulumi up on stack dev ..."
    assert "[9/9] created: aws:index/thing:Thing2 us-west-2-r2" in printed
    assert not any("unchanged:" in line for line in printed)  # sames only with verbose
    assert printed[-1] == "pulumi up finished in 1s: 2 created, 7 unchanged"


def test_older_cli_streams_events_through_a_file(
    fake: FakePulumi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Up to 3.205 the Automation API tails an event log file instead of serving gRPC.
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "3.200.0")
    recorder = Recorder()
    _deploy(fake, progress=recorder)
    up = fake.find("up")[0]["argv"]
    assert not up[up.index("--event-log") + 1].startswith("tcp://")
    assert recorder.kinds().count("resource_done") == 7 and recorder.kinds()[-1] == "summary"


def test_a_broken_display_does_not_fail_the_deploy(fake: FakePulumi) -> None:
    class Broken:
        def event(self, event: ProgressEvent) -> None:
            raise ValueError("terminal went away")

    assert _deploy(fake, progress=Broken())["result"] == "succeeded"


def test_renderer_records_failures_with_their_reason() -> None:
    from pulumi.automation import EngineEvent

    urn = "urn:pulumi:dev::imctl::imctl:aws:Network$aws:ec2/vpc:Vpc::us-east-1-vpc"
    meta = {"op": "create", "urn": urn, "type": "aws:ec2/vpc:Vpc"}
    renderer = EventRenderer("dev", "up")
    for raw in (
        {"sequence": 1, "resourcePreEvent": {"metadata": meta}},
        {"sequence": 2, "resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}},
        {"sequence": 3, "diagnosticEvent": {"message": "<{%fg 1%}>quota<{%reset%}>\n",
                                            "severity": "error", "urn": urn}},
        {"sequence": 4, "diagnosticEvent": {"message": "printed by the program",
                                            "severity": "info"}},
        {"sequence": 5, "unknownEvent": {}},
    ):  # fmt: skip
        renderer(EngineEvent.from_json(raw))
    assert renderer.failures == [Failure(urn, "aws:ec2/vpc:Vpc", "us-east-1-vpc", "quota")]
    assert renderer.counts() == {"done": 1, "total": 1, "failed": 1}
    assert renderer.events_seen == 5


# --- error mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "code", "text"),
    [
        ("concurrent", ExitStatus.LOCKED, "locked", "locked by another Pulumi operation"),
        ("compile", ExitStatus.ERROR, "program_error", "syntax error"),
        ("program", ExitStatus.ERROR, "program_error", "inline source runtime error: boom"),
        ("runtime", ExitStatus.ERROR, "program_error", "non-zero exit code"),
        ("resource", ExitStatus.RESOURCE_FAILURE, "resource_failure", "VpcLimitExceeded"),
        ("credentials", ExitStatus.AUTH, "credentials", "unable to validate AWS credentials"),
        ("missing_stack", ExitStatus.STACK_NOT_FOUND, "stack_not_found", "not found"),
    ],
)
def test_scripted_failures_map_to_exit_codes(
    fake: FakePulumi, mode: str, status: ExitStatus, code: str, text: str
) -> None:
    fake.env["FAKE_PULUMI_FAIL"] = mode
    err = _error(lambda: _deploy(fake))
    assert (err.status, err.code) == (status, code), err.message
    assert text in err.message and err.hint


def test_resource_failure_names_the_resource(fake: FakePulumi) -> None:
    fake.env["FAKE_PULUMI_FAIL"] = "resource"
    recorder = Recorder()
    err = _error(lambda: _deploy(fake, progress=recorder))
    assert "imctl:aws:Network us-east-1-network failed: creating EC2 VPC" in err.message
    assert "resource_failed" in recorder.kinds()


def test_a_held_backend_lock_is_exit_11_and_names_the_holder(fake: FakePulumi) -> None:
    _deploy(fake)
    lock = fake.state_dir() / "locks" / "dev-7f3c.json"
    lock.write_text(json.dumps({"who": "alice@ci-runner-7", "pid": 4242, "at": "12:00"}))
    err = _error(lambda: _deploy(fake, {}))
    assert err.status is ExitStatus.LOCKED
    assert "alice@ci-runner-7 (pid 4242)" in err.message and "pulumi cancel" in err.hint


def test_unknown_stacks_are_exit_6(fake: FakePulumi) -> None:
    for call in (
        lambda: engine.outputs("nope", home=fake.home, env=fake.env),
        lambda: engine.destroy("nope", home=fake.home, env=fake.env),
        lambda: engine.refresh("nope", home=fake.home, env=fake.env),
    ):
        err = _error(call)
        assert err.status is ExitStatus.STACK_NOT_FOUND and "'nope'" in err.message
    assert ["stack", "init"] not in fake.commands()


def test_passphrase_missing_or_wrong_is_exit_3(fake: FakePulumi) -> None:
    env = {k: v for k, v in fake.env.items() if k != "PULUMI_CONFIG_PASSPHRASE"}
    err = _error(lambda: engine.deploy("dev", "aws", REGIONS, home=fake.home, env=env))
    assert err.status is ExitStatus.AUTH and "PULUMI_CONFIG_PASSPHRASE" in err.hint
    assert fake.calls() == []  # refused before running anything

    missing = {**env, "PULUMI_CONFIG_PASSPHRASE_FILE": str(fake.home / "nope")}
    err = _error(lambda: engine.outputs("dev", home=fake.home, env=missing))
    assert err.status is ExitStatus.AUTH

    _deploy(fake)
    wrong = {**fake.env, "PULUMI_CONFIG_PASSPHRASE": "not the one"}
    err = _error(lambda: engine.outputs("dev", home=fake.home, env=wrong))
    assert err.status is ExitStatus.AUTH and "incorrect passphrase" in err.message
    assert "not the one" not in fake.log.read_text()

    passfile = fake.home / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")
    by_file = {**env, "PULUMI_CONFIG_PASSPHRASE_FILE": str(passfile)}
    assert engine.outputs("dev", home=fake.home, env=by_file).values["cloud"] == "aws"


def test_missing_pulumi_cli_is_exit_10_with_install_hint(fake: FakePulumi, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**fake.env, "PATH": str(empty)}
    err = _error(lambda: engine.deploy("dev", "aws", REGIONS, home=fake.home, env=env))
    assert err.status is ExitStatus.PRECONDITION and err.code == "prerequisite_missing"
    assert "curl -fsSL https://get.pulumi.com | sh" in err.hint

    # The installer's default place counts, even off PATH (a fresh CI runner).
    fake_home_bin = Path(env["HOME"]) / ".pulumi" / "bin"
    fake_home_bin.mkdir(parents=True)
    (fake_home_bin / "pulumi").symlink_to(fake.binary)
    assert engine.deploy("dev", "aws", REGIONS, home=fake.home, env=env)["result"] == "succeeded"


def test_the_cli_vanishing_mid_run_is_exit_10() -> None:
    def boom() -> None:
        with translated("dev", "up"):
            raise FileNotFoundError(2, "No such file or directory", "pulumi")

    err = _error(boom)
    assert err.status is ExitStatus.PRECONDITION and "get.pulumi.com" in err.hint


def test_too_old_cli_is_exit_10(fake: FakePulumi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "3.150.0")
    err = _error(lambda: _deploy(fake))
    assert err.status is ExitStatus.PRECONDITION and MIN_PULUMI_VERSION in err.message


def test_program_config_errors_are_usage_errors() -> None:
    from pulumi.automation import CommandError, CommandResult

    exc = CommandError(CommandResult("error: imctl config: region is required", "", 255))
    err = translate_error(exc, stack="dev", operation="up", settings=None, renderer=None)
    assert err is not None and err.status is ExitStatus.USAGE
    assert err.message == "stack config: region is required"


# --- outputs, preview, destroy, refresh ------------------------------------------------------


def test_outputs_become_the_outputs_contract(fake: FakePulumi) -> None:
    _deploy(fake)
    outs = engine.outputs("dev", home=fake.home, env=fake.env)
    assert outs.secret_keys == {"kubeconfig", "kubeconfigs"}
    assert outs.public()["kubeconfig"] == "[secret]"
    assert "apiVersion" not in repr(outs)  # plain secrets stay out of reprs and logs
    cloud = outs.cloud("dev")
    assert isinstance(cloud, CloudOutputs)
    assert cloud.primary_region == "us-east-1" and cloud.standby_region == "us-west-2"
    assert cloud.primary.cluster_name == "imctl-us-east-1" and cloud.primary.namespace == "im"
    assert json.loads(cloud.region("us-west-2").kubeconfig or "")["fake"] == "us-west-2"
    assert "kubeconfig" not in cloud.extra and "kubeconfigs" not in cloud.extra


def test_scripted_outputs_from_infrastructure_deployed_elsewhere(
    fake: FakePulumi, tmp_path: Path
) -> None:
    doc = {
        "cloud": "gcp", "primary_region": "europe-west1", "standby_region": None,
        "regions": {"europe-west1": {"cluster_name": "c1", "nodegroup_name": "pool-1",
                                     "db_instance_id": "db1", "endpoint": "203.0.113.7"}},
        "hosted_zone_id": "zone", "dns_name": "im.example.org", "backup_bucket": "b",
        "kubeconfig": "apiVersion: v1",
    }  # fmt: skip
    scripted = tmp_path / "outputs.json"
    scripted.write_text(json.dumps({"values": doc, "secrets": ["kubeconfig"]}))
    fake.env["FAKE_PULUMI_OUTPUTS"] = str(scripted)
    engine.deploy("dev", "gcp", {"region": "europe-west1"}, home=fake.home, env=fake.env)
    cloud = engine.outputs("dev", home=fake.home, env=fake.env).cloud("dev")
    assert cloud.cloud == "gcp" and cloud.primary.endpoint == "203.0.113.7"
    assert cloud.primary.kubeconfig == "apiVersion: v1"  # the lone kubeconfig is the primary's


def test_preview_changes_nothing_and_never_deployed_has_no_outputs(fake: FakePulumi) -> None:
    recorder = Recorder()
    doc = engine.preview("dev", "aws", REGIONS, home=fake.home, env=fake.env, progress=recorder)
    assert doc["changes"] == {"create": 7} and doc["new_stack"] is True
    assert recorder.kinds()[-1] == "summary"
    assert [s["op"] for s in doc["steps"]] == ["create"] * 7
    # The stack the preview created to preview with is gone again.
    err = _error(lambda: engine.outputs("dev", home=fake.home, env=fake.env))
    assert err.status is ExitStatus.STACK_NOT_FOUND
    err = _error(lambda: engine.StackOutputs(values={}).cloud("dev"))
    assert isinstance(err, PreconditionFailed) and "never deployed" in err.message


def test_destroy_refresh_and_remove(fake: FakePulumi) -> None:
    _deploy(fake)
    doc = engine.refresh("dev", home=fake.home, env=fake.env)
    assert doc["operation"] == "refresh" and doc["cloud"] == "aws"
    recorder = Recorder()
    ups = len(fake.find("up"))
    doc = engine.destroy("dev", home=fake.home, env=fake.env, progress=recorder)
    assert doc["changes"] == {"delete": 7} and doc["result"] == "succeeded"
    done = [e for e in recorder.events if e.kind == "resource_done"]
    assert {e.op for e in done if e.operation == "destroy"} == {"delete"}
    # First an update with teardown=true (deletion protection and retention lifted), then the
    # destroy: pulumi destroy honours both, and would leave the databases behind.
    assert {e.operation for e in done} == {"up", "destroy"}
    assert len(fake.find("up")) == ups + 1
    assert engine.config_values("dev", home=fake.home, env=fake.env)["teardown"] == "true"
    words = fake.commands()
    last_up = len(words) - 1 - words[::-1].index(["up"])
    assert last_up < words.index(["destroy"])
    assert engine.outputs("dev", home=fake.home, env=fake.env).values == {}
    destroy = fake.find("destroy")[0]["argv"]
    assert {"--yes", "--skip-preview"} <= set(destroy)

    doc = engine.destroy("dev", home=fake.home, env=fake.env, remove=True)
    assert doc["removed"] is True and fake.find("stack", "rm")
    err = _error(lambda: engine.outputs("dev", home=fake.home, env=fake.env))
    assert err.status is ExitStatus.STACK_NOT_FOUND


def test_importing_the_engine_loads_no_pulumi() -> None:
    code = "import sys, cli.engine; print(sorted(m for m in sys.modules if m.startswith('pulumi')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# --- real runs: never pass here, only where a real CLI, credentials and an opt-in exist -------


def _real_cloud() -> tuple[str, str]:
    """(cloud, region) for a real run, or skip saying what is missing."""
    if shutil.which("pulumi") is None:
        pytest.skip("no real pulumi CLI on PATH (install: curl -fsSL https://get.pulumi.com | sh)")
    cloud = os.environ.get("IMCTL_REAL_CLOUD", "")
    region = os.environ.get("IMCTL_REAL_REGION", "")
    if not cloud or not region:
        pytest.skip("real cloud runs cost money: set IMCTL_REAL_CLOUD and IMCTL_REAL_REGION")
    creds = {
        "aws": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"),
        "gcp": ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CREDENTIALS", "CLOUDSDK_CONFIG"),
        "alicloud": ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALICLOUD_ACCESS_KEY"),
    }.get(cloud, ())
    if not any(os.environ.get(k) for k in creds):
        pytest.skip(f"no {cloud} credentials in the environment ({', '.join(creds) or cloud})")
    if "PULUMI_CONFIG_PASSPHRASE" not in os.environ and not os.environ.get(
        "IMCTL_SECRETS_PROVIDER"
    ):
        pytest.skip("no PULUMI_CONFIG_PASSPHRASE or IMCTL_SECRETS_PROVIDER")
    return cloud, region


@pytest.mark.cloud
def test_real_preview(tmp_path: Path) -> None:
    cloud, region = _real_cloud()
    recorder = Recorder()
    doc = engine.preview(
        "imctl-ci-preview", cloud, {"region": region},
        home=tmp_path, env=dict(os.environ), progress=recorder,
    )  # fmt: skip
    assert doc["changes"].get("create", 0) > 50 and recorder.kinds()[-1] == "summary"


@pytest.mark.cloud
def test_real_deploy_outputs_destroy(tmp_path: Path) -> None:
    cloud, region = _real_cloud()
    env = dict(os.environ)
    stack = "imctl-ci-roundtrip"
    try:
        doc = engine.deploy(stack, cloud, {"region": region}, home=tmp_path, env=env)
        assert doc["result"] == "succeeded"
        outs = engine.outputs(stack, home=tmp_path, env=env).cloud(stack)
        assert outs.primary_region == region
    finally:
        engine.destroy(stack, home=tmp_path, env=env, remove=True)
