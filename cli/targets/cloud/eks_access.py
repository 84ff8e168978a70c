"""EKS: a Kubernetes client from DescribeCluster and a token made as ``aws eks get-token`` makes
it, with boto3 only (no AWS CLI on PATH needed).

The token is ``k8s-aws-v1.`` + base64url (unpadded) of a presigned STS GetCallerIdentity URL
whose signed headers include ``x-k8s-aws-id: <cluster name>``. The cluster's authenticator
calls that URL and accepts only the STS hostnames it knows, so the URL is always the regional
STS endpoint: ``AWS_ENDPOINT_URL`` (an emulator, a proxy) would make a token no cluster takes.
STS honours the presigned call for 15 minutes after ``X-Amz-Date`` whatever ``X-Amz-Expires``
says (60, as the CLI sends); the token is declared good for 14, and KubeRest makes a new one
shortly before that, or at once if the API answers 401.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from cli.errors import CredentialsError, ResourceFailure
from cli.targets.cloud.kube_access import no_access
from cli.targets.cloud.kube_rest import Credential, KubeConfig, KubeRest
from cli.targets.cloud.outputs import RegionOutputs

TOKEN_PREFIX: Final = "k8s-aws-v1."
CLUSTER_HEADER: Final = "x-k8s-aws-id"
URL_EXPIRES: Final = 60
TOKEN_LIFETIME: Final = 14 * 60.0
# Codes with which AWS says the identity or its permissions are the problem, not the request.
_REFUSALS: Final = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnauthorizedOperation",
    }
)


def _kubeconfig_cmd(r: RegionOutputs) -> str:
    name = r.cluster_name or "CLUSTER"
    return f"aws eks update-kubeconfig --name {name} --region {r.name} --alias {r.name}"


def sts_client(session: Any, region: str) -> Any:
    """STS at the region's own endpoint, whatever endpoint the environment configures."""
    from botocore.config import Config

    sts = session.client(
        "sts", region_name=region, config=Config(ignore_configured_endpoint_urls=True)
    )
    host = urlsplit(sts.meta.endpoint_url).hostname or ""
    if not host.startswith(f"sts.{region}."):
        # AWS_STS_REGIONAL_ENDPOINTS=legacy sends us-east-1 to the global sts.amazonaws.com.
        suffix = host.removeprefix("sts.")
        sts = session.client(
            "sts", region_name=region, endpoint_url=f"https://sts.{region}.{suffix}"
        )
    return sts


def eks_token(sts: Any, cluster: str, now: Callable[[], float] = time.time) -> Credential:
    """A bearer token for ``cluster`` from a presigned GetCallerIdentity (``sts``: sts_client)."""

    def sign_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_HEADER] = cluster

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", sign_cluster_header)
    try:
        url = sts.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=URL_EXPIRES, HttpMethod="GET"
        )
    finally:
        sts.meta.events.unregister("before-sign.sts.GetCallerIdentity", sign_cluster_header)
    encoded = base64.urlsafe_b64encode(str(url).encode()).decode().rstrip("=")
    return Credential(token=TOKEN_PREFIX + encoded, expires_at=now() + TOKEN_LIFETIME)


def _describe(session: Any, r: RegionOutputs) -> dict[str, Any]:
    from botocore import exceptions as bx

    what = f"EKS DescribeCluster {r.cluster_name} in {r.name}"
    try:
        eks = session.client("eks", region_name=r.name)
        return dict(eks.describe_cluster(name=r.cluster_name)["cluster"])
    except (
        bx.NoCredentialsError,
        bx.PartialCredentialsError,
        bx.CredentialRetrievalError,
        bx.ProfileNotFound,
        bx.SSOError,
        bx.TokenRetrievalError,
    ) as exc:
        raise no_access(
            r,
            f"no usable AWS credentials for {what} ({exc})",
            "configure AWS credentials (AWS_PROFILE, aws sso login, or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY) for an identity allowed eks:DescribeCluster",
            _kubeconfig_cmd(r),
        ) from None
    except bx.ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "ResourceNotFoundException":
            raise no_access(
                r,
                f"EKS has no cluster named {r.cluster_name} in {r.name}",
                f"correct cluster_name of region {r.name} in the outputs "
                f"(aws eks list-clusters --region {r.name} lists them)",
                _kubeconfig_cmd(r),
            ) from None
        if code in _REFUSALS or status in (401, 403):
            raise no_access(
                r,
                f"{what} was refused: {code}: {message}",
                "allow the identity eks:DescribeCluster on the cluster (docs/permissions/"
                "aws-policy.json); `aws sts get-caller-identity` shows which identity imctl uses",
                _kubeconfig_cmd(r),
            ) from None
        raise ResourceFailure(f"{what} failed: {code}: {message}", "retry shortly") from None
    except bx.BotoCoreError as exc:
        raise ResourceFailure(
            f"{what}: could not reach EKS ({exc})", "check the network and the region"
        ) from None


def _ca_pem(r: RegionOutputs, data: str) -> str:
    try:
        return base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ResourceFailure(
            f"EKS cluster {r.cluster_name} ({r.name}) reports a certificate authority that is "
            "not base64 PEM",
            f"aws eks describe-cluster --name {r.cluster_name} --region {r.name} shows it",
        ) from None


def eks_kube(
    r: RegionOutputs,
    env: Mapping[str, str],
    *,
    session: Callable[[], Any] | None = None,
    **kw: Any,
) -> KubeRest:
    """The client for the EKS cluster ``r`` names. ``session``: a boto3 session factory (default:
    boto3's own chain, as the AWS operations use)."""
    if not r.cluster_name:
        raise no_access(
            r,
            "the outputs name no EKS cluster for it",
            f"add cluster_name to region {r.name} in the outputs file",
            _kubeconfig_cmd(r),
        )
    if session is None:
        import boto3

        s = boto3.session.Session()
    else:
        s = session()
    cluster = _describe(s, r)
    endpoint = str(cluster.get("endpoint") or "")
    ca = str((cluster.get("certificateAuthority") or {}).get("data") or "")
    if not endpoint or not ca:
        status = cluster.get("status", "UNKNOWN")
        raise no_access(
            r,
            f"EKS cluster {r.cluster_name} is {status} and has no API endpoint yet",
            f"wait until `aws eks describe-cluster --name {r.cluster_name} --region {r.name}` "
            "says ACTIVE",
            _kubeconfig_cmd(r),
        )
    sts = sts_client(s, r.name)

    def token() -> Credential:
        from botocore.exceptions import BotoCoreError

        try:
            return eks_token(sts, r.cluster_name)
        except BotoCoreError as exc:  # the credentials expired or went away since the start
            raise CredentialsError(
                f"cannot sign an EKS token for {r.cluster_name}: {exc}",
                "refresh the AWS login (aws sso login, or new keys) and re-run",
            ) from None

    config = KubeConfig(server=endpoint.rstrip("/"), ca_pem=_ca_pem(r, ca))
    return KubeRest(config, env=env, credentials=token, **kw)
