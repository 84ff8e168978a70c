"""The local target needs none of the cloud extras: `make deploy` installs only the base
dependencies. Every local verb runs here in an interpreter where Pulumi, boto3, the Google and
Alibaba Cloud SDKs cannot be imported (a meta-path finder refuses them, and records each
attempt), against real processes; a cloud verb there exits 10 naming the extra to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.targets.local.procs import free_port
from tests.cli.test_local_e2e import imctl_home

pytestmark = pytest.mark.slow

# What only the cloud extras install (pyproject.toml's aws, gcp and alicloud), by top-level name.
BLOCKED = ("pulumi", "pulumi_", "boto3", "botocore", "google", "googleapiclient",
           "alibabacloud_", "Tea", "darabonba", "grpc", "semver", "moto")  # fmt: skip

_RUNNER = textwrap.dedent(
    """
    import importlib.abc, json, os, sys

    BLOCKED = tuple(json.loads(os.environ["BLOCKED"]))
    attempts = []

    class NoCloudExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if any(top == b or (b.endswith("_") and top.startswith(b)) for b in BLOCKED):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoCloudExtras())
    from cli.main import app

    code = 0
    try:
        app(sys.argv[1:], prog_name="imctl")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    with open(os.environ["REPORT"], "w") as f:
        json.dump({"code": code, "attempts": attempts}, f)
    sys.exit(code)
    """
)


def run(home: Path, tmp: Path, *args: str) -> tuple[int, str, list[str], str]:
    """-> exit code, stdout, the blocked imports it attempted, stderr."""
    report = tmp / "report.json"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "IMCTL_HOME": str(home),
        "CI": "1",
        "BLOCKED": json.dumps(BLOCKED),
        "REPORT": str(report),
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    doc: dict[str, Any] = json.loads(report.read_text())
    assert doc["code"] == done.returncode
    return done.returncode, done.stdout, doc["attempts"], done.stderr


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-no-extras-")


def test_the_blocker_blocks(home: Path, tmp_path: Path) -> None:
    code, _, attempts, _ = run(home, tmp_path, "plan", "--cloud", "aws", "--region", "r1")
    assert code == 10 and "pulumi" in attempts[0]


def test_every_local_verb_works_without_the_cloud_extras(home: Path, tmp_path: Path) -> None:
    port = free_port()

    def ok(*args: str) -> dict[str, Any]:
        code, out, attempts, err = run(home, tmp_path, *args, "-o", "json")
        assert (code, attempts) == (0, []), (args, code, attempts, out, err)
        doc: dict[str, Any] = json.loads(out)
        return doc

    # restore refuses a stack with a standby region: it has a stack of its own
    ok("deploy", "-s", "solo", "--port", str(free_port()), "--replicas", "1")
    snap = ok("snapshot", "create", "-s", "solo", "--note", "no extras")
    ok("restore", snap["id"], "-s", "solo", "--yes")
    ok("backup", "status", "-s", "solo", "--check")
    ok("backup", "base", "-s", "solo")
    ok("restore", "--to-time", "latest", "-s", "solo", "--yes")
    ok("destroy", "-s", "solo", "--yes", "--delete-snapshots")

    ok("deploy", "--port", str(port), "--replicas", "1", "--region", "a", "--standby-region", "b")
    ok("status", "--check")
    ok("token", "--user", "alice")
    ok("scale", "--replicas", "2")
    ok("logs", "-n", "5")
    snap = ok("snapshot", "create", "--note", "no extras")
    ok("snapshot", "list")
    ok("snapshot", "show", snap["id"])
    ok("snapshot", "verify", snap["id"])
    ok("failover", "--to-region", "b", "--dry-run")
    ok("failover", "--to-region", "b", "--yes")
    ok("standby", "rebuild", "--region", "a", "--yes")
    ok("drill", "failover", "--pairs", "1", "--yes")  # back to a, under load
    ok("drill", "clean", "--yes")
    ok("snapshot", "prune", "--keep", "1", "--yes")
    ok("snapshot", "delete", snap["id"], "--yes")
    ok("history")
    ok("stack", "ls")
    ok("doctor")
    ok("version")
    ok("destroy", "--yes")


def test_a_backup_url_without_boto3_is_refused_before_anything_starts(
    home: Path, tmp_path: Path
) -> None:
    args = ("deploy", "-s", "s3less", "--port", str(free_port()), "--backup-url", "s3://bkt/x")
    code, out, _attempts, _err = run(home, tmp_path, *args, "-o", "json")
    error = json.loads(out)["error"]
    assert code == 10 and "imctl[backup]" in error["hint"], error
    assert not (home / "stacks" / "s3less" / "regions").exists()
    assert not (home / "stacks" / "s3less" / "config.json").exists()


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["deploy", "--cloud", "aws", "--region", "us-east-1"], "aws"),
        (["destroy", "--cloud", "gcp", "--yes"], "gcp"),
        (["status", "--cloud", "alicloud"], "alicloud"),
        (["plan", "--cloud", "aws", "--region", "us-east-1"], "aws"),
    ],
)
def test_a_cloud_verb_without_the_extras_says_what_to_install(
    home: Path, tmp_path: Path, args: list[str], extra: str
) -> None:
    code, out, _, _ = run(home, tmp_path, *args, "-o", "json")
    assert code == 10
    err = json.loads(out)["error"]
    assert err["code"] == "prerequisite_missing"
    assert f"pip install 'imctl[{extra}]'" in err["hint"]


def test_doctor_still_reports_the_missing_extras(home: Path, tmp_path: Path) -> None:
    code, out, _, _ = run(home, tmp_path, "doctor", "--cloud", "aws", "-o", "json")
    assert code == 10
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert not checks["aws_packages"]["ok"]
    assert checks["aws_packages"]["fix"] == "pip install 'imctl[aws]'"
