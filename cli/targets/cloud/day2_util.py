"""What the GCP and Alibaba Cloud day-2 operations share: deadlines and polling, the workload's
Secret and database URL, fencing and scaling through ``KubeApi``, DNS names, the /readyz probe,
and ``RegionalOps``, the order of status, scale and failover with the cloud's steps as hooks.

No cloud SDK here, and nothing heavier than the standard library."""

from __future__ import annotations

import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import string
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from cli.deadline import Deadline, poll
from cli.errors import (
    ContentUnverified,
    CredentialsError,
    DigestUnavailable,
    ImctlError,
    Partial,
    PreconditionFailed,
    ResourceFailure,
    RestoredContentMismatch,
    UsageError,
)
from cli.progress import Note
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.outputs import CloudOutputs, RegionOutputs
from im_server.auth import digest_token
from im_server.config import database_identity
from stacks.workload_contract import (
    DB_NAME,
    DB_USER,
    SECRET_ADMIN_TOKEN_KEY,
    SECRET_DB_URL_KEY,
    SECRET_NAME,
)

T = TypeVar("T")

# The record types a failover rewrites for the stack's DNS name.
DNS_TYPES = ("A", "AAAA", "CNAME")

# Pods the new primary gets when the old one had none to give (fenced at zero, or unreachable).
DEFAULT_FAILOVER_REPLICAS = 2


def partial(done: str, exc: BaseException, left: str) -> Partial:
    why = exc.message if isinstance(exc, ImctlError) else f"{type(exc).__name__}: {exc}"
    return Partial(f"{done}, but then: {why}", left)


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


def endpoint_url(endpoint: str, path: str) -> str:
    """``path`` on a region's endpoint as the outputs give it: host[:port], or a URL."""
    base = endpoint if "://" in endpoint else f"http://{endpoint}"
    return base.rstrip("/") + path


def readyz(endpoint: str, timeout: float = 2.0, tls_name: str | None = None) -> str:
    """``ok``, ``HTTP <code>`` or ``unreachable: <why>`` for the Service's /readyz. With
    ``tls_name`` (a wss:// stack) over TLS on 443 of the region's own load balancer, checking the
    certificate against that name: the balancer's address is not in it."""
    try:
        status, _ = http_get(endpoint, "/readyz", {}, timeout, tls_name)
    except (OSError, ValueError) as exc:
        return f"unreachable: {getattr(exc, 'reason', None) or exc}"
    return "ok" if status == 200 else f"HTTP {status}"


def http_get(
    endpoint: str,
    path: str,
    headers: Mapping[str, str],
    timeout: float,
    tls_name: str | None = None,
    limit: int = 1 << 16,
) -> tuple[int, bytes]:
    """GET ``path`` on a region's endpoint: (status, at most ``limit`` bytes of body). Plain
    HTTP on ``endpoint`` (host[:port] or a URL), or with ``tls_name`` HTTPS on 443 of the
    endpoint's address, the certificate checked against ``tls_name``. Raises OSError when the
    endpoint cannot be reached."""
    if tls_name is None or "://" in endpoint:
        request = urllib.request.Request(endpoint_url(endpoint, path), headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return int(resp.status), resp.read(limit)
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read(limit)
    # The outputs name the balancer by address alone (its TLS port is 443); host:port as well.
    host, _, port = endpoint.partition(":")
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, int(port or 443)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=tls_name) as tls,
        ):
            conn = http.client.HTTPConnection(tls_name, 443, timeout=timeout)
            conn.sock = tls  # already connected: http.client sends over it as it is
            conn.request("GET", path, headers=dict(headers))
            resp = conn.getresponse()
            return int(resp.status), resp.read(limit)
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc


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
    progress: Note,
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
    kube: Callable[[str], KubeApi], region: RegionOutputs, replicas: int, progress: Note
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


# --- the content check of a cloud restore (GET /admin/digest) ---------------------------------
#
# A snapshot records the im-server's content digest, read through the region's endpoint just
# before the snapshot is requested; a restore reads it again through the endpoint after the
# roll and checks that the restored data holds at least that much (everything committed before
# the request) and that every conversation is dense. What is compared is monotonic on a live
# stack (nothing deletes messages), so "at least" is exact for what was committed before.

