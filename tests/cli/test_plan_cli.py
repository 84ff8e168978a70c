"""`imctl plan` through the real command: offline, JSON shape, secrets masked, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pulumi_aws", reason="the aws extra is not installed")


def _imctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_plan_aws_lists_resources_per_region_and_contacts_no_cloud(tmp_path: Path) -> None:
    r = _imctl(
        tmp_path, "plan", "--cloud", "aws", "--region", "us-east-1",
        "--standby-region", "us-west-2", "--set", "hpaMax=12", "-o", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["contacted_cloud"] is False
    regions = {res["region"] for res in doc["resources"]}
    assert {"us-east-1", "us-west-2"} <= regions
    hpas = [
        res
        for res in doc["resources"]
        if res["type"].endswith("HorizontalPodAutoscaler") and res["region"] == "us-east-1"
    ]
    assert hpas and all(h["properties"]["spec"]["maxReplicas"] == 12 for h in hpas)
    # The monitoring operator comes with the plan (its CRDs), and EKS gets a Metrics Server.
    types = [(res["type"], res["region"]) for res in doc["resources"]]
    for region in ("us-east-1", "us-west-2"):
        assert ("kubernetes:helm.sh/v3:Release", region) in types
    addons = {res["properties"]["addonName"] for res in doc["resources"] if "Addon" in res["type"]}
    assert "metrics-server" in addons
    # Secrets never leave the plan in clear text.
    secrets = [res for res in doc["resources"] if res["type"] == "kubernetes:core/v1:Secret"]
    assert secrets and all("[secret]" in json.dumps(s["properties"]) for s in secrets)


def test_plan_refuses_local_and_bad_regions_with_usage_errors(tmp_path: Path) -> None:
    assert _imctl(tmp_path, "plan", "--region", "x").returncode == 2
    r = _imctl(tmp_path, "plan", "--cloud", "gcp", "--region", "mars-1", "-o", "json")
    assert r.returncode == 2 and "mars-1" in json.loads(r.stdout)["error"]["message"]


def test_plan_refuses_a_kubernetes_version_past_end_of_life_with_exit_10(tmp_path: Path) -> None:
    # EKS 1.31 left extended support on 2026-11-26: refused on every later day.
    r = _imctl(
        tmp_path, "plan", "--cloud", "aws", "--region", "us-east-1",
        "--set", "kubernetesVersion=1.31", "-o", "json",
    )  # fmt: skip
    assert r.returncode == 10, r.stderr
    error = json.loads(r.stdout)["error"]
    assert "2026-11-26" in error["message"] and "kubernetesVersion" in error["hint"]
