"""What the GCP and Alibaba Cloud day-2 operations share: deadlines and polling, the workload's
Secret and database URL, fencing and scaling through ``KubeApi``, DNS names, the /readyz probe,
and ``RegionalOps``, the order of status, scale and failover with the cloud's steps as hooks.

No cloud SDK here, and nothing heavier than the standard library."""

from __future__ import annotations

import ipaddress
import secrets
import string
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from cli.errors import (
    ExitStatus,
    ImctlError,
    OperationTimeout,
    PreconditionFailed,
    ResourceFailure,
    UsageError,
)
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import CredentialsError, Progress
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs

T = TypeVar("T")

# The workload's contract, as stacks/contract.py and stacks/workload/server.py define it. Not
# imported from there: those modules import Pulumi, which a day-2 command must not load. A test
# reads both files and checks these values against them.
DB_USER = "im"
DB_NAME = "im"
DB_PORT = 5432
SECRET_NAME = "im-server"
SECRET_DB_URL_KEY = "database-url"
# The record types a failover rewrites for the stack's DNS name.
DNS_TYPES = ("A", "AAAA", "CNAME")

# Pods the new primary gets when the old one had none to give (fenced at zero, or unreachable).
DEFAULT_FAILOVER_REPLICAS = 2

# Without --timeout an operation is still bounded, so nothing waits on a cloud forever.
NO_TIMEOUT_BOUND = 24 * 3600.0


class Partial(ImctlError):
    """Exit 12: the switch happened (a database was promoted, a Secret repointed) but a later
    step failed; the message says what is done and the hint what is left."""

    status = ExitStatus.PARTIAL
    code = "partial"


def partial(done: str, exc: BaseException, left: str) -> Partial:
    why = exc.message if isinstance(exc, ImctlError) else f"{type(exc).__name__}: {exc}"
    return Partial(f"{done}, but then: {why}", left)


