"""What the GCP and Alibaba Cloud day-2 operations share: deadlines and polling, the workload's
Secret and database URL, fencing and scaling through ``KubeApi``, DNS names, the /readyz probe.

No cloud SDK here, and nothing heavier than the standard library."""

from __future__ import annotations

import ipaddress
import secrets
import string
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from cli.errors import ExitStatus, ImctlError, OperationTimeout, PreconditionFailed, UsageError
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.ops import Progress
from cli.targets.cloud.outputs import RegionOutputs

T = TypeVar("T")

# The workload's contract, as stacks/contract.py and stacks/workload/server.py define it. Not
# imported from there: those modules import Pulumi, which a day-2 command must not load. A test
# reads both files and checks these values against them.
DB_USER = "im"
DB_NAME = "im"
DB_PORT = 5432
SECRET_NAME = "im-server"
SECRET_DB_URL_KEY = "database-url"

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
