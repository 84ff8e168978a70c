"""One failover for every cloud; the cloud supplies the steps that differ (``FailoverHooks``).

    pre-flight      read only: the standby can take over (and, planned, the primary can hand
                    over); ``failover_plan`` stops here and says what would happen
    fence           scale the old primary's Deployment to 0 so no im-server writes there; a
                    planned switchover that cannot fence stops with nothing changed
    catch up        planned: wait until the standby holds every write made before the fence
                    -> the data-loss bound; if it does not, the old primary gets its pods back
    bound           forced: what can still be read of the standby's lag
    promote         make the standby's database the primary (skipped when a re-run finds it
                    done); a refusal hands a planned switchover's old primary its pods back
    bring up        scale the new primary's Deployment and wait until it is ready
    DNS             point the stack's name at the new region; a failure is FailoverIncomplete
                    (exit 12) with the result so far: the new primary serves already

The result has the same keys on every cloud (and locally):

    mode, from_region, to_region, dry_run (false), rto_seconds, promote_seconds,
    data_loss_bound {acked_messages, why, and replica_lag_seconds / basis where known},
    fenced, rejoined (false: on the clouds the old primary never follows the new one),
    endpoint (the stack's DNS name, now served by to_region), next_steps, warnings,
    details {promoted_instance, old_instance, new_primary_target, fence, replicas, dns, and
             the cloud's own facts}

``failover_plan`` runs the same pre-flight and returns mode, from_region, to_region, dry_run
(true), steps, data_loss_bound and details.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from cli.deadline import Deadline
from cli.errors import FailoverIncomplete, ImctlError, ResourceFailure, UsageError
from cli.progress import Note
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outcomes import join_hint, partial, since
from cli.targets.cloud.outputs import RegionOutputs
from cli.targets.cloud.workload import Fence, bring_up, fence_workload, unfence_workload

# Pods the new primary gets when the old one had none to give (fenced at zero, or unreachable).
DEFAULT_FAILOVER_REPLICAS = 2


@dataclass
class Switch:
    """One failover (or its plan) under way, as the cloud's hooks see it."""

    old: RegionOutputs
    new: RegionOutputs
    force: bool
    deadline: Deadline
    progress: Note
    # What the cloud's hooks carry from one step to the next (a record change worked out in
    # the pre-flight, a replication job the catch-up wait refreshed).
    state: Any = None
    # The cloud's facts for the result's ``details``; any hook may add to them.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preflight:
    """What the pre-flight found, in the words of the plan's steps."""

    # What a planned switchover waits for: the standby has everything written before the fence.
    catch_up: str
    promote: str
    dns: str
    # The standby is already the primary (a failover that stopped after its promotion).
    resume: bool = False


