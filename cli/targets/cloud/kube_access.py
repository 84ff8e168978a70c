"""How imctl reaches a region's Kubernetes API, in this order (the first that exists wins):

1. the ``kubeconfig`` the outputs carry for the region (imctl's own stacks export one);
2. a context named after the region in ``$KUBECONFIG`` (each file in turn) or ``~/.kube/config``:
   the operator's explicit choice, e.g. ``aws eks update-kubeconfig --alias us-east-1``;
3. the cloud's cluster API, for the cluster the outputs name, with the credentials imctl already
   uses for that cloud: EKS DescribeCluster plus an STS-presigned token (eks_access.py), GKE
   clusters.get plus an OAuth token (gke_access.py), ACK DescribeClusterUserKubeconfig
   (ack_access.py). Tokens and temporary kubeconfigs are refreshed before they expire.

Why the stack's kubeconfig comes before a context of the operator's: it names exactly the
stack's cluster, while a context named after a region may point at any cluster there. Why the
operator's context comes before the cloud API: it may reach the cluster another way (a bastion,
another identity) that imctl cannot guess.

When none of them can work, ``no_access`` makes the error: exit 10, naming what is missing, with
a hint that gives both ways out (what to add for the cloud path, or the command that creates
the kubeconfig context). No SDK is imported here; the per-cloud modules import theirs lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cli.errors import PreconditionFailed, UsageError
from cli.targets.cloud.kube_rest import KubeRest, context_names
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs


def kubeconfig_paths(env: Mapping[str, str]) -> list[Path]:
    """Where kubectl would look: every file of ``$KUBECONFIG``, else ``~/.kube/config``."""
    listed = [p for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    if listed:
        return [Path(p).expanduser() for p in listed]
    home = env.get("HOME") or str(Path.home())
    return [Path(home) / ".kube" / "config"]


def context_for(region: str, env: Mapping[str, str]) -> tuple[Path, str] | None:
    """The first kubeconfig file with a context named ``region``, and its text."""
    for path in kubeconfig_paths(env):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(
                f"cannot read kubeconfig {path}: {exc.strerror}",
                "fix its permissions, or point KUBECONFIG at another file",
            ) from None
        try:
            names = context_names(text)
        except UsageError as exc:  # the parser cannot know which file it was given
            raise UsageError(
                f"kubeconfig {path}: {exc.message}",
                "fix it, or point KUBECONFIG at another file",
            ) from None
        if region in names:
            return path, text
    return None


def no_access(region: RegionOutputs, missing: str, how: str, kubeconfig_cmd: str) -> Exception:
    """Exit 10: ``missing`` says what stops the cloud path, ``how`` how to supply it; the
    kubeconfig context is always the other way out."""
    return PreconditionFailed(
        f"no Kubernetes access to region {region.name}: {missing}",
        f"{how}; or add a kubeconfig context named {region.name} ({kubeconfig_cmd})",
        code="no_kube_access",
    )


def kube_for_region(
    outputs: CloudOutputs,
    region: str,
    env: Mapping[str, str],
    *,
    aws_session: Callable[[], Any] | None = None,
    gcp_credentials: Any = None,
    **kw: Any,
) -> KubeRest:
    """The Kubernetes client for ``region``, from the first source in the module's order.
    ``aws_session``/``gcp_credentials`` replace the SDKs' default credential chains (tests);
    ``kw`` goes to ``KubeRest``."""
    r = outputs.region(region)
    if r.kubeconfig:
        return KubeRest.from_kubeconfig(r.kubeconfig, env=env, **kw)
    found = context_for(r.name, env)
    if found is not None:
        path, text = found
        return KubeRest.from_kubeconfig(text, r.name, base_dir=path.parent, env=env, **kw)
    if outputs.cloud == "aws":
        from cli.targets.cloud.eks_access import eks_kube

        return eks_kube(r, env, session=aws_session, **kw)
    if outputs.cloud == "gcp":
        from cli.targets.cloud.gke_access import gke_kube

        return gke_kube(r, outputs, env, credentials=gcp_credentials, **kw)
    from cli.targets.cloud.ack_access import ack_kube

    return ack_kube(r, env, **kw)
