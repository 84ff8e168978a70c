"""A cloud's ``CloudOps``, put together from its parts: one for status and scale, one for
snapshots, and the hooks of the restore and failover sequences. Each part is a small class over
the cloud's one API object (aws/api.py, gcp/api.py, alicloud/api.py); the sequences are the same
for every cloud."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from cli.errors import UsageError
from cli.progress import Note
from cli.targets.cloud.failover import FailoverHooks, plan_failover, run_failover
from cli.targets.cloud.ops import Scope, SnapshotOps, StatusOps
from cli.targets.cloud.outputs import CloudOutputs
from cli.targets.cloud.restore import RestoreHooks, TimeRestores, run_restore


def require_cloud(outputs: CloudOutputs, cloud: str) -> None:
    if outputs.cloud != cloud:
        # Exit 2 as in load_outputs: the caller named the wrong file or cloud; nothing about
        # the stack itself is in the way.
        raise UsageError(f"these outputs describe a {outputs.cloud} stack, not {cloud}")


class AssembledOps:
    """``CloudOps`` from a cloud's parts."""

    def __init__(
        self,
        scope: Scope,
        *,
        status: StatusOps,
        snapshots: SnapshotOps,
        restore: RestoreHooks,
        failover: FailoverHooks,
    ) -> None:
        self.scope = scope
        self.outputs = scope.outputs
        # The verbs that are one part's alone are that part's methods.
        self.status = status.status
        self.scale = status.scale
        self.snapshot_create = snapshots.snapshot_create
        self.snapshot_list = snapshots.snapshot_list
        self.snapshot_show = snapshots.snapshot_show
        self.snapshot_delete = snapshots.snapshot_delete
        self._restore = restore
        self._failover = failover

    def restore(
        self,
        snapshot_id: str,
        target: Literal["new", "in-place"],
        progress: Note,
        timeout: float,
        on_switch: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        return run_restore(
            self._restore, self.scope, snapshot_id, target, progress, timeout, on_switch
        )

    def time_restores(self) -> TimeRestores:
        return TimeRestores(self._restore, self.scope)

    def failover_plan(self, to_region: str, force: bool) -> dict[str, Any]:
        return plan_failover(self._failover, self.scope, to_region, force)

    def failover(
        self, to_region: str, force: bool, progress: Note, timeout: float
    ) -> dict[str, Any]:
        return run_failover(self._failover, self.scope, to_region, force, progress, timeout)
