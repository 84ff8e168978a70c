"""Kubernetes access to EKS without a kubeconfig (cli/targets/cloud/eks_access.py), emulated:
DescribeCluster on the moto server of tests/cloud/test_aws.py, the API server a local fake over
TLS that authenticates tokens the way EKS does. Not AWS: no real STS call, IAM or access entry.

moto invents each cluster's hostname and random CA bytes, so a stub named for that
(``ClusterEndpointStub``) points DescribeCluster's answer at the local fake and its CA."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from cli.errors import ExitStatus, ImctlError
from cli.targets.cloud.eks_access import CLUSTER_HEADER, TOKEN_PREFIX, eks_kube
from cli.targets.cloud.kube_access import kube_for_region
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from tests.cloud.aws_fixtures import ACCOUNT, _Http, _Stub
from tests.cloud.fake_kube_api import FakeKubeApi
from tests.cloud.kube_fixtures import DEP, NS, b64, make_pki, tls_api
from tests.cloud.test_aws import Moto, moto  # noqa: F401  (the module's moto server)

REGION = "eu-west-1"
SECRET = "testing"  # the moto fixture's AWS_SECRET_ACCESS_KEY
# What aws-iam-authenticator lets through in the presigned URL's query (lower-cased).
ALLOWED_PARAMS = {
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
}
NAMES = itertools.count()


def decode(token: str) -> str:
    body = token.removeprefix(TOKEN_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def signature_ok(url: str, headers: dict[str, str], secret: str) -> bool:
    """SigV4 query signing recomputed (what STS checks when the authenticator calls the URL with
    its own x-k8s-aws-id header): the cluster name must have been signed."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    q = dict(params)

    def enc(v: str) -> str:
        return quote(v, safe="-_.~")

    query = "&".join(
        f"{enc(k)}={enc(v)}" for k, v in sorted(p for p in params if p[0] != "X-Amz-Signature")
    )
    signed = q["X-Amz-SignedHeaders"].split(";")
    values = {"host": parts.netloc, **headers}
    canonical = "\n".join(
        [
            "GET",
            parts.path or "/",
            query,
            "".join(f"{h}:{values[h]}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    scope = q["X-Amz-Credential"].split("/", 1)[1]
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", q["X-Amz-Date"], scope, digest])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(
        hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), q["X-Amz-Signature"]
    )


@dataclass
class EksAuthenticator(FakeKubeApi):
    """An API server that takes what EKS's authenticator takes: ``k8s-aws-v1.`` + a presigned
    GetCallerIdentity URL on this region's STS host over https, only the allowed parameters,
    ``x-k8s-aws-id`` signed, and a signature that holds with this cluster's name in it."""

    cluster: str = ""
    region: str = REGION
    tokens_seen: list[str] = field(default_factory=list)

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        token = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
        if not token.startswith(TOKEN_PREFIX):
            return False
        self.tokens_seen.append(token)
        url = urlsplit(decode(token))
        q = dict(parse_qsl(url.query))
        return (
            url.scheme == "https"
            and url.hostname == f"sts.{self.region}.amazonaws.com"
            and {k.lower() for k in q} <= ALLOWED_PARAMS
            and q.get("Action") == "GetCallerIdentity"
            and CLUSTER_HEADER in q.get("X-Amz-SignedHeaders", "").split(";")
            and signature_ok(decode(token), {CLUSTER_HEADER: self.cluster}, SECRET)
        )


class ClusterEndpointStub(_Stub):
    """Stands in for the cluster's own API endpoint and CA, which moto makes up: DescribeCluster
    answers with the local fake's URL and the test CA. Counts the calls."""

    def __init__(self, url: str, ca_pem: bytes) -> None:
        self.url, self.ca, self.calls = url, b64(ca_pem), 0

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("after-call.eks.DescribeCluster", self._edit)]

    def _edit(self, parsed: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        if "cluster" in parsed:
            parsed["cluster"].update(endpoint=self.url, certificateAuthority={"data": self.ca})


class DescribeClusterDeniedStub(_Stub):
    """Stands in for an identity without eks:DescribeCluster (moto enforces no IAM)."""

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("before-call.eks.DescribeCluster", self._deny)]

    def _deny(self, **_: Any) -> tuple[_Http, dict[str, Any]]:
        error = {"Code": "AccessDeniedException", "Message": "not authorized: eks:DescribeCluster"}
        return _Http(403), {"Error": error}


@dataclass
class Eks:
    moto: Moto
    cluster: str
    region: RegionOutputs
    api: EksAuthenticator
    stub: ClusterEndpointStub

    def outputs(self, region: RegionOutputs | None = None) -> CloudOutputs:
        r = region or self.region
        return CloudOutputs("aws", REGION, None, {REGION: r}, "Z", "chat.example", "bucket")

    def kube(self, env: dict[str, str] | None = None, **kw: Any) -> Any:
        return kube_for_region(
            self.outputs(), REGION, env or {}, aws_session=lambda: self.moto.session, **kw
        )


