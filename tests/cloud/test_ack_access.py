"""Kubernetes access to ACK without a kubeconfig (cli/targets/cloud/ack_access.py), emulated: the
CS API's DescribeClusterUserKubeconfig on tests/cloud/fake_alicloud.py (signed requests, checked
against the SDK's request and response models), the API server a local fake over mutual TLS
that takes the kubeconfig's client certificate. Not Alibaba Cloud: no RAM, no real cluster."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from cli.errors import ExitStatus, ImctlError
from cli.targets.cloud import ack_access
from cli.targets.cloud.ack_access import ack_kube
from cli.targets.cloud.kube_access import kube_for_region
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from tests.cloud import fake_alicloud
from tests.cloud.fake_alicloud import AliError, AliyunFake
from tests.cloud.fake_kube_api import FakeKubeApi
from tests.cloud.kube_fixtures import DEP, NS, b64, make_pki, tls_api

REGION, CLUSTER, CLUSTER_ID = "cn-hangzhou", "im-cn-hangzhou", "c-0123abcd"
USER_CONFIG = (
    "GET",
    re.compile(r"/k8s/(?P<cluster>[^/]+)/user_config$"),
    "DescribeClusterUserKubeconfig",
)


def stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AckFake(AliyunFake):
    """The Alibaba Cloud emulation plus DescribeClusterUserKubeconfig: a YAML kubeconfig with a
    client certificate, as ACK hands out, valid for the minutes asked."""

    server: str = ""
    pki: dict[str, bytes] = field(default_factory=dict)
    refuse: bool = False

    def cs_DescribeClusterUserKubeconfig(
        self, ids: dict[str, str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        if self.refuse:
            raise AliError(403, "StatusForbidden", "the RAM policy denies this")
        cluster = ids["cluster"]
        if cluster not in self.clusters:
            raise AliError(404, "ErrorClusterNotFound", f"cluster {cluster} not found")
        minutes = int(query.get("TemporaryDurationMinutes") or 4320)
        user = f"{cluster}-ram-user"
        config = f"""apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: {self.server}
    certificate-authority-data: {b64(self.pki["ca"])}
contexts:
- name: {user}
  context: {{cluster: kubernetes, user: {user}}}
current-context: {user}
users:
- name: {user}
  user:
    client-certificate-data: {b64(self.pki["user"])}
    client-key-data: {b64(self.pki["user_key"])}
