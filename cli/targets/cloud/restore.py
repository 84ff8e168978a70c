"""One restore for every cloud; the cloud supplies the hooks (``RestoreHooks``).

    find_backup     the snapshot, checked: it exists, is usable, and the target is possible
                    (to a point in time: the recoverable window, read from the cloud, and the
                    time checked against it; see ``TimeRestores``)
    (here)          read the workload's Secret: its database URL is the way back, its admin
                    token reads the content digest; no URL refuses before anything is created
    restore_into    create the instance holding the restored data and wait for it (and swap
                    it into the original's place for ``in-place``, where the cloud can); to a
                    point in time, ``restore_to_time_into`` does the same from the cloud's
                    automated backups and logs
    (here)          on_switch(instance), then point the Secret at it and roll the Deployment;
                    a failure from here back to the creation names the instance left behind
    (here)          check the restored content through the endpoint (content.py): a mismatch
                    points the workload back and exits 10, an unreadable digest exits 12

The result has the same keys on every cloud:

    snapshot_id, target, region, source_instance, instance_id, previous_instance_id,
    db_host, secret, secret_key, deployment, status ("restored"),
    verified {instance_available, deployment_ready, content_checked, content},
    warnings, next_steps, duration_s

A point-in-time restore has the same keys but ``snapshot_id``, plus ``to_time`` (ISO 8601 UTC,
or "latest") and ``window`` {first, last}: what the cloud said was recoverable before the restore.
No digest was recorded at an arbitrary time, so its content check is density only.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from cli.deadline import Deadline
from cli.errors import ImctlError, PreconditionFailed, UsageError
from cli.progress import Note
from cli.snapshots import RESTORE_TARGETS, RestoreTarget
from cli.targets.cloud.content import RestoreContent, check_restore_content
from cli.targets.cloud.outcomes import join_hint, since
from cli.targets.cloud.recovery import RecoveryWindow, check_to_time, utc_text
from cli.targets.cloud.scope import Scope
from cli.targets.cloud.workload import repoint_and_roll, workload_secret
from stacks.workload_contract import DB_NAME, DB_USER, SECRET_DB_URL_KEY, SECRET_NAME


@dataclass(frozen=True)
class Backup:
    """The snapshot a restore starts from."""

    id: str
    # The digest recorded just before the snapshot was requested; None: density only.
    recorded: dict[str, int] | None
    # How messages name it and what to try after a failed check (content.RestoreContent).
    what: str = ""
    retry: str = ""


@dataclass
class Restored:
    """What ``restore_into`` made, and what the rest of the restore needs to know of it."""

    instance: str  # the instance the workload is to use (its final name)
    host: str
    # What the Secret gets; None: the data was restored onto the address the Secret names.
    url: str | None
    previous: str  # what the workload used before, for messages
    previous_url: str | None  # the way back if the check fails; None: nothing to go back to
    cleanup: str  # how to remove the restored instance
    # Only pods started after the roll count: the restored data kept the old address.
    fresh_after_roll: bool = False
    standby_note: str | None = None
    # A last look at the instance once the workload has rolled onto it.
    recheck: Callable[[], None] | None = None


@dataclass
class RestoreRun:
    """One restore under way, as the cloud's ``restore_into`` sees it."""

    backup: Backup
    target: RestoreTarget
    # The Secret's database URL now: the way back, and what the new URL is made from.
    current_url: str
    deadline: Deadline
    progress: Note
    # Set once the restore has made an instance: a failure before the workload is safely on it
    # leaves it (it may be what someone needs to look at), and the hint says so.
    leftover: str | None = None

    def created(self, instance: str, cleanup: str, workload_on: str) -> None:
        self.leftover = (
            f"instance {instance} was left for inspection; the workload still uses"
            f" {workload_on} unless the secret was already patched; {cleanup}"
        )


class RestoreHooks(Protocol):
    def find_backup(self, snapshot_id: str, target: RestoreTarget) -> Backup:
        """The snapshot, and every refusal that needs no change (its state, its region, a
        target the cloud cannot do)."""
        ...

    def restore_into(self, run: RestoreRun) -> Restored:
        """Create the instance that holds the restored data (``run.created`` as soon as it
        exists) and wait until it serves; nothing here touches the workload."""
        ...

    def recovery_window(self) -> RecoveryWindow:
        """What the primary's automated backups can recover, as the cloud reports it (reads
        only)."""
        ...

    def refuse_time_target(self, target: RestoreTarget) -> None:
        """Raise when the cloud cannot restore to a point in time into ``target``."""
        ...

    def restore_to_time_into(self, run: RestoreRun, when: datetime | None) -> Restored:
        """``restore_into`` from the automated backups and logs, as of ``when`` (None: the
        latest recoverable time, in the cloud's own form for it)."""
        ...


