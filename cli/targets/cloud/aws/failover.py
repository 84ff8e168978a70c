"""The AWS hooks of the failover sequence (cloud/failover.py): an RDS cross-region read
replica is promoted and the Route 53 failover records are swapped. A forced failover that
stopped after the promotion resumes from there; a DNS step that failed is finished by running
it again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cli.errors import CredentialsError, ImctlError, OperationTimeout, PreconditionFailed
from cli.targets.cloud.aws.api import LAG_WINDOW, AwsApi, aws_call
from cli.targets.cloud.aws.dns import apply_changes, failover_changes, failover_records
from cli.targets.cloud.failover import FailoverHooks, Preflight, Switch
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outputs import RegionOutputs
from cli.targets.cloud.workload import Fence
from stacks.workload_contract import REPLICA_LAG_ALARM_SECONDS

# A planned switchover starts only with the standby at most this far behind.
PLANNED_MAX_LAG_SECONDS = float(REPLICA_LAG_ALARM_SECONDS)


@dataclass
class _Preflight:
    """What the AWS pre-flight read, for the later steps."""

    # The Route 53 change that makes the new region PRIMARY; None: not readable at the time.
    changes: list[dict[str, Any]] | None
    lag: tuple[float, datetime] | None


# RDS cross-region replicas are asynchronous: acked messages since the last replayed
# transaction may be lost, and nothing here can count them.
_ASYNC = "asynchronous RDS replica: acked messages since its last replayed transaction may be lost"


class AwsFailover(FailoverHooks):
    """An RDS cross-region read replica promoted, and the Route 53 failover records swapped.
    A planned switchover needs a recent ReplicaLag under a limit before it starts, and one of
    0 after the fence before it promotes."""

    # Forced: the region is presumed lost; its pods are scaled to 0 and not waited for.
    forced_fence_waits = False

    def __init__(
        self, api: AwsApi, scope: Scope, *, max_lag: float, catchup_timeout: float
    ) -> None:
        self.api = api
        self.scope = scope
        self.outputs = scope.outputs
        self._max_lag = max_lag
        self._catchup_timeout = catchup_timeout

    def preflight(self, run: Switch) -> Preflight:
        old, new, force = run.old, run.new, run.force
        standby = self.api.describe_db(new.name, new.db_instance_id)
        if standby is None:
            raise PreconditionFailed(
                f"standby DB instance {new.db_instance_id} ({new.name}) not found"
            )
        # A failover that stopped after its promotion: a forced one resumes from there.
        already_promoted = not standby.get("ReadReplicaSourceDBInstanceIdentifier")
        changes: list[dict[str, Any]] | None = None
        try:
            primary_rec, secondary_rec = failover_records(self.api, self.outputs)
            changes = failover_changes(primary_rec, secondary_rec, new.endpoint, old.endpoint)
        except ImctlError as exc:
            # Route 53's control plane lives in us-east-1, which may be the region that is
            # lost: a forced failover promotes anyway and tries DNS again at the end.
            if not force or isinstance(exc, CredentialsError):
                raise
            run.progress(f"Route 53 not readable now ({exc.message}); continuing: --force")
            run.details["route53_error"] = exc.message
        lag = None if already_promoted else self._read_lag(new, strict=not force)
        if not force:
            self._planned_preflight(new, standby, already_promoted, lag)
        run.state = _Preflight(changes, lag)
        run.details["already_promoted"] = already_promoted
        return Preflight(
            catch_up=f"CloudWatch reports a ReplicaLag of 0 for {new.db_instance_id} in a"
            f" datapoint after the fence (for at most {self._catchup_timeout:g}s)",
            promote=(
                f"{new.db_instance_id} is already promoted: wait until it is available"
                if already_promoted
                else f"promote read replica {new.db_instance_id} ({new.name}) and wait until it"
                " is available and no longer a replica"
            ),
            dns=(
                f"Route 53 already answers {self.outputs.dns_name} with {new.endpoint}"
                if changes == []
                else f"swap the Route 53 failover records of {self.outputs.dns_name}: PRIMARY"
                f" -> {new.endpoint}, SECONDARY -> {old.endpoint}"
            ),
            resume=already_promoted,
        )

    def _read_lag(self, new: RegionOutputs, *, strict: bool) -> tuple[float, datetime] | None:
        try:
            return self.api.replica_lag(new.name, new.db_instance_id)
        except ImctlError:
            # Forced: the lag only feeds the reported bound; unknown is an honest answer.
            if strict:
                raise
            return None

    def _planned_preflight(
        self,
        new: RegionOutputs,
        standby: dict[str, Any],
        already_promoted: bool,
        lag: tuple[float, datetime] | None,
    ) -> None:
        if already_promoted:
            raise PreconditionFailed(
                f"{new.db_instance_id} ({new.name}) is not a read replica",
                "an interrupted failover? --force finishes it",
            )
        if standby.get("DBInstanceStatus") != "available":
            raise PreconditionFailed(
                f"standby {new.db_instance_id} is {standby.get('DBInstanceStatus')}, not available"
            )
        broken = [
            s
            for s in standby.get("StatusInfos", [])
            if s.get("StatusType") == "read replication" and not s.get("Normal", True)
        ]
        if broken:
            raise PreconditionFailed(
                f"standby {new.db_instance_id} replication is {broken[0].get('Status')}: "
                f"{broken[0].get('Message', '')}",
                "fix replication, or --force (reports the data-loss bound)",
            )
        if lag is None:
            raise PreconditionFailed(
                f"the replica lag of {new.db_instance_id} is unknown: CloudWatch has no "
                f"ReplicaLag datapoint from the last {int(LAG_WINDOW.total_seconds() // 60)} "
                "minutes",
                "a planned switchover must see the standby catch up; wait for the metric, or "
                "--force to fail over with an unknown data-loss bound",
            )
        max_lag = self._max_lag
        if lag[0] > max_lag:
            raise PreconditionFailed(
                f"standby {new.db_instance_id} is {lag[0]:g}s behind (limit {max_lag:g}s)",
                "wait and retry, or --force to fail over losing up to that much",
            )

    def planned_bound(self, run: Switch, pre: Preflight) -> dict[str, Any]:
        lag = self._state(run).lag
        return {
            "acked_messages": None,
            "replica_lag_seconds": lag[0] if lag else None,
            "basis": "CloudWatch ReplicaLag now; the switchover waits for 0 after the fence",
            "why": _ASYNC,
        }

    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        new = run.new
        # Whole seconds: CloudWatch stamps are coarser, a later point must not look earlier.
        since = datetime.fromtimestamp(int(fenced_at), UTC)

        def probe() -> tuple[bool, str]:
            lag = self.api.replica_lag(new.name, new.db_instance_id, since=since)
            if lag is None:
                return False, "no ReplicaLag datapoint since writes stopped"
            return lag[0] == 0, f"ReplicaLag {lag[0]:g}s"

        try:
            self.api.wait(
                f"{new.db_instance_id} to replay everything",
                probe,
                run.deadline,
                run.progress,
                limit=self._catchup_timeout,
            )
        except OperationTimeout as exc:
            raise OperationTimeout(
                f"{new.db_instance_id} did not catch up: no ReplicaLag of 0 since writes "
                f"stopped ({exc.message}); nothing was promoted",
                "retry later, or --force to fail over with the last measured lag as the bound",
            ) from exc
        return {
            "acked_messages": None,
            "replica_lag_seconds": 0.0,
            "basis": "CloudWatch ReplicaLag after writes stopped",
            "why": _ASYNC,
        }

    def forced_bound(self, run: Switch) -> dict[str, Any]:
        lag = self._state(run).lag
        return {
            "acked_messages": None,
            "replica_lag_seconds": lag[0] if lag else None,
            "basis": "last CloudWatch ReplicaLag before the failover (async replica)",
            "why": _ASYNC
            + (f"; the last ReplicaLag was {lag[0]:g}s" if lag else "; its lag is unknown"),
        }

    def promote(self, run: Switch) -> None:
        new = run.new
        run.progress(f"promoting {new.db_instance_id} ({new.name})")
        rds = self.api.client("rds", new.name)
        aws_call(
            f"promoting {new.db_instance_id}",
            rds.promote_read_replica,
            DBInstanceIdentifier=new.db_instance_id,
        )

    def refused(self, exc: ImctlError) -> bool:
        # The promotion is one request (its wait is await_promoted): an error from it means AWS
        # did not promote, so the replica is still one.
        return True

    def await_promoted(self, run: Switch) -> None:
        new = run.new
        self.api.wait_db(new.name, new.db_instance_id, run.deadline, run.progress, promoted=True)

    def replicas(self, run: Switch, fence: Fence) -> int:
        new = run.new
        current, _ = self.scope.kube(new.name).get_replicas(new.namespace, new.deployment)
        wanted = int(self.outputs.extra.get("replicas", 0) or 0)
        return max(fence.previous_replicas or 0, current, wanted, 1)

    def point_dns(self, run: Switch) -> dict[str, Any]:
        old, new = run.old, run.new
        changes = self._state(run).changes
        if changes is None:
            primary_rec, secondary_rec = failover_records(self.api, self.outputs)
            changes = failover_changes(primary_rec, secondary_rec, new.endpoint, old.endpoint)
        return {
            "record": self.outputs.dns_name,
            "primary": new.endpoint,
            "secondary": old.endpoint,
            "change_id": apply_changes(self.api, self.outputs, changes, run.deadline, run.progress),
        }

    def dns_hint(self, run: Switch) -> str:
        return (
            "while the old primary fails its health check, Route 53 already answers with the "
            f"SECONDARY ({run.new.endpoint}); to make it permanent run the same failover again"
            " with --force (it resumes), or swap the records by hand"
        )

    def standby_rebuild(self, run: Switch) -> str:
        return f"imctl deploy creates a new replica of {run.new.db_instance_id} in {run.old.name}"

    @staticmethod
    def _state(run: Switch) -> _Preflight:
        assert isinstance(run.state, _Preflight)
        return run.state
