"""The order in which imctl finds a region's Kubernetes API (cli/targets/cloud/kube_access.py):
the outputs' kubeconfig, then a kubeconfig context named after the region, then the cloud's
cluster API (tests/cloud/test_{eks,gke,ack}_access.py, against emulators)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.errors import ExitStatus, ImctlError
from cli.targets.cloud.kube_access import context_for, kube_for_region, kubeconfig_paths
from cli.targets.cloud.outputs import CloudOutputs
from tests.cloud.fake_kube_api import FakeKubeApi
from tests.cloud.kube_fixtures import DEP, NS

REGION = "eu-west-1"


def kubeconfig(context: str, server: str, token: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
            "current-context": context,
            "users": [{"name": "u", "user": {"token": token}}],
        }
    )


def outputs(cloud: str = "aws", **region: str) -> CloudOutputs:
    entry = {
        "cluster_name": "im-eu-west-1",
        "nodegroup_name": "ng",
        "db_instance_id": "db",
        "endpoint": "lb.example",
        **region,
    }
    return CloudOutputs.from_json(
        {
            "cloud": cloud,
            "primary_region": REGION,
            "regions": {REGION: entry},
            "hosted_zone_id": "Z",
            "dns_name": "chat.example",
            "backup_bucket": "b",
        }
    )


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    fake = FakeKubeApi(tokens={"from-outputs", "from-context"})
    fake.add_deployment(NS, DEP, replicas=2)
    fake.start()
    yield fake
    fake.stop()


def test_the_outputs_kubeconfig_comes_first(api: FakeKubeApi, tmp_path: Path) -> None:
    (tmp_path / "config").write_text(kubeconfig(REGION, "http://127.0.0.1:1", "from-context"))
    outs = outputs(kubeconfig=kubeconfig("stack", api.url, "from-outputs"))
    kube = kube_for_region(outs, REGION, {"KUBECONFIG": str(tmp_path / "config")})
    assert kube.get_replicas(NS, DEP) == (2, 2)
    assert api.requests()[-1].authorization == "Bearer from-outputs"


def test_a_context_named_after_the_region_in_any_kubeconfig_file(
    api: FakeKubeApi, tmp_path: Path
) -> None:
    (tmp_path / "other").write_text(kubeconfig("us-east-1", "http://127.0.0.1:1", "x"))
    (tmp_path / "mine").write_text(kubeconfig(REGION, api.url, "from-context"))
    files = [tmp_path / "missing", tmp_path / "other", tmp_path / "mine"]
    env = {"KUBECONFIG": os.pathsep.join(str(f) for f in files), "HOME": str(tmp_path)}
    assert kubeconfig_paths(env) == files
    found = context_for(REGION, env)
    assert found is not None and found[0] == tmp_path / "mine"
    kube = kube_for_region(outputs(), REGION, env)
    assert kube.get_replicas(NS, DEP) == (2, 2)
    assert api.requests()[-1].authorization == "Bearer from-context"


def test_without_kubeconfig_the_home_config_is_read(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(kubeconfig(REGION, "http://h", "t"))
    assert context_for(REGION, {"HOME": str(tmp_path)}) is not None
    assert context_for("us-east-1", {"HOME": str(tmp_path)}) is None


def test_an_unreadable_or_broken_kubeconfig_is_named_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()  # reading a directory fails as an unreadable file would
    with pytest.raises(ImctlError) as info:
        context_for(REGION, {"KUBECONFIG": str(tmp_path / "dir")})
    assert info.value.status is ExitStatus.USAGE
    assert str(tmp_path / "dir") in info.value.message and "KUBECONFIG" in info.value.hint

    (tmp_path / "broken").write_text("[1, 2]")
    with pytest.raises(ImctlError) as info:
        context_for(REGION, {"KUBECONFIG": str(tmp_path / "broken")})
    assert info.value.status is ExitStatus.USAGE
    assert f"kubeconfig {tmp_path / 'broken'}: " in info.value.message and info.value.hint
