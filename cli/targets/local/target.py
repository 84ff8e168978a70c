"""The local target: the whole topology on this machine, with real processes.

Deploy, status, scale and destroy are here; the failover sequence is in failover.py, snapshots
and restore in snapshots.py, drills in drill.py and logs in logs.py, each called from a verb
of the one Target interface (cli/targets/base.py).
"""

from __future__ import annotations

import getpass
import shutil
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cli.deadline import Deadline
from cli.errors import PreconditionFailed, UsageError
from cli.locks import StackLock
from cli.progress import Note, Step
from cli.results import DocResult, Result, StatusResult
from cli.state import (
    DEFAULT_PORT,
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    REGION_RE,
    RegionConfig,
    Secrets,
    StackConfig,
    StackFiles,
)
from cli.targets.base import (
    DeployRequest,
    FailoverRequest,
    LogsRequest,
    Operator,
    RestoreRequest,
    ScaleRequest,
    Target,
    TimeRestoreRequest,
    check_timeout,
    describe_bound,
)
from cli.targets.local import discovery, procs
from cli.targets.local.failover import (
    LocalFailover,
    plan_document,
    result_document,
    streaming_sync_names,
    sync_watch,
    wait_streaming,
)
from cli.targets.local.runtime import Region
from im_server.syncpolicy import SYNC_DEGRADE_AFTER_MAX, SYNC_DEGRADE_AFTER_MIN, SYNC_POLICIES

if TYPE_CHECKING:
    from cli.targets.local.snapshots import LocalSnapshots
    from cli.targets.local.snapshots.catalog import Catalog

DEFAULT_REGION = "local"


