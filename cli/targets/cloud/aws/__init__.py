"""AWS day-2 operations (``AwsOps``): EKS node groups, RDS snapshots, restore and replica
promotion, Route 53 failover records; the workload itself through ``KubeApi``.

    api.py        the boto3 session and clients, waits, RDS reads, error mapping
    status.py     status and scale (node group, Deployment, HPA)
    snapshots.py  RDS snapshots with the stack's tags and the content digest
    restore.py    the restore hooks (a new instance; in place by swapping names)
    failover.py   the failover hooks (promote the cross-region replica)
    dns.py        Route 53 failover records

Each operation polls until AWS reports the outcome, within its ``timeout``. Importing the
package imports no AWS SDK.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from cli.targets.cloud.aws.api import TIMEOUT_HINT, AwsApi, default_session
from cli.targets.cloud.aws.failover import PLANNED_MAX_LAG_SECONDS, AwsFailover
from cli.targets.cloud.aws.restore import AwsRestore
from cli.targets.cloud.aws.snapshots import AwsSnapshots
from cli.targets.cloud.aws.status import AwsStatus, http_readyz
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import CloudOutputs
from cli.targets.cloud.parts import AssembledOps, require_cloud


class AwsOps(AssembledOps):
    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        session_factory: Callable[[], Any] = default_session,
        poll_interval: float = 5.0,
        readyz: Callable[[str], bool] = http_readyz,
        planned_max_lag_seconds: float = PLANNED_MAX_LAG_SECONDS,
        catchup_timeout: float = 300.0,
    ) -> None:
        require_cloud(outputs, "aws")
        api = AwsApi(session_factory, poll_interval)
        scope = Scope(outputs, kube, poll_interval, TIMEOUT_HINT)
        # A wss:// stack (issue 13) answers /readyz on 443 with a certificate for its name.
        tls_name = outputs.tls_name
        if readyz is http_readyz and tls_name is not None:
            readyz = functools.partial(http_readyz, tls_name=tls_name)
        snapshots = AwsSnapshots(api, scope)
        super().__init__(
            scope,
            status=AwsStatus(api, scope, readyz),
            snapshots=snapshots,
            restore=AwsRestore(api, scope, snapshots),
            failover=AwsFailover(
                api, scope, max_lag=planned_max_lag_seconds, catchup_timeout=catchup_timeout
            ),
        )
