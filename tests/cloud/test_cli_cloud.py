"""`imctl deploy/destroy --cloud aws` through the real command, against the stand-in pulumi CLI.

Proves the command wiring (confirmation, JSON result, exit codes, JSON-line progress on
stderr), not that a cloud accepts anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cloud.fake_pulumi import FakePulumi

pytest.importorskip("pulumi.automation", reason="the Pulumi SDK is not installed")


def _imctl(
    fake: FakePulumi, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**fake.env, "IMCTL_HOME": str(fake.home), "CI": "1"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_cloud_deploy_needs_yes_then_runs_pulumi_up_and_reports_json(tmp_path: Path) -> None:
    fake = FakePulumi.create(tmp_path)
    args = ("deploy", "--cloud", "aws", "--region", "us-east-1", "--set", "hpaMax=12", "-o", "json")
    refused = _imctl(fake, *args)
    assert refused.returncode == 2 and "--yes" in refused.stdout
    assert not fake.find("up")  # nothing ran without the confirmation
    r = _imctl(fake, *args, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["cloud"] == "aws" and doc["stack"] == "dev" and doc["result"] == "succeeded"
    assert fake.find("up")
    # Progress went to stderr as JSON lines; stdout stayed one document.
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert events and events[-1]["event"] == "summary"


def test_cloud_deploy_without_pulumi_cli_exits_10_with_install_hint(tmp_path: Path) -> None:
    fake = FakePulumi.create(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    r = _imctl(fake, "deploy", "--cloud", "gcp", "--region", "us-central1", "--yes", "-o", "json",
               path=str(empty))  # fmt: skip
    assert r.returncode == 10
    err = json.loads(r.stdout)["error"]
    assert "pulumi" in err["message"].lower() and "get.pulumi.com" in err["hint"]


def test_cloud_destroy_needs_the_typed_stack_name_or_yes(tmp_path: Path) -> None:
    fake = FakePulumi.create(tmp_path)
    ok = _imctl(fake, "deploy", "--cloud", "aws", "--region", "us-east-1", "--yes", "-o", "json")
    assert ok.returncode == 0, ok.stderr
    assert _imctl(fake, "destroy", "--cloud", "aws", "-o", "json").returncode == 2
    asked = _imctl(fake, "destroy", "--cloud", "aws", "-o", "json")
    assert "backups: KEPT. RDS snapshots stay" in asked.stderr  # what happens to backups
    # --delete-snapshots is the local target's: refused before anything runs.
    local_only = _imctl(
        fake, "destroy", "--cloud", "aws", "--delete-snapshots", "--yes", "-o", "json"
    )
    assert local_only.returncode == 2
    assert json.loads(local_only.stdout)["error"]["code"] == "option_not_for_target"
    assert not fake.find("destroy")
    r = _imctl(fake, "destroy", "--cloud", "aws", "--yes", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert fake.find("destroy")


@pytest.mark.parametrize("cloud", ["gcp", "alicloud"])
def test_cloud_destroy_says_the_backups_outlive_the_database(tmp_path: Path, cloud: str) -> None:
    fake = FakePulumi.create(tmp_path)
    asked = _imctl(fake, "destroy", "--cloud", cloud, "-o", "json")
    assert asked.returncode == 2
    assert "backups: KEPT" in asked.stderr and "imctl snapshots" in asked.stderr
    assert not fake.find("destroy")
