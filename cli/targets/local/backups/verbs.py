"""The backup verbs of the local target (``backup status``, ``backup base``,
``restore --to-time``) and the hook every primary change calls, over the modules beside it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.errors import ImctlError, PreconditionFailed
from cli.progress import Note
from cli.results import DocResult, Result, StatusResult
from cli.state import StackConfig
from cli.targets.base import Operator, TimeRestoreRequest
from cli.targets.local.backups import pitr
from cli.targets.local.backups.archiver import Archiver, ArchiverView
from cli.targets.local.backups.archiving import Archiving, FollowUp
from cli.targets.local.backups.layout import BackupRoot, iso
from cli.targets.local.backups.window import backup_doc
from cli.targets.local.runtime import Region
from cli.targets.local.snapshots.cutover import smoke_test, switch
from cli.targets.local.snapshots.pg_client import discard
from cli.targets.local.snapshots.restore import live_messages, mb_per_s

if TYPE_CHECKING:
    from cli.targets.local.target import LocalTarget


def _primary(target: LocalTarget) -> tuple[StackConfig, Region, list[Region]]:
    cfg = target.files.load_config()
    regions = target.regions(cfg)
    primary = next(r for r in regions if r.cfg.role == "primary")
    return cfg, primary, regions


def archiver_view(root: BackupRoot, primary: Region, answering: bool) -> ArchiverView:
    pg = primary.pg()
    return Archiver(root, primary.secrets.pg_password).view(pg if answering else None)


def answers(primary: Region) -> bool:
    from cli.targets.local.runtime import probe

    pg = primary.pg()
    return pg.is_running() and bool(probe(pg).get("answering"))


def status_doc(
    target: LocalTarget, cfg: StackConfig, primary: Region, answering: bool
) -> dict[str, Any]:
    """``answering``: whether the primary's PostgreSQL answers (the caller has probed it)."""
    from cli.targets.local.backups import shipping

    root = BackupRoot(target.files.dir)
    view = archiver_view(root, primary, answering)
    doc = backup_doc(cfg, root, primary.pg(), view, answering)
    doc["shipping"] = None
    if cfg.backup_url and cfg.archiving != "off":
        ship = shipping.ShipperProcess(root, cfg.backup_url).view()
        doc["shipping"] = ship
        doc["problems"] += shipping.problems(ship, cfg.stack)
        doc["healthy"] = not doc["problems"]
    return doc


def status(target: LocalTarget, check: bool) -> Result:
    cfg, primary, _regions = _primary(target)
    return StatusResult(status_doc(target, cfg, primary, answers(primary)), check)


def base_backup(target: LocalTarget, timeout: float | None, op: Operator) -> Result:
    from cli.targets.local.target import snapshot_deadline

    deadline = snapshot_deadline(timeout)
    cfg, primary, _ = _primary(target)
    if cfg.archiving == "off":
        raise PreconditionFailed(
            f"stack {cfg.stack!r} has archiving off: a base backup alone restores to one"
            " instant, which a snapshot does better",
            f"imctl deploy --archiving async -s {cfg.stack}, or `imctl snapshot create`",
        )
    if not primary.pg().is_running():
        raise PreconditionFailed(
            f"the primary's PostgreSQL (region {primary.cfg.name}) is not running",
            f"imctl deploy -s {cfg.stack}",
        )
    archiving = Archiving(target.files.dir, cfg, primary)
    with op.step("the WAL archiver, then a base backup (pg_basebackup, pg_verifybackup)"):
        actions = archiving.ensure(op.note, "backup base", force_base=True, deadline=deadline)
    chain = archiving.backups.current()
    assert chain is not None
    newest = chain.bases()[-1]
    return DocResult(
        {
            "stack": cfg.stack,
            "cloud": "local",
            "id": newest.id,
            "chain": chain.id,
            "finished_at": newest.finished_at,
            "size_bytes": newest.size_bytes,
            "seconds": newest.seconds,
            "path": str(chain.base_path(newest.id)),
            "actions": actions,
            "warnings": archiving.warnings,
        }
    )


def after_primary_change(target: LocalTarget, reason: str, note: Note) -> FollowUp:
    """Archiving for the new primary (a new chain when its history changed). Never fails the
    operation that called it: what went wrong comes back as a warning and in `status`."""
    try:
        cfg, primary, _ = _primary(target)
        archiving = Archiving(target.files.dir, cfg, primary)
        return FollowUp(archiving.ensure(note, reason=reason), archiving.warnings)
    except ImctlError as exc:
        return FollowUp([], [f"continuous backup did not restart: {exc.message}"])


