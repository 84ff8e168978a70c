"""GCP day-2 operations (``GcpOps``): Cloud SQL backup runs, restore into a new instance,
replica promotion with a Cloud DNS flip, GKE node pool sizing; the workload through
``KubeApi``.

    api.py        credentials, service clients, calls and waits, Cloud SQL reads, errors
    status.py     what status and scale read and resize (cloud/status.py runs them)
    snapshots.py  backup runs, with the note and content digest in their description
    restore.py    the restore hooks (a new instance, or in place without replicas)
    failover.py   the failover hooks (promote the cross-region replica)
    dns.py        Cloud DNS

Importing the package imports no Google SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.errors import CredentialsError
from cli.targets.cloud.gcp.api import GcpApi
from cli.targets.cloud.gcp.dns import CloudDns
from cli.targets.cloud.gcp.failover import GcpFailover
from cli.targets.cloud.gcp.restore import GcpRestore
from cli.targets.cloud.gcp.snapshots import GcpSnapshots
from cli.targets.cloud.gcp.status import GcpProbe
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import CloudOutputs
from cli.targets.cloud.parts import AssembledOps, require_cloud
from cli.targets.cloud.status import RegionalStatus


class GcpOps(AssembledOps):
    """``credentials``: a google.auth credentials object (default: Application Default
    Credentials with the cloud-platform scope)."""

    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        project: str,
        credentials: Any = None,
        api_endpoint: str | None = None,
        poll_interval: float = 5.0,
        readyz_timeout: float = 2.0,
    ) -> None:
        require_cloud(outputs, "gcp")
        if not project:
            raise CredentialsError(
                "no GCP project given",
                "set gcp_project in the stack config or GOOGLE_CLOUD_PROJECT",
            )
        api = GcpApi(project, credentials, api_endpoint, poll_interval)
        scope = Scope(outputs, kube, poll_interval)
        dns = CloudDns(api, outputs)
        snapshots = GcpSnapshots(api, scope)
        super().__init__(
            scope,
            status=RegionalStatus(
                scope, GcpProbe(api, dns), cloud="gcp", readyz_timeout=readyz_timeout
            ),
            snapshots=snapshots,
            restore=GcpRestore(api, scope, snapshots),
            failover=GcpFailover(api, scope, dns),
        )
