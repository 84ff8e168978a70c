"""Point-in-time restore on the local target: a base backup plus archived WAL replayed up to a
time, into a new data directory next to the live one; checked; then switched in.

Everything that can refuse is checked before anything changes: the time against the window,
the base backup against its manifest (``pg_verifybackup``), every WAL record from the base
backup to the target against its CRC (``pg_waldump``; recovery would stop at a damaged record
without a word and call what it had the result). The recovered cluster is then checked:

- seqs dense in every conversation (``count == max(seq) == last_seq``);
- no message committed after the target (``track_commit_timestamp`` carries commit times
  through WAL replay);
- when the live database answers, every message it holds that committed up to the target is in
  the restored data, identical (per conversation: count, last seq, md5 of the rows). The
  restored data may hold more: conversations deleted since the target (the reason to restore).

Only then are the im-server nodes drained and the data directories swapped (cutover.py's
switch, which puts the old data back if anything fails before the nodes are up).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.deadline import Deadline, poll
from cli.errors import ContentMismatch, ImctlError, PreconditionFailed, ResourceFailure
from cli.progress import Note, Step
from cli.snapshots import DIGEST_SQL
from cli.state import parse_utc
from cli.targets.local.backups import base
from cli.targets.local.backups.archiver import ArchiverView
from cli.targets.local.backups.archiving import new_incarnation
from cli.targets.local.backups.layout import (
    PARTIAL_SUFFIX,
    BackupRoot,
    BaseInfo,
    Chain,
    iso,
)
from cli.targets.local.backups.wal import (
    ArchivedWal,
    Segment,
    check_reads_through,
    lsn_int,
    scan,
)
from cli.targets.local.backups.window import ChainWindow, chain_window
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port, log_tail
from cli.targets.local.runtime import DATABASE, Region
from cli.targets.local.snapshots.catalog import STAGING
from cli.targets.local.snapshots.pg_client import discard

# Smoke-test conversations are created and deleted by restores themselves.
_SMOKE = "%imctl-smoke-%"
LIVE_DIGEST_SQL = DIGEST_SQL.replace(
    "FROM conversations c LEFT JOIN messages m ON m.conv = c.id",
    "FROM conversations c JOIN messages m ON m.conv = c.id"
    " AND pg_xact_commit_timestamp(m.xmin) <= $1",
)


def describe(at: datetime | None) -> str:
    return "latest" if at is None else iso(at)


@dataclass(frozen=True)
class Choice:
    window: ChainWindow
    base: BaseInfo
    to_time: datetime | None  # None: everything the chain holds
    to_end: bool  # replay the whole chain: "latest", or a time at/after an old chain's end
    # A time past the newest archived commit of the current chain: a commit is made on the
    # live primary and awaited in the archive first, so that replay has a commit after the
    # target to stop at and nothing that commits meanwhile is taken in.
    needs_marker: bool = False

    @property
    def chain(self) -> Chain:
        return self.window.chain


def _windows_text(windows: list[ChainWindow]) -> str:
    spans = [f"{describe(w.first)} .. {describe(w.last)}" for w in windows if w.first]
    return "; ".join(spans) or "none (no base backup)"


def choose(
    root: BackupRoot, pg: PgInstance, to_time: datetime | None, archiver: ArchiverView
) -> Choice:
    """The chain and base backup a restore to ``to_time`` starts from, or PreconditionFailed
    (exit 10) with the window when the time cannot be reached."""
    all_windows = [chain_window(pg, c) for c in root.chains()]
    windows = [w for w in all_windows if w.bases]
    if not windows:
        raise PreconditionFailed(
            "there is no base backup to restore from",
            "`imctl backup base` takes one (deploy takes one when archiving is on)",
            code="backup_missing",
        )
    current = all_windows[-1]
    now = datetime.now(UTC)
    if to_time is None:
        if not current.bases:
            # The history since the last restore or failover is in no base backup yet:
            # "latest" from an older chain would quietly drop all of it.
            raise PreconditionFailed(
                f"the current backup chain {current.chain.id} ({current.reason}) has no base"
                " backup yet, so the latest data cannot be restored",
                "`imctl backup base` takes one",
                code="backup_missing",
            )
        return Choice(current, current.bases[-1], None, True)
    if to_time > now:
        raise PreconditionFailed(
            f"{iso(to_time)} is in the future (now {iso(now)})",
            f"pick a time inside the window: {_windows_text(windows)}, or --to-time latest",
            code="outside_window",
        )
    for w in reversed(windows):
        assert w.first is not None and w.last is not None
        is_current = w is current
        last = now if is_current and archiver.up_to_date else w.last
        if w.first <= to_time <= last:
            usable = [b for b in w.bases if parse_utc(b.finished_at) <= to_time]
            beyond = to_time >= w.last
            # Past the newest archived commit: a marker is needed only while the archive
            # still grows (streaming, caught up); otherwise the archive ends there, and
            # replaying all of it is the state at that time.
            marker = beyond and is_current and archiver.up_to_date
            return Choice(w, usable[-1], to_time, to_end=beyond and not marker, needs_marker=marker)
    raise PreconditionFailed(
        f"{iso(to_time)} is outside the recoverable window ({_windows_text(windows)})",
        "pick a time inside it (`imctl backup status` shows it), or --to-time latest",
        code="outside_window",
    )


def mark_and_wait(live: PgInstance, deadline: Deadline, limit: float = 15.0) -> None:
    """One commit on the live primary (after the target, so replay stops before it), then
    wait until the archiver has written it."""
    from cli.targets.local.backups.archiver import ARCHIVER_NAME

    # Local commit: a synchronous standby region that is down must not hold the marker (the
    # wait below is for the archiver alone).
    lsn = live.sql(
        "BEGIN; SET LOCAL synchronous_commit = local; SELECT pg_current_xact_id(); COMMIT;"
        " SELECT pg_current_wal_lsn()",
        timeout=10,
    ).splitlines()[-1]

    def behind(_b: str) -> str:
        raise PreconditionFailed(
            f"the WAL archiver did not receive the primary's WAL up to {lsn} within"
            f" {limit:.0f}s; nothing was changed",
            "`imctl backup status` shows the archiver; a time before the newest archived"
            " commit does not need it",
            code="archiving_behind",
        )

    poll(
        lambda: live.sql(
            "SELECT coalesce(bool_or(write_lsn >= :'lsn'::pg_lsn), false) FROM"
            " pg_stat_replication WHERE application_name = :'a'",
            variables={"lsn": lsn, "a": ARCHIVER_NAME},
            timeout=5,
        ),
        done=lambda ok: ok == "t",
        state=lambda ok: "archived" if ok == "t" else "not yet",
        what="the archiver",
        limit=min(limit, max(0.1, deadline.remaining())),
        interval=0.1,
        timed_out=behind,
    )


def plan_lines(
    choice: Choice, region: Region, where: str, standbys: list[str], live_messages: int | None
) -> list[str]:
    b = choice.base
    target = (
        "the latest archived commit"
        if choice.to_end or choice.to_time is None
        else iso(choice.to_time)
    )
    now = f"{live_messages} messages now" if live_messages is not None else "PostgreSQL is down"
    lines = [
        f"check base backup {b.id} (chain {choice.chain.id}) with pg_verifybackup and every WAL"
        " record after it with pg_waldump",
        f"recover it into a new data directory next to region {region.cfg.name}'s, replaying WAL"
        f" up to {target}",
        "check the result: seqs dense in every conversation, nothing committed after the"
        " target, and every live message committed up to the target present and identical",
        f"then drain the {len(region.node_ids())} im-server node(s), switch PostgreSQL to the"
        " recovered data (a new timeline), restart the nodes and smoke-test a send",
        f"messages committed after the target leave service ({now})",
    ]
    if where == "new":
        lines.append(
            f"the current data is kept in {region.root / 'pg'}/data.before-restore-pitr-<time>"
            " until `imctl snapshot prune --previous-data`"
        )
    else:
        lines.append("the current data directory is DELETED after the switch and smoke test")
    if standbys:
        lines.append(
            f"rebuild standby region(s) {', '.join(standbys)} from the recovered primary"
            " (pg_basebackup): they hold the old timeline"
        )
    lines.append("a new backup chain starts (base backup); the old chain stays restorable")
    return lines


def check_archive(pg: PgInstance, choice: Choice, deadline: Deadline, progress: Step) -> Choice:
    """The base backup and the WAL after it checked; the choice back, replaying to the end
    when the archive holds no commit after the target (recovery would never reach it)."""
    path = choice.chain.base_path(choice.base.id)
    with progress(f"checking base backup {choice.base.id} (pg_verifybackup)"):
        base.verify(pg, path)
    deadline.check("after checking the base backup; nothing was changed")
    start = Segment.at(choice.base.timeline, lsn_int(choice.base.start_lsn))
    with progress("reading every archived WAL record after it (pg_waldump)"):
        held = ArchivedWal.read(choice.chain.wal_dir)
        found = scan(pg, choice.chain.wal_dir, start, timeout=max(1.0, deadline.remaining()))
    what = f"chain {choice.chain.id}"
    if (
        choice.to_end
        or found.last_commit is None
        or (choice.to_time and found.last_commit <= choice.to_time)
    ):
        check_reads_through(found, held, what)
    deadline.check("after reading the WAL archive; nothing was changed")
    # From this full read, not the window's: replay to the end exactly when nothing in the
    # archive committed after the target.
    to_end = (
        choice.to_time is None or found.last_commit is None or found.last_commit <= choice.to_time
    )
    return dataclasses.replace(choice, to_end=to_end)


def restore_command(wal_dir: Path) -> str:
    # The segment being written is archived as .partial; recovery asks for its final name.
    src = str(wal_dir).replace("'", "")
    return f"cp '{src}/%f' '%p' 2>/dev/null || cp '{src}/%f{PARTIAL_SUFFIX}' '%p'"


def recover(
    choice: Choice, live: PgInstance, password: str, deadline: Deadline, progress: Step
) -> tuple[PgInstance, dict[str, float]]:
    """The recovered cluster, promoted and running on a scratch port."""
    settings = {
        "restore_command": restore_command(choice.chain.wal_dir),
        "recovery_target_timeline": "current",
        "recovery_target_action": "promote",
        "track_commit_timestamp": "on",
    }
    if not choice.to_end and choice.to_time is not None:
        settings["recovery_target_time"] = iso(choice.to_time).replace("Z", "+00")
        settings["recovery_target_inclusive"] = "on"
    staging = PgInstance(
        data_dir=live.data_dir.with_name(STAGING),
        port=free_port(),
        log_file=live.data_dir.with_name(STAGING + ".log"),
        password=password,
        settings=settings,
    )
    discard(staging)  # what an interrupted restore left behind
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        with progress(f"unpacking base backup {choice.base.id} into {staging.data_dir}"):
            base.unpack(choice.chain.base_path(choice.base.id), staging.data_dir, staging)
            new_incarnation(staging.data_dir, staging)
            (staging.data_dir / "recovery.signal").touch()
            staging.chown(staging.data_dir / "recovery.signal")
            # Slots and signals of the source must not come back to life in the copy.
            (staging.data_dir / "standby.signal").unlink(missing_ok=True)
        timings["unpack_s"] = round(time.monotonic() - t0, 3)
        deadline.check("after unpacking; the current data is untouched")
        t1 = time.monotonic()
        with progress(f"replaying WAL up to {describe(None if choice.to_end else choice.to_time)}"):
            staging.start(timeout=max(1.0, min(600.0, deadline.remaining())))
            _wait_promoted(staging, deadline)
            # A restored primary copied the old primary's synchronous standby list; its standby
            # is rebuilt afterwards, and until then a commit would wait for nobody.
            staging.sql("ALTER SYSTEM RESET synchronous_standby_names")
            staging.sql("SELECT pg_reload_conf()")
            # The backup may come from this stack before a destroy (other secrets): the
            # stack's current password, over the unix socket (trust), before anything connects.
            # In the statement (psql's stdin), not a psql variable: argv is public.
            literal = "'" + password.replace("'", "''") + "'"
            staging.sql(f"ALTER ROLE postgres PASSWORD {literal}")
        timings["recovery_s"] = round(time.monotonic() - t1, 3)
    except BaseException:
        discard(staging)
        raise
    return staging, timings


def _wait_promoted(pg: PgInstance, deadline: Deadline) -> None:
    def state() -> str:
        if not pg.is_running():
            raise ResourceFailure(
                "PostgreSQL stopped while replaying WAL; the current data is untouched:\n"
                + log_tail(pg.log_file),
                "the archive may be damaged; `imctl backup status` shows it",
            )
        try:
            return pg.sql("SELECT pg_is_in_recovery()", timeout=10)
        except ImctlError:
            return "starting"

    def late(_s: str) -> str:
        raise deadline.error("while replaying WAL; the current data is untouched")

    poll(
        state,
        done=lambda s: s == "f",
        state=lambda s: {"t": "replaying", "f": "promoted"}.get(s, s),
        what="WAL replay",
        limit=max(0.1, deadline.remaining()),
        interval=0.2,
        timed_out=late,
    )


@dataclass(frozen=True)
class Checked:
    messages: int
    conversations: int
    live_compared: bool
    deleted_since: int  # conversations at the target that the live data no longer has
    recovered_to: datetime | None  # the newest commit time among the restored messages
    size_bytes: int


async def _restored(dsn: str) -> tuple[list[Mapping[str, Any]], datetime | None, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(DIGEST_SQL)
        newest = await conn.fetchval("SELECT max(pg_xact_commit_timestamp(xmin)) FROM messages")
        size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    except asyncpg.UndefinedTableError:
        raise PreconditionFailed(
            "at that time the database had no schema yet (the stack's first deploy had not"
            " applied its migrations); the current data is untouched",
            "pick a later time (`imctl backup status` shows the window)",
            code="outside_window",
        ) from None
    finally:
        await conn.close()
    return rows, newest, size


async def _live(live_dsn: str, at: datetime) -> list[Mapping[str, Any]] | None:
    """The live database's messages committed up to ``at``, per conversation; None when it
    does not answer or holds rows without commit times (from before track_commit_timestamp)."""
    import asyncpg

    try:
        live = await asyncpg.connect(live_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        async with live.transaction(isolation="repeatable_read", readonly=True):
            unknown = await live.fetchval(
                "SELECT count(*) FROM messages WHERE pg_xact_commit_timestamp(xmin) IS NULL"
            )
            if unknown:
                return None
            rows: list[Mapping[str, Any]] = await live.fetch(LIVE_DIGEST_SQL, at)
            return rows
    finally:
        await live.close()


async def _digests(
    dsn: str, live_dsn: str | None, to_time: datetime | None
) -> tuple[list[Mapping[str, Any]], datetime | None, list[Mapping[str, Any]] | None, int]:
    rows, newest, size = await _restored(dsn)
    # Compared up to the target, or for "latest" up to the newest commit restored: every live
    # message committed by then must be in the restored data.
    at = to_time or newest
    live_rows = await _live(live_dsn, at) if live_dsn is not None and at is not None else None
    return rows, newest, live_rows, size


def check(staging: PgInstance, live: PgInstance, choice: Choice, deadline: Deadline) -> Checked:
    live_dsn = live.dsn(DATABASE) if live.is_running() else None
    target = choice.to_time
    try:
        rows, newest, live_rows, size = asyncio.run(
            asyncio.wait_for(
                _digests(staging.dsn(DATABASE), live_dsn, target), deadline.remaining()
            )
        )
    except TimeoutError:
        raise deadline.error("while checking the recovered data") from None
    problems = []
    restored = {str(r["conv"]): r for r in rows}
    holes = [c for c, r in restored.items() if not r["n"] == r["max_seq"] == r["last_seq"]]
    if holes:
        problems.append(f"seqs not dense in {len(holes)} conversation(s), e.g. {holes[:3]}")
    if target is not None and newest is not None and newest > target:
        problems.append(f"a message committed at {iso(newest)}, after the target {iso(target)}")
    deleted_since = 0
    if live_rows is not None:
        live_by = {str(r["conv"]): r for r in live_rows if "imctl-smoke-" not in str(r["conv"])}
        missing = [c for c in live_by if c not in restored]
        differ = [
            c for c, r in live_by.items()
            if c in restored and (r["n"], r["max_seq"], r["digest"]) != (
                restored[c]["n"], restored[c]["max_seq"], restored[c]["digest"])
            and restored[c]["n"] <= r["n"]
        ]  # fmt: skip
        if missing:
            problems.append(
                f"{len(missing)} conversation(s) with messages committed by the target are"
                f" missing, e.g. {missing[:3]}"
            )
        if differ:
            problems.append(
                f"{len(differ)} conversation(s) differ from the live messages committed by the"
                f" target, e.g. {differ[:3]}"
            )
        deleted_since = sum(1 for c in restored if c not in live_by and restored[c]["n"])
    if problems:
        raise ContentMismatch(
            "the recovered data failed its checks; the current data stays in service: "
            + "; ".join(problems),
            "the archive may be damaged; try another time or `imctl backup base` and report this",
        )
    return Checked(
        messages=sum(int(r["n"]) for r in rows),
        conversations=len(rows),
        live_compared=live_rows is not None,
        deleted_since=deleted_since,
        recovered_to=newest,
        size_bytes=size,
    )


def remove_previous(previous: Path, note: Note) -> None:
    shutil.rmtree(previous, ignore_errors=True)
    note(f"deleted the replaced data directory {previous}")
