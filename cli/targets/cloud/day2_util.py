"""What GCP and Alibaba Cloud still share here: ``RegionalOps``, the order of status, scale
and failover with the cloud's steps as hooks, and the new database URL of a restore.
(To be split further: issue 14.)"""

from __future__ import annotations

import secrets
import string
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cli.deadline import Deadline
from cli.errors import CredentialsError, ImctlError, ResourceFailure, UsageError
from cli.progress import Note
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Scope
from cli.targets.cloud.outcomes import join_hint, partial, since
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from cli.targets.cloud.probes import readyz
from cli.targets.cloud.workload import (
    bring_up,
    check_scale_args,
    fence_workload,
    scale_workload,
    unfence_workload,
    workload_status,
)
from stacks.workload_contract import DB_NAME, DB_USER

# Pods the new primary gets when the old one had none to give (fenced at zero, or unreachable).
DEFAULT_FAILOVER_REPLICAS = 2


def new_password(length: int = 32) -> str:
    """Letters and digits only (the URL embeds it unquoted, as the stack does), with each class
    present: ApsaraDB wants three of upper, lower, digit, special."""
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in pw)
            and any(c.isupper() for c in pw)
            and any(c.isdigit() for c in pw)
        ):
            return pw


def database_url(host: str, port: int, password: str) -> str:
    """The server's IM_DATABASE_URL, shaped like stacks.contract.database_url."""
    return (
        f"postgresql://{DB_USER}:{quote(password, safe='')}@{host}:{port}/{DB_NAME}?sslmode=require"
    )


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


def utc_stamp() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())


def region_facts(r: RegionOutputs) -> dict[str, Any]:
    """What the outputs say about a region, as every cloud's status starts its entry."""
    return {
        "role": r.role,
        "cluster_name": r.cluster_name,
        "nodegroup_name": r.nodegroup_name,
        "db_instance_id": r.db_instance_id,
        "endpoint": r.endpoint,
    }


# --- the shared order of operations ------------------------------------------------------------


@dataclass
class Switch:
    """One failover under way, as the cloud's hooks see it."""

    old: RegionOutputs
    new: RegionOutputs
    force: bool
    deadline: Deadline
    progress: Note
    # What the pre-flight read of the standby's replication feed, if the cloud has one to read
    # (Alibaba's DTS job); the catch-up wait refreshes it, and the promotion acts on the latest.
    feed: dict[str, Any] | None = None


