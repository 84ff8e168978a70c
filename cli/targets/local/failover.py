"""Moving the primary role between the local regions: the pre-flight plan, the planned
switchover and the forced failover, the old primary rejoining, and rebuilding a standby.

The order matters for what a crash leaves behind: roles are written to the stack config right
after the promotion, before any node starts, so `imctl deploy` finishes an interrupted failover
instead of undoing it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from cli.deadline import poll
from cli.errors import ImctlError, OperationTimeout, PreconditionFailed, UsageError
from cli.progress import Note, Step
from cli.state import StackConfig, StackFiles
from cli.targets.local.postgres import PgInstance
from cli.targets.local.runtime import Region, SyncWatch

if TYPE_CHECKING:
    from cli.targets.local.backups.archiving import FollowUp


def sync_names(cfg: StackConfig) -> list[str]:
    """Who must confirm every commit: the standby region (sync replication) and the WAL
    archiver (sync archiving), each for its own guarantee: a failover, a restore from the
    archive, loses no acked message."""
    from cli.targets.local.backups.archiver import ARCHIVER_NAME

    standbys = cfg.standbys
    names = [standbys[0].name] if cfg.replication == "sync" and standbys else []
    return names + ([ARCHIVER_NAME] if cfg.archiving == "sync" else [])


def streaming_sync_names(cfg: StackConfig, primary: PgInstance) -> list[str]:
    """``sync_names`` that stream from ``primary`` now: naming one that does not would stop
    every commit until it does (the archiver restarts against a new primary only after the
    standby is back; deploy names the rest as they come)."""
    from cli.targets.local import replication as rep

    streaming = rep.streaming_names(primary)
    return [n for n in sync_names(cfg) if n in streaming]


def sync_watch(cfg: StackConfig) -> SyncWatch:
    """What the primary's nodes watch (im_server/health.py): whoever must confirm commits,
    and the policy for when one is lost."""
    return SyncWatch(",".join(sync_names(cfg)), cfg.sync_policy, cfg.sync_degrade_after)


def wait_streaming(standby: Region, timeout: float) -> None:
    from cli.targets.local import replication as rep

    def streaming() -> bool:
        try:
            return rep.standby_state(standby.pg()).streaming
        except ImctlError:  # not accepting connections yet: keep waiting
            return False

    def not_streaming(_: bool) -> NoReturn:
        raise OperationTimeout(
            f"standby {standby.cfg.name} is not streaming after {timeout:.0f}s",
            f"see {standby.root / 'pg' / 'postgres.log'}",
        )

    poll(
        streaming, done=bool, state=lambda up: "streaming" if up else "not streaming",
        what=f"standby {standby.cfg.name}", limit=timeout, interval=0.1,
        timed_out=not_streaming,
    )  # fmt: skip


class LocalFailover:
    """``regions`` builds the stack's regions (LocalTarget.regions); ``status`` is the stack's
    status document, which a finished failover reports."""

    def __init__(
        self,
        files: StackFiles,
        regions: Callable[[StackConfig], list[Region]],
        status: Callable[[], dict[str, Any]],
        primary_changed: Callable[[str, Note], FollowUp] | None = None,
    ) -> None:
        self.files = files
        self.regions = regions
        self.status = status
        # Continuous backup follows the new primary (a new chain: its timeline is new).
        self.primary_changed = primary_changed

    def plan(
        self, to_region: str, force: bool, max_lag: int
    ) -> tuple[StackConfig, Region, Region, dict[str, Any]]:
        """Pre-flight checks; raise PreconditionFailed with the reason when unsafe."""
        from cli.targets.local import replication as rep

        cfg = self.files.load_config()
        regions = {r.cfg.name: r for r in self.regions(cfg)}
        if to_region not in regions:
            raise UsageError(
                f"stack {cfg.stack!r} has no region {to_region!r}",
                f"regions: {', '.join(regions)}",
            )
        dst = regions[to_region]
        src = regions[cfg.primary.name]
        if dst.cfg.role != "standby":
            raise PreconditionFailed(
                f"region {to_region!r} is the {dst.cfg.role}, not a standby",
                "`imctl status` shows each region's role",
            )
        dst_pg = dst.pg()
        if not dst_pg.is_running() or not rep.in_recovery(dst_pg):
            raise PreconditionFailed(
                f"standby {to_region!r} is not a running standby database",
                f"`imctl deploy` starts it; `imctl standby rebuild --region {to_region}`"
                " rebuilds it",
            )
        state = rep.standby_state(dst_pg)
        info: dict[str, Any] = {
            "from_region": src.cfg.name,
            "to_region": to_region,
            "mode": "forced" if force else "planned",
            "replication": cfg.replication,
            "standby_streaming": state.streaming,
        }
        if not force:
            src_pg = src.pg()
            if not src_pg.is_running():
                raise PreconditionFailed(
                    f"primary {src.cfg.name!r} is down: a planned switchover needs it",
                    f"if it is lost, fence it and promote: imctl failover --to-region {to_region}"
                    " --force",
                )
            if not state.streaming:
                raise PreconditionFailed(
                    f"standby {to_region!r} is not streaming from {src.cfg.name!r}",
                    "check `imctl status` and the standby's postgres log",
                )
            lag = max(0, rep.current_lsn(src_pg) - state.replay_lsn)
            info["lag_bytes"] = lag
            if lag > max_lag:
                raise PreconditionFailed(
                    f"standby {to_region!r} is {lag} bytes behind (limit {max_lag})",
                    "wait for it to catch up, or raise --max-lag",
                )
            info["data_loss_bound"] = {"acked_messages": 0, "wal_bytes": 0}
            info["steps"] = [
                f"drain the im-server nodes of {src.cfg.name} (clients get reconnect)",
                f"wait until {to_region} has replayed everything, then stop {src.cfg.name}'s"
                " PostgreSQL",
                f"promote {to_region}; start its nodes on the global port {cfg.endpoint_port}",
                f"rejoin {src.cfg.name} as the standby of {to_region}",
            ]
        else:
            if cfg.replication == "sync":
                info["data_loss_bound"] = {
                    "acked_messages": 0,
                    "wal_bytes": None,
                    "why": "synchronous replication: every ack waited for the standby's flush",
                }
            else:
                info["data_loss_bound"] = {
                    "acked_messages": None,
                    "wal_bytes": None,
                    "why": "asynchronous replication: WAL the standby had not received is lost;"
                    " measured after fencing",
                }
            info["steps"] = [
                f"fence {src.cfg.name}: kill its nodes, NATS and PostgreSQL where they still run",
                f"promote {to_region}; start its nodes on the global port {cfg.endpoint_port}",
                f"{src.cfg.name} stays out until `imctl standby rebuild --region {src.cfg.name}`",
            ]
        return cfg, src, dst, info

    def run(
        self,
        to_region: str,
        *,
        force: bool,
        max_lag: int,
        confirm: Callable[[dict[str, Any]], None],
        step: Note,
        phase: Step,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """``step`` says what was done; ``phase`` times a stretch that can wait (a spinner, a
        step line, JSON events), so no stretch of a failover goes by without a word."""
        from cli.targets.local import replication as rep

        cfg, src, dst, info = self.plan(to_region, force, max_lag)
        confirm(info)
        t0 = time.monotonic()
        deadline = t0 + timeout
        src_pg, dst_pg = src.pg(), dst.pg()
        if not force:
            with phase(f"draining {src.cfg.name}'s im-server nodes"):
                src.remove_nodes(0, step)
            target = rep.current_lsn(src_pg)

            def behind(_: int) -> NoReturn:
                raise OperationTimeout(
                    f"{dst.cfg.name} did not catch up in {timeout:.0f}s; nothing was"
                    f" promoted and {src.cfg.name} is still the primary",
                    "`imctl deploy` restarts its nodes",
                )

            with phase(f"waiting for {dst.cfg.name} to replay up to the last write"):
                poll(
                    lambda: rep.replayed_lsn(dst_pg), done=lambda lsn: lsn >= target,
                    state=lambda lsn: f"{max(0, target - lsn)} bytes behind", what=dst.cfg.name,
                    limit=max(0.0, deadline - time.monotonic()), interval=0.02,
                    timed_out=behind,
                )  # fmt: skip
            # The archiver follows the new primary (primary_changed); its slot on the old one
            # would hold WAL there forever once it is a standby.
            self._release_archiver(src_pg, step)
            with phase(f"stopping {src.cfg.name}'s PostgreSQL"):
                src_pg.stop()
        else:
            with phase(f"fencing {src.cfg.name}"):
                src.fence(kill_db=False)
            end = rep.wal_end_of_stopped(src_pg)
            received = rep.standby_state(dst_pg).receive_lsn
            wal_lost = None if end is None else max(0, end - received)
            info["data_loss_bound"]["wal_bytes"] = wal_lost
            if cfg.replication == "async" and wal_lost == 0:
                info["data_loss_bound"]["acked_messages"] = 0
        with phase(f"promoting {dst.cfg.name}"):
            rep.promote(dst_pg)
        promoted_at = time.monotonic()
        # Roles are written before nodes start: a crash from here on leaves the config naming
        # the new primary, and `imctl deploy` finishes the job.
        src.cfg.role = "fenced" if force else "standby"
        dst.cfg.role = "primary"
        self.files.save_config(cfg)
        dst.upstream, src.upstream = None, dst
        dst.sync = sync_watch(cfg)
        with phase(f"starting {dst.cfg.name}'s NATS and im-server nodes"):
            dst.ensure_bus(step)
            dst.ensure_nodes(dst.cfg.replicas, step)
        info["rto_seconds"] = round(time.monotonic() - t0, 3)
        info["promote_seconds"] = round(promoted_at - t0, 3)
        info["rejoined"] = False
        if not force:
            with phase(f"rejoining {src.cfg.name} as the standby of {dst.cfg.name}"):
                self._rejoin(cfg, src, dst, step)
            info["rejoined"] = True
        info["backup"], info["backup_warnings"] = [], []
        if self.primary_changed is not None:
            with phase(f"continuous backup: archiving from {dst.cfg.name}"):
                follow = self.primary_changed("failover", step)
                info["backup"], info["backup_warnings"] = follow.actions, follow.warnings
        info["status"] = self.status()
        return info

    def _rejoin(self, cfg: StackConfig, src: Region, dst: Region, step: Note) -> None:
        """The old primary follows the new one: it was stopped cleanly after the standby had
        everything, so it can stream the new timeline; pg_rewind or a fresh copy otherwise."""
        from cli.targets.local import replication as rep

        pg = src.pg()
        rep.ensure_slot(dst.pg(), src.cfg.name)
        rep.mark_standby(pg)
        pg.start()
        try:
            wait_streaming(src, 15.0)
        except OperationTimeout:
            step(f"{src.cfg.name} cannot follow directly; taking a fresh copy")
            pg.stop(mode="fast")
            rep.base_backup(dst.pg(), pg, src.cfg.name, self.files.load_secrets().pg_password)
            pg.start()
            wait_streaming(src, 30.0)
        src.ensure_bus(step)
        if cfg.replication == "sync":
            rep.set_synchronous(dst.pg(), streaming_sync_names(cfg, dst.pg()))

    def _release_archiver(self, pg: PgInstance, step: Note) -> None:
        """The old chain gets the last of the old primary's WAL first (async archiving may
        trail by a moment), then the archiver stops and its slot goes. A slot that will not
        go is said, not fatal: the nodes are drained and the failover must go on."""
        from cli.targets.local.backups.archiver import (
            ARCHIVER_NAME,
            Archiver,
            drop_slot,
            slot_exists,
        )
        from cli.targets.local.backups.layout import BackupRoot

        archiver = Archiver(BackupRoot(self.files.dir), "")
        if archiver.alive():
            with contextlib.suppress(ImctlError):
                target = pg.sql("SELECT pg_current_wal_lsn()")
                poll(
                    lambda: pg.sql(
                        "SELECT coalesce(bool_or(write_lsn >= :'lsn'::pg_lsn), false) FROM"
                        " pg_stat_replication WHERE application_name = :'a'",
                        variables={"lsn": target, "a": ARCHIVER_NAME}, timeout=5,
                    ),
                    done=lambda ok: ok == "t", state=lambda ok: ok, what="the archiver",
                    limit=10.0, interval=0.05,
                )  # fmt: skip
        archiver.stop()
        try:
            if slot_exists(pg):
                drop_slot(pg)
        except ImctlError as exc:
            step(f"warning: {exc.message}")

    def rebuild_standby(self, region: str, step: Note, phase: Step) -> dict[str, Any]:
        from cli.targets.local import replication as rep

        cfg = self.files.load_config()
        regions = {r.cfg.name: r for r in self.regions(cfg)}
        if region not in regions:
            raise UsageError(f"stack {cfg.stack!r} has no region {region!r}")
        r = regions[region]
        if r.cfg.role == "primary":
            raise PreconditionFailed(
                f"region {region!r} is the primary; only a standby or fenced region is rebuilt"
            )
        primary = regions[cfg.primary.name]
        if not primary.pg().is_running():
            raise PreconditionFailed(f"primary {primary.cfg.name!r} is not running")
        with phase(f"fencing {region}"):
            r.fence(kill_db=False)
        r.cfg.role = "standby"
        r.upstream = primary
        pg = r.pg()
        with phase(f"copying {primary.cfg.name} into {region} (pg_basebackup)"):
            rep.drop_slot(primary.pg(), region)
            rep.base_backup(primary.pg(), pg, region, self.files.load_secrets().pg_password)
        with phase(f"starting {region} as the standby and waiting until it streams"):
            pg.start()
            wait_streaming(r, 30.0)
            r.ensure_bus(step)
            if cfg.replication == "sync":
                rep.set_synchronous(primary.pg(), streaming_sync_names(cfg, primary.pg()))
        self.files.save_config(cfg)
        # The primary's nodes learn that they have a standby again (a rolling restart).
        with phase(f"restarting {primary.cfg.name}'s im-server nodes to protect writes again"):
            primary.sync = sync_watch(cfg)
            primary.ensure_nodes(primary.cfg.replicas, step)
        return {"stack": cfg.stack, "region": region, "role": "standby", "status": self.status()}


def plan_document(stack: str, info: dict[str, Any]) -> dict[str, Any]:
    """``failover --dry-run``: the keys every target gives (cli/targets/base.py), the local
    facts under ``details``."""
    facts = ("replication", "standby_streaming", "lag_bytes")
    return {
        "cloud": "local",
        "stack": stack,
        "mode": info["mode"],
        "from_region": info["from_region"],
        "to_region": info["to_region"],
        "dry_run": True,
        "steps": info["steps"],
        "data_loss_bound": info["data_loss_bound"],
        "details": {k: info[k] for k in facts if k in info},
    }


def result_document(stack: str, info: dict[str, Any]) -> dict[str, Any]:
    """A finished failover in the keys every target gives; ``details.status`` is the stack's
    status right after it."""
    forced = info["mode"] == "forced"
    status = info["status"]
    old = info["from_region"]
    plan = plan_document(stack, info)
    return {
        **{k: v for k, v in plan.items() if k != "steps"},
        "dry_run": False,
        "rto_seconds": info["rto_seconds"],
        "promote_seconds": info["promote_seconds"],
        # Planned: the old nodes drained and its PostgreSQL stopped before the promotion;
        # forced: every process of the old region killed first.
        "fenced": True,
        "rejoined": info["rejoined"],
        "endpoint": status["endpoint"],
        "next_steps": [f"imctl standby rebuild --region {old} -s {stack}"] if forced else [],
        "warnings": ([] if info["rejoined"] or forced else [f"{old} did not rejoin as standby"])
        + info.get("backup_warnings", []),
        "details": {**plan["details"], "status": status},
    }
