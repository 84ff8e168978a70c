"""What every cloud implements for day-2 operations (``CloudOps``), and what every part of a
cloud's implementation shares (``Scope``). Results are JSON-able dicts, so the commands render
them like the local target's.

Every operation: waits for the cloud to finish (polling, with ``progress`` messages), honours
``timeout`` (raise cli.errors.OperationTimeout -> exit 9), and never reports success for an
unknown outcome. Credentials problems raise ``CredentialsError`` (exit 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from cli.progress import Note

# Scope lives in its own module so that restore.py can use it without importing this one
# (which names restore.py's TimeRestores): re-exported here for the clouds' modules.
from cli.targets.cloud.scope import Scope as Scope

if TYPE_CHECKING:
    from cli.targets.cloud.restore import TimeRestores


class StatusOps(Protocol):
    def status(self) -> dict[str, Any]:
        """Outputs plus live checks: endpoint /readyz, DB instance state, replica lag."""
        ...

    def scale(
        self,
        *,
        region: str | None,
        nodes: int | None,
        replicas: int | None,
        min_replicas: int | None,
        max_replicas: int | None,
        progress: Note,
        timeout: float,
    ) -> dict[str, Any]: ...


class SnapshotOps(Protocol):
    def snapshot_create(self, note: str | None, progress: Note, timeout: float) -> dict[str, Any]:
        """-> {"id","created_at","size_bytes"?,"status","location","digest","warnings"}; the
        digest (None when the application could not give one) is read just before the
        snapshot is requested."""
        ...

    def snapshot_list(self) -> dict[str, Any]: ...  # {"snapshots": [...]}

    def snapshot_show(self, snapshot_id: str) -> dict[str, Any]: ...

    def snapshot_delete(
        self, snapshot_id: str, progress: Note, timeout: float
    ) -> dict[str, Any]: ...


class CloudOps(StatusOps, SnapshotOps, Protocol):
    """The whole of a cloud's day-2 operations. A cloud assembles it from parts (parts.py):
    one for status and scale and one for snapshots (``StatusOps``, ``SnapshotOps``), and the
    hooks of the restore and failover sequences (restore.py, failover.py)."""

    def restore(
        self,
        snapshot_id: str,
        target: Literal["new", "in-place"],
        progress: Note,
        timeout: float,
        on_switch: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """``on_switch(instance)`` runs just before the workload's Secret is pointed at the
        restored instance (the caller records it; an exception stops the restore there, the
        instance left for inspection). A restore onto the address the Secret already names
        (GCP in place) does not call it.

        Restore into a NEW instance (default), wait, repoint the workload's DB secret, roll
        the Deployment, then check the restored content against the digest recorded with the
        snapshot (content.check_restore_content: exit 10 and pointed back on a mismatch,
        exit 12 when it cannot be checked). in-place only after the caller's typed
        confirmation. The steps and the result's keys (the same on every cloud): restore.py."""
        ...

    def time_restores(self) -> TimeRestores:
        """Restores to a point in time: the recoverable window (reads only), the refusals a
        restore to a time makes before it changes anything (a target the cloud cannot do, a
        time outside the window or in the future: exit 10), and the restore itself: the
        cloud's point-in-time restore into a new instance, then the same switch, roll and
        content check as ``restore`` (density only: nothing was recorded at that time). The
        steps and the result's keys: restore.py."""
        ...

    def failover_plan(self, to_region: str, force: bool) -> dict[str, Any]:
        """The failover's pre-flight alone (reads only, nothing changes; the same refusals as
        ``failover``) -> {"mode","from_region","to_region","dry_run": true,"steps",
        "data_loss_bound","details"}."""
        ...

    def failover(
        self, to_region: str, force: bool, progress: Note, timeout: float
    ) -> dict[str, Any]:
        """-> the same keys on every cloud (failover.py): mode, from_region, to_region,
        dry_run, rto_seconds, promote_seconds, data_loss_bound, fenced, rejoined, endpoint,
        next_steps, warnings, and details for what only this cloud has."""
        ...