class FailoverHooks(ABC):
    """The steps of ``run_failover`` that differ by cloud. The defaults are what a cloud whose
    promotion is one request with a wait (GCP, Alibaba Cloud) needs."""

    # Completes "nothing was ...; <old> is still primary".
    switch_verb = "promoted"
    # Whether a forced failover waits for the old region's pods to stop (when it answers).
    forced_fence_waits = True

    @abstractmethod
    def preflight(self, run: Switch) -> Preflight:
        """Read-only checks before anything changes; an error here is the failover's refusal."""

    def planned_bound(self, run: Switch, pre: Preflight) -> dict[str, Any]:
        """The data-loss bound a planned switchover will have, as far as it is known now."""
        return {
            "acked_messages": 0,
            "why": f"{run.old.name}'s im-server is fenced first, and nothing is"
            f" {self.switch_verb} until {pre.catch_up}",
        }

    @abstractmethod
    def caught_up(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        """Wait until the standby holds every write made before the fence (wall-clock
        ``fenced_at``); -> the data-loss bound. An ImctlError abandons the switchover."""

    @abstractmethod
    def forced_bound(self, run: Switch) -> dict[str, Any]:
        """The data-loss bound of a forced failover, from what can be read now."""

    @abstractmethod
    def promote(self, run: Switch) -> None:
        """Make the standby's database the primary."""

    def refused(self, exc: ImctlError) -> bool:
        """Whether an error from ``promote`` means nothing changed: a failure the cloud
        reported, not a call whose outcome is unknown or a wait that gave up."""
        return isinstance(exc, ResourceFailure) and exc.code != "outcome_unknown"

    @abstractmethod
    def await_promoted(self, run: Switch) -> None:
        """Confirm the promotion (it reported success, or a re-run found it done); a failure
        here is not a refusal, so the fence stays."""

    def replicas(self, run: Switch, fence: Fence) -> int:
        """How many pods the new primary runs."""
        return fence.previous_replicas or DEFAULT_FAILOVER_REPLICAS

    @abstractmethod
    def point_dns(self, run: Switch) -> dict[str, Any]:
        """Send the stack's name to the new region; -> what changed."""

    @abstractmethod
    def dns_hint(self, run: Switch) -> str:
        """How to finish when ``point_dns`` failed."""

    @abstractmethod
    def standby_rebuild(self, run: Switch) -> str:
        """How the new primary gets a standby again."""


def failover_regions(
    regions: dict[str, RegionOutputs], primary: str, to_region: str
) -> tuple[RegionOutputs, RegionOutputs]:
    if to_region == primary:
        raise UsageError(
            f"{to_region!r} is already the primary region",
            f"regions: {', '.join(regions)}",
        )
    if to_region not in regions:
        raise UsageError(
            f"region {to_region!r} is not in this stack's outputs",
            f"regions: {', '.join(regions)}",
        )
    return regions[primary], regions[to_region]


def _begin(
    hooks: FailoverHooks,
    scope: Scope,
    to_region: str,
    force: bool,
    deadline: Deadline,
    progress: Note,
) -> tuple[Switch, Preflight]:
    old, new = failover_regions(
        dict(scope.outputs.regions), scope.outputs.primary_region, to_region
    )
    run = Switch(old, new, force, deadline, progress)
    run.details.update(
        promoted_instance=new.db_instance_id,
        old_instance=old.db_instance_id,
        new_primary_target=new.endpoint,
    )
    return run, hooks.preflight(run)


def plan_failover(
    hooks: FailoverHooks, scope: Scope, to_region: str, force: bool
) -> dict[str, Any]:
    """The pre-flight alone: reads, changes nothing."""
    deadline = Deadline(None, operation="failover plan", hint=scope.timeout_hint)
    run, pre = _begin(hooks, scope, to_region, force, deadline, lambda _: None)
    return {
        "mode": "forced" if force else "planned",
        "from_region": run.old.name,
        "to_region": run.new.name,
        "dry_run": True,
        "steps": _steps(hooks, run, pre),
        "data_loss_bound": hooks.forced_bound(run) if force else hooks.planned_bound(run, pre),
        "details": run.details,
    }


def _steps(hooks: FailoverHooks, run: Switch, pre: Preflight) -> list[str]:
    old, new = run.old, run.new
    fence = f"fence {old.name}: scale {old.deployment} to 0"
    if not run.force:
        fence += " and wait until none of its pods is ready (if it cannot, nothing changes)"
    elif hooks.forced_fence_waits:
        fence += " and wait until none of its pods is ready; a region that does not answer is"
        fence += " recorded as not fenced"
    else:
        fence += "; a region that does not answer is recorded as not fenced"
    steps = [fence]
    if not run.force:
        steps.append(
            f"wait until {pre.catch_up}; if that does not happen, {old.deployment} in"
            f" {old.name} gets its pods back and nothing is {hooks.switch_verb}"
        )
    return [
        *steps,
        pre.promote,
        f"scale {new.deployment} in {new.name} to the pods {old.name} ran and wait until it"
        " is ready",
        pre.dns,
    ]


def run_failover(
    hooks: FailoverHooks,
    scope: Scope,
    to_region: str,
    force: bool,
    progress: Note,
    timeout: float,
) -> dict[str, Any]:
    deadline = Deadline(timeout, operation="failover", hint=scope.timeout_hint)
    run, pre = _begin(hooks, scope, to_region, force, deadline, progress)
    old, new = run.old, run.new
    doc: dict[str, Any] = {
        "mode": "forced" if force else "planned",
        "from_region": old.name,
        "to_region": new.name,
        "dry_run": False,
        "rto_seconds": None,
        "promote_seconds": None,
        "data_loss_bound": None,
        "fenced": False,
        "rejoined": False,
        "endpoint": scope.outputs.dns_name,
        "next_steps": [],
        "warnings": [],
        "details": run.details,
    }
    t0 = time.monotonic()
    fence = fence_workload(
        scope.kube,
        old,
        best_effort=force,
        wait=hooks.forced_fence_waits or not force,
        deadline=deadline,
        progress=progress,
        interval=scope.interval,
    )
    doc["fenced"] = fence.fenced
    run.details["fence"] = fence.to_json()
    doc["data_loss_bound"] = _bound(hooks, scope, run, fence, fenced_at=time.time())
    if pre.resume:
        progress(f"{new.db_instance_id} is already promoted")
    else:
        try:
            hooks.promote(run)
        except ImctlError as exc:
            # A refused promotion changed nothing: a planned switchover hands the old primary
            # its workload back. Anything else leaves the fence in place.
            if not force and hooks.refused(exc):
                _abandon(exc, hooks, scope, run, fence)
            raise
    hooks.await_promoted(run)
    doc["promote_seconds"] = since(t0)
    run.details["replicas"] = _bring_up(hooks, scope, run, fence)
    doc["warnings"].append(
        f"{old.db_instance_id} ({old.name}) no longer feeds {new.db_instance_id} and still"
        " accepts writes at the database level: keep its workload at 0"
    )
    doc["next_steps"] = [
        f"{hooks.standby_rebuild(run)} and drops {old.db_instance_id} from the stack without"
        " deleting it (keep it for forensics, then delete it by hand)"
    ]
    try:
        run.details["dns"] = hooks.point_dns(run)
    except Exception as exc:
        # The new primary serves already: what is left is the name, and the result says so.
        why = exc.message if isinstance(exc, ImctlError) else f"{type(exc).__name__}: {exc}"
        doc["rto_seconds"] = since(t0)
        run.details["dns"] = {"name": doc["endpoint"], "wanted": new.endpoint, "error": why}
        raise FailoverIncomplete(
            f"{new.name} is promoted and serving, but {doc['endpoint']} was not pointed at it:"
            f" {why}",
            hooks.dns_hint(run),
            doc,
        ) from exc
    doc["rto_seconds"] = since(t0)
    return doc


def _bound(
    hooks: FailoverHooks, scope: Scope, run: Switch, fence: Fence, *, fenced_at: float
) -> dict[str, Any]:
    if not run.force:
        try:
            return hooks.caught_up(run, fenced_at)
        except ImctlError as exc:
            _abandon(exc, hooks, scope, run, fence)
            raise
    bound = hooks.forced_bound(run)
    if not fence.fenced:
        bound["why"] += "; the old region could not be fenced, so its pods may still write there"
    return bound


def _bring_up(hooks: FailoverHooks, scope: Scope, run: Switch, fence: Fence) -> int:
    """The new primary's pods; a failure here comes after the promotion, so it is a partial
    success that says how to finish."""
    new = run.new
    replicas = fence.previous_replicas or DEFAULT_FAILOVER_REPLICAS
    try:
        replicas = hooks.replicas(run, fence)
        bring_up(scope.kube, new, replicas, deadline=run.deadline, progress=run.progress)
    except Exception as exc:
        raise partial(
            f"{new.db_instance_id} in {new.name} is the primary now",
            exc,
            f"finish by hand: imctl scale --region {new.name} --replicas {replicas}, then"
            f" point {scope.outputs.dns_name} at {new.endpoint}",
        ) from None
    return replicas


def _abandon(
    exc: ImctlError, hooks: FailoverHooks, scope: Scope, run: Switch, fence: Fence
) -> None:
    """A planned switchover stops before anything was promoted: the old primary gets its pods
    back, and the error says so."""
    old = run.old
    if fence.previous_replicas:
        undone = unfence_workload(scope.kube, old, fence.previous_replicas, run.progress)
        exc.message = f"{exc.message}; {old.deployment} in {old.name} {undone}"
        exc.args = (exc.message,)
    exc.hint = join_hint(exc.hint, f"nothing was {hooks.switch_verb}; {old.name} is still primary")