def run_restore(
    hooks: RestoreHooks,
    scope: Scope,
    snapshot_id: str,
    target: RestoreTarget,
    progress: Note,
    timeout: float,
    on_switch: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    _check_target(target)
    deadline = Deadline(timeout, operation="restore", hint=scope.timeout_hint)
    backup = hooks.find_backup(snapshot_id, target)
    return _restore(hooks.restore_into, scope, backup, target, deadline, progress, on_switch)


@dataclass(frozen=True)
class TimeRestores:
    """Restores of one cloud's stack to a point in time: the cloud's hooks and the stack."""

    hooks: RestoreHooks
    scope: Scope

    def window(self) -> RecoveryWindow:
        """What the primary's automated backups and logs can restore to (reads only)."""
        return self.hooks.recovery_window()

    def plan(self, when: datetime | None, target: RestoreTarget) -> RecoveryWindow:
        """Every refusal of a point-in-time restore that needs no change: the target, then
        the time against the window the cloud reports (and against now; exit 10, the window
        in the message). -> the window, for the plan. Reads only."""
        _check_target(target)
        self.hooks.refuse_time_target(target)
        window = self.window()
        check_to_time(window, when, datetime.now(UTC))
        return window

    def run(
        self,
        when: datetime | None,
        target: RestoreTarget,
        progress: Note,
        timeout: float,
        on_switch: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """``run_restore`` from the cloud's automated backups and logs, as of ``when`` (None:
        the latest recoverable time); ``on_switch`` as there. The window is read and the time
        checked again here: the window moves between the plan and the confirmation."""
        deadline = Deadline(timeout, operation="restore", hint=self.scope.timeout_hint)
        window = self.plan(when, target)
        backup = Backup(
            f"point in time {utc_text(when)}" if when else "latest",
            None,
            what=f"the data as of {utc_text(when)}"
            if when
            else "the data as of the latest recoverable time",
            retry="try an earlier time (`imctl backup status` shows the window)",
        )

        def make(run: RestoreRun) -> Restored:
            return self.hooks.restore_to_time_into(run, when)

        doc = _restore(make, self.scope, backup, target, deadline, progress, on_switch)
        del doc["snapshot_id"]
        return {**doc, "to_time": utc_text(when) if when else "latest", "window": window.span()}


def _check_target(target: RestoreTarget) -> None:
    if target not in RESTORE_TARGETS:
        raise UsageError(f"restore target must be new or in-place, got {target!r}")


def _restore(
    make: Callable[[RestoreRun], Restored],
    scope: Scope,
    backup: Backup,
    target: RestoreTarget,
    deadline: Deadline,
    progress: Note,
    on_switch: Callable[[str], None] | None,
) -> dict[str, Any]:
    started = time.monotonic()
    r = scope.outputs.primary
    current_url, admin_token = workload_secret(scope.kube(r.name), r)
    if not current_url:
        raise PreconditionFailed(
            f"Secret {r.namespace}/{SECRET_NAME} has no {SECRET_DB_URL_KEY}",
            "`imctl deploy` recreates it; nothing was changed",
        )
    run = RestoreRun(backup, target, current_url, deadline, progress)
    try:
        restored = make(run)
        if restored.url is not None and on_switch is not None:
            on_switch(restored.instance)
        rolled_at = time.time()
        repoint_and_roll(scope.kube, r, restored.url, deadline=deadline, progress=progress)
        if restored.recheck is not None:
            restored.recheck()
    except ImctlError as exc:
        if run.leftover is not None:
            exc.hint = join_hint(exc.hint, run.leftover)
        raise
    # A failed check says for itself what it left and where.
    content = check_restore_content(
        scope.kube,
        r,
        RestoreContent(
            snapshot=backup.id,
            recorded=backup.recorded,
            admin_token=admin_token,
            restored=restored.instance,
            restored_url=restored.url or current_url,
            previous=restored.previous,
            previous_url=restored.previous_url,
            cleanup=restored.cleanup,
            fresh_after=rolled_at if restored.fresh_after_roll else None,
            what=backup.what,
            retry=backup.retry,
        ),
        remaining=deadline.remaining(),
        interval=scope.interval,
        progress=progress,
    )
    return {
        "snapshot_id": backup.id,
        "target": target,
        "region": r.name,
        "source_instance": r.db_instance_id,
        "instance_id": restored.instance,
        "previous_instance_id": restored.previous,
        "db_host": restored.host,
        "secret": SECRET_NAME,
        "secret_key": SECRET_DB_URL_KEY,
        "deployment": f"{r.namespace}/{r.deployment}",
        "status": "restored",
        # Through the endpoint's /admin/digest: the databases are private to the VPC.
        "verified": {"instance_available": True, "deployment_ready": True, **content},
        "warnings": [restored.standby_note] if restored.standby_note else [],
        "next_steps": [],
        "duration_s": since(started),
    }


def replica_note(previous: str) -> str:
    return (
        f"the standby replica still follows {previous}, not the restored data: rebuild it"
        " before relying on failover"
    )


# --- the database URL the Secret gets ------------------------------------------------------------


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


def with_host(url: str, host: str, port: int | None) -> str:
    """``url`` with its host (and port) replaced; user, password, database and query kept."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise PreconditionFailed(
            "the workload's database URL has no host to replace",
            "expected postgresql://user:password@host:port/db?...; fix the Secret, then retry",
        )
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
