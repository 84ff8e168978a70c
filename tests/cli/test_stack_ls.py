"""imctl stack ls through the real command: a real local stack (processes, then one killed, then
stopped), cloud stacks recorded as `imctl deploy` and Pulumi's local backend leave them, and a
stack known only from its journal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli import journal
from cli.targets.local.procs import free_port
from tests.cli.test_contract import invoke, make_env, one_document
from tests.cli.test_local_e2e import imctl, imctl_home, ok_json


def record_cloud_stack(
    home: Path,
    stack: str,
    config: dict[str, str],
    resources: list[dict[str, Any]] | None,
) -> None:
    """``Pulumi.<stack>.yaml`` as `pulumi config set` writes it, and (unless None) the
    checkpoint the DIY backend under ``$IMCTL_HOME/pulumi`` keeps (project-scoped layout)."""
    work = home / "pulumi" / "project"
    work.mkdir(parents=True, exist_ok=True)
    lines = ["config:", *(f"  imctl:{k}: {json.dumps(v)}" for k, v in config.items())]
    (work / f"Pulumi.{stack}.yaml").write_text("\n".join(lines) + "\n")
    if resources is None:
        return
    states = home / "pulumi" / ".pulumi" / "stacks" / "imctl"
    states.mkdir(parents=True, exist_ok=True)
    checkpoint = {"stack": f"organization/imctl/{stack}", "latest": {"resources": resources}}
    (states / f"{stack}.json").write_text(json.dumps({"version": 3, "checkpoint": checkpoint}))


def stack_resource(stack: str, endpoint: str) -> dict[str, Any]:
    return {
        "urn": f"urn:pulumi:{stack}::imctl::pulumi:pulumi:Stack::imctl-{stack}",
        "type": "pulumi:pulumi:Stack",
        "outputs": {"endpoint": endpoint, "kubeconfig": {"ciphertext": "..."}},
    }


def seed(home: Path, stack: str, cloud: str, ops: list[str], result: str = "ok") -> None:
    for op in ops:
        journal.append(
            home,
            stack,
            journal.Record(op, {}, "t0", "t1", 0.1, result, 0, None, None, "u@h", stack, cloud),
        )


def listed(home: Path) -> dict[tuple[str, str], dict[str, Any]]:
    doc = ok_json(home, "stack", "ls")
    return {(s["stack"], s["target"]): s for s in doc["stacks"]}


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-stack-ls-")


def test_an_empty_home_is_an_empty_list_and_exit_0(tmp_path: Path) -> None:
    ran = invoke(make_env(tmp_path / "home"), ["stack", "ls", "-o", "json"])
    assert ran.code == 0, ran
    assert one_document(ran.stdout)["stacks"] == []
    ran = invoke(make_env(tmp_path / "home"), ["stack", "ls"])
    assert ran.code == 0 and "no stacks in" in ran.stdout


@pytest.mark.slow
def test_local_and_recorded_cloud_stacks(home: Path) -> None:
    port = free_port()
    deployed = ok_json(home, "deploy", "--port", str(port), "--replicas", "1")
    record_cloud_stack(
        home,
        "prod",
        {"cloud": "aws", "region": "us-east-1", "standbyRegion": "us-west-2", "failovers": "1"},
        [stack_resource("prod", "wss://im.example.com/ws"), {"type": "aws:rds/instance:Instance"}],
    )
    record_cloud_stack(home, "old", {"cloud": "gcp", "region": "europe-west1"}, [])  # destroyed
    record_cloud_stack(home, "fresh", {"cloud": "alicloud", "region": "cn-hangzhou"}, None)
    seed(home, "gone", "local", ["deploy", "destroy"])
    # refused before anything existed (e.g. the cloud's extra missing): no stack
    seed(home, "dev", "aws", ["deploy"], result="error")

    stacks = listed(home)
    assert set(stacks) == {
        ("dev", "local"), ("prod", "aws"), ("old", "gcp"), ("fresh", "alicloud"),
        ("gone", "local"),
    }  # fmt: skip
    dev = stacks[("dev", "local")]
    assert dev["state"] == "running" and dev["why"] is None
    assert dev["endpoint"] == deployed["endpoint"] == f"ws://127.0.0.1:{port}/ws"
    assert dev["regions"] == [{"name": "local", "role": "primary"}]
    prod = stacks[("prod", "aws")]
    assert prod["state"] == "deployed" and prod["endpoint"] == "wss://im.example.com/ws"
    # one failover recorded: the standby region is the writer now
    assert prod["regions"] == [
        {"name": "us-east-1", "role": "standby"},
        {"name": "us-west-2", "role": "primary"},
    ]
    assert stacks[("old", "gcp")]["state"] == "destroyed"
    assert stacks[("fresh", "alicloud")]["state"] == "unknown"
    assert stacks[("gone", "local")]["state"] == "destroyed"

    text = imctl(home, "stack", "ls")
    assert text.returncode == 0, text.stderr
    for name in ("dev", "prod", "old", "fresh", "gone", f"ws://127.0.0.1:{port}/ws"):
        assert name in text.stdout

    node = json.loads((home / "stacks/dev/regions/local/nodes/n1.pid").read_text())["pid"]
    psutil.Process(node).kill()
    psutil.Process(node).wait(10)
    dev = listed(home)[("dev", "local")]
    assert dev["state"] == "degraded" and "0/1 im-server nodes up" in dev["why"]

    assert imctl(home, "destroy", "--keep-data", "--yes").returncode == 0
    assert listed(home)[("dev", "local")]["state"] == "stopped"


def test_a_cloud_state_kept_elsewhere_is_unknown_without_asking(tmp_path: Path) -> None:
    home = tmp_path / "home"
    record_cloud_stack(home, "prod", {"cloud": "aws", "region": "us-east-1"}, [])
    env = make_env(home, environ={"USER": "tester", "PULUMI_BACKEND_URL": "s3://bucket/state"})
    ran = invoke(env, ["stack", "ls", "-o", "json"])
    assert ran.code == 0, ran
    (prod,) = one_document(ran.stdout)["stacks"]
    assert prod["target"] == "aws" and prod["state"] == "unknown" and prod["why"]


def test_a_damaged_stack_is_listed_as_unknown_with_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "stacks" / "bad").mkdir(parents=True)
    (home / "stacks" / "bad" / "config.json").write_text('{"stack": "bad", "regions": 7}')
    ran = invoke(make_env(home), ["stack", "ls", "-o", "json"])
    assert ran.code == 0, ran
    (bad,) = one_document(ran.stdout)["stacks"]
    assert bad["state"] == "unknown" and "config.json" in bad["why"]


def test_a_destroyed_stack_with_kept_snapshots_says_so_and_pipes_plainly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kept = home / "stacks" / "old"
    (kept / "snapshots" / "20261203T100000Z-ab12").mkdir(parents=True)
    (kept / "destroyed.json").write_text("{}")
    record_cloud_stack(home, "prod", {"cloud": "aws", "region": "us-east-1"}, [])
    ran = invoke(make_env(home), ["stack", "ls", "-o", "json"])
    (old,) = [s for s in one_document(ran.stdout)["stacks"] if s["stack"] == "old"]
    assert old["target"] == "local" and old["state"] == "destroyed"
    assert "1 snapshot(s) kept" in old["why"] and "imctl snapshot list -s old" in old["why"]

    text = invoke(make_env(home), ["stack", "ls"]).stdout.splitlines()
    assert text[0].split() == ["STACK", "TARGET", "REGIONS", "STATE", "ENDPOINT"]
    assert [line.split()[:4] for line in text[1:3]] == [
        ["old", "local", "-", "destroyed"],
        ["prod", "aws", "us-east-1:primary", "destroyed"],
    ]
    bare = invoke(make_env(home), ["stack", "ls", "--no-headers"]).stdout.splitlines()
    assert bare[0].split()[0] == "old"
