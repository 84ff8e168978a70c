"""Kubernetes access to GKE without a kubeconfig (cli/targets/cloud/gke_access.py), emulated: the
container API's clusters.get on tests/cloud/fake_gcp.py (requests and answers checked against
the shipped discovery document), the API server a local fake over TLS that takes the same
OAuth token. Not Google: no real IAM, token exchange or cluster."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import Credentials as GoogleCredentials
from typer.testing import CliRunner

from cli.env import Env
from cli.errors import ExitStatus, ImctlError
from cli.main import app
from cli.targets.cloud.gke_access import gke_kube
from cli.targets.cloud.kube_access import kube_for_region
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from tests.cloud.fake_gcp import GcpFake, _not_found
from tests.cloud.fake_kube_api import FakeKubeApi
from tests.cloud.kube_fixtures import DEP, NS, b64, make_pki, tls_api

PROJECT, REGION, CLUSTER = "imctl-test", "europe-west1", "im-europe-west1"
FULL_NAME = f"projects/{PROJECT}/locations/{REGION}/clusters/{CLUSTER}"


@dataclass
class GkeFake(GcpFake):
    """The GCP emulation plus projects.locations.clusters.get."""

    gke_clusters: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_cluster(self, name: str, endpoint: str, ca_pem: bytes) -> None:
        location = name.split("/")[3]
        self.gke_clusters[name] = {
            "name": name.rsplit("/", 1)[-1],
            "location": location,
            "status": "RUNNING",
            "endpoint": endpoint,
            "masterAuth": {"clusterCaCertificate": b64(ca_pem)},
            "selfLink": f"https://container.googleapis.com/v1/{name}",
        }

    def h_container_projects_locations_clusters_get(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        if params["name"] not in self.gke_clusters:
            raise _not_found(f"Cluster {params['name']}")
        return copy.deepcopy(self.gke_clusters[params["name"]])


class Refreshing(GoogleCredentials):
    """google-auth credentials whose refreshes are counted; each yields the fake's token."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.lifetime = lifetime
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = "fake-token"
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # google-auth's naive UTC
        self.expiry = now + dt.timedelta(seconds=self.lifetime)


@dataclass
class Gke:
    fake: GkeFake
    api: FakeKubeApi
    region: RegionOutputs

    def env(self) -> dict[str, str]:
        return {"IMCTL_GCP_ENDPOINT": self.fake.url, "HOME": "/nonexistent"}

    def outputs(self, region: RegionOutputs | None = None) -> CloudOutputs:
        return CloudOutputs(
            "gcp", REGION, None, {REGION: region or self.region}, "zone", "chat.example", "b"
        )


@pytest.fixture
def gke(tmp_path: Path) -> Iterator[Gke]:
    pki = make_pki()
    fake = GkeFake(project=PROJECT)
    fake.start()
    try:
        with tls_api(FakeKubeApi(tokens={"fake-token"}, ready_after=0), tmp_path, pki) as api:
            fake.add_cluster(FULL_NAME, api.url.removeprefix("https://"), pki["ca"])
            region = RegionOutputs(REGION, CLUSTER, "pool", "db", "lb", cluster_id=FULL_NAME)
            yield Gke(fake, api, region)
    finally:
        fake.stop()
    assert fake.violations == []  # every request fit the discovery document, every answer too


def no_access(fn: Any) -> ImctlError:
    with pytest.raises(ImctlError) as info:
        fn()
    err = info.value
    assert err.status is ExitStatus.PRECONDITION and err.code == "no_kube_access"
    assert f"a kubeconfig context named {REGION} (gcloud container clusters get-credentials" in (
        err.hint
    )
    return err


def test_clusters_get_and_an_access_token_reach_the_api(
    gke: Gke, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = Refreshing()
    kube = kube_for_region(gke.outputs(), REGION, gke.env(), gcp_credentials=creds)
    assert kube.config.server == gke.api.url and "BEGIN CERTIFICATE" in (kube.config.ca_pem or "")
    assert kube.get_replicas(NS, DEP) == (2, 2)
    kube.scale_deployment(NS, DEP, 3)
    assert gke.api.requests()[-1].authorization == "Bearer fake-token"
    assert [m for m, _, _ in gke.fake.requests] == ["container.projects.locations.clusters.get"]
    assert gke.fake.requests[0][1]["name"] == FULL_NAME
    assert creds.refreshes == 1  # the API call's, reused for the cluster

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3570)  # the hour is nearly up
    kube.get_replicas(NS, DEP)
    assert creds.refreshes == 2


