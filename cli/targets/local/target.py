"""The local target: the whole topology on this machine, with real processes."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from cli.errors import ImctlError, OperationTimeout, PreconditionFailed, UsageError
from cli.progress import Note
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
from cli.targets.local import discovery, procs
from cli.targets.local.runtime import Region, SyncWatch

DEFAULT_REGION = "local"


def validate_replicas(n: int) -> int:
    if not 1 <= n <= MAX_REPLICAS:
        raise UsageError(
            f"--replicas must be between 1 and {MAX_REPLICAS}, got {n}",
            "to stop everything use `imctl destroy`",
        )
    return n


def validate_port(p: int) -> int:
    if not 1024 <= p <= 65535:
        raise UsageError(f"--port must be between 1024 and 65535, got {p}")
    return p


def sync_watch(cfg: StackConfig) -> SyncWatch:
    """What the primary's nodes watch (im_server/health.py): the synchronous standby, if the
    stack has one now, and the policy for when it is lost."""
    standbys = cfg.standbys
    name = standbys[0].name if cfg.replication == "sync" and standbys else ""
    return SyncWatch(name, cfg.sync_policy, cfg.sync_degrade_after)


class LocalTarget:
    def __init__(self, files: StackFiles) -> None:
        self.files = files

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
    ) -> tuple[StackConfig, bool]:
        """The config deploy should reconcile to, and whether the stack is new."""
        cfg, new = self._plan_config(region, replicas, port, standby_region, replication)
        if sync_policy is not None:
            if sync_policy not in ("wait", "degrade"):
                raise UsageError(f"--sync-policy must be wait or degrade, got {sync_policy!r}")
            cfg.sync_policy = "degrade" if sync_policy == "degrade" else "wait"
        if sync_degrade_after is not None:
            if not 0.5 <= sync_degrade_after <= 3600:
                raise UsageError(
                    f"--sync-degrade-after must be between 0.5 and 3600 seconds,"
                    f" got {sync_degrade_after:g}"
                )
            cfg.sync_degrade_after = sync_degrade_after
        return cfg, new

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

    def deploy(
        self,
        region: str | None,
        replicas: int | None,
        port: int | None,
        step: Note,
        standby_region: str | None = None,
        replication: str | None = None,
        *,
        sync_policy: str | None = None,
        sync_degrade_after: float | None = None,
    ) -> dict[str, Any]:
        cfg, new = self.plan_config(
            region, replicas, port, standby_region, replication, sync_policy, sync_degrade_after
        )
        secrets = self.files.load_or_create_secrets()
        regions = self.regions(cfg, secrets)
        for r in regions:
            if r.cfg.role != "fenced":
                r.check_port()  # before anything starts: a bad port leaves nothing half-started
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
            actions += r.reconcile_data(step)
        for r in ordered:
            actions += r.reconcile_nodes(step)
            if r.cfg.role == "standby" and cfg.replication == "sync":
                actions += self._ensure_sync(r, step)
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
            "regions": statuses,
        }

    def _ensure_sync(self, standby: Region, step: Note) -> list[str]:
        """Synchronous replication, switched on only once the standby streams (before that,
        every commit on the primary would wait for it)."""
        from cli.targets.local import replication as rep

        assert standby.upstream is not None
        primary = standby.upstream.pg()
        rows = {r["standby"]: r for r in rep.primary_view(primary)}
        if rows.get(standby.cfg.name, {}).get("sync_state") == "sync":
            return []
        self._wait_streaming(standby, 30.0)
        rep.set_synchronous(primary, standby.cfg.name)
        msg = f"synchronous replication {standby.upstream.cfg.name} -> {standby.cfg.name}"
        step(msg)
        return [msg]

    @staticmethod
    def _wait_streaming(standby: Region, timeout: float) -> None:
        from cli.targets.local import replication as rep

        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ImctlError):
                if rep.standby_state(standby.pg()).streaming:
                    return
            if time.monotonic() > deadline:
                raise OperationTimeout(
                    f"standby {standby.cfg.name} is not streaming after {timeout:.0f}s",
                    f"see {standby.root / 'pg' / 'postgres.log'}",
                )
            time.sleep(0.1)

    def status(self) -> dict[str, Any]:
        from cli.targets.local.health import problems

        cfg = self.files.load_config()
        regions = [r.status() for r in self.regions(cfg)]
        standbys = [r for r in regions if r["role"] != "primary"]
        found = problems(cfg, regions)
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
        }

    def scale(self, replicas: int, region: str | None, step: Note) -> dict[str, Any]:
        validate_replicas(replicas)
        cfg = self.files.load_config()
        rc = cfg.region(region) if region else cfg.primary
        before = rc.replicas
        target = next(r for r in self.regions(cfg) if r.cfg.name == rc.name)  # checks files
        rc.replicas = replicas
        # Written first: if scaling fails half-way, the next deploy finishes the job.
        self.files.save_config(cfg)
        # A node running without its pid file would otherwise get a twin.
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

    def destroy_plan(self) -> list[str]:
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
        lines.append(f"delete {self.files.dir} (all messages of stack {cfg.stack!r})")
        return lines

    def destroy(self, keep_data: bool, step: Note) -> dict[str, Any]:
        cfg = self.files.load_config()
        actions: list[str] = []
        regions = self.regions(cfg)
        for r in regions:
            actions += r.stop_all(step)
        actions += discovery.stop_leftovers(self.files.dir, regions, cfg.drain_grace, step)
        if not keep_data:
            step(f"deleting {self.files.dir}")
            shutil.rmtree(self.files.dir)
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "stopped": actions,
            "data_deleted": not keep_data,
            "data_dir": None if not keep_data else str(self.files.dir),
        }

    # --- failover -------------------------------------------------------------------------

    def failover_plan(
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

    def failover(
        self,
        to_region: str,
        *,
        force: bool,
        max_lag: int,
        confirm: Callable[[dict[str, Any]], None],
        step: Note,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        from cli.targets.local import replication as rep

        cfg, src, dst, info = self.failover_plan(to_region, force, max_lag)
        confirm(info)
        t0 = time.monotonic()
        deadline = t0 + timeout
        src_pg, dst_pg = src.pg(), dst.pg()
        if not force:
            step(f"draining {src.cfg.name}'s im-server nodes")
            src.remove_nodes(0, step)
            target = rep.current_lsn(src_pg)
            step(f"waiting for {dst.cfg.name} to replay up to the last write")
            while rep.replayed_lsn(dst_pg) < target:
                if time.monotonic() > deadline:
                    raise OperationTimeout(
                        f"{dst.cfg.name} did not catch up in {timeout:.0f}s; nothing was"
                        f" promoted and {src.cfg.name} is still the primary",
                        "`imctl deploy` restarts its nodes",
                    )
                time.sleep(0.02)
            step(f"stopping {src.cfg.name}'s PostgreSQL")
            src_pg.stop()
        else:
            step(f"fencing {src.cfg.name}")
            src.fence(kill_db=False)
            end = rep.wal_end_of_stopped(src_pg)
            received = rep.standby_state(dst_pg).receive_lsn
            wal_lost = None if end is None else max(0, end - received)
            info["data_loss_bound"]["wal_bytes"] = wal_lost
            if cfg.replication == "async" and wal_lost == 0:
                info["data_loss_bound"]["acked_messages"] = 0
        step(f"promoting {dst.cfg.name}")
        rep.promote(dst_pg)
        promoted_at = time.monotonic()
        # Roles are written before nodes start: a crash from here on leaves the config naming
        # the new primary, and `imctl deploy` finishes the job.
        src.cfg.role = "fenced" if force else "standby"
        dst.cfg.role = "primary"
        self.files.save_config(cfg)
        dst.upstream, src.upstream = None, dst
        dst.sync = sync_watch(cfg)
        dst.ensure_bus(step)
        dst.ensure_nodes(dst.cfg.replicas, step)
        info["rto_seconds"] = round(time.monotonic() - t0, 3)
        info["promote_seconds"] = round(promoted_at - t0, 3)
        info["rejoined"] = False
        if not force:
            step(f"rejoining {src.cfg.name} as the standby of {dst.cfg.name}")
            self._rejoin(cfg, src, dst, step)
            info["rejoined"] = True
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
            self._wait_streaming(src, 15.0)
        except OperationTimeout:
            step(f"{src.cfg.name} cannot follow directly; taking a fresh copy")
            pg.stop(mode="fast")
            rep.base_backup(dst.pg(), pg, src.cfg.name, self.files.load_secrets().pg_password)
            pg.start()
            self._wait_streaming(src, 30.0)
        src.ensure_bus(step)
        if cfg.replication == "sync":
            rep.set_synchronous(dst.pg(), src.cfg.name)

    def rebuild_standby(self, region: str, step: Note) -> dict[str, Any]:
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
        r.fence(kill_db=False)
        r.cfg.role = "standby"
        r.upstream = primary
        pg = r.pg()
        step(f"copying {primary.cfg.name} into {region} (pg_basebackup)")
        rep.drop_slot(primary.pg(), region)
        rep.base_backup(primary.pg(), pg, region, self.files.load_secrets().pg_password)
        pg.start()
        self._wait_streaming(r, 30.0)
        r.ensure_bus(step)
        if cfg.replication == "sync":
            rep.set_synchronous(primary.pg(), region)
        self.files.save_config(cfg)
        # The primary's nodes learn that they have a standby again (a rolling restart).
        primary.sync = sync_watch(cfg)
        primary.ensure_nodes(primary.cfg.replicas, step)
        return {"stack": cfg.stack, "region": region, "role": "standby", "status": self.status()}