def restore_to_time(target: LocalTarget, req: TimeRestoreRequest, op: Operator) -> Result:
    from cli.targets.local.target import snapshot_deadline

    cfg, primary, regions = _primary(target)
    root = BackupRoot(target.files.dir)
    fetched = 0
    live = primary.pg()

    def fetch(why: str) -> int:
        from cli.targets.local.backups.shipping import fetch_from_bucket

        assert cfg.backup_url is not None
        with op.step(f"fetching the archive from {cfg.backup_url} ({why})"):
            got = fetch_from_bucket(root, cfg.backup_url, op.note)
            live.chown_tree(root.chains_dir)  # restore_command runs as the PostgreSQL user
        return got

    if not root.chains() and cfg.backup_url:
        fetched = fetch("the local copy is gone")  # a lost disk: the bucket holds the archive
    view = archiver_view(root, primary, answers(primary))
    try:
        choice = pitr.choose(root, live, req.to_time, view)
    except PreconditionFailed as exc:
        # A past time a chain deleted here (or a destroyed stack's, deployed again) may still
        # hold in the bucket: what it has is fetched, and the time tried again. Not for a
        # future time or "latest", which the bucket cannot help.
        past = req.to_time is not None and req.to_time <= datetime.now(UTC)
        if not cfg.backup_url or fetched or exc.code != "outside_window" or not past:
            raise
        try:
            fetched = fetch("the time is not in the local copy")
        except ImctlError:
            raise exc from None  # the bucket's trouble would hide what the user asked about
        choice = pitr.choose(root, live, req.to_time, view)
    standbys = [r.cfg.name for r in regions if r.cfg.role == "standby"]
    plan = pitr.plan_lines(choice, primary, req.where, standbys, live_messages(live))
    if req.where == "in-place":
        op.confirm_typed(cfg.stack, details=plan)
    else:
        op.confirm(f"Restore stack {cfg.stack!r} to {pitr.describe(req.to_time)}?", details=plan)
    deadline = snapshot_deadline(req.timeout)
    started = time.monotonic()
    if choice.needs_marker:
        with op.step("making sure the archive holds everything up to the target"):
            pitr.mark_and_wait(live, deadline)
    choice = pitr.check_archive(live, choice, deadline, op.step)
    staging, timings = pitr.recover(choice, live, primary.secrets.pg_password, deadline, op.step)
    switched = False
    try:
        with op.step("checking the recovered data (dense seqs, commit times, live messages)"):
            checked = pitr.check(staging, live, choice, deadline)
        deadline.check("before switching; the current data is untouched")
        staging.stop()
        switched = True
        label = "pitr-" + (f"{req.to_time:%Y%m%dT%H%M%SZ}" if req.to_time else "latest")
        previous, switch_timings, killed = switch(primary, staging, label, op.step)
    finally:
        if not switched:
            discard(staging)
    timings.update(switch_timings)
    rebuilt = []
    for name in standbys:  # rebuild_standby reports its own steps
        target.failover_sequence().rebuild_standby(name, op.note, op.step)
        rebuilt.append(name)
    smoke = smoke_test(primary, previous, op.step, timings)
    kept: str | None = str(previous)
    if req.where == "in-place":
        pitr.remove_previous(previous, op.note)
        kept = None
    with op.step("starting a new backup chain for the recovered timeline"):
        follow = after_primary_change(target, "restore", op.note)
    timings["total_s"] = round(time.monotonic() - started, 3)
    recovery_s = timings.get("recovery_s") or 0.0
    return DocResult(
        {
            "stack": cfg.stack,
            "cloud": "local",
            "to_time": pitr.describe(req.to_time),
            "recovered_to": iso(checked.recovered_to) if checked.recovered_to else None,
            "target": req.where,
            "region": primary.cfg.name,
            "chain": choice.chain.id,
            "base_backup": choice.base.id,
            "window": {
                "first": iso(choice.window.first) if choice.window.first else None,
                "last": iso(choice.window.last) if choice.window.last else None,
            },
            "messages": checked.messages,
            "conversations": checked.conversations,
            "checks": {
                "dense_seqs": True,
                "nothing_after_target": True,
                "live_compared": checked.live_compared,
                "deleted_since": checked.deleted_since,
            },
            "previous_data": kept,
            "standbys_rebuilt": rebuilt,
            "smoke": smoke,
            "timings": timings,
            "restore_mb_per_s": mb_per_s(checked.size_bytes, recovery_s),
            "nodes_killed": killed,
            "fetched_from_bucket": fetched,
            "backup": follow.actions,
            "warnings": follow.warnings,
            "finished_at": iso(datetime.now(UTC)),
        }
    )