def _user() -> str:
    """Who holds a lock, for the message of whoever finds it held."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER and no passwd entry (some containers)
        return "unknown"


# What a deploy's data phase waits for in a region: a new standby's is a full base backup.
_DATA_PHASE = {
    "primary": "PostgreSQL and NATS",
    "standby": "PostgreSQL standby (pg_basebackup when new) and NATS",
}


def validate_replicas(n: int) -> int:
    if not 1 <= n <= MAX_REPLICAS:
        raise UsageError(
            f"--replicas must be between 1 and {MAX_REPLICAS}, got {n}",
            "to stop everything use `imctl destroy`",
        )
    return n


def _in_range(flag: str, value: float, lo: float, hi: float, unit: str) -> float:
    if not lo <= value <= hi:
        raise UsageError(f"{flag} must be between {lo:g} and {hi:g} {unit}, got {value:g}")
    return value


def validate_port(p: int) -> int:
    if not 1024 <= p <= 65535:
        raise UsageError(f"--port must be between 1024 and 65535, got {p}")
    return p


FAILOVER_TIMEOUT = 120.0
FAILOVER_MAX_LAG = 16 * 1024 * 1024


class LocalTarget(Target):
    name: ClassVar[str] = "local"
    options: ClassVar[frozenset[str]] = frozenset(
        {"--port", "--replication", "--sync-policy", "--sync-degrade-after", "--keep-data",
         "--max-lag", "--delete-snapshots", "--from-stack", "--archiving", "--keep-days",
         "--base-every", "--backup-url"}
    )  # fmt: skip

    def __init__(self, files: StackFiles) -> None:
        super().__init__(files.dir.name)
        self.files = files

    def failover_sequence(self) -> LocalFailover:
        from cli.targets.local.backups.verbs import after_primary_change

        return LocalFailover(
            self.files,
            self.regions,
            self.status_doc,
            lambda reason, note: after_primary_change(self, reason, note),
        )

    def _snapshots(self) -> LocalSnapshots:
        from cli.targets.local.snapshots import LocalSnapshots

        return LocalSnapshots(self.files)

    def regions(self, cfg: StackConfig, secrets: Secrets | None = None) -> list[Region]:
        secrets = secrets or self.files.load_secrets()
        sync = sync_watch(cfg)
        made = {
            r.name: Region(
                self.files.region_dir(r.name),
                r,
                secrets,
                drain_grace=cfg.drain_grace,
                global_port=cfg.global_port,
                sync=sync,
            )
            for r in cfg.regions
        }
        primary = made[cfg.primary.name]
        for reg in made.values():
            if reg is not primary:
                reg.upstream = primary
            reg.check_files()
        return list(made.values())

    def endpoint(self, cfg: StackConfig) -> str:
        return f"ws://127.0.0.1:{cfg.endpoint_port}/ws"

    def plan_config(
        self,
        region: str | None,
        replicas: int | None,
        port: int | None,
        standby_region: str | None = None,
        replication: str | None = None,
        sync_policy: str | None = None,
        sync_degrade_after: float | None = None,
        archiving: str | None = None,
        keep_days: float | None = None,
        base_every_hours: float | None = None,
        backup_url: str | None = None,
    ) -> tuple[StackConfig, bool]:
        """The config deploy should reconcile to, and whether the stack is new."""
        cfg, new = self._plan_config(region, replicas, port, standby_region, replication)
        if sync_policy is not None:
            if sync_policy not in SYNC_POLICIES:
                raise UsageError(
                    f"--sync-policy must be {' or '.join(SYNC_POLICIES)}, got {sync_policy!r}"
                )
            cfg.sync_policy = "degrade" if sync_policy == "degrade" else "wait"
        if sync_degrade_after is not None:
            if not SYNC_DEGRADE_AFTER_MIN <= sync_degrade_after <= SYNC_DEGRADE_AFTER_MAX:
                raise UsageError(
                    f"--sync-degrade-after must be between {SYNC_DEGRADE_AFTER_MIN:g} and"
                    f" {SYNC_DEGRADE_AFTER_MAX:g} seconds, got {sync_degrade_after:g}"
                )
            cfg.sync_degrade_after = sync_degrade_after
        self._plan_backups(cfg, archiving, keep_days, base_every_hours, backup_url)
        return cfg, new

    @staticmethod
    def _plan_backups(
        cfg: StackConfig,
        archiving: str | None,
        keep_days: float | None,
        base_every_hours: float | None,
        backup_url: str | None,
    ) -> None:
        from cli.state import (
            ARCHIVING_MODES,
            BACKUP_KEEP_DAYS_MAX,
            BACKUP_KEEP_DAYS_MIN,
            BASE_EVERY_HOURS_MAX,
            BASE_EVERY_HOURS_MIN,
        )

        if archiving is not None:
            if archiving not in ARCHIVING_MODES:
                raise UsageError(
                    f"--archiving must be {', '.join(ARCHIVING_MODES)}, got {archiving!r}"
                )
            cfg.archiving = (
                "sync" if archiving == "sync" else "off" if archiving == "off" else "async"
            )
        if keep_days is not None:
            cfg.backup_keep_days = _in_range(
                "--keep-days", keep_days, BACKUP_KEEP_DAYS_MIN, BACKUP_KEEP_DAYS_MAX, "days"
            )
        if base_every_hours is not None:
            cfg.backup_base_every_hours = _in_range(
                "--base-every", base_every_hours, BASE_EVERY_HOURS_MIN, BASE_EVERY_HOURS_MAX,
                "hours",
            )  # fmt: skip
        if backup_url is not None:
            from cli.targets.local.backups.bucket import parse_url

            parse_url(backup_url)  # a bad URL fails before anything starts
            cfg.backup_url = backup_url or None

    def _plan_config(
        self,
        region: str | None,
        replicas: int | None,
        port: int | None,
        standby_region: str | None,
        replication: str | None,
    ) -> tuple[StackConfig, bool]:
        if replicas is not None:
            validate_replicas(replicas)
        if port is not None:
            validate_port(port)
        if region is not None and not REGION_RE.match(region):
            raise UsageError(f"invalid region name {region!r}", "use lowercase letters, digits, -")
        if replication is not None and replication not in ("sync", "async"):
            raise UsageError(f"--replication must be sync or async, got {replication!r}")
        if standby_region is not None and not REGION_RE.match(standby_region):
            raise UsageError(f"invalid region name {standby_region!r}")
        if not self.files.exists():
            name = region or DEFAULT_REGION
            if standby_region is None:
                regions = [RegionConfig(name, port or DEFAULT_PORT, replicas or DEFAULT_REPLICAS)]
                return StackConfig(self.files.name, "local", regions), True
            if standby_region == name:
                raise UsageError("--standby-region must differ from --region")
            # With a standby, --port is the global endpoint; each region gets a regional port
            # of its own (health checks, direct access) that never moves.
            a_port, b_port = procs.free_ports(2)
            regions = [
                RegionConfig(name, a_port, replicas or DEFAULT_REPLICAS, "primary"),
                RegionConfig(standby_region, b_port, replicas or DEFAULT_REPLICAS, "standby"),
            ]
            cfg = StackConfig(
                self.files.name,
                "local",
                regions,
                replication="async" if replication == "async" else "sync",
                global_port=port or DEFAULT_PORT,
            )
            return cfg, True
        cfg = self.files.load_config()
        if standby_region is not None and standby_region not in {r.name for r in cfg.regions}:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} has no region {standby_region!r}; a standby region is"
                " set when the stack is created",
                f"imctl destroy -s {cfg.stack}, then deploy with --standby-region",
            )
        if replication is not None and replication != cfg.replication:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} uses {cfg.replication} replication",
                "the mode is set when the stack is created",
            )
        primary = cfg.primary
        if region is not None and region not in {r.name for r in cfg.regions}:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} runs region {primary.name!r}, not {region!r}",
                "regions cannot be renamed in place; destroy the stack or use another -s",
            )
        if port is not None and port != cfg.endpoint_port:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} serves on port {cfg.endpoint_port}; it cannot move to {port}"
                " while deployed",
                "destroy it first, or deploy a new stack with -s NAME --port P",
            )
        if replicas is not None:
            primary.replicas = replicas
        return cfg, False

    def deploy(self, req: DeployRequest, op: Operator) -> Result:
        if req.sets:
            raise UsageError("--set is for cloud stacks", "the local target takes flags")
        return DocResult(self._deploy(req, op.note, op.step))

    def _deploy(self, req: DeployRequest, step: Note, phase: Step) -> dict[str, Any]:
        cfg, new = self.plan_config(
            req.region, req.replicas, req.port, req.standby_region, req.replication,
            req.sync_policy, req.sync_degrade_after, req.archiving, req.keep_days,
            req.base_every_hours, req.backup_url,
        )  # fmt: skip
        secrets = self.files.load_or_create_secrets()
        regions = self.regions(cfg, secrets)
        if cfg.backup_url and cfg.archiving != "off":
            from cli.targets.local.backups.bucket import Bucket, parse_url

            with phase(f"checking the backup bucket {cfg.backup_url}"):
                # boto3 installed, credentials, the bucket there: before anything starts.
                Bucket(parse_url(cfg.backup_url)[0]).check_access()
        with phase("checking ports and processes"):
            for r in regions:
                if r.cfg.role != "fenced":
                    r.check_port()  # before anything starts: nothing is left half-started
            if cfg.global_port is not None and not any(
                r.node_status(n).alive for r in regions for n in r.node_ids()
            ):
                regions[0].check_port(cfg.global_port)
            self.files.save_config(cfg)
            actions: list[str] = []
            for r in regions:  # before anything starts next to them
                actions += discovery.settle(r, step)
        ordered = sorted(regions, key=lambda x: x.cfg.role != "primary")  # primary first
        # Every database before any node: while a lost synchronous standby blocks the
        # primary's commits, the primary's nodes cannot become ready (nor a migration commit)
        # until the standby is back.
        for r in ordered:
            if r.cfg.role != "fenced":
                with phase(f"region {r.cfg.name}: {_DATA_PHASE[r.cfg.role]}"):
                    actions += r.reconcile_data(step)
        # Before the nodes: with --archiving sync a commit waits for the archiver, so it must
        # stream before anything commits.
        primary = next(r for r in regions if r.cfg.role == "primary")
        with phase(f"continuous backup ({cfg.archiving}): WAL archiver and base backup"):
            from cli.targets.local.backups.archiving import Archiving

            archiving = Archiving(self.files.dir, cfg, primary)
            actions += archiving.ensure(step)
        for r in ordered:
            if r.cfg.role == "primary":
                with phase(f"region {r.cfg.name}: migrations and im-server nodes"):
                    actions += r.reconcile_nodes(step)
            else:
                actions += r.reconcile_nodes(step)  # drains strays; quick when there are none
            if r.cfg.role == "standby" and cfg.replication == "sync":
                with phase(f"region {r.cfg.name}: synchronous replication"):
                    actions += self._ensure_sync(cfg, r, step)
        from cli.targets.local.health import problems

        statuses = [r.status() for r in regions]
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "endpoint": self.endpoint(cfg),
            "created": new,
            "changed": bool(actions),
            "actions": actions,
            # What deploy cannot fix by starting processes (e.g. writes blocked): said, not hidden.
            "problems": problems(cfg, statuses),
            "warnings": archiving.warnings,
            "regions": statuses,
        }

    def _ensure_sync(self, cfg: StackConfig, standby: Region, step: Note) -> list[str]:
        """Synchronous replication, switched on only once the standby streams (before that,
        every commit on the primary would wait for it)."""
        from cli.targets.local import replication as rep

        assert standby.upstream is not None
        primary = standby.upstream.pg()
        rows = {r["standby"]: r for r in rep.primary_view(primary)}
        if rows.get(standby.cfg.name, {}).get("sync_state") == "sync":
            return []
        wait_streaming(standby, 30.0)
        rep.set_synchronous(primary, streaming_sync_names(cfg, primary))
        msg = f"synchronous replication {standby.upstream.cfg.name} -> {standby.cfg.name}"
        step(msg)
        return [msg]

    def status(self, check: bool) -> Result:
        return StatusResult(self.status_doc(), check)

    def status_doc(self) -> dict[str, Any]:
        from cli.targets.local.backups import verbs as backups
        from cli.targets.local.health import problems

        cfg = self.files.load_config()
        made = self.regions(cfg)
        regions = [r.status() for r in made]
        standbys = [r for r in regions if r["role"] != "primary"]
        found = problems(cfg, regions)
        # The primary's probe just made says whether it answers: not asked again.
        at = next(i for i, r in enumerate(regions) if r["role"] == "primary")
        backup = backups.status_doc(self, cfg, made[at], regions[at]["database"]["answering"])
        found += backup["problems"]
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "endpoint": self.endpoint(cfg),
            "healthy": not found,
            # Protected: a standby streams, so losing the primary region loses no acked data.
            "protected": bool(standbys)
            and all(r["healthy"] for r in standbys)
            and not any(p["code"] == "writes_unprotected" for p in found),
            "replication": cfg.replication if standbys else None,
            "sync_policy": cfg.sync_policy if standbys and cfg.replication == "sync" else None,
            "problems": found,
            "regions": regions,
            "backup": {
                k: backup[k]
                for k in ("archiving", "window", "last_base_backup", "archiver", "where")
            },
        }

    def scale(self, req: ScaleRequest, op: Operator) -> Result:
        if req.replicas is None:
            raise UsageError("--replicas is required", "e.g. imctl scale --replicas 3")
        return DocResult(self._scale(req.replicas, req.region, op.note, op.step))

    def _scale(self, replicas: int, region: str | None, step: Note, phase: Step) -> dict[str, Any]:
        validate_replicas(replicas)
        cfg = self.files.load_config()
        rc = cfg.region(region) if region else cfg.primary
        before = rc.replicas
        target = next(r for r in self.regions(cfg) if r.cfg.name == rc.name)  # checks files
        rc.replicas = replicas
        # Written first: if scaling fails half-way, the next deploy finishes the job.
        self.files.save_config(cfg)
        # A node running without its pid file would otherwise get a twin.
        with phase(f"region {rc.name}: {before} -> {replicas} im-server node(s)"):
            settled = discovery.settle(target, step)
            started = target.ensure_nodes(replicas, step)
            removed = target.remove_nodes(replicas, step)
        return {
            "stack": cfg.stack,
            "region": rc.name,
            "replicas": {"before": before, "after": replicas},
            "started": started,
            "drained": removed,
            "orphans": settled,
            # Only the nodes: the full status would probe PostgreSQL and scan processes again.
            "nodes": [asdict(target.node_status(n)) for n in target.node_ids()],
        }

    def destroy_plan(self, keep_data: bool, delete_snapshots: bool) -> list[str]:
        cfg = self.files.load_config()
        lines = []
        regions = self.regions(cfg)
        for r in regions:
            alive = sum(1 for n in r.node_ids() if r.node_status(n).alive)
            lines.append(
                f"region {r.cfg.name}: stop {alive} im-server node(s), NATS and PostgreSQL"
            )
        untracked = discovery.untracked(self.files.dir, regions)
        lines += [f"stop {f}, running without a pid file" for f in untracked]
        if keep_data:
            return [*lines, f"keep {self.files.dir}, {self._snapshot_totals()} included"]
        lines.append(
            f"delete the data, config and secrets in {self.files.dir} (all messages of stack"
            f" {cfg.stack!r}; tokens issued for it stop working)"
        )
        return [*lines, self._snapshots_line(delete_snapshots)]

    def _snapshot_totals(self) -> str:
        count, size = self._snapshots().catalog.totals()
        return f"{count} snapshot(s), {size / 1e6:.1f} MB"

    def _snapshots_line(self, delete_snapshots: bool) -> str:
        return self._snapshots_only_line(delete_snapshots) + self._backups_line(delete_snapshots)

    def _snapshots_only_line(self, delete_snapshots: bool) -> str:
        root = self._snapshots().root
        if not self._snapshots().catalog.dirs():
            return f"no snapshots to keep or delete ({root} is empty)"
        if delete_snapshots:
            return f"DELETE {self._snapshot_totals()} in {root} (--delete-snapshots)"
        return (
            f"keep {self._snapshot_totals()} in {root}: `imctl snapshot list -s {self.stack}`"
            f" lists them, `imctl restore ID -s {self.stack}` builds the stack again from one"
            " (--delete-snapshots deletes them too)"
        )

    def _backups_line(self, delete_snapshots: bool) -> str:
        from cli.targets.local.backups.layout import BackupRoot

        backups = BackupRoot(self.files.dir)
        chains = backups.chains()
        if not chains:
            return ""
        from cli.targets.local.snapshots.catalog import dir_size, mb

        what = f"the continuous backup ({len(chains)} chain(s), {mb(dir_size(backups.root))})"
        url = self.files.load_config().backup_url if self.files.exists() else None
        remote = f"; the copy in {url} is kept (delete it with your bucket's tools)" if url else ""
        if delete_snapshots:
            return f"; DELETE {what} in {backups.root}{remote}"
        return f"; keep {what} in {backups.root}{remote}"

    def destroy(self, keep_data: bool, delete_snapshots: bool, op: Operator) -> Result:
        if keep_data and delete_snapshots:
            raise UsageError(
                "--keep-data keeps the whole stack directory, snapshots included",
                "drop one; to delete snapshots alone use `imctl snapshot delete ID` or"
                " `imctl snapshot prune --keep N`",
            )
        if not self.files.exists() and delete_snapshots and self.files.destroyed_path.exists():
            # Destroyed earlier with its snapshots kept: what is left is only those.
            op.confirm(
                f"Delete what is left of destroyed stack {self.stack!r}?",
                details=[self._snapshots_line(True), f"delete {self.files.dir}"],
            )
            return DocResult(self._delete_leftovers(op.note))
        plan = self.destroy_plan(keep_data, delete_snapshots)
        op.confirm(f"Destroy stack {self.stack!r}?", details=plan)
        return DocResult(self._destroy(keep_data, delete_snapshots, op.note, op.step))

    def _destroy(
        self, keep_data: bool, delete_snapshots: bool, step: Note, phase: Step
    ) -> dict[str, Any]:
        from cli.targets.local.backups.archiver import Archiver
        from cli.targets.local.backups.layout import BackupRoot

        cfg = self.files.load_config()
        actions: list[str] = []
        regions = self.regions(cfg)
        backups = BackupRoot(self.files.dir)
        if Archiver(backups, "").stop():
            actions.append("stopped the WAL archiver")
        from cli.targets.local.backups.shipping import ShipperProcess

        if ShipperProcess(backups, "").stop():
            actions.append("stopped the backup shipper")
        for r in regions:
            with phase(f"region {r.cfg.name}: stopping nodes, NATS and PostgreSQL"):
                actions += r.stop_all(step)
        actions += discovery.stop_leftovers(self.files.dir, regions, cfg.drain_grace, step)
        catalog = self._snapshots().catalog
        count, size = catalog.totals()
        has_backups = bool(backups.chains())
        kept = not delete_snapshots and (count > 0 or has_backups)
        if kept and not keep_data:
            keep = [catalog.root.name, backups.root.name]
            with phase(f"deleting {self.files.dir}, all but {' and '.join(k + '/' for k in keep)}"):
                self._delete_all_but(*keep)
                self.files.mark_destroyed(cfg)
                # Last: until config.json goes, the stack still exists and a destroy can rerun.
                self.files.config_path.unlink()
        elif not keep_data:
            with phase(f"deleting {self.files.dir}"):
                shutil.rmtree(self.files.dir)
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "stopped": actions,
            "data_deleted": not keep_data,
            "data_dir": None if not keep_data else str(self.files.dir),
            "snapshots": {
                "count": count,
                "size_bytes": size,
                "kept": keep_data or kept,
                "dir": str(catalog.root) if keep_data or kept else None,
            },
            "backups": {
                "chains": len(backups.chains()) if keep_data or kept else 0,
                "kept": (keep_data or kept) and has_backups,
                "dir": str(backups.root) if (keep_data or kept) and has_backups else None,
            },
        }

    def _delete_all_but(self, *keep: str) -> None:
        for child in self.files.dir.iterdir():
            if child.name in (*keep, self.files.config_path.name):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _delete_leftovers(self, step: Note) -> dict[str, Any]:
        count, size = self._snapshots().catalog.totals()
        step(f"deleting {self.files.dir}")
        shutil.rmtree(self.files.dir)
        return {
            "stack": self.stack,
            "cloud": "local",
            "stopped": [],
            "data_deleted": True,
            "data_dir": None,
            "snapshots": {"count": count, "size_bytes": size, "kept": False, "dir": None},
        }

    def doctor(self, home: Path, today: date | None = None) -> Result:
        from cli.prereqs import DoctorResult, common_checks
        from cli.targets.local.prereqs import local_checks

        return DoctorResult(
            self.name, common_checks(home) + local_checks(self.stack, self.files.dir)
        )

    def token(self, user: str, ttl: int) -> Result:
        from cli.targets.tokens import mint

        self.files.load_config()  # a stack that does not exist has no secret to sign with
        return DocResult(mint(self.files.load_secrets().jwt_secret, user, ttl))

    # --- snapshots and restore (snapshots.py) ---------------------------------------------------

    def snapshot_create(self, note: str | None, timeout: float | None, op: Operator) -> Result:
        return self._snapshots().create(note, snapshot_deadline(timeout), op.step)

    def snapshot_list(self) -> Result:
        return self._snapshots().list()

    def snapshot_show(self, snapshot_id: str) -> Result:
        return self._snapshots().show(snapshot_id)

    def snapshot_delete(self, snapshot_id: str, timeout: float | None, op: Operator) -> Result:
        check_timeout(timeout)
        snapshots = self._snapshots()
        op.confirm(
            f"Delete snapshot {snapshot_id} of stack {self.stack!r}?",
            details=snapshots.delete_plan(snapshot_id),
        )
        return snapshots.delete(snapshot_id)

    def snapshot_prune(self, keep: int, previous_data: bool, op: Operator) -> Result:
        snapshots = self._snapshots()
        plan = snapshots.prune_plan(keep, previous_data)
        if plan:  # nothing to delete: nothing to ask about
            op.confirm(f"Prune the snapshots of stack {self.stack!r}?", details=plan)
        return snapshots.prune(keep, previous_data)

    def snapshot_verify(
        self, snapshot_id: str, deep: bool, timeout: float | None, op: Operator
    ) -> Result:
        return self._snapshots().verify(snapshot_id, deep, snapshot_deadline(timeout), op.step)

    def restore(self, req: RestoreRequest, op: Operator) -> Result:
        from cli.targets.local.snapshots.locate import source_catalog

        check_timeout(req.timeout)  # a bad --timeout fails before anyone is asked anything
        source = source_catalog(self.files, req.snapshot_id, req.from_stack)
        source.load(req.snapshot_id)  # an unknown id fails here, before any stack is made
        if source.files.name == self.stack:
            return self._restore(source, req, op)
        # Another stack's snapshot: its lock too, so that its `snapshot delete`, `prune` or
        # `destroy` cannot remove the dump while it is read (exit 11 names who holds it).
        home = self.files.dir.parent.parent
        with StackLock(home, source.files.name, f"restore -s {self.stack}", _user()):
            return self._restore(source, req, op)

    def _restore(self, source: Catalog, req: RestoreRequest, op: Operator) -> Result:
        if not self.files.exists():
            from cli.targets.local.snapshots.new_stack import restore_into_new_stack

            return restore_into_new_stack(self, source, req, op)
        snapshots = self._snapshots()
        plan = snapshots.restore_plan(req.snapshot_id, req.where, source)
        if req.where == "in-place":
            op.confirm_typed(self.stack, details=plan)
        else:
            op.confirm(
                f"Restore snapshot {req.snapshot_id} into stack {self.stack!r}?", details=plan
            )
        # The clock starts after the answer: a person reading the plan is not the operation.
        done = snapshots.restore(req.snapshot_id, req.where, snapshot_deadline(req.timeout),
                                 op.step, source)  # fmt: skip
        if req.where == "new":  # a new cluster: its WAL cannot continue the old chain
            from cli.targets.local.backups.verbs import after_primary_change

            with op.step("continuous backup: a new chain for the restored cluster"):
                done.warnings.extend(
                    after_primary_change(self, "snapshot restore", op.note).warnings
                )
        return done

    # --- continuous backup and point-in-time restore (backups/) ---------------------------------

    def backup_status(self, check: bool) -> Result:
        from cli.targets.local.backups import verbs

        return verbs.status(self, check)

    def backup_base(self, timeout: float | None, op: Operator) -> Result:
        from cli.targets.local.backups import verbs

        return verbs.base_backup(self, timeout, op)

    def restore_to_time(self, req: TimeRestoreRequest, op: Operator) -> Result:
        from cli.targets.local.backups import verbs

        check_timeout(req.timeout)
        return verbs.restore_to_time(self, req, op)

    # --- failover (failover.py) -----------------------------------------------------------------

    def failover_plan(self, req: FailoverRequest) -> Result:
        _, _, _, info = self.failover_sequence().plan(req.to_region, req.force, _max_lag(req))
        return DocResult(plan_document(self.stack, info))

    def failover(self, req: FailoverRequest, op: Operator) -> Result:
        check_timeout(req.timeout)

        def confirm(info: dict[str, Any]) -> None:
            op.confirm(
                f"{info['mode'].capitalize()} failover {info['from_region']} ->"
                f" {info['to_region']}?",
                details=[
                    *info["steps"],
                    f"data-loss bound: {describe_bound(info['data_loss_bound'])}",
                ],
            )

        info = self.failover_sequence().run(
            req.to_region, force=req.force, max_lag=_max_lag(req), confirm=confirm,
            step=op.note, phase=op.step, timeout=req.timeout or FAILOVER_TIMEOUT,
        )  # fmt: skip
        return DocResult(result_document(self.stack, info))

    def standby_rebuild(self, region: str, op: Operator) -> Result:
        op.confirm(
            f"Rebuild region {region!r} as the standby?",
            details=[f"delete {region}'s database and copy the primary into it"],
        )
        from cli.targets.local.backups.verbs import after_primary_change

        doc = self.failover_sequence().rebuild_standby(region, op.note, op.step)
        # The rebuild names only what streams as synchronous; with --archiving sync the
        # archiver is named again here if it was not streaming just then.
        follow = after_primary_change(self, "standby rebuild", op.note)
        return DocResult({**doc, "backup": follow.actions, "warnings": follow.warnings})

    # --- drills (drill.py) and logs (logs.py) ---------------------------------------------------

    def drill_failover(
        self, to_region: str | None, force: bool, pairs: int, op: Operator
    ) -> Result:
        from cli.targets.local import drill

        return drill.run(self, to_region, force, pairs, op)

    def drill_clean(self, run_id: str | None, op: Operator) -> Result:
        from cli.targets.local import drill

        return drill.clean_run(self, run_id, op)

    def logs(self, req: LogsRequest) -> Result:
        from cli.targets.local import logs

        return DocResult(logs.recent(self, req))

    def follow_logs(self, req: LogsRequest, write: Callable[[str], None]) -> None:
        from cli.targets.local import logs

        logs.follow(self, req, write)


def _max_lag(req: FailoverRequest) -> int:
    if req.max_lag is not None and req.max_lag < 0:
        raise UsageError(f"--max-lag must be 0 or more bytes, got {req.max_lag}")
    return FAILOVER_MAX_LAG if req.max_lag is None else req.max_lag


def snapshot_deadline(timeout: float | None) -> Deadline:
    from cli.snapshots import TIMEOUT_HINT

    check_timeout(timeout)
    return Deadline(timeout, hint=TIMEOUT_HINT)
