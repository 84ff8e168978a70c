"""Alibaba Cloud day-2 operations (``AlicloudOps``): ApsaraDB RDS backups, restore by cloning
into a new instance, failover to the disaster-recovery instance with an Alidns flip, ACK node
pool sizing; the workload through ``KubeApi``.

    api.py        the AccessKey, clients per product, calls, RDS and DTS reads, errors
    status.py     what status and scale read and resize (cloud/status.py runs them)
    snapshots.py  ApsaraDB backups
    restore.py    the restore hooks (clone into a new instance)
    failover.py   the failover hooks (stop DTS writing into the standby)
    dns.py        Alidns

Importing the package imports no Alibaba Cloud SDK.
"""

from __future__ import annotations

from collections.abc import Callable

from cli.errors import CredentialsError
from cli.targets.cloud.alicloud.api import AlicloudApi
from cli.targets.cloud.alicloud.dns import Alidns
from cli.targets.cloud.alicloud.failover import AlicloudFailover
from cli.targets.cloud.alicloud.restore import AlicloudRestore
from cli.targets.cloud.alicloud.snapshots import AlicloudSnapshots
from cli.targets.cloud.alicloud.status import AlicloudProbe
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import CloudOutputs
from cli.targets.cloud.parts import AssembledOps, require_cloud
from cli.targets.cloud.status import RegionalStatus


class AlicloudOps(AssembledOps):
    """Authenticated with an AccessKey pair."""

    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        access_key_id: str,
        access_key_secret: str,
        endpoint_override: str | None = None,
        poll_interval: float = 10.0,
        readyz_timeout: float = 2.0,
    ) -> None:
        require_cloud(outputs, "alicloud")
        if not access_key_id or not access_key_secret:
            raise CredentialsError(
                "no Alibaba Cloud AccessKey",
                "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            )
        api = AlicloudApi(access_key_id, access_key_secret, endpoint_override, poll_interval)
        scope = Scope(outputs, kube, poll_interval)
        dns = Alidns(api, outputs)
        snapshots = AlicloudSnapshots(api, scope)
        super().__init__(
            scope,
            status=RegionalStatus(
                scope, AlicloudProbe(api, dns), cloud="alicloud", readyz_timeout=readyz_timeout
            ),
            snapshots=snapshots,
            restore=AlicloudRestore(api, scope, snapshots),
            failover=AlicloudFailover(api, scope, dns),
        )
