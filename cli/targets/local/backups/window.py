"""What a local stack can be restored to: each chain's window (first and last recoverable
time), the archiver's progress, and the problems ``backup status --check`` exits 10 on.

The first recoverable time of a chain is when its oldest base backup finished (a restore
cannot stop inside a base backup). The last is the newest commit in the archived WAL, found by
``pg_waldump``; while the archiver streams and has flushed everything the primary wrote, any
time up to now restores the same data as that commit, so the window reaches now.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.state import StackConfig, parse_utc, write_atomic
from cli.targets.local.backups.archiver import ArchiverView
from cli.targets.local.backups.layout import BackupRoot, BaseInfo, Chain, iso
from cli.targets.local.backups.wal import ArchivedWal, Segment, lsn_int, scan
from cli.targets.local.health import backup_problem
from cli.targets.local.postgres import PgInstance
from cli.targets.local.snapshots.catalog import dir_size

# The archiver may trail by this much before status calls it behind: one segment (a burst of
# writes can be 16 MB ahead for a moment; more than that is not a moment).
BEHIND_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ChainWindow:
    chain: Chain
    reason: str
    timeline: int
    bases: list[BaseInfo]
    wal: ArchivedWal
    first: datetime | None  # None: no base backup, nothing to restore from
    last: datetime | None
    gap: Segment | None  # a segment missing inside the archive (by name)
    read_all: bool = True  # False: status has read only part of it so far (last may be older)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.chain.id,
            "reason": self.reason,
            "timeline": self.timeline,
            "first": iso(self.first) if self.first else None,
            "last": iso(self.last) if self.last else None,
            "base_backups": [b.id for b in self.bases],
            "wal_segments": len(self.wal.all),
            "size_bytes": dir_size(self.chain.root),
            "gap": self.gap.name if self.gap else None,
            "read_all": self.read_all,
        }


WINDOW_CACHE = "window.json"


# Segments one status call reads of a chain it has not read yet (4 GB): the first status
# after a long chain appears reads it in steps instead of timing out on all of it.
STATUS_BUDGET = 256


def newest_commit(
    pg: PgInstance, chain: Chain, held: ArchivedWal, start: Segment, budget: int | None = None
) -> tuple[datetime | None, bool]:
    """The newest commit time in the chain's archive, and whether the whole archive was read.
    Complete segments never change, so what was read of them is remembered (``window.json``
    in the chain: the newest commit seen and the segment to go on from); each call reads from
    there on, at most ``budget`` segments (None: to the end)."""
    cache = chain.root / WINDOW_CACHE
    seen: datetime | None = None
    read_from = start
    try:
        doc = json.loads(cache.read_text())
        seen = parse_utc(doc["last_commit"]) if doc.get("last_commit") else None
        read_from = max(start, Segment.parse(doc["read_from"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache, or one imctl did not write: read the whole chain
    if not held.all:
        return None, True  # nothing archived (any more): the base backups are the window
    newest = held.all[-1]
    while True:
        stop = newest
        if budget is not None:
            stop = Segment(newest.timeline, min(newest.number, read_from.number + budget - 1))
        found = scan(pg, chain.wal_dir, read_from, until=stop, timeout=600)
        seen = found.last_commit or seen
        reached = found.stopped_in or stop
        if reached.number < stop.number:
            # A hole or a damaged record: read from there again next time (it may be fetched
            # back from the bucket), never past it.
            read_from, complete = max(read_from, reached), False
            break
        read_from = stop
        if stop == newest:
            complete = True
            break
        if budget is not None:
            complete = False
            break
    with contextlib.suppress(OSError):
        write_atomic(cache, json.dumps({
            "last_commit": iso(seen) if seen else None,
            "read_from": read_from.name,
        }) + "\n")  # fmt: skip
    return seen, complete


def chain_window(pg: PgInstance, chain: Chain, budget: int | None = None) -> ChainWindow:
    info = chain.info()
    bases = chain.bases()
    held = ArchivedWal.read(chain.wal_dir)
    first = parse_utc(bases[0].finished_at) if bases else None
    gap = None
    last = None
    read_all = True
    if bases:
        b = bases[0]
        start = Segment.at(b.timeline, lsn_int(b.start_lsn))
        last, read_all = newest_commit(pg, chain, held, start, budget)
        gap = held.first_gap(start)
        if gap is not None and held.all and gap.number > held.all[-1].number:
            gap = None  # the archive simply has not reached it: not a hole
    if first is not None and (last is None or last < first):
        # Nothing committed since the base backup: restoring to any time from its end on
        # gives the same data, so the window is that instant (and up to now while archiving).
        last = first
    return ChainWindow(chain, info.reason, info.timeline, bases, held, first, last, gap, read_all)


def problems(
    cfg: StackConfig,
    current: ChainWindow | None,
    archiver: ArchiverView,
    primary_answering: bool,
) -> list[dict[str, Any]]:
    """What puts the recovery point at risk. Nothing is said about the archiver while the
    primary itself is down: status reports that already, and the archiver has nothing to
    read."""
    if cfg.archiving == "off":
        return []
    s = f"-s {cfg.stack}"
    out = []
    if current is None or not current.bases:
        out.append(
            backup_problem(
                "backup_missing",
                "no base backup: nothing can be restored to a point in time yet",
                f"imctl backup base {s}",
            )
        )
    if primary_answering and not (archiver.running and archiver.streaming):
        what = "is not running" if not archiver.running else "runs but does not stream"
        out.append(
            backup_problem(
                "archiving_stopped",
                f"the WAL archiver (pg_receivewal) {what}: commits since are in no backup"
                + (" and writes wait for it (--archiving sync)" if cfg.archiving == "sync" else ""),
                f"imctl deploy {s}",
            )
        )
    elif cfg.archiving == "sync" and archiver.sync_state not in ("sync", "quorum"):
        out.append(
            backup_problem(
                "archiving_not_synchronous",
                "--archiving sync, but commits do not wait for the archiver"
                f" ({archiver.sync_state or 'not listed'}): an acked message may be missing"
                " from the archive",
                f"imctl deploy {s}",
            )
        )
    elif archiver.sent_lag_bytes is not None and archiver.sent_lag_bytes > BEHIND_BYTES:
        out.append(
            backup_problem(
                "archiving_behind",
                f"the WAL archiver is {archiver.sent_lag_bytes} bytes behind the primary",
                f"imctl logs --node archiver {s}",
            )
        )
    if current is not None and current.gap is not None:
        out.append(
            backup_problem(
                "archive_gap",
                f"WAL segment {current.gap.name} is missing from chain {current.chain.id}:"
                " restores stop before it",
                f"imctl backup base {s}   (a new base backup makes later times restorable)",
            )
        )
    if current is not None and current.bases:
        age = datetime.now(UTC) - parse_utc(current.bases[-1].finished_at)
        if age > timedelta(hours=2 * cfg.backup_base_every_hours):
            out.append(
                backup_problem(
                    "base_backup_old",
                    f"the newest base backup is {age.total_seconds() / 3600:.1f} h old"
                    f" (--base-every {cfg.backup_base_every_hours:g} h): a restore replays"
                    " all the WAL since",
                    f"imctl backup base {s}   (or run it from cron)",
                )
            )
    return out


def window_doc(windows: list[ChainWindow], archiver: ArchiverView) -> dict[str, Any]:
    """The window a restore can reach now: the current chain's, up to now while the archiver
    has flushed everything the primary wrote."""
    current = windows[-1] if windows else None
    if current is None or current.first is None:
        return {"first": None, "last": None, "up_to_now": False}
    caught_up = archiver.up_to_date
    first = next((w.first for w in windows if w.first is not None), None)
    return {
        "first": iso(first) if first else None,
        "last": iso(current.last) if current.last else None,
        "up_to_now": bool(caught_up),
    }


def backup_doc(
    cfg: StackConfig, root: BackupRoot, pg: PgInstance, archiver: ArchiverView,
    primary_answering: bool,
) -> dict[str, Any]:  # fmt: skip
    windows = [chain_window(pg, c, STATUS_BUDGET) for c in root.chains()]
    current = windows[-1] if windows else None
    found = problems(cfg, current, archiver, primary_answering)
    last_base = None
    for w in windows:
        if w.bases:
            b = w.bases[-1]
            last_base = {"id": b.id, "chain": w.chain.id, "finished_at": b.finished_at,
                         "size_bytes": b.size_bytes, "seconds": b.seconds}  # fmt: skip
    return {
        "stack": cfg.stack,
        "cloud": "local",
        "archiving": cfg.archiving,
        "healthy": not found,
        "window": window_doc(windows, archiver),
        "where": {"local": str(root.root), "bucket": cfg.backup_url},
        "keep_days": cfg.backup_keep_days,
        "base_every_hours": cfg.backup_base_every_hours,
        "last_base_backup": last_base,
        "archiver": archiver.to_json(),
        "archived_up_to": {
            "segment": current.wal.all[-1].name if current and current.wal.all else None,
            "last_commit": iso(current.last) if current and current.last else None,
        },
        "chains": [w.to_json() for w in windows],
        "problems": found,
    }