def test_the_cluster_name_is_built_from_the_project_without_cluster_id(gke: Gke) -> None:
    bare = replace(gke.region, cluster_id=None)
    env = {**gke.env(), "GOOGLE_CLOUD_PROJECT": PROJECT}
    kube = gke_kube(bare, gke.outputs(bare), env, credentials=Refreshing())
    assert kube.get_replicas(NS, DEP) == (2, 2)
    assert gke.fake.requests[-1][1]["name"] == FULL_NAME


def test_no_cluster_name_or_project_in_the_outputs(gke: Gke) -> None:
    unnamed = replace(gke.region, cluster_name="", cluster_id=None)
    err = no_access(lambda: gke_kube(unnamed, gke.outputs(unnamed), gke.env()))
    assert "the outputs name no GKE cluster" in err.message
    assert f"add cluster_name to region {REGION} in the outputs file" in err.hint

    no_project = replace(gke.region, cluster_id=None)
    creds = Refreshing()
    err = no_access(lambda: gke_kube(no_project, gke.outputs(no_project), {}, credentials=creds))
    assert f"the GCP project of cluster {CLUSTER} is unknown" in err.message
    assert "GOOGLE_CLOUD_PROJECT" in err.hint and "cluster_id" in err.hint

    ghost = replace(gke.region, cluster_id=FULL_NAME.replace(CLUSTER, "gone"))
    err = no_access(lambda: gke_kube(ghost, gke.outputs(ghost), gke.env(), credentials=creds))
    assert "GKE has no cluster" in err.message and "clusters list --project" in err.hint


def test_no_google_credentials(gke: Gke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    err = no_access(lambda: gke_kube(gke.region, gke.outputs(), gke.env()))
    assert "no Google credentials" in err.message
    assert "gcloud auth application-default login" in err.hint
    assert gke.fake.requests == []


def test_clusters_get_refused(gke: Gke) -> None:
    from google.oauth2.credentials import Credentials

    gke.fake.deny.add("container.projects.locations.clusters.get")
    creds = Refreshing()
    err = no_access(lambda: gke_kube(gke.region, gke.outputs(), gke.env(), credentials=creds))
    assert "GKE refused clusters.get" in err.message and "403" in err.message
    assert "container.clusters.get" in err.hint and "gcp-role.yaml" in err.hint

    gke.fake.deny.clear()
    stale = Credentials(token="expired")  # type: ignore[no-untyped-call]  # cannot refresh
    err = no_access(lambda: gke_kube(gke.region, gke.outputs(), gke.env(), credentials=stale))
    assert "the Google credentials were refused" in err.message


def _imctl(args: list[str], environ: dict[str, str], home: Path) -> tuple[int, dict[str, Any]]:
    stdout = io.StringIO()
    env = Env(stdout=stdout, stderr=io.StringIO(), stdin_isatty=False, stdout_isatty=False,
              environ={**environ, "CI": "1"}, home=home, stdin=io.StringIO(""))  # fmt: skip
    result = CliRunner().invoke(app, args, obj=env)
    return result.exit_code, json.loads(stdout.getvalue() or result.output)


def test_imctl_scale_with_an_outputs_file_and_no_kubeconfig(
    gke: Gke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the command: the outputs file names the cluster, nothing else is configured."""
    import google.auth

    creds = Refreshing()
    monkeypatch.setattr(google.auth, "default", lambda **_: (creds, PROJECT))
    doc = {
        "cloud": "gcp",
        "primary_region": REGION,
        "regions": {
            REGION: {"cluster_name": CLUSTER, "nodegroup_name": "pool", "db_instance_id": "db",
                     "endpoint": "lb", "namespace": NS, "deployment": DEP},
        },
        "hosted_zone_id": "zone", "dns_name": "chat.example", "backup_bucket": "b",
    }  # fmt: skip
    (tmp_path / "outputs.json").write_text(json.dumps(doc))
    environ = {**gke.env(), "HOME": str(tmp_path), "GOOGLE_CLOUD_PROJECT": PROJECT}
    args = ["scale", "--cloud", "gcp", "--outputs", str(tmp_path / "outputs.json"),
            "--replicas", "4", "--yes", "-o", "json"]  # fmt: skip
    code, out = _imctl(args, environ, tmp_path / "home")
    assert code == 0, out
    assert out["replicas"] == {"desired": 4, "ready": 4}

    doc["regions"][REGION]["cluster_name"] = "gone"  # type: ignore[index]
    (tmp_path / "outputs.json").write_text(json.dumps(doc))
    code, out = _imctl(args, environ, tmp_path / "home")
    assert code == 10
    assert "GKE has no cluster" in out["error"]["message"]
    assert f"a kubeconfig context named {REGION}" in out["error"]["hint"]
