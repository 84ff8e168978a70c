"""`imctl deploy --cloud aws` previews before it applies, through the real command against the
stand-in ``pulumi`` CLI (tests/cloud/fake_pulumi): the plan shown, ``--preview`` changing
nothing, ``--refuse-replace`` stopping CI on a stateful replacement, a "no" putting the config
back. The replacement is scripted (FAKE_PULUMI_PLAN), not computed by a provider."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.env import Env
from cli.main import app
from tests.cloud.fake_pulumi import FakePulumi

pytest.importorskip("pulumi.automation", reason="the Pulumi SDK is not installed")

DEPLOY = ("deploy", "--cloud", "aws", "--region", "us-east-1")
DB_REPLACEMENT = json.dumps(
    [
        {
            "op": "replace",
            "type": "aws:rds/instance:Instance",
            "name": "us-east-1-db",
            "keys": ["storageEncrypted"],
            "diffs": ["storageEncrypted"],
            "detailedDiff": {"storageEncrypted": {"diffKind": "update-replace"}},
        }
    ]
)


def _imctl(fake: FakePulumi, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**fake.env, "IMCTL_HOME": str(fake.home), "CI": "1", **env},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    return doc


def _snapshot(fake: FakePulumi) -> tuple[dict[str, str], list[tuple[str, int]], int]:
    """What a preview must not change: the stack config files, the stacks (with their
    resource counts), and how many updates ran."""
    configs = {p.name: p.read_text() for p in sorted(fake.work_dir().glob("Pulumi.*.yaml"))}
    configs.pop("Pulumi.yaml", None)
    stacks_dir = fake.state_dir() / "stacks"
    stacks = [json.loads(p.read_text()) for p in sorted(stacks_dir.glob("imctl.*.json"))]
    return configs, [(s["name"], len(s["resources"])) for s in stacks], len(fake.find("up"))


@pytest.fixture
def deployed(tmp_path: Path) -> FakePulumi:
    fake = FakePulumi.create(tmp_path)
    r = _imctl(fake, *DEPLOY, "--set", "hpaMax=12", "--yes", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    return fake


def test_preview_of_a_new_stack_lists_the_steps_and_leaves_nothing(tmp_path: Path) -> None:
    fake = FakePulumi.create(tmp_path)
    fake.work_dir().mkdir(parents=True)
    before = _snapshot(fake)
    r = _imctl(fake, *DEPLOY, "--preview", "-o", "json")  # no --yes: it changes nothing
    assert r.returncode == 0, r.stdout + r.stderr
    doc = _json(r)
    assert doc["operation"] == "preview" and doc["new_stack"] is True
    assert doc["changes"] == {"create": 4} and len(doc["steps"]) == 4
    assert set(doc["steps"][0]) == {
        "op", "urn", "type", "name", "replace_keys", "diffs", "stateful", "why",
    }  # fmt: skip
    assert _snapshot(fake) == before
    assert fake.find("stack", "rm")  # the stack made to preview with, removed


def test_preview_of_a_changed_config_leaves_config_and_stacks_identical(
    deployed: FakePulumi,
) -> None:
    before = _snapshot(deployed)
    r = _imctl(deployed, *DEPLOY, "--preview", "--set", "hpaMax=20", "--set", "hpaMin=3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Preview of aws stack dev: 1 to update, 3 unchanged" in r.stdout
    assert "~ update  kubernetes:apps/v1:Deployment us-east-1-r0" in r.stdout
    assert "config to write: hpaMax, hpaMin" in r.stdout and "nothing was changed" in r.stdout
    assert _snapshot(deployed) == before


def test_a_planned_database_replacement_is_highlighted_and_listed(deployed: FakePulumi) -> None:
    text = _imctl(deployed, *DEPLOY, "--preview", FAKE_PULUMI_PLAN=DB_REPLACEMENT)
    assert text.returncode == 0, text.stdout + text.stderr
    assert (
        "! +- replace aws:rds/instance:Instance us-east-1-db: changing storageEncrypted forces a"
        " new resource (stateful)"
    ) in text.stdout
    assert "1 stateful resource(s) replaced or deleted" in text.stdout

    r = _imctl(deployed, *DEPLOY, "--preview", "-o", "json", FAKE_PULUMI_PLAN=DB_REPLACEMENT)
    [step] = [s for s in _json(r)["steps"] if s["op"] == "replace"]
    assert step["name"] == "us-east-1-db" and step["stateful"] is True
    assert step["replace_keys"] == ["storageEncrypted"]


def test_refuse_replace_exits_10_and_applies_nothing(deployed: FakePulumi) -> None:
    before = _snapshot(deployed)
    r = _imctl(
        deployed, *DEPLOY, "--set", "hpaMax=20", "--refuse-replace", "--yes", "-o", "json",
        FAKE_PULUMI_PLAN=DB_REPLACEMENT,
    )  # fmt: skip
    assert r.returncode == 10, r.stdout + r.stderr
    err = _json(r)["error"]
    assert err["code"] == "stateful_replacement"
    assert "us-east-1-db: changing storageEncrypted forces a new resource" in err["message"]
    assert [s["name"] for s in err["details"]["steps"]] == ["us-east-1-db"]
    assert _snapshot(deployed) == before  # no update ran, hpaMax=20 was taken back

    # --preview in CI: the plan, then the refusal.
    ci = ("--preview", "--refuse-replace")
    text = _imctl(deployed, *DEPLOY, *ci, FAKE_PULUMI_PLAN=DB_REPLACEMENT)
    assert text.returncode == 10 and text.stdout == ""
    assert text.stderr.index("! +- replace") < text.stderr.index("error: stack 'dev': the plan")

    # Without a stateful loss in the plan, --refuse-replace deploys.
    ok = _imctl(deployed, *DEPLOY, "--refuse-replace", "--yes", "-o", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_with_yes_the_replacement_is_shown_then_applied(deployed: FakePulumi) -> None:
    ups = len(deployed.find("up"))
    r = _imctl(deployed, *DEPLOY, "--yes", "-o", "json", FAKE_PULUMI_PLAN=DB_REPLACEMENT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = _json(r)
    assert doc["result"] == "succeeded" and len(deployed.find("up")) == ups + 1
    assert doc["changes"]["replace"] == 1
    assert [s["name"] for s in doc["preview"]["steps"]] == ["us-east-1-db"]
    # The confirmation's details name the stateful replacement (on stderr, with the progress).
    assert (
        "REPLACE aws:rds/instance:Instance us-east-1-db: changing storageEncrypted forces a new"
        " resource; loses the database instance and every message in it"
    ) in r.stderr
    assert "losing 1 stateful resource(s)" in r.stderr

    text = _imctl(deployed, *DEPLOY, "--yes", FAKE_PULUMI_PLAN=DB_REPLACEMENT)
    assert text.returncode == 0, text.stdout + text.stderr
    shown = text.stderr.index("Preview of aws stack dev")
    assert shown < text.stderr.index("Deploy stack 'dev' to aws, losing 1 stateful resource(s)?")
    assert "! +- replace aws:rds/instance:Instance us-east-1-db" in text.stderr
    # The preview's advice, shown before the question, reaches this cloud stack when pasted.
    assert "(imctl snapshot create --cloud aws)" in text.stderr


def test_a_no_at_the_prompt_puts_the_config_back(deployed: FakePulumi) -> None:
    before = _snapshot(deployed)
    environ = {**deployed.env, "IMCTL_HOME": str(deployed.home), "USER": "tester"}
    env = Env(
        stdout=io.StringIO(), stderr=io.StringIO(), stdin_isatty=True, stdout_isatty=True,
        environ=environ, home=deployed.home, stdin=io.StringIO("n\n"),
    )  # fmt: skip
    result = CliRunner().invoke(
        app, [*DEPLOY, "--set", "hpaMax=20"], obj=env,
        env={"IMCTL_STACK": None, "IMCTL_CLOUD": None, "IMCTL_OUTPUT": None, "CI": None},
    )  # fmt: skip
    assert isinstance(env.stderr, io.StringIO)
    assert result.exit_code == 8, env.stderr.getvalue()
    assert "Deploy stack 'dev' to aws? [y/N]" in env.stderr.getvalue()
    assert _snapshot(deployed) == before


@pytest.mark.parametrize("flag", ["--preview", "--refuse-replace"])
def test_the_cloud_only_options_exit_2_on_the_local_target(tmp_path: Path, flag: str) -> None:
    fake = FakePulumi.create(tmp_path)
    r = _imctl(fake, "deploy", flag, "--yes", "-o", "json")
    assert r.returncode == 2, r.stdout + r.stderr
    err = _json(r)["error"]
    assert err["message"] == f"{flag} is not an option of the local target"
    assert "it is for aws, gcp, alicloud" in err["hint"]
    assert not fake.calls()
