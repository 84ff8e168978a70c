"""From the command line to a cloud's operations: find the outputs, build the clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cli.errors import CredentialsError, UsageError
from cli.targets.cloud.ops import CloudOps
from cli.targets.cloud.outputs import CloudOutputs, load_file

if TYPE_CHECKING:
    from cli.targets.choose import Invocation as Context
    from cli.targets.cloud.kube import KubeApi


def load_outputs(ctx: Context, outputs_file: str | None) -> CloudOutputs:
    path = outputs_file or ctx.env.environ.get("IMCTL_OUTPUTS_FILE")
    if path:
        outs = load_file(path)
    else:
        from cli import engine

        outs = engine.outputs(ctx.stack, home=ctx.env.home, env=ctx.env.environ).cloud(ctx.stack)
    if outs.cloud != ctx.cloud:
        raise UsageError(
            f"the outputs describe a {outs.cloud} stack, not {ctx.cloud}",
            f"use --cloud {outs.cloud}",
        )
    return outs


@dataclass
class _KubeCache:
    outputs: CloudOutputs
    env: dict[str, str]
    made: dict[str, KubeApi] = field(default_factory=dict)

    def __call__(self, region: str) -> KubeApi:
        if region not in self.made:
            from cli.targets.cloud.kube_access import kube_for_region

            self.made[region] = kube_for_region(self.outputs, region, self.env)
        return self.made[region]


def kube_clients(ctx: Context, outputs: CloudOutputs) -> Callable[[str], KubeApi]:
    """A region's Kubernetes client, made once per region on first use."""
    return _KubeCache(outputs, dict(ctx.env.environ))


def ops_for(ctx: Context, outputs: CloudOutputs) -> CloudOps:
    env = dict(ctx.env.environ)
    kube = _KubeCache(outputs, env)
    if outputs.cloud == "aws":
        from cli.targets.cloud.aws import AwsOps

        return AwsOps(outputs, kube)
    if outputs.cloud == "gcp":
        from cli.targets.cloud.gcp import GcpOps

        project = (
            env.get("GOOGLE_CLOUD_PROJECT")
            or env.get("CLOUDSDK_CORE_PROJECT")
            or str(outputs.extra.get("project") or "")
        )
        if not project:
            raise UsageError(
                "the GCP project is unknown", "set GOOGLE_CLOUD_PROJECT or add project to outputs"
            )
        return GcpOps(outputs, kube, project=project, api_endpoint=env.get("IMCTL_GCP_ENDPOINT"))
    from cli.targets.cloud.alicloud import AlicloudOps

    key, secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID"), env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not key or not secret:
        raise CredentialsError(
            "no Alibaba Cloud credentials",
            "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        )
    return AlicloudOps(
        outputs, kube, access_key_id=key, access_key_secret=secret,
        endpoint_override=env.get("IMCTL_ALICLOUD_ENDPOINT"),
    )  # fmt: skip


def cloud_ops(ctx: Context, outputs_file: str | None) -> CloudOps:
    return ops_for(ctx, load_outputs(ctx, outputs_file))
