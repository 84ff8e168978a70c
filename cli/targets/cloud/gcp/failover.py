"""The GCP hooks of the failover sequence (cloud/failover.py): the standby region's database
is a Cloud SQL cross-region read replica (asynchronous). A planned switchover promotes it once
Cloud Monitoring's ``replica_lag`` is 0 in a sample taken after the fence; a forced one reports
the last sample as the data-loss bound. Promotion detaches the replica for good: the old primary
does not rejoin (a deploy creates a new replica of the new primary for that)."""

from __future__ import annotations

from typing import Any

from cli.deadline import poll
from cli.errors import ImctlError, PreconditionFailed, ResourceFailure
from cli.targets.cloud.failover import FailoverHooks, Preflight, Switch
from cli.targets.cloud.gcp.api import GcpApi, epoch
from cli.targets.cloud.gcp.dns import CloudDns
from cli.targets.cloud.ops import Scope


class GcpFailover(FailoverHooks):
    """A Cloud SQL cross-region read replica (asynchronous) promoted: it leaves the old
    primary for good, so the old primary does not rejoin."""

    def __init__(self, api: GcpApi, scope: Scope, dns: CloudDns) -> None:
        self.api = api
        self.project = api.project
        self.scope = scope
        self.outputs = scope.outputs
        self.dns = dns

    def preflight(self, run: Switch) -> Preflight:
        old, new = run.old, run.new
        replica = self.api.instance(new.db_instance_id)
        if not replica.get("masterInstanceName"):
            raise PreconditionFailed(
                f"{new.db_instance_id} in {new.name} is not a read replica (already promoted?)",
                "imctl status",
            )
        if replica.get("state") != "RUNNABLE":
            raise PreconditionFailed(f"replica {new.db_instance_id} is {replica.get('state')}")
        if not run.force:
            primary = self.api.instance(old.db_instance_id)
            if primary.get("state") != "RUNNABLE":
                raise PreconditionFailed(
                    f"primary {old.db_instance_id} is {primary.get('state')}: a planned"
                    " switchover needs it",
                    f"if it is lost: imctl failover --to-region {new.name} --force",
                )
        return Preflight(
            catch_up=f"Cloud Monitoring's replica_lag of {new.db_instance_id} is 0 in a sample"
            " taken after the fence",
            promote=f"promote {new.db_instance_id} ({new.name}); it stops replicating from"
            f" {old.db_instance_id} for good",
            dns=f"point {self.outputs.dns_name} at {new.endpoint} (Cloud DNS zone"
            f" {self.outputs.hosted_zone_id})",
        )

    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        instance = run.new.db_instance_id

        def after_fence(at: str | None) -> bool:
            return at is not None and epoch(at) > fenced_at

        def done(sample: tuple[float | None, str | None]) -> bool:
            lag, at = sample
            return lag is not None and after_fence(at) and lag <= 0

        def state(sample: tuple[float | None, str | None]) -> str:
            lag, at = sample
            if lag is None:
                return "no replica_lag sample yet"
            return f"replica_lag {lag:g}s at {at}" + ("" if after_fence(at) else " (pre-fence)")

        lag, at = poll(
            lambda: self.api.replica_lag(instance),
            done=done,
            state=state,
            what=f"waiting for {instance} to catch up",
            deadline=run.deadline,
            progress=run.progress,
            interval=self.scope.interval,
            unknown_hint="Cloud Monitoring samples replica_lag once a minute; allow a few",
        )
        assert lag is not None and at is not None
        return {
            "acked_messages": 0,
            "replica_lag_seconds": lag,
            "basis": f"Cloud Monitoring replica_lag sampled at {at}",
            "why": f"{run.old.name}'s im-server was fenced, then replica_lag was {lag:g}s in a"
            f" sample at {at}, taken after the fence",
        }

    def forced_bound(self, run: Switch) -> dict[str, Any]:
        try:
            lag, at = self.api.replica_lag(run.new.db_instance_id)
        except ImctlError as exc:
            lag, at = None, None
            why = f"replica_lag could not be read ({exc.message})"
        else:
            why = (
                f"asynchronous replica: the last replica_lag sample ({at}) was {lag:g}s;"
                " writes inside that window may be lost"
                if lag is not None
                else "asynchronous replica and no replica_lag sample: the loss is unknown"
            )
        bound: dict[str, Any] = {"acked_messages": None, "replica_lag_seconds": lag, "why": why}
        if at is not None:
            bound["basis"] = f"the newest Cloud Monitoring replica_lag sample, at {at}"
        return bound

    def promote(self, run: Switch) -> None:
        new = run.new
        run.progress(f"promoting {new.db_instance_id} in {new.name}")
        op = self.api.call(
            self.api.sql()
            .instances()
            .promoteReplica(project=self.project, instance=new.db_instance_id),
            f"promoting {new.db_instance_id}",
            mutation=True,
        )
        self.api.wait_sql(op, f"promotion of {new.db_instance_id}", run.deadline, run.progress)

    def await_promoted(self, run: Switch) -> None:
        promoted = self.api.instance(run.new.db_instance_id)
        if promoted.get("masterInstanceName"):
            raise ResourceFailure(
                f"{run.new.db_instance_id} still names {promoted['masterInstanceName']} as its"
                " primary after the promotion finished"
            )

    def point_dns(self, run: Switch) -> dict[str, Any]:
        return self.dns.point(run)

    def dns_hint(self, run: Switch) -> str:
        return (
            f"point {self.outputs.dns_name} at {run.new.endpoint} in Cloud DNS zone"
            f" {self.outputs.hosted_zone_id} by hand (a second failover would find the replica"
            " promoted and refuse)"
        )

    def standby_rebuild(self, run: Switch) -> str:
        return (
            f"{run.old.db_instance_id} is now an independent instance: imctl deploy creates a"
            f" new replica of {run.new.db_instance_id} in {run.old.name}"
        )