@pytest.fixture
def eks(moto: Moto, tmp_path: Path) -> Iterator[Eks]:  # noqa: F811
    cluster = f"kube-access-{next(NAMES)}"
    moto.session.client("eks", region_name=REGION).create_cluster(
        name=cluster,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": []},
    )
    pki = make_pki()
    with tls_api(EksAuthenticator(tokens=set(), cluster=cluster), tmp_path, pki) as api:
        stub = ClusterEndpointStub(api.url, pki["ca"])
        stub.install(moto.session)
        try:
            r = RegionOutputs(REGION, cluster, "ng", "db", "lb.example")
            yield Eks(moto, cluster, r, api, stub)
        finally:
            stub.uninstall(moto.session)


def no_access(fn: Callable[[], Any]) -> ImctlError:
    with pytest.raises(ImctlError) as info:
        fn()
    err = info.value
    assert err.status is ExitStatus.PRECONDITION and err.code == "no_kube_access"
    assert f"a kubeconfig context named {REGION}" in err.hint
    assert f"--region {REGION} --alias {REGION}" in err.hint
    return err


def test_describe_cluster_and_a_presigned_sts_token_reach_the_api(eks: Eks) -> None:
    kube = eks.kube()
    assert kube.config.server == eks.api.url and "BEGIN CERTIFICATE" in (kube.config.ca_pem or "")
    assert kube.get_replicas(NS, DEP) == (2, 2)
    kube.scale_deployment(NS, DEP, 3)
    assert len(set(eks.api.tokens_seen)) == 1  # one token, cached

    url = urlsplit(decode(eks.api.tokens_seen[0]))
    q = dict(parse_qsl(url.query))
    assert (url.scheme, url.hostname) == ("https", f"sts.{REGION}.amazonaws.com")  # not moto's
    assert q["Action"] == "GetCallerIdentity" and q["Version"] == "2011-06-15"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and q["X-Amz-Expires"] == "60"
    assert q["X-Amz-SignedHeaders"] == f"host;{CLUSTER_HEADER}"
    assert q["X-Amz-Credential"].endswith(f"/{REGION}/sts/aws4_request")
    assert "=" not in eks.api.tokens_seen[0]  # base64url without padding

    # The signature binds the cluster's name: the same token fails for another cluster.
    assert not signature_ok(decode(eks.api.tokens_seen[0]), {CLUSTER_HEADER: "other"}, SECRET)


def test_the_token_is_made_again_before_it_expires(
    eks: Eks, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed: list[str] = []

    def count(**_: Any) -> None:
        signed.append("sts")

    eks.moto.session.events.register("before-sign.sts.GetCallerIdentity", count)
    try:
        kube = eks.kube()
        kube.get_replicas(NS, DEP)
        kube.get_replicas(NS, DEP)
        assert len(signed) == 1
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 13.5 * 60)  # inside the last minute
        kube.get_replicas(NS, DEP)
        assert len(signed) == 2
    finally:
        eks.moto.session.events.unregister("before-sign.sts.GetCallerIdentity", count)


def test_a_kubeconfig_context_named_after_the_region_still_wins(eks: Eks, tmp_path: Path) -> None:
    theirs = FakeKubeApi(tokens={"operator-token"})
    theirs.add_deployment(NS, DEP, replicas=5)
    theirs.start()
    try:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": theirs.url}}],
            "contexts": [{"name": REGION, "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "operator-token"}}],
        }
        (tmp_path / "kubeconfig").write_text(json.dumps(config))
        kube = eks.kube({"KUBECONFIG": str(tmp_path / "kubeconfig")})
        assert kube.get_replicas(NS, DEP) == (5, 5)
        assert eks.stub.calls == 0  # EKS was not asked
    finally:
        theirs.stop()
    assert eks.kube().get_replicas(NS, DEP) == (2, 2)  # without the context: EKS
    assert eks.stub.calls == 1


def test_no_cluster_name_in_the_outputs(eks: Eks) -> None:
    unnamed = replace(eks.region, cluster_name="")
    err = no_access(lambda: eks_kube(unnamed, {}, session=lambda: eks.moto.session))
    assert "the outputs name no EKS cluster" in err.message
    assert f"add cluster_name to region {REGION} in the outputs file" in err.hint

    ghost = replace(eks.region, cluster_name="no-such-cluster")
    err = no_access(lambda: eks_kube(ghost, {}, session=lambda: eks.moto.session))
    assert f"EKS has no cluster named no-such-cluster in {REGION}" in err.message
    assert "aws eks list-clusters" in err.hint and "update-kubeconfig --name no-such" in err.hint


def test_no_aws_credentials(eks: Eks, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    err = no_access(lambda: eks_kube(eks.region, {}, session=boto3.session.Session))
    assert "no usable AWS credentials" in err.message and eks.cluster in err.message
    assert "AWS_PROFILE" in err.hint and f"update-kubeconfig --name {eks.cluster}" in err.hint


def test_describe_cluster_refused(eks: Eks) -> None:
    denied = DescribeClusterDeniedStub()
    denied.install(eks.moto.session)
    try:
        err = no_access(eks.kube)
    finally:
        denied.uninstall(eks.moto.session)
    assert "refused: AccessDeniedException" in err.message
    assert "eks:DescribeCluster" in err.hint and "aws-policy.json" in err.hint