# What a snapshot records; the first four never go down on a live stack.
DIGEST_MONOTONIC = ("messages", "conversations", "max_seq", "latest_ms")
DIGEST_FIELDS = (*DIGEST_MONOTONIC, "non_dense", "at_ms")
_DIGEST_WHAT = {
    "messages": "messages",
    "conversations": "conversations",
    "max_seq": "the highest seq of any conversation",
    "latest_ms": "the newest message's time (ms)",
}
# One request (the server gives up on its query after 20 s).
DIGEST_REQUEST_TIMEOUT = 30.0
# How long snapshot create keeps asking before it goes on without a digest.
SNAPSHOT_DIGEST_SECONDS = 15.0
# After a restore's roll, how long to wait for an answer from a pod on the restored database
# (load balancers take a while to stop sending requests to the replaced pods).
CONTENT_SETTLE_SECONDS = 120.0
# A pod whose process started this long before the roll still counts as started after it.
CLOCK_SKEW_SECONDS = 5.0
# Pointing the workload back after a failed check is not cut short by --timeout.
ROLLBACK_MIN_SECONDS = 300.0


def _where(identity: Any) -> str:
    if not isinstance(identity, Mapping):
        return "an unknown database"
    return f"{identity.get('host')}:{identity.get('port')}/{identity.get('name')}"


def digest_of(values: Any) -> dict[str, int] | None:
    """The recorded digest from a snapshot's stored fields (tags, a description), or None when
    any field is missing or malformed: a half-recorded digest is not one."""
    if not isinstance(values, Mapping):
        return None
    out: dict[str, int] = {}
    for key in DIGEST_FIELDS:
        try:
            value = int(str(values[key]))
        except (KeyError, ValueError):
            return None
        if value < 0:
            return None
        out[key] = value
    return out


def fetch_digest(
    endpoint: str, admin_token: str, timeout: float, tls_name: str | None = None
) -> dict[str, Any]:
    """GET <endpoint>/admin/digest (``endpoint`` as in the outputs: host[:port], or a URL; over
    TLS with ``tls_name``, see http_get) with the read-only credential derived from
    ``admin_token``. Raises DigestUnavailable."""
    url = (
        f"https://{tls_name}/admin/digest (via {endpoint})"
        if tls_name and "://" not in endpoint
        else endpoint_url(endpoint, "/admin/digest")
    )
    headers = {"Authorization": f"Bearer {digest_token(admin_token)}", "Accept": "application/json"}
    try:
        status, body = http_get(endpoint, "/admin/digest", headers, timeout, tls_name)
    except OSError as exc:  # refused, DNS, timeout, TLS (URLError and SSLError are OSErrors)
        # Before ValueError: a failed certificate check is both. It may be one being issued.
        raise DigestUnavailable(f"{url} unreachable: {exc}", transient=True) from None
    except ValueError as exc:  # a malformed endpoint
        raise DigestUnavailable(f"{url}: {exc}", transient=False) from None
    if status != 200:
        try:
            code = str(json.loads(body)["error"]["code"])
        except Exception:
            code = ""
        if status == 404 and code == "admin_disabled":
            raise DigestUnavailable(
                f"{url}: the admin API is off in the pods (IM_ADMIN_TOKEN unset)", transient=False
            )
        if status == 404:
            raise DigestUnavailable(
                f"{url}: not found (an im-server older than this imctl?)", transient=False
            )
        if status in (401, 403):
            raise DigestUnavailable(
                f"{url}: HTTP {status}, the pods do not accept the admin token of Secret"
                f" {SECRET_NAME}",
                transient=False,
            )
        raise DigestUnavailable(
            f"{url}: HTTP {status}" + (f" {code}" if code else ""), transient=True
        )
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or digest_of(doc) is None:
        raise DigestUnavailable(f"{url}: the answer is not a content digest", transient=False)
    return doc


