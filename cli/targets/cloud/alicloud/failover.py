"""The Alibaba Cloud hooks of the failover sequence (cloud/failover.py).

What the stack builds decides what failover can do: the standby region holds an independent HA
instance that a one-way DTS synchronization keeps in step (ApsaraDB has no cross-region replica
for PostgreSQL). That instance is already writable, so "promotion" is stopping DTS from writing
into it (SuspendDtsJob) after the old primary's workload is fenced. A planned switchover waits
until DTS reports no delay and a checkpoint later than the fence; a forced one reports the last
delay as the data-loss bound. Nothing syncs back: the old primary does not rejoin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cli.deadline import poll
from cli.errors import PreconditionFailed
from cli.targets.cloud.alicloud.api import AlicloudApi, job_summary
from cli.targets.cloud.alicloud.dns import Alidns
from cli.targets.cloud.failover import FailoverHooks, Preflight, Switch
from cli.targets.cloud.ops import Scope

# DTS states in which the job may still write into the standby (a failed or paused one won't).
_DTS_RUNNING = ("Synchronizing", "Initializing", "Retrying", "Modifying", "Upgrade", "Downgrade")


class AlicloudFailover(FailoverHooks):
    """The standby region holds an independent HA instance that a one-way DTS synchronization
    keeps in step (ApsaraDB has no cross-region replica for PostgreSQL). It is writable all
    along, so the switch is stopping DTS from writing into it; nothing syncs back."""

    switch_verb = "switched"

    def __init__(self, api: AlicloudApi, scope: Scope, dns: Alidns) -> None:
        self.api = api
        self.scope = scope
        self.outputs = scope.outputs
        self.dns = dns

    def preflight(self, run: Switch) -> Preflight:
        old, new = run.old, run.new
        target = self.api.attribute(new.name, new.db_instance_id)
        if target.get("DBInstanceStatus") != "Running":
            raise PreconditionFailed(
                f"{new.db_instance_id} in {new.name} is {target.get('DBInstanceStatus')}"
            )
        # The catch-up wait refreshes the job; the switch acts on the latest.
        job = run.state = self.api.dts_job(new)
        if not run.force:
            if job is None or job.get("Status") != "Synchronizing":
                state = "no DTS job" if job is None else f"DTS job {job.get('Status')}"
                raise PreconditionFailed(
                    f"{new.db_instance_id} is not being synchronized ({state}): a planned"
                    " switchover needs a running synchronization",
                    f"if the primary is lost: imctl failover --to-region {new.name} --force",
                )
            primary = self.api.attribute(old.name, old.db_instance_id)
            if primary.get("DBInstanceStatus") != "Running":
                raise PreconditionFailed(
                    f"primary {old.db_instance_id} is {primary.get('DBInstanceStatus')}",
                    f"if it is lost: imctl failover --to-region {new.name} --force",
                )
        run.details["dts_job"] = None if job is None else job_summary(job)
        return Preflight(
            catch_up=f"the DTS job into {new.db_instance_id} reports no delay and a checkpoint"
            " later than the fence",
            promote=(
                f"suspend DTS job {job.get('DtsJobId')}, so nothing more from"
                f" {old.db_instance_id} lands in {new.db_instance_id} (writable all along)"
                if job is not None and job.get("Status") in _DTS_RUNNING
                else f"nothing to suspend: no DTS job writes into {new.db_instance_id}"
            ),
            dns=f"point {self.outputs.dns_name} (Alidns zone {self.outputs.hosted_zone_id},"
            f" default line) at {new.endpoint}",
        )

    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        standby = run.new

        def fetch() -> dict[str, Any]:
            return self.api.dts_job(standby) or {"Status": "missing"}

        def done(j: Mapping[str, Any]) -> bool:
            return (
                j.get("Status") == "Synchronizing"
                and str(j.get("Delay")) == "0"
                and _int(j.get("Checkpoint")) > fenced_at
            )

        job = run.state = poll(
            fetch,
            done=done,
            state=lambda j: (
                f"{j.get('Status')}, delay {j.get('Delay')}s,"
                f" checkpoint {'after' if _int(j.get('Checkpoint')) > fenced_at else 'before'}"
                " the fence"
            ),
            what=f"DTS into {standby.db_instance_id}",
            deadline=run.deadline,
            progress=run.progress,
            interval=self.scope.interval,
        )
        return {
            "acked_messages": 0,
            "replica_lag_seconds": 0,
            "basis": f"DTS delay and checkpoint ({job.get('Checkpoint')})",
            "why": f"{run.old.name}'s im-server was fenced, then DTS reported no delay and a"
            f" checkpoint ({job.get('Checkpoint')}) after the fence",
        }

    def forced_bound(self, run: Switch) -> dict[str, Any]:
        job = run.state
        delay = None if job is None else job.get("Delay")
        why = (
            "no DTS job found: the standby's staleness is unknown"
            if job is None
            else f"one-way DTS synchronization, last reported delay {delay}s"
            f" (status {job.get('Status')}); writes inside it may be lost"
        )
        return {
            "acked_messages": None,
            "replica_lag_seconds": None if delay is None else float(delay),
            "why": why,
        }

    def promote(self, run: Switch) -> None:
        # A job that refuses to stop is still syncing: that is a refusal, nothing switched.
        job = run.state
        if job is not None and job.get("Status") in _DTS_RUNNING:
            self._stop_dts(run, job)

    def _stop_dts(self, run: Switch, job: Mapping[str, Any]) -> None:
        """Pause the synchronization, so nothing from the old primary lands in the new one."""
        standby = run.new
        run.progress(f"suspending DTS job {job.get('DtsJobId')} into {standby.db_instance_id}")
        self.api.dts(
            standby.name,
            "SuspendDtsJob",
            {
                "DtsJobId": job.get("DtsJobId"),
                "DtsInstanceId": job.get("DtsInstanceID"),
                "RegionId": standby.name,
            },
            f"suspending DTS job {job.get('DtsJobId')}",
            mutation=True,
        )
        poll(
            lambda: self.api.dts_job(standby) or {"Status": "missing"},
            done=lambda j: j.get("Status") in ("Suspending", "missing"),
            state=lambda j: str(j.get("Status")),
            what=f"DTS job {job.get('DtsJobId')}",
            deadline=run.deadline,
            progress=run.progress,
            interval=self.scope.interval,
        )

    def await_promoted(self, run: Switch) -> None:
        """A suspended job writes nothing more, and the instance took writes all along."""

    def point_dns(self, run: Switch) -> dict[str, Any]:
        return self.dns.point(run)

    def dns_hint(self, run: Switch) -> str:
        return (
            f"point {self.outputs.dns_name} at {run.new.endpoint} in Alidns zone"
            f" {self.outputs.hosted_zone_id} by hand (default line)"
        )

    def standby_rebuild(self, run: Switch) -> str:
        old, new = run.old, run.new
        return (
            f"{old.db_instance_id} no longer feeds {new.db_instance_id}; imctl deploy sets up"
            f" DTS from {new.db_instance_id} to a fresh instance in {old.name}"
        )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
