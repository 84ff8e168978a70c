"""ACK: a Kubernetes client from the CS API's DescribeClusterUserKubeconfig, a temporary
kubeconfig for the calling RAM identity, parsed as any kubeconfig is.

The CS API addresses clusters by id: the outputs' ``cluster_id`` (the stacks export it), else the
one cluster DescribeClustersV1 finds by ``cluster_name``. The kubeconfig is for the public
endpoint (``PrivateIpAddress`` left at its default, false: the stacks' API server is on an
internet-facing SLB, and imctl runs outside the VPC) and lasts ``TEMPORARY_MINUTES``; its
``expiration`` is when its client certificate stops working, so KubeRest fetches a new
kubeconfig shortly before then.
``IMCTL_ALICLOUD_ENDPOINT`` sends the call to one place (an emulation in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from cli.errors import CredentialsError, PreconditionFailed, ResourceFailure
from cli.targets.cloud.kube_access import no_access
from cli.targets.cloud.kube_rest import Credential, KubeConfig, KubeRest, parse_expiry
from cli.targets.cloud.outputs import RegionOutputs

# The API takes 15 to 4320. Short, since a leaked copy works until it expires; long enough that a
# restore or failover rarely needs a second one (refreshing is cheap anyway).
TEMPORARY_MINUTES: Final = 60
# Codes with which the gateway or CS says the AccessKey or its RAM policy is the problem.
_REFUSALS: Final = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSecurityToken",
    "IncompleteSignature",
    "Forbidden",
    "NoPermission",
    "StatusForbidden",
)


def _kubeconfig_cmd(r: RegionOutputs, cluster_id: str | None) -> str:
    cid = cluster_id or "CLUSTER_ID"
    return (
        f"aliyun cs GET /k8s/{cid}/user_config, save its config as a kubeconfig and rename "
        f"its context to {r.name}"
    )


def cs_client(region: str, key: str, secret: str, endpoint_override: str | None) -> Any:
    from alibabacloud_cs20151215.client import Client
    from alibabacloud_tea_openapi import models as open_api

    cfg = open_api.Config(
        access_key_id=key,
        access_key_secret=secret,
        region_id=region,
        endpoint=f"cs.{region}.aliyuncs.com",
        connect_timeout=10_000,
        read_timeout=30_000,
    )
    if endpoint_override:
        url = urlsplit(endpoint_override)
        cfg.endpoint, cfg.protocol = url.netloc, url.scheme or "https"
    return Client(cfg)


def _call(r: RegionOutputs, fn: Callable[[], Any], what: str, cluster_id: str | None) -> Any:
    """One CS call; its body as the wire's JSON names. A refusal or an unknown cluster is no
    access (exit 10); anything else is a failure to retry."""
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
    from Tea.exceptions import TeaException, UnretryableException

    try:
        resp = fn()
    except (AlibabaCloudException, TeaException) as exc:
        code = str(getattr(exc, "code", "") or "")
        message = str(getattr(exc, "message", "") or exc)
        status = int(getattr(exc, "status_code", 0) or getattr(exc, "statusCode", 0) or 0)
        cmd = _kubeconfig_cmd(r, cluster_id)
        if status in (401, 403) or code.startswith(_REFUSALS):
            raise no_access(
                r,
                f"{what} was refused: {code}: {message}",
                "use an AccessKey whose RAM policy allows cs:DescribeClusterUserKubeconfig and "
                "cs:DescribeClustersV1 (docs/permissions/alicloud-ram.json)",
                cmd,
            ) from None
        if status == 404 or "NotFound" in code:
            raise no_access(
                r,
                f"{what}: {code}: {message}",
                f"correct cluster_id / cluster_name of region {r.name} in the outputs "
                f"(aliyun cs GET /api/v1/clusters --region {r.name} lists them)",
                cmd,
            ) from None
        raise ResourceFailure(f"{what}: {code}: {message}", "retry shortly") from None
    except UnretryableException as exc:
        raise ResourceFailure(
            f"{what}: could not reach the CS API ({exc})", "check the network"
        ) from None
    return resp.body.to_map() if resp.body is not None else {}


def _cluster_id(r: RegionOutputs, client: Any) -> str:
    if r.cluster_id:
        return r.cluster_id
    from alibabacloud_cs20151215 import models as cs

    request = cs.DescribeClustersV1Request(name=r.cluster_name, region_id=r.name)
    doc = _call(
        r,
        lambda: client.describe_clusters_v1(request),
        f"finding ACK cluster {r.cluster_name}",
        None,
    )
    ids = [
        str(c["cluster_id"])
        for c in doc.get("clusters") or []
        if c.get("name") == r.cluster_name and c.get("cluster_id")
    ]
    if len(ids) != 1:
        raise no_access(
            r,
            f"{len(ids)} ACK clusters are named {r.cluster_name} in {r.name}",
            f"add cluster_id (c-...) to region {r.name} in the outputs file",
            _kubeconfig_cmd(r, None),
        )
    return ids[0]


def user_kubeconfig(r: RegionOutputs, client: Any, cluster_id: str) -> tuple[str, float | None]:
    """A temporary kubeconfig for ``cluster_id`` and when it expires (time.time() seconds)."""
    from alibabacloud_cs20151215 import models as cs

    # PrivateIpAddress stays unset: its default is the public endpoint, and the SDK would send
    # False as "False" where the API documents true/false.
    request = cs.DescribeClusterUserKubeconfigRequest(temporary_duration_minutes=TEMPORARY_MINUTES)
    doc = _call(
        r,
        lambda: client.describe_cluster_user_kubeconfig(cluster_id, request),
        f"ACK DescribeClusterUserKubeconfig for {cluster_id} ({r.name})",
        cluster_id,
    )
    text = str(doc.get("config") or "")
    if not text:
        raise ResourceFailure(f"ACK returned no kubeconfig for cluster {cluster_id}")
    return text, parse_expiry(doc.get("expiration"))


def _credential(config: KubeConfig, expires_at: float | None) -> Credential:
    return Credential(
        token=config.token,
        cert_pem=config.cert_pem,
        key_pem=config.key_pem,
        expires_at=expires_at,
    )


def ack_kube(r: RegionOutputs, env: Mapping[str, str], **kw: Any) -> KubeRest:
    """The client for the ACK cluster ``r`` names, with the AccessKey the Alibaba Cloud
    operations use (``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET``)."""
    key = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not key or not secret:
        raise no_access(
            r,
            "no Alibaba Cloud AccessKey",
            "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (a RAM "
            "identity allowed cs:DescribeClusterUserKubeconfig)",
            _kubeconfig_cmd(r, r.cluster_id),
        )
    if not r.cluster_name and not r.cluster_id:
        raise no_access(
            r,
            "the outputs name no ACK cluster for it",
            f"add cluster_id (c-...) or cluster_name to region {r.name} in the outputs file",
            _kubeconfig_cmd(r, None),
        )
    client = cs_client(r.name, key, secret, env.get("IMCTL_ALICLOUD_ENDPOINT"))
    cluster_id = _cluster_id(r, client)
    text, expires_at = user_kubeconfig(r, client, cluster_id)
    first = KubeConfig.parse(text)
    pending = [_credential(first, expires_at)]

    def fresh() -> Credential:
        if pending:
            return pending.pop()
        try:
            again, until = user_kubeconfig(r, client, cluster_id)
        except PreconditionFailed as exc:
            # Access worked minutes ago: a refusal now is the credential's doing, not a gap in
            # the setup (a network failure stays what it is).
            raise CredentialsError(
                f"cannot renew the kubeconfig of ACK cluster {cluster_id}: {exc.message}",
                exc.hint,
            ) from None
        return _credential(KubeConfig.parse(again), until)

    return KubeRest(first, env=env, credentials=fresh, **kw)