def check_restored(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """Compare the digest recorded just before a snapshot was requested (``before``; None when
    none was recorded) with the restored data's (``after``).

    Everything committed before the request is in the snapshot, and nothing on a live stack
    lowers these figures, so each may only have grown; and every conversation must be dense.
    Messages committed after the request are not compared: the digest is a lower bound."""
    problems: list[str] = []
    if before is not None:
        for key in DIGEST_MONOTONIC:
            if int(after[key]) < int(before[key]):
                problems.append(
                    f"{_DIGEST_WHAT[key]}: {after[key]} restored, {before[key]} before the snapshot"
                )
    if int(after["non_dense"]) != 0:
        problems.append(
            f"{after['non_dense']} conversation(s) whose seqs are not exactly 1..last_seq"
        )
    return {
        "ok": not problems,
        "basis": (
            "everything committed before the snapshot was requested is present, and every"
            " conversation is dense"
            if before is not None
            else "the snapshot has no recorded digest: density only"
        ),
        "before": dict(before) if before is not None else None,
        "after": {k: after[k] for k in (*DIGEST_FIELDS, "database", "node") if k in after},
        "problems": problems,
    }


def workload_secret(api: KubeApi, region: RegionOutputs) -> tuple[str | None, str | None]:
    """(database URL, admin token) from the workload's Secret; None for a missing key."""
    data = api.get_secret(region.namespace, SECRET_NAME)
    return data.get(SECRET_DB_URL_KEY) or None, data.get(SECRET_ADMIN_TOKEN_KEY) or None


def _unusable(
    doc: Mapping[str, Any], expect: Mapping[str, Any] | None, fresh_after: float | None
) -> str | None:
    node = doc.get("node") or "?"
    if doc.get("draining"):
        return f"node {node} is draining"
    if expect is not None and doc.get("database") != dict(expect):
        return f"node {node} reads {_where(doc.get('database'))}, not {_where(expect)}"
    started = doc.get("started_at_ms")
    if fresh_after is not None and (
        not isinstance(started, int) or started < (fresh_after - CLOCK_SKEW_SECONDS) * 1000
    ):
        return f"node {node} was started before the roll"
    return None


def _digest_url(region: RegionOutputs) -> str:
    if region.tls_name:
        return f"https://{region.tls_name}/admin/digest (resolve it to {region.endpoint})"
    return endpoint_url(region.endpoint, "/admin/digest")


def await_digest(
    endpoint: str,
    admin_token: str,
    *,
    expect: Mapping[str, Any] | None,
    fresh_after: float | None,
    budget: float,
    interval: float,
    progress: Note,
    what: str,
    tls_name: str | None = None,
) -> dict[str, Any]:
    """Ask until an answer comes from a pod that is not draining, reads the ``expect``ed
    database and (``fresh_after``, a wall-clock time) was started after it; at least once, for
    at most ``budget`` seconds. A transient failure is asked again; a lasting one raises."""
    end = time.monotonic() + max(budget, 0.0)
    last = ""
    while True:
        left = end - time.monotonic()
        try:
            doc = fetch_digest(
                endpoint, admin_token, max(1.0, min(DIGEST_REQUEST_TIMEOUT, left)), tls_name
            )
            why = _unusable(doc, expect, fresh_after)
            if why is None:
                return doc
        except DigestUnavailable as exc:
            if not exc.transient:
                raise
            why = exc.message
        if why != last:
            progress(f"{what}: {why}; asking again")
            last = why
        left = end - time.monotonic()
        if left <= 0:
            raise DigestUnavailable(f"{why} (for {budget:g}s)", transient=True)
        time.sleep(min(interval, left))


def snapshot_digest(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    *,
    interval: float,
    progress: Note,
    budget: float | None = None,
    instance_host: str | None = None,
) -> tuple[dict[str, int] | None, list[str]]:
    """The digest to record with a snapshot about to be requested, and warnings. (None,
    [why]) when it cannot be had: a snapshot never fails because the application is down.

    ``instance_host``: the address of the instance being snapshotted, when the cloud says; a
    workload on another database (after a restore to a new instance that the outputs do not
    name yet) would describe some other data, so no digest is recorded then."""
    try:
        api = kube(region.name)
        url, token = workload_secret(api, region)
        if instance_host and url and database_identity(url)["host"] != instance_host.lower():
            raise DigestUnavailable(
                f"the workload uses the database at {database_identity(url)['host']}, not"
                f" {region.db_instance_id} ({instance_host}), the instance being snapshotted",
                transient=False,
            )
        if token is None:
            raise DigestUnavailable(
                f"Secret {region.namespace}/{SECRET_NAME} has no {SECRET_ADMIN_TOKEN_KEY}",
                transient=False,
            )
        progress(f"reading the content digest through {region.endpoint}")
        doc = await_digest(
            region.endpoint,
            token,
            expect=database_identity(url) if url else None,
            fresh_after=None,
            budget=SNAPSHOT_DIGEST_SECONDS if budget is None else budget,
            interval=interval,
            progress=progress,
            what="content digest",
            tls_name=region.tls_name,
        )
    except Exception as exc:
        why = exc.message if isinstance(exc, ImctlError) else f"{type(exc).__name__}: {exc}"
        return None, [
            f"no content digest recorded with this snapshot ({why}); a restore of it can"
            " check only that every conversation is dense"
        ]
    digest = digest_of(doc)
    assert digest is not None  # fetch_digest checked it
    warnings = []
    if digest["non_dense"]:
        warnings.append(
            f"the live data already has {digest['non_dense']} conversation(s) with missing"
            " seqs: a restore of this snapshot will fail its density check"
        )
    return digest, warnings


@dataclass
class RestoreContent:
    """What a restore's content check needs; gathered before anything changes, because the
    previous database URL is the way back."""

    snapshot: str
    recorded: dict[str, int] | None
    admin_token: str | None
    restored: str  # the instance now holding the restored data
    restored_url: str  # the URL the Secret names after the repoint
    previous: str  # what the workload used before, for messages
    previous_url: str | None  # None: nothing to point back at (restored in place)
    cleanup: str  # how to remove the restored instance
    fresh_after: float | None = None  # wall clock; see await_digest


def check_restore_content(
    kube: Callable[[str], KubeApi],
    region: RegionOutputs,
    rc: RestoreContent,
    *,
    remaining: float,
    interval: float,
    progress: Note,
    settle: float | None = None,
) -> dict[str, Any]:
    """After the roll: read the restored data's digest through the endpoint and check it
    against the recorded one. -> the ``verified`` fields. A failed check points the Secret back
    at the previous database, rolls again and raises RestoredContentMismatch (the restored
    instance is left for inspection); a check that cannot run raises ContentUnverified."""
    where = f"{region.namespace}/{SECRET_NAME}"
    back = (
        f"to go back, set {SECRET_DB_URL_KEY} of Secret {where} to the previous database"
        f" ({rc.previous}) and roll {region.deployment}"
        if rc.previous_url is not None
        else "it was restored in place: there is no previous database to go back to"
    )
    unverified = (
        f"restored snapshot {rc.snapshot} into {rc.restored} and the workload uses it, but its"
        " content could not be checked"
    )
    if rc.admin_token is None:
        raise ContentUnverified(
            f"{unverified}: Secret {where} has no {SECRET_ADMIN_TOKEN_KEY}",
            f"`imctl deploy` recreates the Secret; {back}",
            restored=rc.restored,
        )
    budget = min(CONTENT_SETTLE_SECONDS if settle is None else settle, remaining)
    progress(f"checking the restored content through {region.endpoint}")
    try:
        after = await_digest(
            region.endpoint,
            rc.admin_token,
            expect=database_identity(rc.restored_url),
            fresh_after=rc.fresh_after,
            budget=budget,
            interval=interval,
            progress=progress,
            what="restored content",
            tls_name=region.tls_name,
        )
    except DigestUnavailable as exc:
        raise ContentUnverified(
            f"{unverified}: {exc.message}",
            f"check by hand: GET {_digest_url(region)} with the admin token"
            f" and compare with `imctl snapshot show {rc.snapshot}`; {back}",
            restored=rc.restored,
        ) from None
    content = check_restored(rc.recorded, after)
    verified: dict[str, Any] = {
        "content_checked": True if rc.recorded is not None else "partial",
        "content": content,
    }
    if content["ok"]:
        return verified
    failed = "; ".join(content["problems"])
    if rc.previous_url is None:
        undo = f"the restore was in place: {rc.restored} holds the restored data and serves"
        verified["rolled_back"] = False
    else:
        api = kube(region.name)
        try:
            progress(f"content check failed; pointing secret {SECRET_NAME} back at {rc.previous}")
            api.patch_secret(region.namespace, SECRET_NAME, {SECRET_DB_URL_KEY: rc.previous_url})
            progress(f"{region.name}: rolling {region.deployment}")
            api.restart_deployment(region.namespace, region.deployment)
            api.wait_ready(
                region.namespace, region.deployment, max(remaining, ROLLBACK_MIN_SECONDS)
            )
            undo = (
                f"the workload was pointed back at {rc.previous} (Secret {where}) and rolled;"
                " it serves the data it had before the restore"
            )
            verified["rolled_back"] = True
        except Exception as exc:
            why = exc.message if isinstance(exc, ImctlError) else f"{type(exc).__name__}: {exc}"
            undo = (
                f"pointing the workload back at {rc.previous} FAILED ({why}): it may still use"
                f" {rc.restored}; {back}"
            )
            verified["rolled_back"] = False
    left = (
        f"instance {rc.restored} was left for inspection ({rc.cleanup})"
        if rc.previous_url is not None
        else rc.cleanup
    )
    raise RestoredContentMismatch(
        f"the restored data of snapshot {rc.snapshot} in {rc.restored} fails the content"
        f" check ({failed}); {undo}",
        f"{left}; `imctl snapshot show {rc.snapshot}` shows the recorded digest; try another"
        " snapshot",
        verified,
    )
