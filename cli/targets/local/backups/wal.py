"""WAL segment names and what ``pg_waldump`` says about an archive: whether it reads through
without a damaged record, and when the last transaction in it committed.

A segment's name is its timeline and position: ``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, then
the segment number split at 2^32 bytes / segment size). Segments are 16 MB (initdb's default,
which imctl never changes), so the arithmetic here assumes it and ``check_segment_size`` says
so when a cluster differs.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli.errors import PreconditionFailed
from cli.targets.local.backups.layout import HISTORY_RE, PARTIAL_SUFFIX, SEGMENT_RE
from cli.targets.local.postgres import PgInstance

SEGMENT_SIZE = 16 * 1024 * 1024
_PER_XLOGID = 0x100000000 // SEGMENT_SIZE
_COMMIT_RE = re.compile(
    r"lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: (?:COMMIT|ABORT) "
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)
_LSN_RE = re.compile(r"\b([0-9A-F]+/[0-9A-F]+)\b")
_MISSING_RE = re.compile(r'could not find file "([0-9A-F]{24})"')


def lsn_int(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def lsn_text(n: int) -> str:
    return f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"


@dataclass(frozen=True, order=True)
class Segment:
    timeline: int
    number: int  # the segment's index from the start of WAL

    @classmethod
    def parse(cls, name: str) -> Segment:
        if not SEGMENT_RE.match(name):
            raise ValueError(f"not a WAL segment name: {name!r}")
        tl, hi, lo = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
        return cls(tl, hi * _PER_XLOGID + lo)

    @classmethod
    def at(cls, timeline: int, lsn: int) -> Segment:
        return cls(timeline, lsn // SEGMENT_SIZE)

    @property
    def name(self) -> str:
        hi, lo = divmod(self.number, _PER_XLOGID)
        return f"{self.timeline:08X}{hi:08X}{lo:08X}"

    @property
    def start_lsn(self) -> int:
        return self.number * SEGMENT_SIZE


@dataclass(frozen=True)
class ArchivedWal:
    """The segments a WAL directory holds (pg_receivewal's): complete ones and the one being
    written (``.partial``), for one timeline."""

    complete: list[Segment]
    partial: Segment | None

    @classmethod
    def read(cls, wal_dir: Path) -> ArchivedWal:
        complete, partials = [], []
        if wal_dir.is_dir():
            for p in wal_dir.iterdir():
                name = p.name
                if SEGMENT_RE.match(name):
                    complete.append(Segment.parse(name))
                elif name.endswith(PARTIAL_SUFFIX) and SEGMENT_RE.match(
                    name[: -len(PARTIAL_SUFFIX)]
                ):
                    partials.append(Segment.parse(name[: -len(PARTIAL_SUFFIX)]))
        complete.sort()
        partial = max(partials) if partials else None
        if partial is not None and complete and partial <= complete[-1]:
            partial = None  # a leftover of a segment finished since
        return cls(complete, partial)

    @property
    def all(self) -> list[Segment]:
        return self.complete + ([self.partial] if self.partial else [])

    def first_gap(self, start: Segment) -> Segment | None:
        """The first segment from ``start`` on that is missing before the newest one held,
        or None when the run is unbroken. Checks names only (cheap, for status)."""
        have = {s.number for s in self.all if s.timeline == start.timeline}
        newest = max(have, default=None)
        if newest is None or start.number > newest:
            return start
        for n in range(start.number, newest + 1):
            if n not in have:
                return Segment(start.timeline, n)
        return None

    def end_lsn_bound(self) -> int | None:
        """The end of the newest segment held: no record in the archive is past it."""
        segs = self.all
        return (segs[-1].number + 1) * SEGMENT_SIZE if segs else None


@dataclass(frozen=True)
class WalScan:
    """What one pg_waldump pass over an archive found."""

    last_commit: datetime | None  # the newest COMMIT/ABORT record's time
    last_commit_lsn: int | None
    commits: int
    end_lsn: int | None  # where reading stopped (the end of valid WAL)
    stopped_in: Segment | None  # the segment that ended the read


def _utc(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def scan(
    pg: PgInstance,
    wal_dir: Path,
    start: Segment,
    *,
    until: Segment | None = None,
    timeout: float = 600.0,
) -> WalScan:
    """Read every record from ``start`` to the end of the archive in ``wal_dir`` (CRC-checked
    by pg_waldump) and report the last commit. The archive's current ``.partial`` segment is
    read as the segment it will become (pg_waldump takes only complete names), through a
    linked name in a scratch directory next to it."""
    for attempt in range(3):
        try:
            return _scan_once(pg, wal_dir, start, until, timeout)
        except FileNotFoundError:
            # pg_receivewal renamed its .partial between the listing and the link: list again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _scan_once(
    pg: PgInstance, wal_dir: Path, start: Segment, until: Segment | None, timeout: float
) -> WalScan:
    held = ArchivedWal.read(wal_dir)
    last = held.all[-1] if held.all else None
    if last is not None and until is not None and until < last:
        last = until  # a stretch of the archive, not all of it
    if last is None or last < start:
        return WalScan(None, None, 0, None, None)
    args = ["--path", str(wal_dir), "--rmgr=Transaction", "--start", lsn_text(start.start_lsn)]
    scratch = None
    try:
        if held.partial is not None:
            scratch = _link_partial(wal_dir, held.partial)
            args[1] = str(scratch)
        # Both ends named: given only a start segment, pg_waldump reads that one segment. TZ:
        # it prints commit times in the local zone, and only UTC is parsed.
        done = pg.run(
            "pg_waldump", [*args, start.name, last.name], timeout=timeout, check=False,
            env={"TZ": "UTC"},
        )  # fmt: skip
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    commits = [_COMMIT_RE.search(line) for line in done.stdout.splitlines()]
    found = [m for m in commits if m]
    end = _where_reading_stopped(done.stderr)
    if end is None and done.returncode == 0:
        end = (last.number + 1) * SEGMENT_SIZE - 1  # read every named segment to its end
    stopped = Segment.at(start.timeline, end) if end is not None else None
    if done.returncode != 0 and end is None:
        raise PreconditionFailed(
            f"pg_waldump could not read the WAL archive {wal_dir}: {done.stderr.strip()}",
            "the archive is damaged or incomplete; `imctl backup status` shows it",
            code="backup_corrupt",
        )
    return WalScan(
        last_commit=_utc(found[-1].group(2)) if found else None,
        last_commit_lsn=lsn_int(found[-1].group(1)) if found else None,
        commits=len(found),
        end_lsn=end,
        stopped_in=stopped,
    )


def _where_reading_stopped(stderr: str) -> int | None:
    """The position pg_waldump could not read past. Every WAL ends in an error ("invalid
    record length ... got 0" in the segment being written, or the next segment's file not
    found): where it stops is the end of what can be replayed; the last position named in the
    message is the bad one, not the last good record's."""
    for line in reversed(stderr.splitlines()):
        missing = _MISSING_RE.search(line)
        if missing:
            return Segment.parse(missing.group(1)).start_lsn
        if "error" in line:
            lsns = _LSN_RE.findall(line)
            if lsns:
                return lsn_int(lsns[-1])
    return None


def check_reads_through(found: WalScan, held: ArchivedWal, what: str) -> None:
    """Refuse an archive pg_waldump could not read to its newest segment: recovery would stop
    at the same place without a word and call the result the latest data."""
    newest = held.all[-1] if held.all else None
    if newest is None or found.stopped_in is None:
        return
    if found.stopped_in.number < newest.number:
        raise PreconditionFailed(
            f"{what}: WAL segment {found.stopped_in.name} is damaged or missing (pg_waldump"
            f" cannot read past {lsn_text(found.end_lsn or 0)}, and the archive goes on to"
            f" {newest.name}); a restore would silently stop there. Nothing was changed",
            "restore to a time before it (`imctl backup status` shows the window), or from a"
            " copy of the archive in the bucket (--backup-url)",
            code="backup_corrupt",
        )


def _link_partial(wal_dir: Path, partial: Segment) -> Path:
    """A directory holding every segment of ``wal_dir`` under its own name plus the partial
    under its final name: hard links, so nothing is copied and the archive is not touched."""
    import os
    import secrets

    scratch = wal_dir.parent / f".waldump-{secrets.token_hex(4)}"
    scratch.mkdir()
    try:
        for p in wal_dir.iterdir():
            if SEGMENT_RE.match(p.name) or HISTORY_RE.match(p.name):
                os.link(p, scratch / p.name)
        os.link(wal_dir / (partial.name + PARTIAL_SUFFIX), scratch / partial.name)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch
