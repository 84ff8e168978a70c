"""The workload (the im-server Deployment, its HPA and Secret) through ``KubeApi``: fencing a
region's writers for a failover and undoing it, bringing a region up, pointing the Secret at
another database and rolling, scaling, and what status reports of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cli.deadline import Deadline, poll
from cli.errors import ImctlError, PreconditionFailed, UsageError
from cli.progress import Note
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.outcomes import partial
from cli.targets.cloud.outputs import RegionOutputs
from stacks.workload_contract import SECRET_ADMIN_TOKEN_KEY, SECRET_DB_URL_KEY, SECRET_NAME


@dataclass
class Fence:
    """What fencing the old primary's Deployment achieved."""

    fenced: bool
    previous_replicas: int | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fenced": self.fenced,
            "previous_replicas": self.previous_replicas,
            "error": self.error,
        }


def fence_workload(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    *,
    best_effort: bool,
    wait: bool = True,
    deadline: Deadline,
    progress: Note,
    interval: float,
) -> Fence:
    """Scale the old primary's Deployment to zero and (``wait``) wait until no pod of it is
    ready, so no im-server writes to the old database any more (an HPA leaves a Deployment at
    zero alone).

    ``best_effort`` (forced failover): the region may be gone; a failure is recorded, not
    raised. Fencing is of our workload only: the old database itself stays writable."""
    desired: int | None = None
    scaled = False
    try:
        api = kube(region.name)
        desired, _ready = api.get_replicas(region.namespace, region.deployment)
        progress(f"fencing {region.name}: scaling {region.deployment} from {desired} to 0")
        scaled = True
        api.scale_deployment(region.namespace, region.deployment, 0)
        if not wait:
            return Fence(True, desired)
        poll(
            lambda: api.get_replicas(region.namespace, region.deployment),
            done=lambda r: r[0] == 0 and r[1] == 0,
            state=lambda r: f"{r[1]} pod(s) ready",
            what=f"{region.name} {region.deployment}",
            deadline=deadline,
            progress=progress,
            interval=interval,
        )
        return Fence(True, desired)
    except Exception as exc:
        # Forced failover exists for a region that no longer answers; for a planned one it is
        # a reason to stop, with the old primary serving as before.
        if best_effort:
            progress(f"could not fence {region.name}: {exc}")
            return Fence(False, desired, str(exc))
        undone = ""
        if scaled and desired:
            undone = f"; {region.deployment} {unfence_workload(kube, region, desired, progress)}"
        why = exc.message if isinstance(exc, ImctlError) else str(exc)
        raise PreconditionFailed(
            f"could not fence {region.name} for a planned switchover: {why}",
            f"nothing was promoted{undone}; if the region is lost, use --force",
        ) from None


def unfence_workload(
    kube: Callable[[str], KubeApi], region: RegionOutputs, replicas: int, progress: Note
) -> str:
    """Undo a fence after a planned switchover was abandoned before anything was promoted;
    -> what became of the Deployment, for the error that stopped the switchover. A failure is
    reported, not raised: that error is the one to show."""
    progress(f"{region.name}: restoring {region.deployment} to {replicas} replica(s)")
    try:
        kube(region.name).scale_deployment(region.namespace, region.deployment, replicas)
    except Exception as exc:
        progress(f"could not scale {region.deployment} in {region.name} back to {replicas}: {exc}")
        return f"could NOT be scaled back to {replicas} replicas ({exc}): `imctl scale`"
    return f"was scaled back to {replicas} replicas"


def bring_up(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    replicas: int,
    *,
    deadline: Deadline,
    progress: Note,
) -> None:
    api = kube(region.name)
    progress(f"{region.name}: scaling {region.deployment} to {replicas} replica(s)")
    api.scale_deployment(region.namespace, region.deployment, replicas)
    api.wait_ready(region.namespace, region.deployment, deadline.remaining())


def repoint_and_roll(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    url: str | None,
    *,
    deadline: Deadline,
    progress: Note,
) -> None:
    """Write the new IM_DATABASE_URL (if any) into the workload Secret, then a rolling restart
    so every pod reads it, and wait for the rollout."""
    api = kube(region.name)
    if url is not None:
        progress(f"{region.name}: pointing secret {SECRET_NAME} at the restored database")
        api.patch_secret(region.namespace, SECRET_NAME, {SECRET_DB_URL_KEY: url})
    try:
        progress(f"{region.name}: rolling {region.deployment}")
        api.restart_deployment(region.namespace, region.deployment)
        deadline.check(f"before waiting for {region.deployment} to roll")
        api.wait_ready(region.namespace, region.deployment, deadline.remaining())
    except Exception as exc:
        if url is None:
            raise
        raise partial(
            f"secret {SECRET_NAME} points at the restored database",
            exc,
            f"pods started before the patch still use the old one: kubectl -n"
            f" {region.namespace} rollout restart deployment/{region.deployment}",
        ) from None


def scale_workload(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    *,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    deadline: Deadline,
    progress: Note,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    api = kube(region.name)
    if min_replicas is not None or max_replicas is not None:
        # The stack names the HPA like its Deployment.
        progress(f"{region.name}: HPA bounds min={min_replicas} max={max_replicas}")
        api.patch_hpa(region.namespace, region.deployment, min_replicas, max_replicas)
        out["hpa"] = {"min_replicas": min_replicas, "max_replicas": max_replicas}
    if replicas is not None:
        progress(f"{region.name}: scaling {region.deployment} to {replicas}")
        api.scale_deployment(region.namespace, region.deployment, replicas)
        if replicas > 0:
            api.wait_ready(region.namespace, region.deployment, deadline.remaining())
        desired, ready = api.get_replicas(region.namespace, region.deployment)
        out["replicas"] = {"desired": desired, "ready": ready}
    return out


def check_scale_args(
    nodes: int | None,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
) -> None:
    for name, value in (
        ("--nodes", nodes),
        ("--replicas", replicas),
        ("--min", min_replicas),
        ("--max", max_replicas),
    ):
        if value is not None and value < 0:
            raise UsageError(f"{name} must be >= 0, not {value}")
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        raise UsageError(f"--min {min_replicas} is above --max {max_replicas}")
    if max_replicas == 0:
        raise UsageError("--max must be at least 1 (an HPA cannot scale to zero)")
    if all(v is None for v in (nodes, replicas, min_replicas, max_replicas)):
        raise UsageError("nothing to scale", "give --nodes, --replicas, --min or --max")


def workload_status(kube: Callable[[str], KubeApi], region: RegionOutputs) -> dict[str, Any]:
    try:
        desired, ready = kube(region.name).get_replicas(region.namespace, region.deployment)
    except Exception as exc:
        # status reports what it can reach; one region's API being down is a finding.
        return {"error": str(exc)}
    return {"desired": desired, "ready": ready}


def workload_secret(api: KubeApi, region: RegionOutputs) -> tuple[str | None, str | None]:
    """(database URL, admin token) from the workload's Secret; None for a missing key."""
    data = api.get_secret(region.namespace, SECRET_NAME)
    return data.get(SECRET_DB_URL_KEY) or None, data.get(SECRET_ADMIN_TOKEN_KEY) or None
