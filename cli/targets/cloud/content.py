"""The content check of a cloud restore, through the application (GET /admin/digest).

A snapshot records the im-server's content digest, read through the region's endpoint just
before the snapshot is requested; a restore reads it again through the endpoint after the roll
and checks that the restored data holds at least that much (everything committed before the
request) and that every conversation is dense. What is compared is monotonic on a live stack
(nothing deletes messages), so "at least" is exact for what was committed before."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cli.errors import ContentUnverified, DigestUnavailable, ImctlError, RestoredContentMismatch
from cli.progress import Note
from cli.targets.cloud.kube import KubeApi
from cli.targets.cloud.outputs import RegionOutputs
from cli.targets.cloud.probes import endpoint_url, http_get
from cli.targets.cloud.workload import workload_secret
from im_server.auth import digest_token
from im_server.config import database_identity
from stacks.workload_contract import SECRET_ADMIN_TOKEN_KEY, SECRET_DB_URL_KEY, SECRET_NAME

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


def check_restored(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], restored: str = "the snapshot"
) -> dict[str, Any]:
    """Compare the digest recorded just before a snapshot was requested (``before``; None when
    none was recorded, as for a point-in-time restore: ``restored`` names it) with the
    restored data's (``after``).

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
            else f"{restored} has no recorded digest: density only"
        ),
        "before": dict(before) if before is not None else None,
        "after": {k: after[k] for k in (*DIGEST_FIELDS, "database", "node") if k in after},
        "problems": problems,
    }


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
    # How the messages name what was restored, and what to try after a failed check; a
    # point-in-time restore has no snapshot to show or to swap for another.
    what: str = ""
    retry: str = ""

    def __post_init__(self) -> None:
        self.what = self.what or f"snapshot {self.snapshot}"
        self.retry = self.retry or (
            f"`imctl snapshot show {self.snapshot}` shows the recorded digest; try another snapshot"
        )


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
        f"restored {rc.what} into {rc.restored} and the workload uses it, but its"
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
            + (f" and compare with `imctl snapshot show {rc.snapshot}`" if rc.recorded else "")
            + f"; {back}",
            restored=rc.restored,
        ) from None
    content = check_restored(rc.recorded, after, rc.what)
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
        f"the restored data of {rc.what} in {rc.restored} fails the content check ({failed});"
        f" {undo}",
        f"{left}; {rc.retry}",
        verified,
    )