class RegionalOps(ABC):
    """``CloudOps`` status, scale and failover for a cloud whose standby region holds an
    asynchronous copy of the database and a Deployment the stack can scale (GCP, Alibaba
    Cloud). The order of the steps, and what a failed step undoes, is the same on each; the
    subclass supplies the cloud calls. AWS keeps its own: Route 53 failover records and a
    lag-limited pre-flight make a different sequence."""

    # Completes "nothing was ...; <old> is still primary": what the promotion step does there.
    _switch_verb = "promoted"

    def __init__(
        self,
        outputs: CloudOutputs,
        kube: Callable[[str], KubeApi],
        *,
        cloud: str,
        poll_interval: float,
        readyz_timeout: float,
    ) -> None:
        if outputs.cloud != cloud:
            # Exit 2 as on AWS and in load_outputs: the caller named the wrong file or cloud;
            # nothing about the stack itself is in the way.
            raise UsageError(f"these outputs describe a {outputs.cloud} stack, not {cloud}")
        self.outputs = outputs
        self.kube = kube
        self.scope = Scope(outputs, kube, poll_interval)
        self._cloud = cloud
        self._interval = poll_interval
        self._readyz_timeout = readyz_timeout

    # --- hooks ------------------------------------------------------------------------------

    def _status_scope(self) -> dict[str, Any]:
        """Fields that place the stack in the cloud (a project, say), after ``cloud``."""
        return {}

    @abstractmethod
    def _db_status(self, r: RegionOutputs) -> dict[str, Any]:
        """The region's database state for status; an ImctlError makes it unknown."""

    @abstractmethod
    def _standby_status(self, standby: RegionOutputs) -> dict[str, Any]:
        """How far behind the standby is, as fields of the status document."""

    @abstractmethod
    def _dns_points_to(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _scale_pool(
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Note
    ) -> dict[str, Any]: ...

    @abstractmethod
    def _failover_preflight(self, run: Switch) -> dict[str, Any]:
        """Read-only checks before anything changes; -> facts for the result."""

    @abstractmethod
    def _caught_up_bound(self, run: Switch, fenced_at: float) -> dict[str, Any]:
        """Wait until the standby holds every write made before the fence; -> the data-loss
        bound. An ImctlError abandons the planned switchover."""

    @abstractmethod
    def _forced_bound(self, run: Switch) -> dict[str, Any]:
        """The data-loss bound of a forced failover, from what can still be read."""

    @abstractmethod
    def _promote(self, run: Switch) -> None:
        """Make the standby's database the primary. A ResourceFailure other than an unknown
        outcome means nothing changed."""

    @abstractmethod
    def _check_promoted(self, run: Switch) -> None:
        """Confirm a promotion that reported success; a failure here is not a refusal, so the
        fence stays."""

    @abstractmethod
    def _point_dns(self, run: Switch) -> dict[str, Any]: ...

    @abstractmethod
    def _rejoin_step(self, run: Switch) -> str:
        """The next step that protects the new primary again."""

    # --- CloudOps ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        regions: dict[str, Any] = {}
        for name, r in self.outputs.regions.items():
            info = region_facts(r)
            try:
                info.update(self._db_status(r))
            except CredentialsError:
                raise
            except ImctlError as exc:
                info["db_state"] = f"unknown: {exc.message}"
            info["workload"] = workload_status(self.kube, r)
            info["readyz"] = readyz(r.endpoint, self._readyz_timeout, self.outputs.tls_name)
            regions[name] = info
        doc: dict[str, Any] = {
            "cloud": self._cloud,
            **self._status_scope(),
            "primary_region": self.outputs.primary_region,
            "standby_region": self.outputs.standby_region,
            "dns_name": self.outputs.dns_name,
            "endpoint": self.outputs.endpoint,
            "regions": regions,
        }
        if self.outputs.standby_region:
            doc.update(self._standby_status(self.outputs.regions[self.outputs.standby_region]))
        try:
            doc["dns_points_to"] = self._dns_points_to()
        except ImctlError as exc:
            doc["dns_points_to"] = f"unknown: {exc.message}"
        return doc

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
    ) -> dict[str, Any]:
        check_scale_args(nodes, replicas, min_replicas, max_replicas)
        deadline = Deadline(timeout)
        r = self.outputs.region(region or self.outputs.primary_region)
        out: dict[str, Any] = {"region": r.name}
        if nodes is not None:
            out["nodes"] = self._scale_pool(r, nodes, deadline, progress)
        out.update(
            scale_workload(
                self.kube,
                r,
                replicas=replicas,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                deadline=deadline,
                progress=progress,
            )
        )
        return out

    def failover(
        self, to_region: str, force: bool, progress: Note, timeout: float
    ) -> dict[str, Any]:
        deadline = Deadline(timeout)
        old, new = failover_regions(
            dict(self.outputs.regions), self.outputs.primary_region, to_region
        )
        run = Switch(old, new, force, deadline, progress)
        facts = self._failover_preflight(run)
        doc: dict[str, Any] = {
            "from_region": old.name,
            "to_region": new.name,
            "mode": "forced" if force else "planned",
            "promoted_instance": new.db_instance_id,
            "old_instance": old.db_instance_id,
            **facts,
            "rejoined": False,
        }
        abandoned = f"nothing was {self._switch_verb}; {old.name} is still primary"
        t0 = time.monotonic()
        fence = fence_workload(
            self.kube,
            old,
            best_effort=force,
            deadline=deadline,
            progress=progress,
            interval=self._interval,
        )
        fenced_at = time.time()
        doc["fence"] = fence.to_json()
        if not force:
            try:
                doc["data_loss_bound"] = self._caught_up_bound(run, fenced_at)
            except ImctlError as exc:
                if fence.previous_replicas:
                    unfence_workload(self.kube, old, fence.previous_replicas, progress)
                exc.hint = join_hint(exc.hint, abandoned)
                raise
        else:
            bound = self._forced_bound(run)
            if not fence.fenced:
                bound["why"] += (
                    "; the old region could not be fenced, so its pods may still write there"
                )
            doc["data_loss_bound"] = bound
        try:
            self._promote(run)
        except ResourceFailure as exc:
            # A refused or failed promotion changed nothing: a planned switchover hands the
            # old primary its workload back. An unknown outcome leaves the fence in place.
            if not force and exc.code != "outcome_unknown" and fence.previous_replicas:
                unfence_workload(self.kube, old, fence.previous_replicas, progress)
                exc.hint = join_hint(exc.hint, abandoned)
            raise
        self._check_promoted(run)
        doc["promote_seconds"] = since(t0)
        replicas = fence.previous_replicas or DEFAULT_FAILOVER_REPLICAS
        try:
            bring_up(self.kube, new, replicas, deadline=deadline, progress=progress)
            doc["replicas"] = replicas
            doc["dns"] = self._point_dns(run)
        except Exception as exc:
            raise partial(
                f"{new.db_instance_id} in {new.name} is the primary now",
                exc,
                f"finish by hand: imctl scale --region {new.name} --replicas {replicas}, then"
                f" point {self.outputs.dns_name} at {new.endpoint}",
            ) from None
        doc["rto_seconds"] = since(t0)
        doc["status"] = {"endpoint": self.outputs.dns_name, "primary_region": new.name}
        doc["next_steps"] = [self._rejoin_step(run)]
        return doc
