"""Keeping a local stack's continuous backup going: the chain the primary belongs to, the WAL
archiver streaming into it, a base backup when one is due, and retention.

``ensure`` is what ``deploy`` (and every operation that changes which cluster or timeline is
the primary: restore, failover, standby rebuild) calls; it is idempotent like the rest of a
deploy. Which chain the primary belongs to is decided by its identity: the cluster's system
identifier, its timeline, and an incarnation marker imctl writes into the data directory when
it creates the cluster or restores one (two restores of the same cluster can end on the same
timeline number with different histories; the marker tells them apart).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli.deadline import Deadline
from cli.errors import ImctlError
from cli.progress import Note
from cli.state import StackConfig, parse_utc
from cli.targets.local.backups import base
from cli.targets.local.backups.archiver import ARCHIVER_NAME, Archiver, drop_slot, slot_exists
from cli.targets.local.backups.layout import BackupRoot, Chain, ChainInfo, iso
from cli.targets.local.backups.shipping import ShipperProcess, prune_bucket
from cli.targets.local.backups.wal import ArchivedWal, Segment, lsn_int
from cli.targets.local.postgres import PgInstance
from cli.targets.local.runtime import Region
from cli.targets.local.snapshots.catalog import mb

INCARNATION = "imctl.incarnation"


def incarnation(pg: PgInstance) -> str:
    try:
        return (pg.data_dir / INCARNATION).read_text().strip()
    except FileNotFoundError:
        return ""


def new_incarnation(data_dir: Path, pg: PgInstance) -> str:
    mark = secrets.token_hex(8)
    path = data_dir / INCARNATION
    path.write_text(mark + "\n")
    pg.chown(path)
    return mark


def identity(pg: PgInstance) -> tuple[str, int]:
    """(system identifier, current timeline) of a running cluster."""
    row = pg.sql(
        "SELECT system_identifier, ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))"
        "::bit(32)::int FROM pg_control_system()"
    )
    sysid, timeline = row.split("|")
    return sysid, int(timeline)


def chain_matches(chain: Chain, sysid: str, timeline: int, mark: str) -> bool:
    info = chain.info()
    return (info.system_identifier, info.timeline, info.incarnation) == (sysid, timeline, mark)


@dataclass(frozen=True)
class FollowUp:
    """What restarting continuous backup after a primary change did, and what went wrong
    (backups/verbs.py after_primary_change)."""

    actions: list[str]
    warnings: list[str]


class Archiving:
    def __init__(self, stack_dir: Path, cfg: StackConfig, primary: Region) -> None:
        self.cfg = cfg
        self.primary = primary
        self.backups = BackupRoot(stack_dir)
        self.archiver = Archiver(self.backups, primary.secrets.pg_password)
        # What went wrong without failing the call (a bucket's retention), for its result.
        self.warnings: list[str] = []

    @property
    def synchronous(self) -> bool:
        return self.cfg.archiving == "sync"

    def ensure(
        self,
        step: Note,
        reason: str = "deploy",
        *,
        force_base: bool = False,
        deadline: Deadline | None = None,
    ) -> list[str]:
        """``force_base``: a base backup now even when none is due (``backup base``), bounded
        by ``deadline``."""
        pg = self.primary.pg()
        if self.cfg.archiving == "off":
            return self.turn_off(pg, step)
        actions: list[str] = []
        from cli.targets.local import discovery

        for stray in discovery.backup_strays(self.backups.root.parent):
            # A second archiver on the same slot would be refused; a second shipper races.
            discovery.stop(stray, 0)
            actions.append(f"stopped {stray}, running without a pid file ({stray.proof})")
        mark = incarnation(pg) or new_incarnation(pg.data_dir, pg)
        sysid, timeline = identity(pg)
        chain = self.backups.current()
        if (
            chain is not None
            and chain_matches(chain, sysid, timeline, mark)
            and not self.archiver.alive()
            and not slot_exists(pg)
            and ArchivedWal.read(chain.wal_dir).all
        ):
            # Archiving was off (its slot dropped) or the slot was lost: the WAL since may be
            # recycled already, so the chain cannot go on; a new one starts.
            reason, chain = "archiving resumed without its slot", None
        if chain is None or not chain_matches(chain, sysid, timeline, mark):
            # The archiver may still stream another history into the old chain.
            self.archiver.stop()
            why = reason if self.backups.current() is not None else "first backup of this stack"
            chain = self.backups.new_chain_dir()
            chain.write_info(ChainInfo(chain.id, iso(datetime.now(UTC)), sysid, timeline, why,
                                       mark))  # fmt: skip
            actions.append(f"started backup chain {chain.id} ({why})")
        argv = self.archiver.argv(chain, pg, self.synchronous)
        if not self.archiver.runs(argv):
            restarted = self.archiver.stop()
            self.archiver.start(chain, pg, self.synchronous)
            mode = "synchronous" if self.synchronous else "asynchronous"
            actions.append(
                f"{'restarted' if restarted else 'started'} the WAL archiver ({mode},"
                f" pg_receivewal into {chain.wal_dir})"
            )
        actions += self.ensure_sync_names(pg)
        for a in actions:
            step(a)
        if force_base or self.base_due(chain):
            actions.append(self.take_base(chain, deadline or Deadline(None), step))
        actions += self.prune(step)
        actions += self.ensure_shipper(step)
        return actions

    def shipper(self) -> ShipperProcess | None:
        url = self.cfg.backup_url
        return ShipperProcess(self.backups, url) if url else None

    def ensure_shipper(self, step: Note) -> list[str]:
        shipper = self.shipper()
        if shipper is not None:
            return shipper.ensure(step)
        # No URL (any more): a shipper still running from before stops.
        if ShipperProcess(self.backups, "").stop():
            step("stopped the backup shipper (no --backup-url)")
            return ["stopped the backup shipper (no --backup-url)"]
        return []

    def ensure_sync_names(self, pg: PgInstance) -> list[str]:
        """With --archiving sync, every commit waits for the archiver too; a standby region is
        named here only once it streams (deploy names it when it does: until then a commit
        would wait for it). Switching archiving to async takes the archiver out again."""
        from cli.targets.local import replication as rep
        from cli.targets.local.failover import streaming_sync_names

        current = pg.sql("SHOW synchronous_standby_names")
        want = streaming_sync_names(self.cfg, pg)
        listed = ARCHIVER_NAME in current
        if self.synchronous == listed:
            return []
        rep.set_synchronous(pg, want)
        if self.synchronous:
            return ["commits now wait for the WAL archiver too (--archiving sync)"]
        return ["commits no longer wait for the WAL archiver (--archiving async)"]

    def base_due(self, chain: Chain) -> bool:
        bases = chain.bases()
        if not bases:
            return True
        age = datetime.now(UTC) - parse_utc(bases[-1].finished_at)
        return age > timedelta(hours=self.cfg.backup_base_every_hours)

    def take_base(self, chain: Chain, deadline: Deadline, step: Note) -> str:
        pg = self.primary.pg()
        step(f"taking a base backup (pg_basebackup) into {chain.base_dir}")
        info = base.take(pg, self.primary.secrets.pg_password, chain, deadline)
        msg = f"took base backup {info.id} ({mb(info.size_bytes)} in {info.seconds:.1f}s, verified)"
        step(msg)
        return msg

    def turn_off(self, pg: PgInstance, step: Note) -> list[str]:
        actions = []
        if pg.is_running():
            # Out of the synchronous list first: commits must not wait for what stops next.
            actions += self.ensure_sync_names(pg)
        if self.archiver.stop():
            actions.append("stopped the WAL archiver (--archiving off)")
        if pg.is_running():
            drop_slot(pg)
        for a in actions:
            step(a)
        return actions

    # --- retention ------------------------------------------------------------------------

    def prune_plan(
        self,
    ) -> tuple[list[Chain], list[tuple[Chain, str]], tuple[Chain, Segment] | None]:
        """What retention removes: whole chains, base backups, and WAL before a segment. It
        keeps everything needed to restore to any time in the last ``backup_keep_days``: the
        newest base backup finished before that horizon, and all that follows it."""
        horizon = datetime.now(UTC) - timedelta(days=self.cfg.backup_keep_days)
        chains = self.backups.chains()
        anchor: tuple[Chain, str] | None = None
        for chain in chains:
            for b in chain.bases():
                if parse_utc(b.finished_at) <= horizon:
                    anchor = (chain, b.id)
        if anchor is None:
            return [], [], None
        keep_chain, keep_base = anchor
        drop_chains = chains[: chains.index(next(c for c in chains if c.id == keep_chain.id))]
        drop_bases = [(keep_chain, b.id) for b in keep_chain.bases() if b.id < keep_base]
        start = keep_chain.base(keep_base)
        wal_from = Segment.at(start.timeline, lsn_int(start.start_lsn))
        return drop_chains, drop_bases, (keep_chain, wal_from)

    def prune(self, step: Note) -> list[str]:
        drop_chains, drop_bases, wal_from = self.prune_plan()
        current = self.backups.current()
        actions = []
        removed: list[str] = []  # relative to backups/, for the bucket
        for chain in drop_chains:
            if current is not None and chain.id == current.id:
                continue
            shutil.rmtree(chain.root)
            removed.append(f"chains/{chain.id}/")
            actions.append(f"removed backup chain {chain.id} (older than {self._keep()})")
        for chain, base_id in drop_bases:
            base.remove(chain, base_id)
            removed += [
                f"chains/{chain.id}/base/{base_id}/",
                f"chains/{chain.id}/base/{base_id}.json",
            ]
            actions.append(f"removed base backup {base_id} (older than {self._keep()})")
        if wal_from is not None:
            chain, first = wal_from
            held = ArchivedWal.read(chain.wal_dir)
            old = [s for s in held.complete if s < first]
            for s in old:
                (chain.wal_dir / s.name).unlink(missing_ok=True)
                removed.append(f"chains/{chain.id}/wal/{s.name}")
            if old:
                actions.append(f"removed {len(old)} WAL segment(s) older than {self._keep()}")
        for a in actions:
            step(a)
        if removed and self.cfg.backup_url:
            try:
                actions += prune_bucket(self.cfg.backup_url, removed, step)
            except ImctlError as exc:  # the local retention stands; the bucket keeps extra
                self.warnings.append(f"retention in {self.cfg.backup_url} failed: {exc.message}")
        return actions

    def _keep(self) -> str:
        return f"--keep-days {self.cfg.backup_keep_days:g}"