"""
        return {"config": config, "expiration": stamp(time.time() + minutes * 60)}


@dataclass
class Ack:
    fake: AckFake
    api: FakeKubeApi
    region: RegionOutputs

    def env(self, **more: str) -> dict[str, str]:
        return {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": self.fake.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.fake.access_key_secret,
            "IMCTL_ALICLOUD_ENDPOINT": self.fake.url,
            "HOME": "/nonexistent",
            **more,
        }

    def kubeconfig_calls(self) -> list[dict[str, Any]]:
        return [p for _, a, p in self.fake.requests if a == "DescribeClusterUserKubeconfig"]


@pytest.fixture
def ack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ack]:
    monkeypatch.setattr(fake_alicloud, "ROA_ROUTES", (*fake_alicloud.ROA_ROUTES, USER_CONFIG))
    pki = make_pki()
    with tls_api(FakeKubeApi(tokens=set()), tmp_path, pki, client_certs=True) as api:
        fake = AckFake(server=api.url, pki=pki)
        fake.start()
        try:
            fake.add_cluster(CLUSTER_ID, CLUSTER, REGION)
            fake.add_cluster("c-older", f"{CLUSTER}-old", REGION)  # the name search finds it too
            yield Ack(fake, api, RegionOutputs(REGION, CLUSTER, "np", "pgm", "lb"))
        finally:
            fake.stop()
    assert fake.violations == []  # every request fit the SDK's models, every answer too


def no_access(fn: Any) -> ImctlError:
    with pytest.raises(ImctlError) as info:
        fn()
    err = info.value
    assert err.status is ExitStatus.PRECONDITION and err.code == "no_kube_access"
    assert f"a kubeconfig context named {REGION} (aliyun cs GET /k8s/" in err.hint
    return err


def test_a_temporary_user_kubeconfig_reaches_the_api(ack: Ack) -> None:
    outputs = CloudOutputs("alicloud", REGION, None, {REGION: ack.region}, "z", "chat.example", "b")
    kube = kube_for_region(outputs, REGION, ack.env())
    assert kube.get_replicas(NS, DEP) == (2, 2)
    kube.scale_deployment(NS, DEP, 3)
    assert ack.api.requests("PATCH")[0].authorization is None  # the client certificate did
    # The id was found by name (the outputs file has none), then the kubeconfig asked for once.
    actions = [a for _, a, _ in ack.fake.requests]
    assert actions == ["DescribeClustersV1", "DescribeClusterUserKubeconfig"]
    call = ack.kubeconfig_calls()[0]
    assert call["cluster"] == CLUSTER_ID
    assert "PrivateIpAddress" not in call  # its default: the public endpoint
    assert call["TemporaryDurationMinutes"] == str(ack_access.TEMPORARY_MINUTES)


def test_the_kubeconfig_is_fetched_again_before_it_expires(
    ack: Ack, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = ack_kube(replace(ack.region, cluster_id=CLUSTER_ID), ack.env())
    kube.get_replicas(NS, DEP)
    kube.get_replicas(NS, DEP)
    assert len(ack.kubeconfig_calls()) == 1
    assert "DescribeClustersV1" not in [a for _, a, _ in ack.fake.requests]  # the id was known
    real = time.time
    minutes = ack_access.TEMPORARY_MINUTES
    monkeypatch.setattr(time, "time", lambda: real() + minutes * 60 - 30)
    assert kube.get_replicas(NS, DEP) == (2, 2)
    assert len(ack.kubeconfig_calls()) == 2


def test_no_cluster_in_the_outputs(ack: Ack) -> None:
    unnamed = replace(ack.region, cluster_name="", cluster_id=None)
    err = no_access(lambda: ack_kube(unnamed, ack.env()))
    assert "the outputs name no ACK cluster" in err.message
    assert f"add cluster_id (c-...) or cluster_name to region {REGION}" in err.hint

    unknown = replace(ack.region, cluster_name="im-elsewhere")
    err = no_access(lambda: ack_kube(unknown, ack.env()))
    assert f"0 ACK clusters are named im-elsewhere in {REGION}" in err.message
    assert f"add cluster_id (c-...) to region {REGION} in the outputs file" in err.hint

    gone = replace(ack.region, cluster_id="c-gone")
    err = no_access(lambda: ack_kube(gone, ack.env()))
    assert "ErrorClusterNotFound" in err.message and "c-gone" in err.message
    assert "aliyun cs GET /api/v1/clusters" in err.hint


def test_no_alibaba_credentials(ack: Ack) -> None:
    env = ack.env()
    del env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]
    err = no_access(lambda: ack_kube(ack.region, env))
    assert "no Alibaba Cloud AccessKey" in err.message
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET" in err.hint
    assert ack.fake.requests == []

    wrong = ack.env(ALIBABA_CLOUD_ACCESS_KEY_SECRET="not-the-secret")
    err = no_access(lambda: ack_kube(ack.region, wrong))
    assert "refused: SignatureDoesNotMatch" in err.message and "alicloud-ram.json" in err.hint


def test_describe_cluster_user_kubeconfig_refused(ack: Ack) -> None:
    ack.fake.refuse = True
    err = no_access(lambda: ack_kube(replace(ack.region, cluster_id=CLUSTER_ID), ack.env()))
    assert "DescribeClusterUserKubeconfig" in err.message and "StatusForbidden" in err.message
    assert "cs:DescribeClusterUserKubeconfig" in err.hint
