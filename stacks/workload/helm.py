"""A Helm release pinned to one chart version, the way every chart the stacks install is run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s


def pinned_release(
    resource_name: str,
    *,
    name: str,
    chart: str,
    version: str,
    repo: str | None,
    namespace: str,
    values: Mapping[str, Any],
    timeout: int,
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    """``repo`` None: ``chart`` is a full reference (an OCI chart). Atomic: a failed install is
    rolled back instead of left half-made for the next ``pulumi up``, and the release is done
    only once what it runs is ready (a webhook serving, CRDs in place)."""
    return k8s.helm.v3.Release(
        resource_name,
        name=name,
        chart=chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repo) if repo else None,
        namespace=namespace,
        values=dict(values),
        timeout=timeout,
        atomic=True,
        cleanup_on_fail=True,
        opts=opts,
    )