class Deadline:
    """One ``timeout`` for a whole operation, checked between steps and by every poll."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        bound = seconds if seconds is not None and seconds > 0 else NO_TIMEOUT_BOUND
        self._end = time.monotonic() + bound

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def error(self, during: str, hint: str = "") -> OperationTimeout:
        limit = f"{self.seconds:g}s" if self.seconds else "the built-in bound"
        return OperationTimeout(
            f"timed out ({limit}) {during}",
            hint or "raise --timeout; the cloud keeps working on what was started",
        )

    def check(self, during: str, hint: str = "") -> None:
        if self.expired():
            raise self.error(during, hint)


def poll(
    fetch: Callable[[], T],
    *,
    done: Callable[[T], bool],
    state: Callable[[T], str],
    what: str,
    deadline: Deadline,
    progress: Progress,
    interval: float,
    unknown_hint: str = "",
) -> T:
    """Call ``fetch`` until ``done``; report each new state. On the deadline the outcome is
    unknown, and the error says so (the caller's hint says where to look)."""
    t0 = time.monotonic()
    last = ""
    while True:
        value = fetch()
        current = state(value)
        if current != last:
            progress(f"{what}: {current}")
            last = current
        if done(value):
            return value
        if deadline.remaining() <= 0:
            raise OperationTimeout(
                f"{what}: still {current} after {time.monotonic() - t0:.0f}s;"
                " the outcome is unknown",
                unknown_hint or "the cloud keeps working on it; check before retrying",
            )
        time.sleep(min(interval, max(deadline.remaining(), 0.0)))


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


def record_type(endpoint: str) -> str:
    """A load balancer address is an IP (A/AAAA) or a hostname (CNAME)."""
    try:
        addr = ipaddress.ip_address(endpoint)
    except ValueError:
        return "CNAME"
    return "AAAA" if addr.version == 6 else "A"


def relative_name(dns_name: str, zone: str) -> str:
    """``im.example.com`` in zone ``example.com`` -> ``im`` (Alidns' RR); apex -> ``@``."""
    name, zone = dns_name.rstrip(".").lower(), zone.rstrip(".").lower()
    if name == zone:
        return "@"
    if not name.endswith("." + zone):
        raise UsageError(
            f"dns_name {dns_name!r} is not inside the zone {zone!r}",
            "check dns_name and hosted_zone_id in the outputs",
        )
    return name[: -len(zone) - 1]


def readyz(endpoint: str, timeout: float = 2.0) -> str:
    """``ok``, ``HTTP <code>`` or ``unreachable: <why>`` for the Service's /readyz."""
    url = f"http://{endpoint}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return "ok" if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"unreachable: {exc}"


# --- the workload through KubeApi -------------------------------------------------------------


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
    deadline: Deadline,
    progress: Progress,
    interval: float,
) -> Fence:
    """Scale the old primary's Deployment to zero and wait until no pod of it is ready, so no
    im-server writes to the old database any more (an HPA leaves a Deployment at zero alone).

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
            try:
                unfence_workload(kube, region, desired, progress)
                undone = f"; {region.deployment} was scaled back to {desired}"
            except Exception as again:
                undone = f"; scaling {region.deployment} back to {desired} failed too: {again}"
        why = exc.message if isinstance(exc, ImctlError) else str(exc)
        raise PreconditionFailed(
            f"could not fence {region.name} for a planned switchover: {why}",
            f"nothing was promoted{undone}; if the region is lost, use --force",
        ) from None


def unfence_workload(
    kube: Callable[[str], KubeApi], region: RegionOutputs, replicas: int, progress: Progress
) -> None:
    """Undo a fence after a planned switchover was abandoned before anything was promoted."""
    progress(f"{region.name}: restoring {region.deployment} to {replicas} replica(s)")
    kube(region.name).scale_deployment(region.namespace, region.deployment, replicas)


def bring_up(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    replicas: int,
    *,
    deadline: Deadline,
    progress: Progress,
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
    progress: Progress,
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
    progress: Progress,
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


def since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


def join_hint(hint: str, more: str) -> str:
    return f"{hint}; {more}" if hint else more


def unreachable(what: str, exc: BaseException, *, mutation: bool) -> ResourceFailure:
    """A call that never got an answer: for a mutation the outcome is unknown, and the code
    says so, so that no caller undoes or retries what may have happened."""
    unknown = "; whether it took effect is unknown" if mutation else ""
    return ResourceFailure(
        f"{what}: could not reach the API ({exc}){unknown}",
        "check the network; for a mutation, look at the resource before retrying",
        code="outcome_unknown" if mutation else None,
    )


@contextmanager
def left_for_inspection(new: str, source: str, cleanup: str) -> Iterator[None]:
    """Around a restore's steps once instance ``new`` exists: a failure leaves it (it may be
    what someone needs to look at), and the hint says so and how to remove it."""
    try:
        yield
    except ImctlError as exc:
        exc.hint = join_hint(
            exc.hint,
            f"instance {new} was left for inspection; the workload still uses {source} unless"
            f" the secret was already patched; {cleanup}",
        )
        raise


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
    progress: Progress
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
            raise PreconditionFailed(f"these outputs are for {outputs.cloud!r}, not {cloud}")
        self.outputs = outputs
        self.kube = kube
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
        self, r: RegionOutputs, nodes: int, deadline: Deadline, progress: Progress
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
            info["readyz"] = readyz(r.endpoint, self._readyz_timeout)
            regions[name] = info
        doc: dict[str, Any] = {
            "cloud": self._cloud,
            **self._status_scope(),
            "primary_region": self.outputs.primary_region,
            "standby_region": self.outputs.standby_region,
            "dns_name": self.outputs.dns_name,
            "endpoint": self.outputs.dns_name,
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
        progress: Progress,
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
        self, to_region: str, force: bool, progress: Progress, timeout: float
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
        doc["next_steps"] = [
            f"make {new.name} the primary in the stack config (the outputs still say {old.name})",
            self._rejoin_step(run),
        ]
        return doc
